//! The producing side of a worker: one producer type that sends outputs, knows what each
//! delivery report belongs to (an input's offset, a tick, an owed status) and produces a
//! batch's statuses before the rest.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use tracing::{error, warn};

use crate::config::RuntimeConfig;
use crate::ledger::{lock, Ledger, Tp};
use crate::owed::OwedStatuses;
use crate::{telemetry, Error, Result};

/// Counts delivery reports, so a drain can wait for the next one instead of polling.
#[derive(Default)]
pub(crate) struct Reports {
    seen: Mutex<u64>,
    changed: std::sync::Condvar,
}

impl Reports {
    pub(crate) fn reported(&self) {
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        self.changed.notify_all();
    }

    pub(crate) fn count(&self) -> u64 {
        *self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until a report comes after the `seen`-th, or `until`.
    pub(crate) fn wait_after(&self, seen: u64, until: Instant) {
        let guard = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let left = until.saturating_duration_since(Instant::now());
        let _ = self.changed.wait_timeout_while(guard, left, |n| *n == seen);
    }
}

/// What a produced message belongs to: an input (its offset waits for it) or a tick.
pub(crate) enum DeliveryToken {
    Input { tp: Tp, epoch: u64, offset: i64 },
    Tick(Arc<Awaited>),
}

/// Deliveries awaited together: a tick's events, or a batch's statuses (see
/// [`produce_in_order`]).
#[derive(Default)]
pub(crate) struct Awaited {
    left: AtomicUsize,
    failed: Mutex<Option<String>>,
    all_reported: tokio::sync::Notify,
}

impl Awaited {
    /// Awaits `n` deliveries (and one count more, the waiter's own: see [`Awaited::wait`]).
    pub(crate) fn expecting(n: usize) -> Arc<Self> {
        let awaited = Self::default();
        awaited.left.store(n + 1, Ordering::Release);
        Arc::new(awaited)
    }

    /// Waits until every delivery has reported; the first failure, if one failed. Each
    /// delivery reports by the producer's message timeout at the latest.
    pub(crate) async fn wait(&self) -> Option<String> {
        // The extra count is ours: every report is in once it reaches zero, and the
        // notification waits for us even if every report came first.
        self.report(None);
        self.all_reported.notified().await;
        self.failed.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    pub(crate) fn report(&self, failure: Option<String>) {
        if let Some(f) = failure {
            self.failed.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(f);
        }
        if self.left.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.all_reported.notify_one();
        }
    }
}

/// What a produced message belongs to, and the id of the status it owes (if it is one:
/// settled once acknowledged).
pub(crate) struct Delivery {
    token: DeliveryToken,
    owed: Option<Box<str>>,
    /// Awaited before the rest of its batch is produced.
    awaited: Option<Arc<Awaited>>,
}

pub(crate) struct DeliveryContext {
    ledger: Arc<Mutex<Ledger>>,
    reports: Arc<Reports>,
    stage: &'static str,
    owed: Option<Arc<OwedStatuses>>,
    /// Shared with the consumer's context: the producer's thread reports every broker lost
    /// even while the consume loop awaits acknowledgements and polls nothing.
    brokers_down: Arc<AtomicBool>,
}

impl ClientContext for DeliveryContext {
    fn error(&self, error: KafkaError, reason: &str) {
        client_error(self.stage, "producer", &self.brokers_down, &error, reason);
    }
}

/// A client error, logged; every broker lost sets `brokers_down` (readiness), which the
/// consumer's statistics clear once a broker is up again.
pub(crate) fn client_error(
    stage: &'static str,
    client: &'static str,
    brokers_down: &AtomicBool,
    error: &KafkaError,
    reason: &str,
) {
    warn!(stage, client, error = %error, reason, "Kafka client error");
    if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
        brokers_down.store(true, Ordering::Relaxed);
    }
}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = Box<Delivery>;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: Box<Delivery>) {
        let Delivery { token, owed, awaited } = *opaque;
        if let (Ok(_), Some(owed), Some(id)) = (result, &self.owed, owed) {
            owed.acknowledged(&id);
        }
        if let Some(a) = awaited {
            a.report(result.as_ref().err().map(|(e, _)| e.to_string()));
        }
        self.handle_report(result, token);
        self.reports.reported();
    }
}

impl DeliveryContext {
    fn handle_report(&self, result: &DeliveryResult<'_>, token: DeliveryToken) {
        match (token, result) {
            (DeliveryToken::Input { tp, epoch, offset }, Ok(_)) => lock(&self.ledger).ack(&tp, epoch, offset),
            (DeliveryToken::Input { tp, offset, .. }, Err((e, m))) => {
                telemetry::delivery_failed(self.stage);
                let mut ledger = lock(&self.ledger);
                // The first failure stops the worker; the ones queued behind it add nothing.
                if ledger.fatal().is_none() {
                    error!(stage = self.stage, topic = m.topic(), error = %e, origin_offset = offset, "delivery failed");
                }
                // A broker-side size refusal means the topic's limit was lowered after
                // start-up: the restart reads it again, and the input is dead-lettered
                // with OUTPUT_TOO_LARGE before anything is produced.
                let hint = match e {
                    KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge) => {
                        " (the topic's message size limit is lower than when the worker started; a restart reads it again)"
                    }
                    _ => "",
                };
                ledger.fail(format!(
                    "delivery to {} failed for input {}[{}]@{offset}: {e}{hint}",
                    m.topic(),
                    tp.0,
                    tp.1,
                ));
            }
            (DeliveryToken::Tick(t), Ok(_)) => t.report(None),
            (DeliveryToken::Tick(t), Err((e, m))) => {
                telemetry::delivery_failed(self.stage);
                t.report(Some(format!("delivery to {} failed: {e}", m.topic())));
            }
        }
    }
}

/// One message to produce.
pub(crate) struct Outgoing {
    pub(crate) topic: Arc<str>,
    pub(crate) key: Option<Vec<u8>>,
    pub(crate) payload: Vec<u8>,
    pub(crate) headers: OwnedHeaders,
    /// The id of the status it carries while that status is owed ([`crate::owed`]).
    pub(crate) owed: Option<Box<str>>,
}

/// A worker's producer: idempotent (`acks=all`), every delivery reported to the ledger
/// (an input's offset moves once all its outputs are acknowledged), to a tick awaiting
/// its events, or to the owed statuses it settles.
pub(crate) struct StageProducer {
    inner: ThreadedProducer<DeliveryContext>,
}

impl StageProducer {
    pub(crate) fn create(
        cfg: &RuntimeConfig,
        client_id: &str,
        stage: &'static str,
        ledger: Arc<Mutex<Ledger>>,
        reports: Arc<Reports>,
        owed: Option<Arc<OwedStatuses>>,
    ) -> Result<Self> {
        let inner = cfg
            .kafka
            .producer_config(client_id)
            .create_with_context(DeliveryContext {
                ledger,
                reports,
                stage,
                owed,
                brokers_down: cfg.brokers_down.clone(),
            })?;
        Ok(Self { inner })
    }

    /// The statuses this worker records as owed until acknowledged, if its stage does.
    pub(crate) fn owed(&self) -> Option<&OwedStatuses> {
        self.inner.context().owed.as_deref()
    }

    /// Produces a batch's (or a tick's) outputs, statuses first: the events that let the next
    /// stage act on a dossier go out only once the broker acknowledged the statuses beside
    /// them. Each stage's producer delivers on its own, so otherwise a status whose delivery
    /// lagged (its partition's leader lost, the worker killed in between) reached
    /// `dossier.status` after the status the next stage announced on acting: "supplement
    /// requested" before "received". Costs one acknowledgement per batch that has both.
    /// Returns `false` when a status was not delivered (the rest is then not produced; the
    /// worker stops on the failure, or the tick is retried).
    pub(crate) async fn produce_in_order(
        &self,
        statuses_topic: &str,
        outgoing: Vec<(DeliveryToken, Outgoing)>,
    ) -> Result<bool> {
        let (statuses, rest): (Vec<_>, Vec<_>) = outgoing.into_iter().partition(|(_, o)| &*o.topic == statuses_topic);
        if !statuses.is_empty() && !rest.is_empty() {
            let awaited = Awaited::expecting(statuses.len());
            for (token, o) in statuses {
                self.send(o, token, Some(awaited.clone())).await?;
            }
            if awaited.wait().await.is_some() {
                return Ok(false);
            }
        } else {
            for (token, o) in statuses {
                self.send(o, token, None).await?;
            }
        }
        for (token, o) in rest {
            self.send(o, token, None).await?;
        }
        Ok(true)
    }

    async fn send(&self, o: Outgoing, token: DeliveryToken, awaited: Option<Arc<Awaited>>) -> Result<()> {
        let delivery = Delivery {
            token,
            owed: o.owed,
            awaited,
        };
        let mut record: BaseRecord<'_, [u8], [u8], Box<Delivery>> =
            BaseRecord::with_opaque_to(&o.topic, Box::new(delivery))
                .payload(&o.payload[..])
                .headers(o.headers);
        if let Some(k) = &o.key {
            record = record.key(&k[..]);
        }
        loop {
            match self.inner.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    // The local queue is full: wait for deliveries to drain it.
                    record = r;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((e, _)) => return Err(Error::Client(e)),
            }
        }
    }
}
