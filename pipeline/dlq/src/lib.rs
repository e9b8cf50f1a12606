//! Dead letters for operators (`motcua dlq list | show | replay`).
//!
//! A dead letter (`dossier.dlq`) keeps the original message's key, value (up to 64 KiB),
//! headers (as `motcua-origin-header.<name>`) and where it came from. Once the cause is
//! fixed — a registry back, a schema registered, a limit raised — an operator replays it:
//! the original bytes and headers go back to their topic with a `motcua-replay-count`
//! header one higher. A message that comes back to the dead-letter topic with that count
//! at the limit is *parked*: reported, not replayed again, so a message that cannot be
//! processed does not loop. Every replay or parking is recorded in the store's audit
//! table first (who, when, what, why), which also makes a dead letter replay once.

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use motcua_kafka::KafkaConfig;
use motcua_schemas::{Codec, DeadLetter, Topic};
use motcua_store::{DlqReplay, Store};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tracing::info;

/// The header a replayed message carries: how many times it was replayed.
pub const REPLAY_COUNT_HEADER: &str = "motcua-replay-count";
/// The prefix under which a dead letter keeps the original message's headers.
const ORIGIN_HEADER_PREFIX: &str = "motcua-origin-header.";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading the dead-letter topic")]
    Read(#[from] motcua_export::Error),
    #[error("the dead-letter topic {0} does not exist")]
    NoTopic(String),
    #[error("the audit of replays")]
    Store(#[from] motcua_store::Error),
    #[error("replaying {id} to {topic}: {reason}")]
    Produce { id: String, topic: String, reason: String },
    #[error("creating the producer")]
    Kafka(#[from] rdkafka::error::KafkaError),
}

pub type Result<T> = std::result::Result<T, Error>;

/// Which dead letters to look at; every field set must match.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub reason_code: Option<String>,
    /// The origin topic, by its default name (`dossier.submitted`) or the deployment's.
    pub origin_topic: Option<String>,
    /// The stage that dead-lettered it.
    pub stage: Option<String>,
    /// Dead-lettered at or after (epoch ms).
    pub since_ms: Option<i64>,
    /// Dead-lettered before (epoch ms).
    pub until_ms: Option<i64>,
    /// The original message's key (a dossier id; a bill reference on payment.confirmed).
    pub dossier: Option<String>,
}

/// One dead letter, as read from the topic.
#[derive(Debug, Clone)]
pub struct Entry {
    pub partition: i32,
    pub offset: i64,
    pub dead_letter: DeadLetter,
    /// The original message's headers.
    pub origin_headers: Vec<(String, Option<Vec<u8>>)>,
    /// Only a prefix of the original value was kept: it cannot be replayed.
    pub truncated: bool,
}

impl Entry {
    /// `partition:offset` in the dead-letter topic: how operators name one.
    pub fn id(&self) -> String {
        format!("{}:{}", self.partition, self.offset)
    }

    /// The original message's key as text (a dossier id), if any.
    pub fn key(&self) -> Option<String> {
        self.dead_letter
            .origin_key
            .as_deref()
            .map(|k| String::from_utf8_lossy(k).into_owned())
    }

    /// How many times the original message had been replayed when it was dead-lettered.
    pub fn replay_count(&self) -> u32 {
        self.origin_headers
            .iter()
            .find(|(k, _)| k == REPLAY_COUNT_HEADER)
            .and_then(|(_, v)| v.as_deref())
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    fn matches(&self, f: &Filter, kafka: &KafkaConfig) -> bool {
        let d = &self.dead_letter;
        let topic_ok = f.origin_topic.as_deref().is_none_or(|t| {
            d.origin_topic == t
                || Topic::ALL
                    .iter()
                    .any(|x| x.name() == t && kafka.topic(*x) == d.origin_topic)
        });
        topic_ok
            && f.reason_code.as_deref().is_none_or(|c| d.reason_code == c)
            && f.stage.as_deref().is_none_or(|s| d.stage == s)
            && f.since_ms.is_none_or(|t| d.failed_at >= t)
            && f.until_ms.is_none_or(|t| d.failed_at < t)
            && f.dossier.as_deref().is_none_or(|k| self.key().as_deref() == Some(k))
    }
}

fn header_text(headers: &[(String, Option<Vec<u8>>)], key: &str) -> Option<String> {
    headers
        .iter()
        .find(|(k, _)| k == key)
        .and_then(|(_, v)| v.as_deref())
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// The dead letters matching `filter`, oldest first per partition. Blocking: it reads the
/// topic to its end as it was when the call began (run it off the async threads).
pub fn list(kafka: &KafkaConfig, codec: &Codec, filter: &Filter, stop: &AtomicBool) -> Result<Vec<Entry>> {
    let topic = kafka.topic(Topic::DeadLetter);
    let config = motcua_export::reader_config(kafka, "motcua-dlq");
    let consumer: rdkafka::consumer::BaseConsumer = config.create().map_err(|source| motcua_export::Error::Kafka {
        context: "create the consumer".into(),
        source,
    })?;
    // The broker's time index finds where `since` starts; the dead letters' own times
    // are checked again below (a dead letter's time is its original's).
    let from = filter.since_ms.unwrap_or(0);
    let Some(spans) = motcua_export::read::plan(&consumer, &config, &topic, from, stop)? else {
        return Err(Error::NoTopic(topic));
    };
    let mut out = Vec::new();
    motcua_export::read::read(&config, &topic, &spans, None, stop, |batch| {
        for m in batch {
            let Some(payload) = &m.payload else { continue };
            // Not a dead letter this codec reads (another writer's junk): skipped, and
            // counted in the listing's log.
            let Ok(dead_letter) = codec.decode::<DeadLetter>(payload) else {
                info!(
                    partition = m.partition,
                    offset = m.offset,
                    "not a readable dead letter; skipped"
                );
                continue;
            };
            let origin_headers = m
                .headers
                .iter()
                .filter_map(|(k, v)| k.strip_prefix(ORIGIN_HEADER_PREFIX).map(|k| (k.to_owned(), v.clone())))
                .collect();
            let truncated = header_text(&m.headers, "motcua-origin-value-truncated").as_deref() == Some("true");
            let e = Entry {
                partition: m.partition,
                offset: m.offset,
                dead_letter,
                origin_headers,
                truncated,
            };
            if e.matches(filter, kafka) {
                out.push(e);
            }
        }
        Ok(())
    })?;
    out.sort_by_key(|e| (e.dead_letter.failed_at, e.partition, e.offset));
    Ok(out)
}

/// How a replay is done and recorded.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// Say what would be done; publish and record nothing.
    pub dry_run: bool,
    /// Replay at most this many (parked ones do not count).
    pub limit: usize,
    /// A message already replayed this many times is parked instead.
    pub max_replays: u32,
    /// Who replays (an operator's account): recorded.
    pub by: String,
    /// Why (the fix that makes the replay worth it): recorded.
    pub why: String,
    /// The time recorded (epoch ms).
    pub now_ms: i64,
}

/// What happened to one dead letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Published back to its topic, landing at `partition:offset`, with this replay count.
    Replayed { partition: i32, offset: i64, count: u32 },
    /// `--dry-run`: would be published with this replay count.
    WouldReplay { count: u32 },
    /// Replayed too often already: not replayed (recorded as parked).
    Parked { count: u32 },
    /// Replayed or parked before (the earlier record).
    AlreadyDone(Box<DlqReplay>),
    /// Only a prefix of the original was kept, or it had no value: cannot be replayed.
    Unreplayable(&'static str),
    /// Past `--limit`.
    NotThisTime,
}

/// Replays `entries` in order (see the crate documentation).
pub async fn replay(
    kafka: &KafkaConfig,
    store: &Store,
    entries: &[Entry],
    opts: &ReplayOptions,
) -> Result<Vec<Outcome>> {
    let producer: FutureProducer = kafka.producer_config("motcua-dlq-replay").create()?;
    let mut out = Vec::with_capacity(entries.len());
    let mut replayed = 0;
    for e in entries {
        let d = &e.dead_letter;
        let count = e.replay_count() + 1;
        let Some(value) = d.origin_value.as_deref() else {
            out.push(Outcome::Unreplayable("the original message had no value"));
            continue;
        };
        if e.truncated {
            out.push(Outcome::Unreplayable("only a prefix of the original value was kept"));
            continue;
        }
        let parked = e.replay_count() >= opts.max_replays;
        if !parked && replayed >= opts.limit {
            out.push(Outcome::NotThisTime);
            continue;
        }
        if opts.dry_run {
            out.push(if parked {
                Outcome::Parked {
                    count: e.replay_count(),
                }
            } else {
                replayed += 1;
                Outcome::WouldReplay { count }
            });
            continue;
        }
        let record = DlqReplay {
            dlq_partition: e.partition,
            dlq_offset: e.offset,
            origin_topic: d.origin_topic.clone(),
            origin_partition: d.origin_partition,
            origin_offset: d.origin_offset,
            reason_code: d.reason_code.clone(),
            replay_count: if parked { e.replay_count() } else { count } as i32,
            outcome: if parked { "parked" } else { "replayed" }.to_owned(),
            replayed_by: opts.by.clone(),
            why: opts.why.clone(),
            replayed_at_ms: opts.now_ms,
            new_partition: None,
            new_offset: None,
        };
        // Recorded first: the record is the claim, so two operators never replay it twice.
        if let Some(earlier) = store.claim_dlq_replay(&record).await? {
            out.push(Outcome::AlreadyDone(Box::new(earlier)));
            continue;
        }
        if parked {
            out.push(Outcome::Parked {
                count: e.replay_count(),
            });
            continue;
        }
        let count_text = count.to_string();
        let mut headers = OwnedHeaders::new_with_capacity(e.origin_headers.len() + 1);
        for (k, v) in e.origin_headers.iter().filter(|(k, _)| k != REPLAY_COUNT_HEADER) {
            headers = headers.insert(Header {
                key: k,
                value: v.as_deref(),
            });
        }
        headers = headers.insert(Header {
            key: REPLAY_COUNT_HEADER,
            value: Some(count_text.as_str()),
        });
        let mut record_out = FutureRecord::<[u8], [u8]>::to(&d.origin_topic)
            .payload(value)
            .headers(headers);
        if let Some(k) = d.origin_key.as_deref() {
            record_out = record_out.key(k);
        }
        let (partition, offset) = producer
            .send(record_out, Duration::from_secs(30))
            .await
            .map(|delivery| (delivery.partition, delivery.offset))
            .map_err(|(err, _)| Error::Produce {
                id: e.id(),
                topic: d.origin_topic.clone(),
                reason: err.to_string(),
            })?;
        store
            .landed_dlq_replay(e.partition, e.offset, partition, offset)
            .await?;
        info!(dead_letter = %e.id(), topic = %d.origin_topic, partition, offset, count, "replayed");
        replayed += 1;
        out.push(Outcome::Replayed {
            partition,
            offset,
            count,
        });
    }
    Ok(out)
}
