//! Rebuilding the status projection from the event log: a track worker under a consumer
//! group of its own reads every topic from the beginning into an empty database and stops
//! once it has caught up with the end of the log.
//!
//! The projection is built to make this exact: every event is keyed by its id, facts are
//! merged order-independently, so the replayed projection answers what the live one does
//! (`pipeline/stages/track/tests/api.rs` holds them equal). A replay emits nothing (no
//! deadline warnings, no dead letters: the live track group already produced those) and
//! never touches the live group's offsets.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use motcua_kafka::KafkaConfig;
use motcua_runtime::{RunSummary, Shutdown};
use motcua_schemas::Codec;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use tracing::info;

use crate::Config;

/// How a replay runs.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// The consumer group the replay reads under; never a stage's own group.
    pub group: String,
    /// How often progress (committed offsets against the end of the log) is read.
    pub poll: Duration,
    /// Fill a projection that already holds events (they are skipped by id); off by
    /// default, since a replay is meant to rebuild from nothing.
    pub allow_existing: bool,
}

impl ReplayOptions {
    /// A fresh group `<prefix>motcua-track-replay-<unix ms>`, progress read every 200 ms.
    pub fn new(kafka: &KafkaConfig) -> Self {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        Self {
            group: kafka.group(&format!("{}-replay-{now_ms}", motcua_track::STAGE)),
            poll: Duration::from_millis(200),
            allow_existing: false,
        }
    }
}

/// What a replay did.
#[derive(Debug, Clone)]
pub struct ReplaySummary {
    pub group: String,
    /// Messages between the start and the end of the log when the replay ended.
    pub messages: i64,
    /// Events the projection applied (undecodable messages are skipped, not counted).
    pub processed: u64,
    pub elapsed: Duration,
    /// CPU time this process used meanwhile (Linux; `None` elsewhere). In a process that
    /// also runs the broker or the producer, theirs is included.
    pub cpu: Option<Duration>,
    pub run: RunSummary,
}

impl ReplaySummary {
    pub fn messages_per_second(&self) -> f64 {
        self.messages as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn cpu_per_message(&self) -> Option<Duration> {
        let n = u32::try_from(self.messages.max(1)).unwrap_or(u32::MAX);
        self.cpu.map(|c| c / n)
    }
}

/// Replays every topic the track stage reads into the projection at
/// `config.database.url`. The end of the log is read when `log_complete` resolves (at once
/// for a replay of what is there; after the last publish for a live-ingest measure); the
/// replay stops when its group has committed up to that end, or when `shutdown` fires
/// (then it is an error: the projection is incomplete).
pub async fn replay(
    config: &Config,
    codec: Codec,
    options: ReplayOptions,
    log_complete: impl Future<Output = ()>,
    shutdown: Shutdown,
) -> Result<ReplaySummary> {
    let spec = crate::stage(motcua_track::STAGE).context("the track stage")?;
    if options.group == config.kafka.group(spec.name) {
        bail!(
            "a replay needs a consumer group of its own, not the live track group '{}'",
            options.group
        );
    }
    let url = &config.database.url;
    let track = motcua_track::Track::connect(url)
        .await
        .with_context(|| format!("opening the projection at {}", motcua_store::redact(url)))?;
    if !options.allow_existing && !track.is_empty().await? {
        track.close().await;
        bail!(
            "the projection at {} already holds events: a replay rebuilds into an empty database (or pass --allow-existing)",
            motcua_store::redact(url)
        );
    }
    let topics: Vec<String> = (spec.inputs)().into_iter().map(|t| config.kafka.topic(t)).collect();
    let mut runtime = config.runtime();
    runtime.group = Some(options.group.clone());
    // Bad messages were dead-lettered by the live groups; a replay only skips them.
    runtime.dead_letters_for = Some(Vec::new());
    // Offsets committed often, so the end is seen soon after it is reached.
    runtime
        .kafka
        .consumer
        .insert("auto.commit.interval.ms".to_owned(), "100".to_owned());
    let progress = Progress::new(&runtime.kafka, &options.group, topics)?;

    let started = Instant::now();
    let cpu_before = process_cpu();
    let (stop, worker_shutdown) = Shutdown::channel();
    let worker = tokio::spawn(motcua_runtime::run(
        Arc::new(track.clone()),
        codec,
        runtime,
        worker_shutdown,
    ));
    log_complete.await;
    let progress = Arc::new(progress);
    let end = {
        let p = progress.clone();
        tokio::task::spawn_blocking(move || p.log_end()).await??
    };
    let messages: i64 = end.values().map(|(low, high)| high - low).sum();
    info!(group = %options.group, messages, "replaying up to the end of the log");
    let mut ticker = tokio::time::interval(options.poll);
    let mut shutdown = shutdown;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.wait() => {
                let _ = stop.send(true);
                let _ = worker.await;
                track.close().await;
                bail!("the replay was stopped before it reached the end of the log: the projection is incomplete");
            }
        }
        if worker.is_finished() {
            break;
        }
        let p = progress.clone();
        let end = end.clone();
        if tokio::task::spawn_blocking(move || p.reached(&end)).await?? {
            break;
        }
    }
    let elapsed = started.elapsed();
    let cpu = process_cpu().zip(cpu_before).map(|(a, b)| a.saturating_sub(b));
    let _ = stop.send(true);
    let run = worker.await.context("the replay worker panicked")??;
    track.close().await;
    Ok(ReplaySummary {
        group: options.group,
        messages,
        processed: run.processed,
        elapsed,
        cpu,
        run,
    })
}

/// Per partition, the low and high watermarks.
type LogEnd = BTreeMap<(String, i32), (i64, i64)>;

/// The replay group's committed offsets against the partitions' ends.
struct Progress {
    consumer: BaseConsumer,
    topics: Vec<String>,
}

const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

impl Progress {
    fn new(kafka: &KafkaConfig, group: &str, topics: Vec<String>) -> Result<Self> {
        let consumer: BaseConsumer = kafka
            .consumer_config(group, "motcua-replay-progress")
            .create()
            .context("creating the replay's progress reader")?;
        Ok(Self { consumer, topics })
    }

    fn partitions(&self) -> Result<Vec<(String, i32)>> {
        let mut out = Vec::new();
        for t in &self.topics {
            let md = self
                .consumer
                .fetch_metadata(Some(t), METADATA_TIMEOUT)
                .with_context(|| format!("reading the partitions of {t}"))?;
            for topic in md.topics() {
                out.extend(topic.partitions().iter().map(|p| (t.clone(), p.id())));
            }
        }
        Ok(out)
    }

    /// The start (what retention kept) and end of every partition now.
    fn log_end(&self) -> Result<LogEnd> {
        let mut end = BTreeMap::new();
        for (t, p) in self.partitions()? {
            let watermarks = self
                .consumer
                .fetch_watermarks(&t, p, METADATA_TIMEOUT)
                .with_context(|| format!("reading the end of {t}/{p}"))?;
            end.insert((t, p), watermarks);
        }
        Ok(end)
    }

    /// Whether the group has committed every partition up to `end`.
    fn reached(&self, end: &LogEnd) -> Result<bool> {
        let mut tpl = TopicPartitionList::new();
        for (t, p) in end.keys() {
            tpl.add_partition(t, *p);
        }
        let committed = self
            .consumer
            .committed_offsets(tpl, METADATA_TIMEOUT)
            .context("reading the replay group's offsets")?;
        Ok(end.iter().all(|((t, p), (low, high))| {
            high <= low
                || committed
                    .find_partition(t, *p)
                    .is_some_and(|e| matches!(e.offset(), Offset::Offset(o) if o >= *high))
        }))
    }
}

/// CPU time (user + system, every thread) this process has used, from /proc.
fn process_cpu() -> Option<Duration> {
    // Linux's USER_HZ: /proc reports CPU time in these ticks.
    const TICKS_PER_SECOND: u64 = 100;
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces; utime
    // and stime are fields 14 and 15, `rest` starts at field 3.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let mut fields = rest.split(' ').skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 1000 / TICKS_PER_SECOND))
}
