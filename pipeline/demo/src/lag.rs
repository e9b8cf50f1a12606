//! Consumer lag of every stage's group, as an operator's dashboard reads it: the end of
//! each input partition minus the group's committed offset.

use std::time::Duration;

use anyhow::{Context, Result};
use motcua_kafka::KafkaConfig;
use motcua_schemas::Topic;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

/// A stage's group and what it reads.
pub(crate) struct Group {
    pub(crate) stage: &'static str,
    consumer: BaseConsumer,
    topics: Vec<String>,
}

/// Lag and progress of one group at one instant.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct GroupLag {
    /// Messages committed as processed.
    pub(crate) committed: i64,
    /// Messages published to its inputs and not yet committed.
    pub(crate) lag: i64,
}

pub(crate) struct LagReader {
    pub(crate) groups: Vec<Group>,
    partitions: i32,
}

impl LagReader {
    /// `stages`: (stage name, its input topics); groups named as the runtime names them.
    pub(crate) fn new(kafka: &KafkaConfig, stages: &[(&'static str, Vec<Topic>)], partitions: i32) -> Result<Self> {
        let groups = stages
            .iter()
            .map(|(stage, topics)| {
                let consumer: BaseConsumer = kafka
                    .consumer_config(&kafka.group(stage), "motcua-demo-lag")
                    .create()
                    .with_context(|| format!("creating the lag reader of {stage}"))?;
                Ok(Group {
                    stage,
                    consumer,
                    topics: topics.iter().map(|t| kafka.topic(*t)).collect(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { groups, partitions })
    }

    /// Reads every group's committed offsets and the partitions' ends (blocking calls:
    /// run it on a blocking thread).
    pub(crate) fn read(&self) -> Vec<(&'static str, GroupLag)> {
        let timeout = Duration::from_secs(2);
        self.groups
            .iter()
            .map(|g| {
                let mut tpl = TopicPartitionList::new();
                for t in &g.topics {
                    for p in 0..self.partitions {
                        tpl.add_partition(t, p);
                    }
                }
                let committed = g.consumer.committed_offsets(tpl, timeout).ok();
                let mut out = GroupLag::default();
                for t in &g.topics {
                    for p in 0..self.partitions {
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
                }
                (g.stage, out)
            })
            .collect()
    }
}
