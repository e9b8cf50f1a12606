//! Reading a time range of one topic: every partition from the first offset at or after
//! the start (the broker's time index), up to the high watermark seen when the export
//! began, stopping a partition at its first message at or after the end.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use tracing::{debug, info, warn};

use crate::{Error, Result};

/// How long one metadata, watermark or time-index request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// No message nor end of partition for this long while partitions remain: the export
/// fails rather than wait forever for a broker that is gone.
const STALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Messages handed on at once (one Schema Registry round for their unknown writer ids).
const BATCH: usize = 500;
/// How many of a partition's last offsets are read to check a "no such time" answer.
const PROBE_TAIL: i64 = 16;

/// A message of the range, owned.
#[derive(Debug)]
pub struct Msg {
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: Option<i64>,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// Offsets `[start, end)` of a partition to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub partition: i32,
    pub start: i64,
    pub end: i64,
}

fn kafka(context: String) -> impl FnOnce(KafkaError) -> Error {
    move |source| Error::Kafka { context, source }
}

/// The spans of `topic` holding messages from `from_ms` on, or `None` when the cluster
/// has no such topic.
pub fn plan(
    consumer: &BaseConsumer,
    config: &ClientConfig,
    topic: &str,
    from_ms: i64,
    stop: &AtomicBool,
) -> Result<Option<Vec<Span>>> {
    let metadata = consumer
        .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
        .map_err(kafka(format!("read the metadata of topic {topic}")))?;
    let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Ok(None);
    };
    if let Some(e) = t.error() {
        let code = rdkafka::error::RDKafkaErrorCode::from(e);
        if code == rdkafka::error::RDKafkaErrorCode::UnknownTopicOrPartition {
            return Ok(None);
        }
        return Err(Error::Kafka {
            context: format!("read the metadata of topic {topic}"),
            source: KafkaError::MetadataFetch(code),
        });
    }
    let mut partitions: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
    partitions.sort_unstable();
    if partitions.is_empty() {
        return Ok(Some(Vec::new()));
    }
    let mut marks = BTreeMap::new();
    let mut times = TopicPartitionList::new();
    for &p in &partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, REQUEST_TIMEOUT)
            .map_err(kafka(format!("read the offsets of {topic} partition {p}")))?;
        marks.insert(p, (low, high));
        times
            .add_partition_offset(topic, p, Offset::Offset(from_ms))
            .map_err(kafka(format!("look up {topic} partition {p} by time")))?;
    }
    let found = consumer
        .offsets_for_times(times, REQUEST_TIMEOUT)
        .map_err(kafka(format!("look up the offsets of {topic} at {from_ms}")))?;
    let mut spans = Vec::new();
    let mut unsure = Vec::new();
    for e in found.elements_for_topic(topic) {
        let p = e.partition();
        let Some(&(low, high)) = marks.get(&p) else { continue };
        if low >= high {
            continue;
        }
        e.error()
            .map_err(kafka(format!("look up {topic} partition {p} by time")))?;
        debug!(topic, partition = p, low, high, found = ?e.offset(), "offset by time");
        match e.offset() {
            Offset::Offset(o) if o < high => spans.push(Span {
                partition: p,
                start: o.max(low),
                end: high,
            }),
            Offset::Offset(_) => {}
            // "No message at or after that time": true on Kafka, but some Kafka-protocol
            // brokers (librdkafka's mock cluster) answer so for any time. Checked below.
            _ => unsure.push(Span {
                partition: p,
                start: (high - PROBE_TAIL).max(low),
                end: high,
            }),
        }
    }
    if !unsure.is_empty() {
        let mut newer = Vec::new();
        read(config, topic, &unsure, None, stop, |batch| {
            for m in batch {
                if m.timestamp_ms.is_some_and(|t| t >= from_ms) && !newer.contains(&m.partition) {
                    newer.push(m.partition);
                }
            }
            Ok(())
        })?;
        if !newer.is_empty() {
            // The broker cannot find offsets by time: read those partitions from their
            // start (messages before the range are then passed over one by one).
            newer.sort_unstable();
            info!(topic, partitions = ?newer, "the broker did not find offsets by time; reading from the partitions' start");
        }
        for p in newer {
            let (low, high) = marks[&p];
            spans.push(Span {
                partition: p,
                start: low,
                end: high,
            });
        }
        spans.sort_unstable_by_key(|s| s.partition);
    }
    debug!(topic, ?spans, "to read");
    Ok(Some(spans))
}

/// Reads `spans` of `topic`, handing messages to `each_batch` in batches. A partition ends
/// at its span's end, at the end of what it holds (committed), or — with `to_ms` — at
/// its first message with a timestamp at or after `to_ms`, which is not handed on.
///
/// Each read has a consumer of its own: an earlier read's prefetched messages and
/// end-of-partition events (which do not say at which offset) must not end this one.
pub fn read(
    config: &ClientConfig,
    topic: &str,
    spans: &[Span],
    to_ms: Option<i64>,
    stop: &AtomicBool,
    mut each_batch: impl FnMut(&[Msg]) -> Result<()>,
) -> Result<()> {
    let mut active: HashMap<i32, i64> = HashMap::new();
    let mut assignment = TopicPartitionList::new();
    for s in spans.iter().filter(|s| s.start < s.end) {
        assignment
            .add_partition_offset(topic, s.partition, Offset::Offset(s.start))
            .map_err(kafka(format!("assign {topic} partition {}", s.partition)))?;
        active.insert(s.partition, s.end);
    }
    if active.is_empty() {
        return Ok(());
    }
    let consumer: BaseConsumer = config.create().map_err(kafka("create the consumer".into()))?;
    consumer
        .assign(&assignment)
        .map_err(kafka(format!("assign the partitions of {topic}")))?;
    let result = read_assigned(&consumer, topic, &mut active, to_ms, stop, &mut each_batch);
    let _ = consumer.unassign();
    result
}

fn read_assigned(
    consumer: &BaseConsumer,
    topic: &str,
    active: &mut HashMap<i32, i64>,
    to_ms: Option<i64>,
    stop: &AtomicBool,
    each_batch: &mut impl FnMut(&[Msg]) -> Result<()>,
) -> Result<()> {
    let mut batch: Vec<Msg> = Vec::with_capacity(BATCH);
    let mut last_progress = Instant::now();
    let mut last_error: Option<String> = None;
    let done = |consumer: &BaseConsumer, active: &mut HashMap<i32, i64>, p: i32| {
        if active.remove(&p).is_some() {
            // Stop fetching what we will not use.
            let mut tpl = TopicPartitionList::new();
            if tpl.add_partition(topic, p).set_offset(Offset::Invalid).is_ok() {
                let _ = consumer.pause(&tpl);
            }
        }
    };
    while !active.is_empty() {
        if stop.load(Ordering::Relaxed) {
            return Err(Error::Cancelled);
        }
        match consumer.poll(Duration::from_millis(200)) {
            None => {
                if !batch.is_empty() {
                    each_batch(&batch)?;
                    batch.clear();
                }
                if last_progress.elapsed() > STALL_TIMEOUT {
                    return Err(Error::Stalled {
                        topic: topic.to_owned(),
                        partitions: active.len(),
                        seconds: STALL_TIMEOUT.as_secs(),
                        last_error: last_error.unwrap_or_else(|| "none".into()),
                    });
                }
                continue;
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                last_progress = Instant::now();
                done(consumer, active, p);
            }
            Some(Err(e)) => {
                warn!(topic, error = %e, "reading the topic");
                last_error = Some(e.to_string());
            }
            Some(Ok(m)) => {
                last_progress = Instant::now();
                let p = m.partition();
                let Some(&end) = active.get(&p) else { continue };
                if m.offset() >= end {
                    done(consumer, active, p);
                    continue;
                }
                let ts = m.timestamp().to_millis();
                if to_ms.is_some_and(|to| ts.is_some_and(|t| t >= to)) {
                    debug!(topic, partition = p, offset = m.offset(), "past the end of the range");
                    done(consumer, active, p);
                    continue;
                }
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|x| (x.key.to_owned(), x.value.map(<[u8]>::to_vec)))
                            .collect()
                    })
                    .unwrap_or_default();
                batch.push(Msg {
                    partition: p,
                    offset: m.offset(),
                    timestamp_ms: ts,
                    key: m.key().map(<[u8]>::to_vec),
                    payload: m.payload().map(<[u8]>::to_vec),
                    headers,
                });
                if m.offset() + 1 >= end {
                    done(consumer, active, p);
                }
            }
        }
        if batch.len() >= BATCH {
            each_batch(&batch)?;
            batch.clear();
        }
    }
    if !batch.is_empty() {
        each_batch(&batch)?;
    }
    Ok(())
}
