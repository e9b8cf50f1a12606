//! `motcua export`: the events of a time range as Parquet files, one directory per topic
//! and UTC date (`<out>/topic=<topic>/date=<YYYY-MM-DD>/part-<from_ms>-<n>.parquet`), for
//! analysts with DuckDB, pandas or Spark rather than a Kafka consumer.
//!
//! Kafka timestamps decide the range and the date. Each partition is read from the first
//! offset at or after the start up to the high watermark seen when the export began, so
//! an export ends while producers go on writing. Nothing is committed: an export moves no
//! group's offsets. Columns come from each topic's reader schema, so every known writer
//! version lands in the same columns; messages that do not decode are counted by reason
//! and passed over, never logged.

mod columns;
pub mod read;
mod write;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use motcua_kafka::KafkaConfig;
use motcua_schemas::{Codec, Topic};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::BaseConsumer;
use serde::Serialize;
use tracing::debug;

pub use columns::META_COLUMNS;

/// The consumer configuration of a reader of topic ranges ([`read::plan`], [`read::read`]):
/// a group id of its own, never committed to, so it moves nobody's offsets.
pub fn reader_config(kafka: &KafkaConfig, client_id: &str) -> ClientConfig {
    let group = kafka.group(&format!("{client_id}-{}", uuid::Uuid::new_v4()));
    let mut config = kafka.consumer_config(&group, client_id);
    config
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest");
    config
}
pub use write::utc_date;

use columns::{Row, TopicColumns};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Options(String),
    #[error("topic {topic}: field '{path}' has no Parquet column type: {reason}")]
    Schema {
        topic: String,
        path: String,
        reason: String,
    },
    #[error("topic {topic}: a decoded value does not fit column '{path}': {reason}")]
    Convert {
        topic: String,
        path: String,
        reason: String,
    },
    #[error("invalid Kafka configuration")]
    KafkaConfig(#[from] motcua_kafka::Error),
    #[error("Kafka: {context}")]
    Kafka {
        context: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    #[error(
        "the schema registry did not answer, so messages written with schemas this build does not know cannot be read; the export stopped (run it again when the registry is back)"
    )]
    Registry(#[source] motcua_schemas::LookupError),
    #[error(
        "topic {topic}: nothing received for {seconds} s while {partitions} partition(s) still had messages to read (last client error: {last_error})"
    )]
    Stalled {
        topic: String,
        partitions: usize,
        seconds: u64,
        last_error: String,
    },
    #[error("cannot write {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write Parquet file {}", path.display())]
    Parquet {
        path: PathBuf,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("the export was cancelled")]
    Cancelled,
    #[error("the export task failed: {0}")]
    Task(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What to export, and where.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// Start of the range, inclusive (Kafka timestamp, epoch milliseconds).
    pub from_ms: i64,
    /// End of the range, exclusive.
    pub to_ms: i64,
    /// The topics (without the deployment's prefix, which the Kafka config adds).
    pub topics: Vec<Topic>,
    pub out_dir: PathBuf,
    /// A (topic, date) with more rows is split into several files.
    pub max_rows_per_file: usize,
}

impl ExportOptions {
    pub fn validate(&self) -> Result<()> {
        if self.to_ms <= self.from_ms {
            return Err(Error::Options(format!(
                "the end of the range ({}) must be after its start ({})",
                self.to_ms, self.from_ms
            )));
        }
        if self.topics.is_empty() {
            return Err(Error::Options("no topic to export".into()));
        }
        if self.max_rows_per_file == 0 {
            return Err(Error::Options(
                "the maximum number of rows per file must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// What an export read and wrote, per topic.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ExportSummary {
    pub from_ms: i64,
    pub to_ms: i64,
    pub topics: Vec<TopicSummary>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct TopicSummary {
    /// The Kafka topic (with the deployment's prefix), as in the directory names.
    pub topic: String,
    /// Whether the cluster has the topic at all.
    pub exists: bool,
    /// Rows written per UTC date (`YYYY-MM-DD`).
    pub rows: BTreeMap<String, u64>,
    /// Messages of the range passed over, by reason code (`BAD_MAGIC_BYTE`,
    /// `UNKNOWN_SCHEMA_ID`, … as the codec names them; `NO_VALUE` for a tombstone,
    /// `NO_TIMESTAMP` for a message without one).
    pub skipped: BTreeMap<String, u64>,
    /// Messages read between the range's first and last offsets whose timestamps fall
    /// before the range (producers' clocks are not monotonic); not exported.
    pub before_range: u64,
    /// The files written, complete.
    pub files: Vec<PathBuf>,
    /// Files an earlier export of the same range wrote that this one replaced by fewer.
    pub removed: Vec<PathBuf>,
}

impl ExportSummary {
    pub fn rows(&self) -> u64 {
        self.topics.iter().flat_map(|t| t.rows.values()).sum()
    }

    pub fn skipped(&self) -> u64 {
        self.topics.iter().flat_map(|t| t.skipped.values()).sum()
    }

    pub fn files(&self) -> impl Iterator<Item = &PathBuf> {
        self.topics.iter().flat_map(|t| t.files.iter())
    }
}

/// Sets the flag when dropped: dropping the export's future stops its reading thread.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Exports the range. Runs on a blocking thread (librdkafka's polls, file writes) and
/// asks the codec's Schema Registry, if any, for writer schemas it does not know.
/// Dropping the future cancels the export; files completed before stay, the file being
/// written is removed.
pub async fn export(kafka: &KafkaConfig, codec: &Codec, opts: &ExportOptions) -> Result<ExportSummary> {
    opts.validate()?;
    kafka.validate()?;
    let stop = Arc::new(AtomicBool::new(false));
    let _cancel = CancelOnDrop(stop.clone());
    let handle = tokio::runtime::Handle::current();
    let (kafka, codec, opts) = (kafka.clone(), codec.clone(), opts.clone());
    tokio::task::spawn_blocking(move || run(&handle, &kafka, &codec, &opts, &stop))
        .await
        .map_err(|e| Error::Task(e.to_string()))?
}

fn run(
    handle: &tokio::runtime::Handle,
    kafka: &KafkaConfig,
    codec: &Codec,
    opts: &ExportOptions,
    stop: &AtomicBool,
) -> Result<ExportSummary> {
    let mut topics: Vec<Topic> = opts.topics.clone();
    topics.sort_unstable();
    topics.dedup();
    // Every schema converts before anything is read: a problem shows at once.
    let columns = topics
        .iter()
        .map(|t| TopicColumns::new(t.name(), &codec.schemas().latest(*t).schema))
        .collect::<Result<Vec<_>>>()?;
    std::fs::create_dir_all(&opts.out_dir).map_err(|source| Error::Io {
        path: opts.out_dir.clone(),
        source,
    })?;
    let config = reader_config(kafka, "motcua-export");
    let consumer: BaseConsumer = config.create().map_err(|source| Error::Kafka {
        context: "create the consumer".into(),
        source,
    })?;
    let mut summary = ExportSummary {
        from_ms: opts.from_ms,
        to_ms: opts.to_ms,
        topics: Vec::new(),
    };
    let ctx = Ctx {
        handle,
        consumer: &consumer,
        config: &config,
        codec,
        opts,
        stop,
    };
    for (topic, cols) in topics.iter().zip(&columns) {
        let name = kafka.topic(*topic);
        let t = ctx.export_topic(*topic, &name, cols)?;
        debug!(
            topic = %name,
            rows = t.rows.values().sum::<u64>(),
            skipped = t.skipped.values().sum::<u64>(),
            files = t.files.len(),
            "topic exported"
        );
        summary.topics.push(t);
    }
    Ok(summary)
}

/// What every topic's export uses.
struct Ctx<'a> {
    handle: &'a tokio::runtime::Handle,
    /// Metadata, watermarks and time lookups.
    consumer: &'a BaseConsumer,
    /// For the consumers that read.
    config: &'a ClientConfig,
    codec: &'a Codec,
    opts: &'a ExportOptions,
    stop: &'a AtomicBool,
}

impl Ctx<'_> {
    fn export_topic(&self, topic: Topic, name: &str, cols: &TopicColumns) -> Result<TopicSummary> {
        let Ctx {
            handle,
            consumer,
            config,
            codec,
            opts,
            stop,
        } = *self;
        let mut summary = TopicSummary {
            topic: name.to_owned(),
            ..TopicSummary::default()
        };
        let Some(spans) = read::plan(consumer, config, name, opts.from_ms, stop)? else {
            return Ok(summary);
        };
        summary.exists = true;
        let mut writer = write::TopicWriter::new(
            &opts.out_dir,
            name,
            cols,
            opts.from_ms,
            opts.to_ms,
            opts.max_rows_per_file,
        );
        read::read(config, name, &spans, Some(opts.to_ms), stop, |batch| {
            handle
                .block_on(codec.learn_writers(batch.iter().filter_map(|m| m.payload.as_deref())))
                .map_err(Error::Registry)?;
            for m in batch {
                let mut skip = |code: &str| {
                    // Where, and why; never what (messages carry personal data).
                    debug!(
                        topic = name,
                        partition = m.partition,
                        offset = m.offset,
                        code,
                        "message passed over"
                    );
                    *summary.skipped.entry(code.to_owned()).or_default() += 1;
                };
                let Some(ts) = m.timestamp_ms else {
                    skip("NO_TIMESTAMP");
                    continue;
                };
                if ts < opts.from_ms {
                    summary.before_range += 1;
                    continue;
                }
                let Some(payload) = m.payload.as_deref() else {
                    skip("NO_VALUE");
                    continue;
                };
                let value = match codec.decode_value(topic, payload) {
                    Ok(v) => v,
                    Err(e) => {
                        skip(e.code());
                        continue;
                    }
                };
                let schema_id = Codec::schema_id(payload).map_or(-1, |id| i32::try_from(id).unwrap_or(-1));
                writer.push(Row {
                    partition: m.partition,
                    offset: m.offset,
                    timestamp_ms: ts,
                    schema_id,
                    value,
                })?;
            }
            Ok(())
        })?;
        let written = writer.finish()?;
        summary.rows = written.rows;
        summary.files = written.files;
        summary.removed = written.removed;
        Ok(summary)
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::Pin;
    use std::time::Duration;

    use motcua_kafka::EmbeddedBroker;
    use motcua_schemas::{FetchedSchema, LookupError, WriterSchemas};
    use rdkafka::producer::{FutureProducer, FutureRecord};

    use super::*;

    /// A Schema Registry that is down, or that holds nothing.
    #[derive(Debug)]
    struct Registry {
        up: bool,
    }

    impl WriterSchemas for Registry {
        fn fetch(
            &self,
            id: u32,
        ) -> Pin<Box<dyn Future<Output = Result<Option<FetchedSchema>, LookupError>> + Send + '_>> {
            let up = self.up;
            Box::pin(async move {
                if up {
                    Ok(None)
                } else {
                    Err(LookupError {
                        id,
                        reason: "connection refused".into(),
                    })
                }
            })
        }
    }

    const AT: i64 = 1_764_036_000_000;

    async fn broker_with_unknown_writer() -> (EmbeddedBroker, KafkaConfig) {
        let broker = EmbeddedBroker::start(1).expect("broker");
        let kafka = KafkaConfig::with_brokers(broker.bootstrap_servers());
        broker.create_topics(&kafka, 1).expect("topics");
        let producer: FutureProducer = kafka.producer_config("test").create().expect("producer");
        let topic = kafka.topic(Topic::Submitted);
        let good = motcua_schemas::samples::submitted();
        let good = Codec::embedded().expect("codec").encode(&good).expect("encode");
        // Written with a schema id this build does not know (999), then a known one.
        for payload in [&[0u8, 0, 0, 3, 231, 2][..], &good] {
            producer
                .send(
                    FutureRecord::<str, [u8]>::to(&topic)
                        .key("k")
                        .payload(payload)
                        .timestamp(AT),
                    Duration::from_secs(10),
                )
                .await
                .expect("delivered");
        }
        (broker, kafka)
    }

    fn options(out: &std::path::Path) -> ExportOptions {
        ExportOptions {
            from_ms: AT - 1000,
            to_ms: AT + 1000,
            topics: vec![Topic::Submitted],
            out_dir: out.to_owned(),
            max_rows_per_file: 100,
        }
    }

    #[tokio::test]
    async fn an_unreachable_registry_fails_the_export_and_leaves_no_file() {
        let (_broker, kafka) = broker_with_unknown_writer().await;
        let out = tempfile::tempdir().expect("tempdir");
        let codec = Codec::embedded()
            .expect("codec")
            .with_writer_schemas(Arc::new(Registry { up: false }));
        let e = export(&kafka, &codec, &options(out.path()))
            .await
            .expect_err("registry down");
        assert!(matches!(e, Error::Registry(_)), "{e}");
        assert!(e.to_string().contains("schema registry did not answer"), "{e}");
        assert_eq!(std::fs::read_dir(out.path()).expect("dir").count(), 0);
    }

    #[tokio::test]
    async fn an_id_the_registry_does_not_hold_is_skipped_and_counted() {
        let (_broker, kafka) = broker_with_unknown_writer().await;
        let out = tempfile::tempdir().expect("tempdir");
        let codec = Codec::embedded()
            .expect("codec")
            .with_writer_schemas(Arc::new(Registry { up: true }));
        let s = export(&kafka, &codec, &options(out.path())).await.expect("export");
        let t = &s.topics[0];
        assert_eq!(t.rows, BTreeMap::from([("2025-11-25".to_owned(), 1)]));
        assert_eq!(t.skipped, BTreeMap::from([("UNKNOWN_SCHEMA_ID".to_owned(), 1)]));
        assert_eq!(t.files.len(), 1);
        assert!(t.files[0].ends_with("topic=dossier.submitted/date=2025-11-25/part-1764035999000-0.parquet"));
    }

    #[tokio::test]
    async fn bad_options_are_refused_before_anything_is_read() {
        let out = tempfile::tempdir().expect("tempdir");
        let kafka = KafkaConfig::with_brokers("127.0.0.1:1");
        let codec = Codec::embedded().expect("codec");
        let mut o = options(out.path());
        o.to_ms = o.from_ms;
        let e = export(&kafka, &codec, &o).await.expect_err("empty range").to_string();
        assert!(e.contains("must be after its start"), "{e}");
        let mut o = options(out.path());
        o.max_rows_per_file = 0;
        assert!(export(&kafka, &codec, &o).await.is_err());
    }
}
