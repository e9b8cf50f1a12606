//! Where each output goes, and how large it may be there; the framing of outputs.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use motcua_kafka::KafkaConfig;
use motcua_schemas::{AnyEvent, Codec, Topic};
use rdkafka::message::{Header, OwnedHeaders};
use tracing::{debug, warn};

use crate::dead_letter::DeadLetterReason;
use crate::producer::Outgoing;

/// Where each event type goes: the full topic name (made once, not per message) and the
/// largest message the worker may produce there — the producer's own limit
/// (`message.max.bytes`) or, lower if so, the topic's (`max.message.bytes`) as the broker
/// reported it at start-up. Checked before producing, so an output the broker would
/// refuse dead-letters its input instead of failing the worker.
#[derive(Debug, Clone)]
pub(crate) struct Destinations {
    /// In `Topic::ALL` order.
    topics: Vec<(Topic, Arc<str>, usize)>,
}

/// The destinations in force: the producer's limits until the broker has said what each
/// topic takes (asked in the background, so a broker that does not answer cannot delay
/// the group join).
#[derive(Clone)]
pub(crate) struct SharedDestinations(Arc<RwLock<Arc<Destinations>>>);

impl SharedDestinations {
    /// The producer's limits now, the broker's once `discover` has them.
    pub(crate) fn discovering(kafka: &KafkaConfig, stage: &'static str) -> (Self, tokio::task::JoinHandle<()>) {
        let shared = Self(Arc::new(RwLock::new(Arc::new(Destinations::of_producer(kafka)))));
        let discovery = {
            let (kafka, shared) = (kafka.clone(), shared.clone());
            tokio::spawn(async move {
                let found = Arc::new(Destinations::discover(&kafka, stage).await);
                *shared.0.write().unwrap_or_else(|p| p.into_inner()) = found;
            })
        };
        (shared, discovery)
    }

    /// The destinations in force (a clone of the pointer, so the lock is held for no time).
    pub(crate) fn current(&self) -> Arc<Destinations> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Destinations {
    pub(crate) fn of_producer(kafka: &KafkaConfig) -> Self {
        Self::with_broker_limits(kafka, &Default::default())
    }

    pub(crate) fn with_broker_limits(kafka: &KafkaConfig, broker: &std::collections::BTreeMap<String, usize>) -> Self {
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
    pub(crate) fn smallest(&self) -> usize {
        self.topics
            .iter()
            .filter(|(t, _, _)| *t != Topic::DeadLetter)
            .map(|(_, _, max)| *max)
            .min()
            .unwrap_or(usize::MAX)
    }

    pub(crate) fn of(&self, topic: Topic) -> (&Arc<str>, usize) {
        let (_, name, max) = self
            .topics
            .iter()
            .find(|(t, _, _)| *t == topic)
            .expect("every topic has a destination");
        (name, *max)
    }
}

/// The framed outputs of one input, or why they cannot be produced (a reason to
/// dead-letter the input): an event that does not encode, or one larger than a Kafka
/// message may be on its topic ([`Destinations`]).
pub(crate) fn outputs(
    codec: &Codec,
    destinations: &Destinations,
    traceparent: Option<&str>,
    size_hint: usize,
    events: &[AnyEvent],
) -> Result<Vec<Outgoing>, DeadLetterReason> {
    let mut out = Vec::with_capacity(events.len());
    for e in events {
        // Outputs are mostly about the size of their input: one allocation, no regrowth.
        let mut payload = Vec::with_capacity(size_hint + 256);
        e.encode(codec, &mut payload)
            .map_err(|err| DeadLetterReason::new("OUTPUT_ENCODE_FAILED", crate::error_chain(&err)))?;
        // Key and headers count too; keep a margin for the record framing.
        let size = payload.len() + e.key().len() + e.event_id().len() + 256;
        let (topic, max) = destinations.of(e.topic());
        if size > max {
            return Err(DeadLetterReason::new(
                "OUTPUT_TOO_LARGE",
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
