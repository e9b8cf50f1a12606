use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use motcua_kafka::KafkaConfig;
use std::collections::HashSet;

use motcua_schemas::{AnyEvent, Codec, DeadLetter, Limits, Topic};

use crate::Door;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::statistics::Statistics;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;
use tracing::{debug, debug_span, error, info, info_span, warn, Instrument};

use crate::ledger::{Ledger, Tp};
use crate::owed::OwedStatuses;
use crate::telemetry;
use crate::{Envelope, Error, Input, Origin, Outcome, Result, Stage, StageError};

/// Tuning of one worker. Defaults suit a stage whose batch takes milliseconds.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    pub kafka: KafkaConfig,
    /// Distinguishes replicas in client ids and logs.
    pub instance_id: String,
    /// Most messages handed to the stage at once.
    pub max_batch: usize,
    /// How long to wait for a batch to fill once its first message arrived.
    pub linger: Duration,
    /// Most handled messages whose outputs are not yet acknowledged; beyond it the worker
    /// stops consuming until the broker catches up (backpressure).
    pub max_in_flight: usize,
    /// On revocation or shutdown, how long in-flight messages may take to finish.
    pub drain_timeout: Duration,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    /// How long a batch may keep failing with retryable errors before the worker gives up
    /// (exits non-zero without committing it) and lets its supervisor restart it.
    pub retry_budget: Duration,
    /// How long a starting worker waits for the brokers before it fails with the reason.
    pub connect_timeout: Duration,
    /// Partitions this worker currently owns, kept up to date by the worker on every
    /// rebalance (readiness checks, progress displays).
    pub assigned: Arc<AtomicUsize>,
    /// Whether the worker is a member of its consumer group (set on every assignment,
    /// even of no partition; cleared on a rebalance error until the next one): readiness.
    pub joined: Arc<AtomicBool>,
    /// Whether every broker connection is down (librdkafka's "all brokers down"; cleared
    /// once its statistics show a broker up again, within 5 s): readiness. The worker
    /// itself waits and reconnects.
    pub brokers_down: Arc<AtomicBool>,
    /// What a decoded input may hold (sizes, identifiers, collections, timestamps):
    /// checked before the stage sees it; what breaks a limit is dead-lettered.
    pub limits: Limits,
    /// The input topics whose bad messages this group dead-letters; `None`: all of them.
    /// A message that does not decode on another topic is recorded and skipped, so each
    /// bad message is dead-lettered once, by the group that owns its topic.
    pub dead_letters_for: Option<Vec<Topic>>,
    /// Static group membership: this worker's `group.instance.id` (stable across
    /// restarts); `None`: a dynamic member.
    pub group_instance_id: Option<String>,
    /// The consumer group; `None`: the stage's own (`<prefix>motcua-<stage>`). A replay
    /// reads the log again under a group of its own, from the beginning.
    pub group: Option<String>,
}

impl RuntimeConfig {
    pub fn new(kafka: KafkaConfig) -> Self {
        Self {
            kafka,
            instance_id: format!("{}-{}", hostname(), std::process::id()),
            max_batch: 500,
            linger: Duration::from_millis(10),
            max_in_flight: 20_000,
            drain_timeout: Duration::from_secs(10),
            retry_initial: Duration::from_millis(200),
            retry_max: Duration::from_secs(10),
            retry_budget: Duration::from_secs(120),
            connect_timeout: Duration::from_secs(30),
            assigned: Arc::new(AtomicUsize::new(0)),
            joined: Arc::new(AtomicBool::new(false)),
            brokers_down: Arc::new(AtomicBool::new(false)),
            limits: Limits::default(),
            dead_letters_for: None,
            group_instance_id: None,
            group: None,
        }
    }
}

fn hostname() -> String {
    std::env::var("HOSTNAME").unwrap_or_else(|_| "motcua".to_owned())
}

/// Tells a running worker to stop: finish in-flight work within the drain deadline,
/// commit what is done, exit.
#[derive(Debug, Clone)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

impl Shutdown {
    /// A shutdown that a sender triggers (tests, the demo).
    pub fn channel() -> (watch::Sender<bool>, Self) {
        let (tx, rx) = watch::channel(false);
        (tx, Self { rx })
    }

    /// A shutdown triggered by SIGTERM or SIGINT (Ctrl-C). The handlers are in place when
    /// this returns: call it first, so a signal during start-up also ends the worker
    /// cleanly instead of killing it.
    pub fn on_signals() -> Self {
        let (tx, me) = Self::channel();
        let signals = Signals::install();
        tokio::spawn(async move {
            signals.wait().await;
            info!("shutdown requested: draining in-flight messages");
            let _ = tx.send(true);
        });
        me
    }

    pub fn is_triggered(&self) -> bool {
        *self.rx.borrow()
    }

    pub async fn wait(&mut self) {
        // An error means every sender is gone; nobody can ask us to stop any more.
        if self.rx.wait_for(|s| *s).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// SIGTERM and SIGINT handlers, registered on creation.
#[cfg(unix)]
enum Signals {
    Unix(tokio::signal::unix::Signal, tokio::signal::unix::Signal),
    CtrlC,
}

#[cfg(unix)]
impl Signals {
    fn install() -> Self {
        use tokio::signal::unix::{signal, SignalKind};
        match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
            (Ok(term), Ok(int)) => Signals::Unix(term, int),
            _ => Signals::CtrlC,
        }
    }

    async fn wait(self) {
        match self {
            Signals::Unix(mut term, mut int) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            Signals::CtrlC => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}

#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    fn install() -> Self {
        Signals
    }

    async fn wait(self) {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Counts of one run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunSummary {
    pub consumed: u64,
    pub processed: u64,
    pub dead_lettered: u64,
    pub produced: u64,
    /// Messages dropped because their partition was revoked before their outputs were
    /// produced; the partition's new owner processes them.
    pub stale: u64,
    pub batches: u64,
    /// Times the worker paused its partitions because too much was in flight.
    pub pauses: u64,
    /// Events the stage's timer work produced (acknowledged).
    pub tick_events: u64,
    /// From the first message received to the moment the last outputs were all
    /// acknowledged: the time the worker spent on the work it got (throughput figures).
    pub busy: Option<Duration>,
}

fn lock(ledger: &Mutex<Ledger>) -> MutexGuard<'_, Ledger> {
    // A panic while holding the lock cannot leave the ledger half-updated in a way that
    // loses data (at worst an offset is not committed), so poisoning is ignored.
    ledger.lock().unwrap_or_else(|p| p.into_inner())
}

/// Counts delivery reports, so a drain can wait for the next one instead of polling.
#[derive(Default)]
struct Reports {
    seen: Mutex<u64>,
    changed: std::sync::Condvar,
}

impl Reports {
    fn reported(&self) {
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        self.changed.notify_all();
    }

    fn count(&self) -> u64 {
        *self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until a report comes after the `seen`-th, or `until`.
    fn wait_after(&self, seen: u64, until: Instant) {
        let guard = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let left = until.saturating_duration_since(Instant::now());
        let _ = self.changed.wait_timeout_while(guard, left, |n| *n == seen);
    }
}

struct StageContext {
    /// The last connection error librdkafka reported (a refused TLS handshake, an
    /// authentication failure), for the start-up check's message.
    last_error: Mutex<Option<String>>,
    ledger: Arc<Mutex<Ledger>>,
    reports: Arc<Reports>,
    assigned: Arc<AtomicUsize>,
    joined: Arc<AtomicBool>,
    brokers_down: Arc<AtomicBool>,
    drain_timeout: Duration,
    stage: &'static str,
    /// The consumer group and the input topics, to name what a refusal was about.
    group: String,
    inputs: Vec<String>,
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

/// What a produced message belongs to: an input (its offset waits for it) or a tick.
enum DeliveryToken {
    Input { tp: Tp, epoch: u64, offset: i64 },
    Tick(Arc<Awaited>),
}

/// Deliveries awaited together: a tick's events, or a batch's statuses (see
/// [`produce_in_order`]).
#[derive(Default)]
struct Awaited {
    left: AtomicUsize,
    failed: Mutex<Option<String>>,
    all_reported: tokio::sync::Notify,
}

impl Awaited {
    fn report(&self, failure: Option<String>) {
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
struct Delivery {
    token: DeliveryToken,
    owed: Option<Box<str>>,
    /// Awaited before the rest of its batch is produced.
    awaited: Option<Arc<Awaited>>,
}

struct DeliveryContext {
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
fn client_error(
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

/// A message as received, detached from the consumer.
struct Received {
    tp: Tp,
    epoch: u64,
    offset: i64,
    timestamp_ms: Option<i64>,
    key: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
    traceparent: Option<String>,
    /// The message's headers as received (kept for its dead letter; bounded).
    headers: Vec<(String, Option<Vec<u8>>)>,
}

/// One message to produce.
struct Outgoing {
    topic: Arc<str>,
    key: Option<Vec<u8>>,
    payload: Vec<u8>,
    headers: OwnedHeaders,
    /// The id of the status it carries while that status is owed ([`crate::owed`]).
    owed: Option<Box<str>>,
}

type Worker<C> = StreamConsumer<C>;

/// Runs one stage worker until `shutdown` fires (Ok) or a fatal error (Err).
pub async fn run<S: Stage>(
    stage: Arc<S>,
    codec: Codec,
    cfg: RuntimeConfig,
    mut shutdown: Shutdown,
) -> Result<RunSummary> {
    cfg.kafka.validate()?;
    let name = stage.name();
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let client_id = format!("motcua-{name}-{}", cfg.instance_id);
    let group = cfg.group.clone().unwrap_or_else(|| cfg.kafka.group(name));
    let mut consumer_cfg = cfg.kafka.consumer_config(&group, &client_id);
    consumer_cfg.set("statistics.interval.ms", "5000");
    if let Some(id) = &cfg.group_instance_id {
        consumer_cfg.set("group.instance.id", id);
    }
    let reports = Arc::new(Reports::default());
    let owed = stage
        .owed_statuses()
        .map(|store| OwedStatuses::new(store.clone(), name, !stage.speaks_after_decision()));
    let settling = owed.clone().map(|o| tokio::spawn(o.settle_forever()));
    let input_topics: Vec<String> = <S::Input as Input>::topics()
        .into_iter()
        .map(|t| cfg.kafka.topic(t))
        .collect();
    let consumer: Arc<Worker<StageContext>> = Arc::new(consumer_cfg.create_with_context(StageContext {
        last_error: Mutex::new(None),
        ledger: ledger.clone(),
        reports: reports.clone(),
        assigned: cfg.assigned.clone(),
        joined: cfg.joined.clone(),
        brokers_down: cfg.brokers_down.clone(),
        drain_timeout: cfg.drain_timeout,
        stage: name,
        group: group.clone(),
        inputs: input_topics.clone(),
    })?);
    let producer: ThreadedProducer<DeliveryContext> =
        cfg.kafka
            .producer_config(&client_id)
            .create_with_context(DeliveryContext {
                ledger: ledger.clone(),
                reports,
                stage: name,
                owed: owed.clone(),
                brokers_down: cfg.brokers_down.clone(),
            })?;
    let refs: Vec<&str> = input_topics.iter().map(String::as_str).collect();
    reach_brokers(&consumer, &cfg).await?;
    consumer.subscribe(&refs)?;
    // The producer's limit applies until the broker has said what each topic takes (in
    // the background: a broker that does not answer must not delay the group join).
    let destinations = Arc::new(std::sync::RwLock::new(Arc::new(Destinations::of_producer(&cfg.kafka))));
    let discovery = {
        let (kafka, destinations) = (cfg.kafka.clone(), destinations.clone());
        tokio::spawn(async move {
            let found = Arc::new(Destinations::discover(&kafka, name).await);
            *destinations.write().unwrap_or_else(|p| p.into_inner()) = found;
        })
    };
    info!(stage = name, topics = ?input_topics, group = %group, "worker started");

    let mut summary = RunSummary::default();
    let mut tick_shutdown = shutdown.clone();
    // The timer stops with the consume loop (a fatal error there must not wait for the
    // timer's next round, which may be a minute away).
    let consume_ended = tokio::sync::Notify::new();
    let (outcome, ticks) = tokio::join!(
        async {
            let outcome = consume_loop(
                &*stage,
                &codec,
                &cfg,
                &destinations,
                &consumer,
                &producer,
                &ledger,
                &mut shutdown,
                &mut summary,
            )
            .await;
            consume_ended.notify_one();
            outcome
        },
        tick_loop(
            &*stage,
            &codec,
            &destinations,
            &producer,
            &ledger,
            &mut tick_shutdown,
            &consume_ended
        ),
    );
    discovery.abort();
    // A fatal error of the timer stops the worker like one of the consume loop.
    let outcome = match ticks {
        Ok(n) => {
            summary.tick_events = n;
            outcome
        }
        Err(e) => outcome.and(Err(e)),
    };

    // Drain: whatever happened, give acknowledged work its commit, and nothing else.
    let deadline = Instant::now() + cfg.drain_timeout;
    while lock(&ledger).in_flight() > 0 && lock(&ledger).fatal().is_none() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    store_committable(&consumer, &ledger, name);
    if let (Some(owed), Some(task)) = (&owed, settling) {
        task.abort();
        owed.settle().await;
    }
    let committer = consumer.clone();
    let commit = tokio::task::spawn_blocking(move || committer.commit_consumer_state(CommitMode::Sync)).await;
    match commit {
        Ok(Ok(())) | Ok(Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset))) => {}
        Ok(Err(e)) => warn!(stage = name, error = %e, "final commit failed"),
        Err(e) => warn!(stage = name, error = %e, "final commit task failed"),
    }
    let left = lock(&ledger).in_flight();
    if left > 0 {
        warn!(
            stage = name,
            left, "stopped with unacknowledged messages; they will be redelivered"
        );
    }
    let fatal = lock(&ledger).fatal().map(str::to_owned);
    info!(stage = name, ?summary, "worker stopped");
    outcome?;
    if let Some(reason) = fatal {
        return Err(Error::Fatal {
            stage: name.to_owned(),
            reason,
        });
    }
    Ok(summary)
}

/// Fails start-up with the reason when the brokers cannot be reached: a TLS handshake
/// refused (an untrusted certificate, a plaintext port), authentication failed, nothing
/// listening. Without this a worker would wait forever, retrying in the background.
async fn reach_brokers(consumer: &Arc<Worker<StageContext>>, cfg: &RuntimeConfig) -> Result<()> {
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

#[allow(clippy::too_many_arguments)]
async fn consume_loop<S: Stage>(
    stage: &S,
    codec: &Codec,
    cfg: &RuntimeConfig,
    destinations: &std::sync::RwLock<Arc<Destinations>>,
    consumer: &Worker<StageContext>,
    producer: &ThreadedProducer<DeliveryContext>,
    ledger: &Mutex<Ledger>,
    shutdown: &mut Shutdown,
    summary: &mut RunSummary,
) -> Result<()> {
    let name = stage.name();
    let owed = producer.context().owed.as_deref();
    let mut first_received: Option<Instant> = None;
    let mut paused = false;
    loop {
        if let Some(reason) = lock(ledger).fatal() {
            return Err(Error::Fatal {
                stage: name.to_owned(),
                reason: reason.to_owned(),
            });
        }
        store_committable(consumer, ledger, name);
        let in_flight = lock(ledger).in_flight();
        telemetry::in_flight(name, in_flight);
        // Backpressure without leaving the group: with too much in flight the assigned
        // partitions are paused, and the consumer is still polled below (rebalances and
        // the poll interval stay served); they resume once half has drained.
        if in_flight >= cfg.max_in_flight {
            if let Ok(assignment) = consumer.assignment() {
                if consumer.pause(&assignment).is_ok() && !paused {
                    paused = true;
                    summary.pauses += 1;
                    telemetry::backpressure(name, true, in_flight);
                }
            }
        } else if paused && in_flight <= cfg.max_in_flight / 2 {
            if let Ok(assignment) = consumer.assignment() {
                if consumer.resume(&assignment).is_ok() {
                    paused = false;
                    telemetry::backpressure(name, false, in_flight);
                }
            }
        }
        let mut batch = tokio::select! {
            _ = shutdown.wait() => break,
            b = collect_batch(consumer, ledger, cfg) => b,
        };
        // A partition revoked while the batch was gathered (rebalances run inside the
        // polls) belongs to another worker now: no effects for its messages here.
        let gathered = batch.len();
        {
            let l = lock(ledger);
            batch.retain(|m| l.epoch(&m.tp) == Some(m.epoch));
        }
        summary.stale += (gathered - batch.len()) as u64;
        if batch.is_empty() {
            continue;
        }
        let started = Instant::now();
        first_received.get_or_insert(started);
        let batch_span = info_span!("batch", stage = name, messages = batch.len());
        let mut process_spans: Vec<tracing::Span> = batch
            .iter()
            .map(|m| telemetry::process_span(name, &m.tp.0, m.tp.1, m.offset, m.traceparent.as_deref()))
            .collect();
        let destinations = current(destinations);
        let dlq_topic = destinations.of(Topic::DeadLetter).0;
        summary.consumed += batch.len() as u64;
        summary.batches += 1;

        // Writer schemas published after this worker started (a newer worker's version)
        // are fetched from the registry first; while it cannot answer, the batch waits
        // like any retryable failure: these messages are not at fault.
        if !learn_writers(codec, &batch, cfg, name, shutdown).await? {
            return Ok(());
        }

        // Decode; what does not decode goes to the dead-letter topic without reaching the stage.
        let door = Arc::new(Door {
            limits: cfg.limits.clone(),
            topic_limit: destinations.smallest(),
        });
        let mut inputs = Vec::with_capacity(batch.len());
        let mut slots: Vec<std::result::Result<usize, (String, String)>> = Vec::with_capacity(batch.len());
        for (i, m) in batch.iter().enumerate() {
            let decoded = decode::<S::Input>(codec, cfg, &door, m);
            slots.push(match decoded {
                Ok(event) => {
                    // No header: the trace the event itself names, or its dossier's (derived
                    // only when a span is exported: it costs two hashes).
                    if m.traceparent.is_none() && !process_spans[i].is_disabled() {
                        if let Some(tp) = event.dossier_trace() {
                            telemetry::reparent(&process_spans[i], &tp);
                        }
                    }
                    inputs.push(Envelope {
                        event,
                        origin: Origin {
                            topic: m.tp.0.clone(),
                            partition: m.tp.1,
                            offset: m.offset,
                            timestamp_ms: m.timestamp_ms,
                        },
                        door: door.clone(),
                    });
                    Ok(inputs.len() - 1)
                }
                Err(e) => Err(e),
            });
        }

        let mut outcomes: Vec<Option<Outcome>> = match handle_isolating(stage, &inputs, cfg, shutdown)
            .instrument(batch_span.clone())
            .await?
        {
            Some(o) => o.into_iter().map(Some).collect(),
            // Shutdown while retrying: nothing of this batch was produced or stored.
            None => return Ok(()),
        };
        if outcomes.len() != inputs.len() {
            return Err(Error::Fatal {
                stage: name.to_owned(),
                reason: format!("stage returned {} outcomes for {} inputs", outcomes.len(), inputs.len()),
            });
        }
        if let Some(owed) = owed {
            let mut lists: Vec<&mut Vec<AnyEvent>> = outcomes
                .iter_mut()
                .filter_map(|o| match o {
                    Some(Outcome::Emit(events)) => Some(events),
                    _ => None,
                })
                .collect();
            let owing = crate::owed::owed_in(&lists);
            let Some(ended) = retrying(name, cfg, shutdown, || owe(owed, &owing)).await? else {
                return Ok(());
            };
            crate::owed::withhold(name, &mut lists, &ended);
        }

        let mut processed = 0;
        let mut pending = Vec::with_capacity(batch.len() * 2);
        for ((m, slot), process_span) in batch.iter().zip(slots).zip(process_spans.iter_mut()) {
            // Ends (is exported) when this iteration ends: its outputs handed over.
            let process_span = std::mem::replace(process_span, tracing::Span::none());
            let at = telemetry::At {
                dossier_id: slot.as_ref().ok().map_or("", |&i| Input::key(&inputs[i].event)),
                topic: &m.tp.0,
                partition: m.tp.1,
                offset: m.offset,
            };
            // Per-message spans are for debugging (a formatted span per message costs more
            // than the runtime's whole bookkeeping); what is logged about one message at
            // info and above names the message itself. Entered only for the synchronous
            // part: a span must not stay entered across an await.
            let span = debug_span!(parent: &batch_span, "message", dossier_id = at.dossier_id, topic = at.topic, partition = at.partition, offset = at.offset);
            let entered = span.enter();
            let outcome = match slot {
                // Each input has one slot: its outcome is moved out, not copied.
                Ok(i) => outcomes[i].take().expect("one outcome per input"),
                Err((reason_code, reason)) if !owns(cfg, &m.tp.0) => {
                    telemetry::message_skipped(name, &at, &reason_code, &reason);
                    Outcome::Emit(Vec::new())
                }
                Err((reason_code, reason)) => Outcome::DeadLetter { reason_code, reason },
            };
            // Outputs that cannot be encoded or would not fit a Kafka message are about
            // this input: it is dead-lettered instead, and the stream goes on. The stage
            // has acted by now; the room checked at the door keeps this for outputs that
            // outgrew `limits.output_room_bytes` (see `decode`).
            let outcome = match outcome {
                Outcome::Emit(events) => match outputs(
                    codec,
                    &destinations,
                    m.traceparent.as_deref(),
                    m.payload.as_ref().map_or(0, Vec::len),
                    &events,
                ) {
                    Ok(out) => Ok(out),
                    Err((reason_code, reason)) => Err(Outcome::DeadLetter { reason_code, reason }),
                },
                dead => Err(dead),
            };
            let outgoing = match outcome {
                Ok(out) => {
                    processed += 1;
                    process_span.record("motcua.outcome", "processed");
                    out
                }
                Err(Outcome::DeadLetter { reason_code, reason }) => {
                    process_span.record("motcua.outcome", "dead_lettered");
                    telemetry::message_dead_lettered(name, &at, &reason_code, &reason);
                    summary.dead_lettered += 1;
                    vec![dead_letter(codec, name, dlq_topic, m, &reason_code, &reason)?]
                }
                Err(Outcome::Emit(_)) => unreachable!("emitted outcomes are encoded above"),
            };
            if !lock(ledger).track(&m.tp, m.epoch, m.offset, outgoing.len() as u32) {
                summary.stale += 1;
                debug!("partition revoked before producing; skipping");
                continue;
            }
            drop(entered);
            summary.produced += outgoing.len() as u64;
            pending.extend(outgoing.into_iter().map(|o| {
                let token = DeliveryToken::Input {
                    tp: m.tp.clone(),
                    epoch: m.epoch,
                    offset: m.offset,
                };
                (token, o)
            }));
        }
        // A status not delivered failed the worker (the ledger holds why): the next turn
        // of the loop stops it.
        produce_in_order(producer, destinations.of(Topic::Status).0, pending).await?;
        summary.processed += processed;
        telemetry::batch_done(name, started.elapsed(), batch.len(), processed);
    }
    // Shutdown: wait (bounded) for the last outputs, so the busy time covers them.
    let deadline = Instant::now() + cfg.drain_timeout;
    while lock(ledger).in_flight() > 0 && lock(ledger).fatal().is_none() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    if let (Some(first), Some(drained)) = (first_received, lock(ledger).last_drained()) {
        summary.busy = drained.checked_duration_since(first);
    }
    Ok(())
}
/// Runs the stage's timer work until shutdown: every `tick_interval` (at once again after
/// a tick that produced events), the events of a tick are produced through the worker's
/// producer and, once all are acknowledged, the stage is told ([`Stage::ticked`]). A
/// failing tick is retried at the next interval; a fatal one stops the worker.
async fn tick_loop<S: Stage>(
    stage: &S,
    codec: &Codec,
    destinations: &std::sync::RwLock<Arc<Destinations>>,
    producer: &ThreadedProducer<DeliveryContext>,
    ledger: &Mutex<Ledger>,
    shutdown: &mut Shutdown,
    consume_ended: &tokio::sync::Notify,
) -> Result<u64> {
    let owed = producer.context().owed.as_deref();
    let Some(every) = stage.tick_interval() else {
        return Ok(0);
    };
    let name = stage.name();
    let mut again = false;
    let mut produced = 0u64;
    loop {
        if !again {
            tokio::select! {
                _ = shutdown.wait() => return Ok(produced),
                _ = consume_ended.notified() => return Ok(produced),
                _ = tokio::time::sleep(every) => {}
            }
        }
        again = false;
        if lock(ledger).fatal().is_some() || shutdown.is_triggered() {
            return Ok(produced);
        }
        let mut tick = match stage.tick(now_ms()).await {
            Ok(t) => t,
            Err(StageError::Fatal(reason)) => {
                return Err(Error::Fatal {
                    stage: name.to_owned(),
                    reason: format!("timer: {reason}"),
                })
            }
            Err(e) => {
                telemetry::tick_failed(name, &e.to_string());
                continue;
            }
        };
        if tick.events.is_empty() && tick.done.is_empty() {
            continue;
        }
        if let Some(owed) = owed {
            if let Err(e) = owed.gate(&mut [&mut tick.events]).await {
                telemetry::tick_failed(name, &e.to_string());
                continue;
            }
        }
        let destinations = current(destinations);
        let statuses_topic = destinations.of(Topic::Status).0.clone();
        let out = match outputs(codec, &destinations, None, 512, &tick.events) {
            Ok(out) => out,
            Err((code, reason)) => {
                telemetry::tick_failed(name, &format!("{code}: {reason}"));
                continue;
            }
        };
        let deliveries = Arc::new(Awaited::default());
        deliveries.left.store(out.len() + 1, Ordering::Release);
        let out = out
            .into_iter()
            .map(|o| (DeliveryToken::Tick(deliveries.clone()), o))
            .collect();
        // A status not delivered is reported to `deliveries` too: the tick fails below.
        produce_in_order(producer, &statuses_topic, out).await?;
        // The extra count is this loop's own: every report is in once it reaches zero, and
        // the notification waits for us even if it came first. Each delivery reports by
        // the producer's message timeout at the latest.
        deliveries.report(None);
        deliveries.all_reported.notified().await;
        let failed = deliveries.failed.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(f) = failed {
            telemetry::tick_failed(name, &f);
            continue;
        }
        if let Err(e) = stage.ticked(&tick).await {
            // The events are out; they will be produced again with the same ids.
            telemetry::tick_failed(name, &e.to_string());
            continue;
        }
        telemetry::tick_done(name, tick.events.len());
        produced += tick.events.len() as u64;
        again = !tick.events.is_empty();
    }
}

/// One try at recording a batch's statuses as owed: the dossiers that ended first, or a
/// retry when the store does not answer (like the batch's own effects).
async fn owe(owed: &OwedStatuses, owing: &[(String, String)]) -> Result<Attempt<HashSet<String>>> {
    match owed.record(owing).await {
        Ok(ended) => Ok(Attempt::Done(ended)),
        Err(StageError::Fatal(reason)) => Err(Error::Fatal {
            stage: owed.stage().to_owned(),
            reason,
        }),
        Err(e) => Ok(Attempt::Retry(e.to_string())),
    }
}

/// Milliseconds since the epoch, now.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The framed outputs of one input, or why they cannot be produced (a reason to
/// dead-letter the input): an event that does not encode, or one larger than a Kafka
/// message may be on its topic ([`Destinations`]).
fn outputs(
    codec: &Codec,
    destinations: &Destinations,
    traceparent: Option<&str>,
    size_hint: usize,
    events: &[AnyEvent],
) -> std::result::Result<Vec<Outgoing>, (String, String)> {
    let mut out = Vec::with_capacity(events.len());
    for e in events {
        // Outputs are mostly about the size of their input: one allocation, no regrowth.
        let mut payload = Vec::with_capacity(size_hint + 256);
        e.encode(codec, &mut payload)
            .map_err(|err| ("OUTPUT_ENCODE_FAILED".to_owned(), crate::error_chain(&err)))?;
        // Key and headers count too; keep a margin for the record framing.
        let size = payload.len() + e.key().len() + e.event_id().len() + 256;
        let (topic, max) = destinations.of(e.topic());
        if size > max {
            return Err((
                "OUTPUT_TOO_LARGE".to_owned(),
                format!(
                    "its {} output would be about {size} bytes, more than the {max} bytes a message may have there",
                    e.topic()
                ),
            ));
        }
        let mut headers = OwnedHeaders::new_with_capacity(2).insert(Header {
            key: "motcua-event-id",
            value: Some(e.event_id()),
        });
        // The event's own trace context, else its input's, else (an event of a dossier
        // that came without one) the dossier's: one trace per dossier across stages.
        let tp = e
            .traceparent()
            .or(traceparent)
            .map(std::borrow::Cow::Borrowed)
            .or_else(|| e.dossier_trace());
        if let Some(tp) = &tp {
            headers = headers.insert(Header {
                key: "traceparent",
                value: Some(tp.as_ref()),
            });
        }
        out.push(Outgoing {
            topic: topic.clone(),
            key: Some(e.key().as_bytes().to_vec()),
            payload,
            headers,
            owed: crate::owed::owed_id(e).map(Box::from),
        });
    }
    Ok(out)
}

/// Where each event type goes: the full topic name (made once, not per message) and the
/// largest message the worker may produce there — the producer's own limit
/// (`message.max.bytes`) or, lower if so, the topic's (`max.message.bytes`) as the broker
/// reported it at start-up. Checked before producing, so an output the broker would
/// refuse dead-letters its input instead of failing the worker.
#[derive(Debug, Clone)]
struct Destinations {
    /// In `Topic::ALL` order.
    topics: Vec<(Topic, Arc<str>, usize)>,
}

/// The destinations in force (a clone of the pointer, so the lock is held for no time).
fn current(d: &std::sync::RwLock<Arc<Destinations>>) -> Arc<Destinations> {
    d.read().unwrap_or_else(|p| p.into_inner()).clone()
}

impl Destinations {
    fn of_producer(kafka: &KafkaConfig) -> Self {
        Self::with_broker_limits(kafka, &Default::default())
    }

    fn with_broker_limits(kafka: &KafkaConfig, broker: &std::collections::BTreeMap<String, usize>) -> Self {
        let producer = kafka.max_message_bytes();
        let topics = Topic::ALL
            .iter()
            .map(|t| {
                let name = kafka.topic(*t);
                let max = broker.get(&name).map_or(producer, |b| (*b).min(producer));
                (*t, Arc::from(name), max)
            })
            .collect();
        Self { topics }
    }

    /// Asks the broker; one that cannot say leaves the producer's limit in force.
    /// Apache Kafka answers (a principal needs DescribeConfigs on the topics it writes,
    /// deploy/kafka/acls.sh grants it); librdkafka's in-process cluster, which the
    /// embedded demo runs, has no DescribeConfigs and gets the warning.
    async fn discover(kafka: &KafkaConfig, stage: &'static str) -> Self {
        match kafka.topic_message_limits(Duration::from_secs(5)).await {
            Ok(broker) => {
                let lower = broker.values().filter(|v| **v < kafka.max_message_bytes()).count();
                debug!(stage, topics = broker.len(), lower, "topic message size limits read");
                Self::with_broker_limits(kafka, &broker)
            }
            Err(e) => {
                warn!(
                    stage,
                    error = %crate::error_chain(&e),
                    limit = kafka.max_message_bytes(),
                    "the broker did not report topic message size limits; the producer's applies"
                );
                Self::of_producer(kafka)
            }
        }
    }

    /// The smallest message limit of the flow's topics (dead letters, which keep a bounded
    /// prefix of their input, aside).
    fn smallest(&self) -> usize {
        self.topics
            .iter()
            .filter(|(t, _, _)| *t != Topic::DeadLetter)
            .map(|(_, _, max)| *max)
            .min()
            .unwrap_or(usize::MAX)
    }

    fn of(&self, topic: Topic) -> (&Arc<str>, usize) {
        let (_, name, max) = self
            .topics
            .iter()
            .find(|(t, _, _)| *t == topic)
            .expect("every topic has a destination");
        (name, *max)
    }
}

/// Whether this group dead-letters bad messages of `topic` (see
/// [`RuntimeConfig::dead_letters_for`]).
fn owns(cfg: &RuntimeConfig, topic: &str) -> bool {
    match (&cfg.dead_letters_for, cfg.kafka.topic_of(topic)) {
        (None, _) | (_, None) => true,
        (Some(owned), Some(t)) => owned.contains(&t),
    }
}

/// Decodes a message and checks it against the limits at the door; the error is a
/// dead-letter reason (code, text naming fields and limits, never values).
///
/// A message from outside must also leave its outputs room below `topic_limit` (the
/// smallest limit of the flow's topics, [`Destinations::smallest`]): the stage acts
/// before its outputs are framed, so an output found too large then would be an act
/// nobody hears of.
fn decode<I: Input>(
    codec: &Codec,
    cfg: &RuntimeConfig,
    door: &Door,
    m: &Received,
) -> std::result::Result<I, (String, String)> {
    let Some(p) = &m.payload else {
        return Err(("EMPTY_PAYLOAD".to_owned(), "message has no value".to_owned()));
    };
    let violation = |v: motcua_schemas::Violation| (v.code.to_owned(), v.to_string());
    door.limits.check_size(p.len()).map_err(violation)?;
    let Some(topic) = cfg.kafka.topic_of(&m.tp.0) else {
        return Err((
            "UNKNOWN_TOPIC".to_owned(),
            format!("{} is not a topic of the flow", m.tp.0),
        ));
    };
    let input = I::decode(codec, topic, p).map_err(|e| (e.code().to_owned(), crate::error_chain(&e)))?;
    input.check(&door.limits).map_err(violation)?;
    if topic.from_outside() {
        door.room_for_outputs(p.len()).map_err(violation)?;
    }
    Ok(input)
}

/// Waits for a first message (returns empty after an idle tick so offsets keep being
/// stored), then gathers more until the batch is full or the linger time has passed.
async fn collect_batch(consumer: &Worker<StageContext>, ledger: &Mutex<Ledger>, cfg: &RuntimeConfig) -> Vec<Received> {
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

/// Handles a batch. When the stage refuses it ([`StageError::Refused`]: the database
/// refused a row), the batch is split in halves and each is handled again, down to the
/// single input(s) it is refused for; only those are dead-lettered, with the stage's
/// reason, and every other input is processed. `None`: shutdown while retrying.
fn handle_isolating<'a, S: Stage>(
    stage: &'a S,
    inputs: &'a [Envelope<S::Input>],
    cfg: &'a RuntimeConfig,
    shutdown: &'a Shutdown,
) -> futures::future::BoxFuture<'a, Result<Option<Vec<Outcome>>>> {
    Box::pin(async move {
        let (reason_code, reason) = match handle_with_retry(stage, inputs, cfg, shutdown).await? {
            None => return Ok(None),
            Some(Ok(outcomes)) => return Ok(Some(outcomes)),
            Some(Err(refused)) => refused,
        };
        if inputs.len() == 1 {
            return Ok(Some(vec![Outcome::DeadLetter { reason_code, reason }]));
        }
        telemetry::batch_split(stage.name(), inputs.len(), &reason_code);
        let (left, right) = inputs.split_at(inputs.len() / 2);
        let Some(mut outcomes) = handle_isolating(stage, left, cfg, shutdown).await? else {
            return Ok(None);
        };
        let Some(rest) = handle_isolating(stage, right, cfg, shutdown).await? else {
            return Ok(None);
        };
        outcomes.extend(rest);
        Ok(Some(outcomes))
    })
}

/// Makes every writer schema of the batch known to the codec (see
/// [`Codec::learn_writers`]), retrying within the retry budget. `Ok(false)`: shutdown.
async fn learn_writers(
    codec: &Codec,
    batch: &[Received],
    cfg: &RuntimeConfig,
    stage: &'static str,
    shutdown: &Shutdown,
) -> Result<bool> {
    let learned = retrying(stage, cfg, shutdown, || async {
        Ok(
            match codec
                .learn_writers(batch.iter().filter_map(|m| m.payload.as_deref()))
                .await
            {
                Ok(_) => Attempt::Done(()),
                Err(e) => Attempt::Retry(e.to_string()),
            },
        )
    })
    .await?;
    Ok(learned.is_some())
}

/// Handles a batch, retrying retryable failures within the budget. `Some(Err(..))`: the
/// stage refused the batch (reason code and reason).
async fn handle_with_retry<S: Stage>(
    stage: &S,
    inputs: &[Envelope<S::Input>],
    cfg: &RuntimeConfig,
    shutdown: &Shutdown,
) -> Result<Option<std::result::Result<Vec<Outcome>, (String, String)>>> {
    if inputs.is_empty() {
        return Ok(Some(Ok(Vec::new())));
    }
    retrying(stage.name(), cfg, shutdown, || async {
        match stage.handle_batch(inputs).await {
            Ok(o) => Ok(Attempt::Done(Ok(o))),
            Err(StageError::Refused { reason_code, reason }) => Ok(Attempt::Done(Err((reason_code, reason)))),
            Err(StageError::Fatal(reason)) => Err(Error::Fatal {
                stage: stage.name().to_owned(),
                reason,
            }),
            Err(StageError::Retryable(reason)) => Ok(Attempt::Retry(reason)),
        }
    })
    .await
}

/// One try of something the runtime retries.
enum Attempt<T> {
    Done(T),
    /// Failed for a reason that may pass (a store or registry not answering).
    Retry(String),
}

/// Runs `attempt` until it is done, with doubling delays from `retry_initial` up to
/// `retry_max`; past `retry_budget` the worker stops (fatal). `Ok(None)`: shutdown.
async fn retrying<T, F, Fut>(
    stage: &'static str,
    cfg: &RuntimeConfig,
    shutdown: &Shutdown,
    mut attempt: F,
) -> Result<Option<T>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Attempt<T>>>,
{
    let started = Instant::now();
    let mut delay = cfg.retry_initial;
    loop {
        let reason = match attempt().await? {
            Attempt::Done(t) => return Ok(Some(t)),
            Attempt::Retry(reason) => reason,
        };
        if started.elapsed() >= cfg.retry_budget {
            telemetry::batch_retries_exhausted(stage);
            return Err(Error::Fatal {
                stage: stage.to_owned(),
                reason: format!("still failing after {:?} of retries: {reason}", cfg.retry_budget),
            });
        }
        telemetry::batch_retrying(stage, &reason, delay);
        let mut sd = shutdown.clone();
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = sd.wait() => return Ok(None),
        }
        delay = (delay * 2).min(cfg.retry_max);
    }
}

/// How much of the original value a dead letter keeps (with its full length and SHA-256
/// in headers), so a dead letter always fits the producer's size limit.
const DEAD_LETTER_VALUE_PREFIX: usize = 64 * 1024;
/// Longest reason text in a dead letter.
const DEAD_LETTER_REASON_CHARS: usize = 1_000;
/// Original headers kept in a dead letter.
const MAX_ORIGIN_HEADERS: usize = 32;
const MAX_ORIGIN_HEADER_BYTES: usize = 16 * 1024;

/// The first `max` characters of `s`.
fn clip(s: &str, max: usize) -> &str {
    s.char_indices().nth(max).map_or(s, |(i, _)| &s[..i])
}

fn dead_letter(
    codec: &Codec,
    stage: &str,
    dlq_topic: &Arc<str>,
    m: &Received,
    reason_code: &str,
    reason: &str,
) -> Result<Outgoing> {
    use sha2::Digest;
    let reason = clip(reason, DEAD_LETTER_REASON_CHARS);
    let value_len = m.payload.as_ref().map_or(0, Vec::len);
    let value_sha256 = m.payload.as_ref().map(|p| hex::encode(sha2::Sha256::digest(p)));
    let truncated = value_len > DEAD_LETTER_VALUE_PREFIX;
    let dl = DeadLetter {
        event_id: motcua_schemas::derived_event_id(
            &format!("{}/{}/{}", m.tp.0, m.tp.1, m.offset),
            stage,
            "dead-letter",
        ),
        stage: stage.to_owned(),
        reason_code: reason_code.to_owned(),
        reason: reason.to_owned(),
        origin_topic: m.tp.0.clone(),
        origin_partition: m.tp.1,
        origin_offset: m.offset,
        origin_key: m
            .key
            .as_ref()
            .map(|k| k[..k.len().min(DEAD_LETTER_VALUE_PREFIX)].to_vec()),
        origin_value: m
            .payload
            .as_ref()
            .map(|p| p[..p.len().min(DEAD_LETTER_VALUE_PREFIX)].to_vec()),
        failed_at: m.timestamp_ms.unwrap_or_default(),
    };
    let payload = codec.encode(&dl).map_err(|source| Error::Encode {
        stage: stage.to_owned(),
        source,
    })?;
    let partition = m.tp.1.to_string();
    let offset = m.offset.to_string();
    let value_len = value_len.to_string();
    let mut headers = OwnedHeaders::new_with_capacity(11 + m.headers.len())
        .insert(Header {
            key: "motcua-event-id",
            value: Some(dl.event_id.as_str()),
        })
        .insert(Header {
            key: "motcua-dlq-stage",
            value: Some(stage),
        })
        .insert(Header {
            key: "motcua-dlq-reason-code",
            value: Some(reason_code),
        })
        .insert(Header {
            key: "motcua-dlq-reason",
            value: Some(reason),
        })
        .insert(Header {
            key: "motcua-origin-topic",
            value: Some(m.tp.0.as_str()),
        })
        .insert(Header {
            key: "motcua-origin-partition",
            value: Some(partition.as_str()),
        })
        .insert(Header {
            key: "motcua-origin-offset",
            value: Some(offset.as_str()),
        })
        .insert(Header {
            key: "motcua-origin-value-bytes",
            value: Some(value_len.as_str()),
        })
        .insert(Header {
            key: "motcua-origin-value-truncated",
            value: Some(if truncated { "true" } else { "false" }),
        });
    if let Some(sha) = &value_sha256 {
        headers = headers.insert(Header {
            key: "motcua-origin-value-sha256",
            value: Some(sha.as_str()),
        });
    }
    // The original headers, kept for a replay, under a prefix so they cannot be taken for
    // the dead letter's own.
    for (key, value) in &m.headers {
        headers = headers.insert(Header {
            key: &format!("motcua-origin-header.{key}"),
            value: value.as_deref(),
        });
    }
    Ok(Outgoing {
        topic: dlq_topic.clone(),
        key: m
            .key
            .as_ref()
            .map(|k| k[..k.len().min(DEAD_LETTER_VALUE_PREFIX)].to_vec()),
        payload,
        headers,
        owed: None,
    })
}

/// Produces a batch's (or a tick's) outputs, statuses first: the events that let the next
/// stage act on a dossier go out only once the broker acknowledged the statuses beside
/// them. Each stage's producer delivers on its own, so otherwise a status whose delivery
/// lagged (its partition's leader lost, the worker killed in between) reached
/// `dossier.status` after the status the next stage announced on acting: "supplement
/// requested" before "received". Costs one acknowledgement per batch that has both.
/// Returns `false` when a status was not delivered (the rest is then not produced; the
/// worker stops on the failure, or the tick is retried).
async fn produce_in_order(
    producer: &ThreadedProducer<DeliveryContext>,
    statuses_topic: &str,
    outgoing: Vec<(DeliveryToken, Outgoing)>,
) -> Result<bool> {
    let (statuses, rest): (Vec<_>, Vec<_>) = outgoing.into_iter().partition(|(_, o)| &*o.topic == statuses_topic);
    if !statuses.is_empty() && !rest.is_empty() {
        let awaited = Arc::new(Awaited::default());
        // The extra count is ours: the notification waits for us even if every report
        // came first.
        awaited.left.store(statuses.len() + 1, Ordering::Release);
        for (token, o) in statuses {
            send(producer, o, token, Some(awaited.clone())).await?;
        }
        awaited.report(None);
        awaited.all_reported.notified().await;
        if awaited.failed.lock().unwrap_or_else(|p| p.into_inner()).is_some() {
            return Ok(false);
        }
    } else {
        for (token, o) in statuses {
            send(producer, o, token, None).await?;
        }
    }
    for (token, o) in rest {
        send(producer, o, token, None).await?;
    }
    Ok(true)
}

async fn send(
    producer: &ThreadedProducer<DeliveryContext>,
    o: Outgoing,
    token: DeliveryToken,
    awaited: Option<Arc<Awaited>>,
) -> Result<()> {
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
        match producer.send(record) {
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

fn store_committable(consumer: &Worker<StageContext>, ledger: &Mutex<Ledger>, stage: &'static str) {
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use motcua_schemas::samples;

    use super::*;

    /// A stage whose database refuses any batch holding a "poison" dossier.
    struct RefusesPoison {
        calls: AtomicUsize,
    }

    impl Stage for RefusesPoison {
        type Input = motcua_schemas::DossierSubmitted;

        fn name(&self) -> &'static str {
            "test"
        }

        async fn handle_batch(&self, batch: &[Envelope<Self::Input>]) -> std::result::Result<Vec<Outcome>, StageError> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            if batch.iter().any(|e| e.event.dossier.dossier_id.starts_with("poison")) {
                return Err(StageError::Refused {
                    reason_code: "DATABASE_REFUSED".to_owned(),
                    reason: "the database refused this message's data (code 22021)".to_owned(),
                });
            }
            Ok(batch.iter().map(|_| Outcome::Emit(Vec::new())).collect())
        }
    }

    fn inputs(ids: &[String]) -> Vec<Envelope<motcua_schemas::DossierSubmitted>> {
        ids.iter()
            .enumerate()
            .map(|(i, id)| {
                let mut e = samples::submitted();
                e.dossier.dossier_id = id.clone();
                Envelope {
                    event: e,
                    origin: Origin {
                        topic: "dossier.submitted".into(),
                        partition: 0,
                        offset: i as i64,
                        timestamp_ms: None,
                    },
                    door: Default::default(),
                }
            })
            .collect()
    }

    #[tokio::test]
    async fn a_refused_batch_is_split_until_only_its_poison_messages_are_dead_lettered() {
        let ids: Vec<String> = (0..100)
            .map(|i| {
                if i == 17 || i == 70 {
                    format!("poison-{i}")
                } else {
                    format!("d-{i}")
                }
            })
            .collect();
        let batch = inputs(&ids);
        let stage = RefusesPoison {
            calls: AtomicUsize::new(0),
        };
        let cfg = RuntimeConfig::new(KafkaConfig::default());
        let (_stop, shutdown) = Shutdown::channel();
        let outcomes = handle_isolating(&stage, &batch, &cfg, &shutdown)
            .await
            .expect("no fatal error")
            .expect("not shut down");
        assert_eq!(outcomes.len(), 100, "one outcome per input, in order");
        for (i, o) in outcomes.iter().enumerate() {
            match o {
                Outcome::DeadLetter { reason_code, reason } => {
                    assert!(i == 17 || i == 70, "input {i} was dead-lettered");
                    assert_eq!(reason_code, "DATABASE_REFUSED");
                    assert!(!reason.contains("poison"), "{reason}");
                }
                Outcome::Emit(_) => assert!(i != 17 && i != 70, "poison input {i} was processed"),
            }
        }
        // Two poison messages among 100: a few dozen calls, not one per message.
        let calls = stage.calls.load(Ordering::Relaxed);
        assert!(calls <= 2 * 2 * 7 + 1, "{calls} calls");
    }

    #[tokio::test]
    async fn a_fatal_error_is_not_split() {
        struct Broken;
        impl Stage for Broken {
            type Input = motcua_schemas::DossierSubmitted;
            fn name(&self) -> &'static str {
                "test"
            }
            async fn handle_batch(&self, _: &[Envelope<Self::Input>]) -> std::result::Result<Vec<Outcome>, StageError> {
                Err(StageError::Fatal("permission denied for table dossier_codes".into()))
            }
        }
        let batch = inputs(&["a".into(), "b".into()]);
        let cfg = RuntimeConfig::new(KafkaConfig::default());
        let (_stop, shutdown) = Shutdown::channel();
        let r = handle_isolating(&Broken, &batch, &cfg, &shutdown).await;
        assert!(matches!(r, Err(Error::Fatal { .. })), "{r:?}");
    }

    fn received(payload: Vec<u8>) -> Received {
        Received {
            tp: ("dossier.submitted".into(), 3),
            epoch: 1,
            offset: 42,
            timestamp_ms: Some(1_764_036_000_000),
            key: Some(b"d-1".to_vec()),
            payload: Some(payload),
            traceparent: None,
            headers: vec![("portal-request".into(), Some(b"r-7".to_vec()))],
        }
    }

    fn header(h: &OwnedHeaders, key: &str) -> Option<String> {
        h.iter()
            .find(|x| x.key == key)
            .and_then(|x| x.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    #[test]
    fn a_message_from_outside_must_leave_its_outputs_room_below_the_topics_limit() {
        let codec = Codec::embedded().expect("codec");
        let cfg = RuntimeConfig::new(KafkaConfig::default());
        let payload = codec.encode(&samples::submitted()).expect("encodes");
        let room = cfg.limits.output_room_bytes;
        let door = |topic_limit| Door {
            limits: cfg.limits.clone(),
            topic_limit,
        };
        let fits = payload.len() + room;
        let from_portal = received(payload.clone());
        assert!(decode::<motcua_schemas::DossierSubmitted>(&codec, &cfg, &door(fits), &from_portal).is_ok());
        let err = decode::<motcua_schemas::DossierSubmitted>(&codec, &cfg, &door(fits - 1), &from_portal)
            .expect_err("no room left");
        assert_eq!(err.0, "MESSAGE_TOO_LARGE");
        assert!(err.1.contains(&format!("{room} bytes")), "{}", err.1);
        // A stage's own output carried on: its room was left when it came in.
        let mut accepted = samples::accepted();
        accepted.dossier = samples::submitted().dossier;
        let mut from_intake = received(codec.encode(&accepted).expect("encodes"));
        from_intake.tp.0 = "dossier.accepted".into();
        assert!(decode::<motcua_schemas::DossierAccepted>(&codec, &cfg, &door(1), &from_intake).is_ok());
    }

    #[test]
    fn an_output_larger_than_a_kafka_message_dead_letters_its_input() {
        let codec = Codec::embedded().expect("codec");
        let mut kafka = KafkaConfig::default();
        kafka.producer.insert("message.max.bytes".into(), "100000".into());
        let cfg = RuntimeConfig::new(kafka);
        let mut big = samples::submitted();
        big.dossier.form_fields.insert("note".into(), "x".repeat(150_000));
        let m = received(Vec::new());
        let destinations = Destinations::of_producer(&cfg.kafka);
        let err = outputs(&codec, &destinations, m.traceparent.as_deref(), 0, &[big.into()])
            .err()
            .expect("too large");
        assert_eq!(err.0, "OUTPUT_TOO_LARGE");
        assert!(outputs(
            &codec,
            &destinations,
            m.traceparent.as_deref(),
            0,
            &[samples::submitted().into()]
        )
        .is_ok());
        // A topic whose broker limit is lower than the producer's: that one applies.
        let broker = [(cfg.kafka.topic(Topic::Submitted), 500)].into_iter().collect();
        let lower = Destinations::with_broker_limits(&cfg.kafka, &broker);
        let err = outputs(&codec, &lower, None, 0, &[samples::submitted().into()])
            .err()
            .expect("too large for the topic");
        assert_eq!(err.0, "OUTPUT_TOO_LARGE");
        assert!(err.1.contains("500 bytes"), "{}", err.1);
    }

    #[test]
    fn a_dead_letter_keeps_a_bounded_prefix_its_length_digest_and_the_original_headers() {
        let codec = Codec::embedded().expect("codec");
        let original = vec![7u8; 300_000];
        let m = received(original.clone());
        let o = dead_letter(
            &codec,
            "intake",
            &Arc::from("dossier.dlq"),
            &m,
            "MESSAGE_TOO_LARGE",
            &"é".repeat(5_000),
        )
        .expect("dead letter");
        assert!(o.payload.len() < 100_000, "{} bytes", o.payload.len());
        let dl: DeadLetter = codec.decode(&o.payload).expect("decodes");
        assert_eq!(dl.origin_value.as_deref(), Some(&original[..DEAD_LETTER_VALUE_PREFIX]));
        assert_eq!(dl.reason.chars().count(), DEAD_LETTER_REASON_CHARS);
        assert_eq!(
            header(&o.headers, "motcua-origin-value-bytes").as_deref(),
            Some("300000")
        );
        assert_eq!(
            header(&o.headers, "motcua-origin-value-truncated").as_deref(),
            Some("true")
        );
        use sha2::Digest;
        let digest: String = sha2::Sha256::digest(&original)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(header(&o.headers, "motcua-origin-value-sha256"), Some(digest));
        assert_eq!(
            header(&o.headers, "motcua-origin-header.portal-request").as_deref(),
            Some("r-7")
        );
    }
}
