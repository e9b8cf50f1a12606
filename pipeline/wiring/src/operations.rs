//! What operators see of the pipeline itself (the console's `GET /pipeline`, the demo's
//! progress and report): every consumer group's lag, recent dead letters and the dossiers
//! parked behind a registry or escalated to an officer.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use motcua_kafka::KafkaConfig;
use motcua_schemas::{Codec, DossierAccepted, Topic};
use motcua_store::Store;
use motcua_track::ops::{
    DeadLetterCause, DeadLetterLine, DeadLetters, EscalatedLine, Operations, OpsFuture, ParkedLine, StageLag, Waiting,
};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use crate::stages::STAGES;

/// A stage's group and what it reads.
struct Group {
    stage: &'static str,
    consumer: BaseConsumer,
    topics: Vec<String>,
}

/// Lag and progress of one group at one instant.
#[derive(Debug, Clone, Copy, Default)]
pub struct GroupLag {
    /// Messages committed as processed.
    pub committed: i64,
    /// Messages published to its inputs and not yet committed.
    pub lag: i64,
}

/// Consumer lag of consumer groups, as an operator's dashboard reads it: the end of each
/// input partition minus the group's committed offset.
pub struct LagReader {
    groups: Vec<Group>,
}

impl std::fmt::Debug for LagReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.groups.iter().map(|g| (g.stage, &g.topics)))
            .finish()
    }
}

impl LagReader {
    /// `stages`: (stage name, its input topics); groups named as the runtime names them.
    pub fn new(kafka: &KafkaConfig, stages: &[(&'static str, Vec<Topic>)]) -> Result<Self> {
        let groups = stages
            .iter()
            .map(|(stage, topics)| {
                let consumer: BaseConsumer = kafka
                    .consumer_config(&kafka.group(stage), "motcua-lag")
                    .create()
                    .with_context(|| format!("creating the lag reader of {stage}"))?;
                Ok(Group {
                    stage,
                    consumer,
                    topics: topics.iter().map(|t| kafka.topic(*t)).collect(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { groups })
    }

    /// The stage table's groups.
    pub fn of_stages(kafka: &KafkaConfig) -> Result<Self> {
        let stages: Vec<(&'static str, Vec<Topic>)> = STAGES.iter().map(|s| (s.name, (s.inputs)())).collect();
        Self::new(kafka, &stages)
    }

    /// Reads every group's committed offsets and the partitions' ends (blocking calls:
    /// run it on a blocking thread). A topic that does not exist yet counts nothing.
    pub fn read(&self) -> Vec<(&'static str, GroupLag)> {
        let timeout = Duration::from_secs(2);
        self.groups
            .iter()
            .map(|g| {
                let mut tpl = TopicPartitionList::new();
                let mut partitions = Vec::new();
                for t in &g.topics {
                    let count = g
                        .consumer
                        .fetch_metadata(Some(t), timeout)
                        .ok()
                        .and_then(|m| m.topics().first().map(|m| m.partitions().len() as i32))
                        .unwrap_or(0);
                    for p in 0..count {
                        tpl.add_partition(t, p);
                        partitions.push((t, p));
                    }
                }
                let committed = g.consumer.committed_offsets(tpl, timeout).ok();
                let mut out = GroupLag::default();
                for (t, p) in partitions {
                    let Ok((_, high)) = g.consumer.fetch_watermarks(t, p, timeout) else {
                        continue;
                    };
                    let done = committed
                        .as_ref()
                        .and_then(|c| c.find_partition(t, p))
                        .and_then(|e| match e.offset() {
                            Offset::Offset(o) => Some(o),
                            _ => None,
                        })
                        .unwrap_or(0);
                    out.committed += done;
                    out.lag += (high - done).max(0);
                }
                (g.stage, out)
            })
            .collect()
    }
}

/// How long a listing of the dead-letter topic is reused: the console refreshes every few
/// seconds, and reading a day of dead letters each time would load the broker for nothing.
const DEAD_LETTER_CACHE: Duration = Duration::from_secs(10);

/// The pipeline's state from the broker and the pipeline's store.
pub struct PipelineOperations {
    kafka: KafkaConfig,
    codec: Codec,
    lag: Arc<LagReader>,
    store: Store,
    dead_letters: Mutex<Option<(Instant, i64, usize, DeadLetters)>>,
}

impl std::fmt::Debug for PipelineOperations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipelineOperations")
            .field("lag", &self.lag)
            .finish_non_exhaustive()
    }
}

impl PipelineOperations {
    pub fn new(kafka: KafkaConfig, codec: Codec, lag: Arc<LagReader>, store: Store) -> Self {
        Self {
            kafka,
            codec,
            lag,
            store,
            dead_letters: Mutex::new(None),
        }
    }
}

fn shown(e: &dyn std::error::Error) -> String {
    motcua_runtime::error_chain(e)
}

impl Operations for PipelineOperations {
    fn lag(&self) -> OpsFuture<'_, Vec<StageLag>> {
        let lag = self.lag.clone();
        Box::pin(async move {
            let read = tokio::task::spawn_blocking(move || lag.read())
                .await
                .map_err(|e| shown(&e))?;
            Ok(read
                .into_iter()
                .map(|(stage, g)| StageLag {
                    stage: stage.to_owned(),
                    committed: g.committed,
                    lag: g.lag,
                })
                .collect())
        })
    }

    fn dead_letters(&self, since_ms: i64, latest: usize) -> OpsFuture<'_, DeadLetters> {
        Box::pin(async move {
            if let Some((at, since, n, cached)) = self.dead_letters.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
                // A cached listing from a few seconds ago answers a close enough question.
                if at.elapsed() < DEAD_LETTER_CACHE
                    && (since_ms - since).abs() < DEAD_LETTER_CACHE.as_millis() as i64
                    && *n == latest
                {
                    return Ok(cached.clone());
                }
            }
            let (kafka, codec) = (self.kafka.clone(), self.codec.clone());
            let filter = motcua_dlq::Filter {
                since_ms: Some(since_ms),
                ..Default::default()
            };
            let entries =
                tokio::task::spawn_blocking(move || motcua_dlq::list(&kafka, &codec, &filter, &AtomicBool::new(false)))
                    .await
                    .map_err(|e| shown(&e))?;
            let entries = match entries {
                Ok(e) => e,
                // No dead letter was ever written: nothing to show.
                Err(motcua_dlq::Error::NoTopic(_)) => Vec::new(),
                Err(e) => return Err(shown(&e)),
            };
            let mut causes: std::collections::BTreeMap<(String, String, String), u64> = Default::default();
            for e in &entries {
                let d = &e.dead_letter;
                *causes
                    .entry((d.reason_code.clone(), d.origin_topic.clone(), d.stage.clone()))
                    .or_default() += 1;
            }
            let mut by_cause: Vec<DeadLetterCause> = causes
                .into_iter()
                .map(|((reason_code, origin_topic, stage), count)| DeadLetterCause {
                    reason_code,
                    origin_topic,
                    stage,
                    count,
                })
                .collect();
            by_cause.sort_by_key(|c| std::cmp::Reverse(c.count));
            let listing = DeadLetters {
                since_ms,
                total: entries.len() as u64,
                by_cause,
                latest: entries
                    .iter()
                    .rev()
                    .take(latest)
                    .map(|e| DeadLetterLine {
                        id: e.id(),
                        failed_at_ms: e.dead_letter.failed_at,
                        origin_topic: e.dead_letter.origin_topic.clone(),
                        stage: e.dead_letter.stage.clone(),
                        reason_code: e.dead_letter.reason_code.clone(),
                        replay_count: e.replay_count(),
                    })
                    .collect(),
            };
            *self.dead_letters.lock().unwrap_or_else(|p| p.into_inner()) =
                Some((Instant::now(), since_ms, latest, listing.clone()));
            Ok(listing)
        })
    }

    fn waiting(&self, limit: i64) -> OpsFuture<'_, Waiting> {
        Box::pin(async move {
            let parked = self.store.parked(limit).await.map_err(|e| shown(&e))?;
            let parked_total = self.store.parked_total().await.map_err(|e| shown(&e))?;
            let escalated = self.store.escalated(limit).await.map_err(|e| shown(&e))?;
            Ok(Waiting {
                parked_total,
                parked: parked
                    .into_iter()
                    .map(|p| ParkedLine {
                        dossier_code: parked_code(&self.codec, &p).unwrap_or_else(|| "(unreadable)".to_owned()),
                        parked_at_ms: p.parked_at_ms,
                        attempts: p.attempts,
                        cause: p.last_error,
                    })
                    .collect(),
                escalated: escalated
                    .into_iter()
                    .map(|e| EscalatedLine {
                        dossier_code: e.dossier_code,
                        escalated_at_ms: e.escalated_at_ms,
                        cause: e.reason,
                    })
                    .collect(),
            })
        })
    }
}

/// The code of a parked dossier, from the message its stage parked (verify: the
/// accepted dossier; result: the decision); `None` when it does not decode.
pub fn parked_code(codec: &Codec, p: &motcua_store::Parked) -> Option<String> {
    match p.lot {
        motcua_store::Lot::Verify => codec.decode::<DossierAccepted>(&p.payload).ok().map(|a| a.dossier_code),
        motcua_store::Lot::Result => codec
            .decode::<motcua_schemas::DossierDecided>(&p.payload)
            .ok()
            .map(|d| d.dossier_code),
    }
}
