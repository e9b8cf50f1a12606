//! The consuming side of a worker: its group membership (assignments, revocation drains,
//! refusals), the batches it receives, and the offsets it stores once their outputs are
//! acknowledged.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{Headers, Message};
use rdkafka::statistics::Statistics;
use rdkafka::{Offset, TopicPartitionList};
use tracing::{debug, info, warn};

use crate::config::RuntimeConfig;
use crate::ledger::{lock, Ledger, Tp};
use crate::producer::{client_error, Reports};
use crate::{telemetry, Error, Result};

/// A stage worker's consumer.
pub(crate) type StageConsumer = StreamConsumer<StageContext>;

/// Original headers kept with a message (they travel into its dead letter, so they are
/// bounded like it).
const MAX_ORIGIN_HEADERS: usize = 32;
const MAX_ORIGIN_HEADER_BYTES: usize = 16 * 1024;

pub(crate) struct StageContext {
    /// The last connection error librdkafka reported (a refused TLS handshake, an
    /// authentication failure), for the start-up check's message.
    pub(crate) last_error: Mutex<Option<String>>,
    pub(crate) ledger: Arc<Mutex<Ledger>>,
    pub(crate) reports: Arc<Reports>,
    pub(crate) assigned: Arc<AtomicUsize>,
    pub(crate) joined: Arc<AtomicBool>,
    pub(crate) brokers_down: Arc<AtomicBool>,
    pub(crate) drain_timeout: Duration,
    pub(crate) stage: &'static str,
    /// The consumer group and the input topics, to name what a refusal was about.
    pub(crate) group: String,
    pub(crate) inputs: Vec<String>,
}

impl ClientContext for StageContext {
    fn error(&self, error: KafkaError, reason: &str) {
        client_error(self.stage, "consumer", &self.brokers_down, &error, reason);
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(format!("{error}: {reason}"));
    }

    fn stats(&self, statistics: Statistics) {
        if statistics.brokers.values().any(|b| b.state == "UP") {
            self.brokers_down.store(false, Ordering::Relaxed);
        }
        for (topic, t) in &statistics.topics {
            let lag: i64 = t
                .partitions
                .values()
                .filter(|p| p.consumer_lag >= 0)
                .map(|p| p.consumer_lag)
                .sum();
            telemetry::consumer_lag(self.stage, topic, lag);
        }
    }
}

impl ConsumerContext for StageContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(tpl) = rebalance else {
            return;
        };
        let tps: Vec<Tp> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_owned(), e.partition()))
            .collect();
        // The callback runs inside the consumer's poll, on an executor thread: tell the
        // executor this thread blocks for a while, so other tasks (ticks, the status API,
        // metrics) move to another thread meanwhile.
        let revoke = || self.revoke(consumer, &tps);
        match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(revoke),
            _ => revoke(),
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let mut l = lock(&self.ledger);
                for e in tpl.elements() {
                    l.assign((e.topic().to_owned(), e.partition()));
                }
                self.assigned.fetch_add(tpl.count(), Ordering::Relaxed);
                self.joined.store(true, Ordering::Relaxed);
                info!(stage = self.stage, partitions = tpl.count(), "partitions assigned");
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => {
                self.joined.store(false, Ordering::Relaxed);
                warn!(stage = self.stage, error = %e, "rebalance error")
            }
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        match result {
            Ok(()) => telemetry::offsets_committed(self.stage, offsets.count()),
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => telemetry::offset_commit_failed(self.stage, &e),
        }
    }
}

impl StageContext {
    /// Drains and commits what this worker did for partitions it is losing, then forgets
    /// them (their messages still in hand become stale).
    fn revoke(&self, consumer: &BaseConsumer<Self>, tps: &[Tp]) {
        // Drain: wait (bounded) for the outputs of revoked partitions to be acknowledged.
        // Deliveries are acknowledged on the producer's own thread, so they progress
        // while the consumer waits here; it sleeps until the next report.
        let deadline = Instant::now() + self.drain_timeout;
        let left = loop {
            let seen = self.reports.count();
            let (busy, failed) = {
                let l = lock(&self.ledger);
                (
                    tps.iter().map(|tp| l.in_flight_for(tp)).sum::<usize>(),
                    l.fatal().is_some(),
                )
            };
            // After a fatal delivery failure nothing more will be acknowledged.
            if busy == 0 || failed || Instant::now() >= deadline {
                break busy;
            }
            self.reports.wait_after(seen, deadline);
        };
        if left > 0 {
            warn!(
                stage = self.stage,
                left, "drain deadline passed on revocation; those messages will be redelivered to the new owner"
            );
        }
        let mut store = TopicPartitionList::new();
        {
            let mut l = lock(&self.ledger);
            for tp in tps {
                if let Some(next) = l.revoke(tp) {
                    let _ = store.add_partition_offset(&tp.0, tp.1, Offset::Offset(next));
                }
            }
        }
        if store.count() > 0 {
            if let Err(e) = consumer.store_offsets(&store) {
                warn!(stage = self.stage, error = %e, "storing offsets on revocation failed");
            }
        }
        match consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => warn!(stage = self.stage, error = %e, "commit on revocation failed"),
        }
        self.assigned
            .fetch_sub(tps.len().min(self.assigned.load(Ordering::Relaxed)), Ordering::Relaxed);
        info!(stage = self.stage, partitions = tps.len(), "partitions revoked");
    }
}

/// A message as received, detached from the consumer.
pub(crate) struct Received {
    pub(crate) tp: Tp,
    pub(crate) epoch: u64,
    pub(crate) offset: i64,
    pub(crate) timestamp_ms: Option<i64>,
    pub(crate) key: Option<Vec<u8>>,
    pub(crate) payload: Option<Vec<u8>>,
    pub(crate) traceparent: Option<String>,
    /// The message's headers as received (kept for its dead letter; bounded).
    pub(crate) headers: Vec<(String, Option<Vec<u8>>)>,
}

/// Fails start-up with the reason when the brokers cannot be reached: a TLS handshake
/// refused (an untrusted certificate, a plaintext port), authentication failed, nothing
/// listening. Without this a worker would wait forever, retrying in the background.
pub(crate) async fn reach_brokers(consumer: &Arc<StageConsumer>, cfg: &RuntimeConfig) -> Result<()> {
    let (probe, timeout) = (consumer.clone(), cfg.connect_timeout);
    let answer =
        tokio::task::spawn_blocking(move || probe.fetch_metadata(None, timeout).map(|m| m.brokers().len())).await;
    let reason = match answer {
        Ok(Ok(n)) if n > 0 => return Ok(()),
        Ok(Ok(_)) => "the cluster reported no brokers".to_owned(),
        Ok(Err(e)) => {
            // The client's error events (a refused password, a failed handshake) reach
            // its context only when it is polled: poll once so the reason can be told.
            let _ = tokio::time::timeout(Duration::from_secs(1), consumer.recv()).await;
            let last = consumer
                .context()
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
            match last {
                Some(last) => format!("{e} (last connection error: {last})"),
                None => e.to_string(),
            }
        }
        Err(e) => format!("the check did not finish: {e}"),
    };
    Err(Error::Unreachable {
        brokers: cfg.kafka.brokers.clone(),
        reason,
    })
}

/// Waits for a first message (returns empty after an idle tick so offsets keep being
/// stored), then gathers more until the batch is full or the linger time has passed.
pub(crate) async fn collect_batch(
    consumer: &StageConsumer,
    ledger: &Mutex<Ledger>,
    cfg: &RuntimeConfig,
) -> Vec<Received> {
    let mut batch = Vec::new();
    let first = match tokio::time::timeout(Duration::from_millis(250), consumer.recv()).await {
        Err(_) => return batch,
        Ok(r) => r,
    };
    push_received(first, consumer.context(), ledger, &mut batch);
    let until = tokio::time::Instant::now() + cfg.linger;
    while batch.len() < cfg.max_batch {
        match tokio::time::timeout_at(until, consumer.recv()).await {
            Err(_) => break,
            Ok(r) => push_received(r, consumer.context(), ledger, &mut batch),
        }
    }
    batch
}

/// A consumer error no retry can mend, as the reason the worker stops with: the broker
/// refused the stage's principal its group or its input topics (a missing ACL), or
/// librdkafka declared the consumer dead (a static member fenced after its coordinator
/// moved: it consumes nothing more, so a restart, which rejoins, is the way on).
fn refusal(e: &KafkaError, cx: &StageContext) -> Option<String> {
    if let KafkaError::MessageConsumptionFatal(code) = e {
        return Some(format!(
            "the consumer failed for good ({code:?}: {e}); exiting so that a restart rejoins group {}",
            cx.group
        ));
    }
    let acls = "grant the stage's principal Read and Describe on it (deploy/kafka/acls.sh)";
    match e.rdkafka_error_code()? {
        RDKafkaErrorCode::GroupAuthorizationFailed => Some(format!(
            "not authorized to use consumer group {} (Read refused): {acls}",
            cx.group
        )),
        RDKafkaErrorCode::TopicAuthorizationFailed => Some(format!(
            "not authorized to read its input topics ({}; Read or Describe refused): {acls}",
            cx.inputs.join(", ")
        )),
        RDKafkaErrorCode::ClusterAuthorizationFailed => Some(format!(
            "not authorized on the cluster ({e}): check the stage's principal's ACLs"
        )),
        _ => None,
    }
}

fn push_received(
    r: KafkaResult<rdkafka::message::BorrowedMessage<'_>>,
    cx: &StageContext,
    ledger: &Mutex<Ledger>,
    batch: &mut Vec<Received>,
) {
    let m = match r {
        Ok(m) => m,
        Err(e) => {
            telemetry::consumer_error(&e);
            if let Some(reason) = refusal(&e, cx) {
                lock(ledger).fail(reason);
            }
            return;
        }
    };
    let tp = (m.topic().to_owned(), m.partition());
    // The epoch is read right after receiving: rebalance callbacks run inside recv(), so
    // it is the assignment this message belongs to.
    let Some(epoch) = lock(ledger).epoch(&tp) else {
        warn!(topic = %tp.0, partition = tp.1, "message from a partition not assigned to us; ignored");
        return;
    };
    let traceparent = m.headers().and_then(|h| {
        h.iter()
            .find(|h| h.key == "traceparent")
            .and_then(|h| h.value)
            .and_then(|v| std::str::from_utf8(v).ok())
            .filter(|v| v.len() <= 128)
            .map(str::to_owned)
    });
    // Headers travel into a dead letter, so they are bounded like it.
    let mut headers = Vec::new();
    let mut header_bytes = 0;
    if let Some(h) = m.headers() {
        for h in h.iter().take(MAX_ORIGIN_HEADERS) {
            header_bytes += h.key.len() + h.value.map_or(0, <[u8]>::len);
            if header_bytes > MAX_ORIGIN_HEADER_BYTES {
                break;
            }
            headers.push((h.key.to_owned(), h.value.map(<[u8]>::to_vec)));
        }
    }
    batch.push(Received {
        tp,
        epoch,
        offset: m.offset(),
        timestamp_ms: m.timestamp().to_millis(),
        key: m.key().map(<[u8]>::to_vec),
        payload: m.payload().map(<[u8]>::to_vec),
        traceparent,
        headers,
    });
}

pub(crate) fn store_committable(consumer: &StageConsumer, ledger: &Mutex<Ledger>, stage: &'static str) {
    let ready = lock(ledger).take_committable();
    if ready.is_empty() {
        return;
    }
    let mut tpl = TopicPartitionList::with_capacity(ready.len());
    for ((topic, partition), next) in &ready {
        let _ = tpl.add_partition_offset(topic, *partition, Offset::Offset(*next));
    }
    match consumer.store_offsets(&tpl) {
        Ok(()) => telemetry::offsets_stored(stage, ready.len()),
        // The partition may have been revoked in the meantime; its new owner redoes it.
        Err(e) => debug!(stage, error = %e, "storing offsets failed"),
    }
}
