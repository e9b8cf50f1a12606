//! A worker's tuning, and the counts of its run.

use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::Arc;
use std::time::Duration;

use motcua_kafka::KafkaConfig;
use motcua_schemas::{Limits, Topic};

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
