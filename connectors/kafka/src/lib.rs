//! Kafka client configuration for motcua workers, topic administration, and the embedded
//! in-process broker (librdkafka's mock cluster) used by `motcua demo` and the fast tests.
//!
//! Every Kafka byte goes through librdkafka over TCP, whichever broker is on the other side.

use std::collections::BTreeMap;
use std::time::Duration;

use motcua_schemas::Topic;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid Kafka configuration: {0}")]
    Config(String),
    #[error("Kafka: {context}")]
    Kafka {
        context: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn kafka_err(context: impl Into<String>) -> impl FnOnce(rdkafka::error::KafkaError) -> Error {
    kafka(context)
}

fn kafka(context: impl Into<String>) -> impl FnOnce(rdkafka::error::KafkaError) -> Error {
    let context = context.into();
    move |source| Error::Kafka { context, source }
}

/// The `[kafka]` section of a worker's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// `bootstrap.servers`: comma-separated host:port list.
    pub brokers: String,
    /// Prepended to every topic name (e.g. `qn.` for one province on a shared cluster).
    pub topic_prefix: String,
    /// Upper bound of librdkafka's prefetch queue per consumer, in KiB
    /// (`queued.max.messages.kbytes`). Keeps a worker's memory bounded under lag.
    pub max_prefetch_kib: u32,
    /// Consumer session timeout; a worker that stops heartbeating loses its partitions.
    pub session_timeout_ms: u32,
    /// Producer delivery timeout; a message not acknowledged by then is a fatal error
    /// (the worker exits without committing the offset, and a restart retries it).
    pub delivery_timeout_ms: u32,
    /// Producer batching delay.
    pub linger_ms: u32,
    /// Extra librdkafka properties for consumers (override ours; checked by librdkafka).
    pub consumer: BTreeMap<String, String>,
    /// Extra librdkafka properties for producers.
    pub producer: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: "localhost:9092".to_owned(),
            topic_prefix: String::new(),
            max_prefetch_kib: 16 * 1024,
            session_timeout_ms: 45_000,
            delivery_timeout_ms: 120_000,
            linger_ms: 5,
            consumer: BTreeMap::new(),
            producer: BTreeMap::new(),
        }
    }
}

/// Properties we set ourselves because the delivery guarantees depend on them; a user
/// override would silently break "no message lost".
const PROTECTED_CONSUMER_KEYS: &[&str] = &["enable.auto.offset.store", "group.id"];
const PROTECTED_PRODUCER_KEYS: &[&str] = &["enable.idempotence", "acks"];

impl KafkaConfig {
    pub fn with_brokers(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            ..Self::default()
        }
    }

    pub fn validate(&self) -> Result<()> {
        if self.brokers.trim().is_empty() {
            return Err(Error::Config(
                "kafka.brokers is empty; give host:port[,host:port…]".into(),
            ));
        }
        for b in self.brokers.split(',') {
            let b = b.trim();
            let ok = b
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
            if !ok {
                return Err(Error::Config(format!(
                    "kafka.brokers entry '{b}' is not host:port (e.g. localhost:9092)"
                )));
            }
        }
        if self.max_prefetch_kib < 1024 {
            return Err(Error::Config(format!(
                "kafka.max_prefetch_kib = {} is too small (minimum 1024)",
                self.max_prefetch_kib
            )));
        }
        if !self
            .topic_prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            return Err(Error::Config(format!(
                "kafka.topic_prefix '{}' may only contain ASCII letters, digits, '.', '_' and '-'",
                self.topic_prefix
            )));
        }
        for k in self.consumer.keys() {
            if PROTECTED_CONSUMER_KEYS.contains(&k.as_str()) {
                return Err(Error::Config(format!(
                    "kafka.consumer.\"{k}\" is managed by motcua (offsets are stored only after their effects are durable) and cannot be overridden"
                )));
            }
        }
        for k in self.producer.keys() {
            if PROTECTED_PRODUCER_KEYS.contains(&k.as_str()) {
                return Err(Error::Config(format!(
                    "kafka.producer.\"{k}\" is managed by motcua (idempotent, acks=all) and cannot be overridden"
                )));
            }
        }
        Ok(())
    }

    pub fn topic(&self, topic: Topic) -> String {
        format!("{}{}", self.topic_prefix, topic.name())
    }

    /// The consumer group of a stage (or simulator): `<topic prefix>motcua-<name>`, so
    /// deployments sharing a cluster under different prefixes never share a group.
    pub fn group(&self, name: &str) -> String {
        format!("{}motcua-{name}", self.topic_prefix)
    }

    /// Maps a full topic name back to our topic, if it is one of ours.
    pub fn topic_of(&self, name: &str) -> Option<Topic> {
        name.strip_prefix(&self.topic_prefix)?.parse().ok()
    }

    fn base(&self, client_id: &str) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("client.id", client_id)
            .set("broker.address.family", "v4");
        c
    }

    /// A consumer that never commits an offset we did not store, and stores offsets only
    /// when the runtime says their effects are durable.
    pub fn consumer_config(&self, group_id: &str, client_id: &str) -> ClientConfig {
        let mut c = self.base(client_id);
        c.set("group.id", group_id)
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("isolation.level", "read_committed")
            .set("session.timeout.ms", self.session_timeout_ms.to_string())
            .set("queued.max.messages.kbytes", self.max_prefetch_kib.to_string())
            .set("enable.partition.eof", "false");
        for (k, v) in &self.consumer {
            c.set(k, v);
        }
        c
    }

    /// An idempotent producer: no duplicates or reordering from retries, acks from all
    /// in-sync replicas.
    /// The largest message the producer sends (`message.max.bytes`, librdkafka's
    /// default 1,000,000 unless `kafka.producer` sets it).
    pub fn max_message_bytes(&self) -> usize {
        self.producer
            .get("message.max.bytes")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1_000_000)
    }

    pub fn producer_config(&self, client_id: &str) -> ClientConfig {
        let mut c = self.base(client_id);
        c.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", self.linger_ms.to_string())
            .set("message.timeout.ms", self.delivery_timeout_ms.to_string())
            .set("compression.type", "lz4");
        for (k, v) in &self.producer {
            c.set(k, v);
        }
        c
    }

    pub fn admin_client(&self) -> Result<AdminClient<DefaultClientContext>> {
        self.base("motcua-admin").create().map_err(kafka("create admin client"))
    }

    /// The largest message each topic of the flow accepts (`max.message.bytes`, the
    /// topic's own setting or the broker default it inherits), as the broker reports it.
    /// Topics the broker says nothing about are left out.
    pub async fn topic_message_limits(&self, timeout: Duration) -> Result<BTreeMap<String, usize>> {
        let admin = self.admin_client()?;
        let names: Vec<String> = Topic::ALL.iter().map(|t| self.topic(*t)).collect();
        let specs: Vec<ResourceSpecifier<'_>> = names.iter().map(|n| ResourceSpecifier::Topic(n)).collect();
        let opts = AdminOptions::new().request_timeout(Some(timeout));
        let results = admin
            .describe_configs(&specs, &opts)
            .await
            .map_err(kafka("describe topic configs"))?;
        let mut limits = BTreeMap::new();
        for (name, r) in names.iter().zip(results) {
            let Ok(resource) = r else { continue };
            if let Some(v) = resource
                .get("max.message.bytes")
                .and_then(|e| e.value.as_deref())
                .and_then(|v| v.parse().ok())
            {
                limits.insert(name.clone(), v);
            }
        }
        Ok(limits)
    }

    /// Creates every topic of the flow (existing topics are left as they are).
    /// Returns the names that were newly created.
    pub async fn create_topics(&self, partitions: i32, replication: i32) -> Result<Vec<String>> {
        if partitions < 1 || replication < 1 {
            return Err(Error::Config(format!(
                "partitions ({partitions}) and replication ({replication}) must be at least 1"
            )));
        }
        let admin = self.admin_client()?;
        let names: Vec<String> = Topic::ALL.iter().map(|t| self.topic(*t)).collect();
        let new: Vec<NewTopic<'_>> = names
            .iter()
            .map(|n| NewTopic::new(n, partitions, TopicReplication::Fixed(replication)))
            .collect();
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let results = admin.create_topics(&new, &opts).await.map_err(kafka("create topics"))?;
        let mut created = Vec::new();
        for r in results {
            match r {
                Ok(name) => created.push(name),
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => {
                    return Err(Error::Kafka {
                        context: format!("create topic {name}"),
                        source: rdkafka::error::KafkaError::AdminOp(code),
                    })
                }
            }
        }
        Ok(created)
    }
}

/// librdkafka's in-process Kafka-protocol broker: real TCP, real consumer groups and
/// idempotent producers, no durability. For `motcua demo` and fast tests only.
///
/// It is not `Send`: keep it on the task (or thread) that started it.
pub struct EmbeddedBroker {
    cluster: MockCluster<'static, DefaultProducerContext>,
    bootstrap: String,
}

impl std::fmt::Debug for EmbeddedBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedBroker")
            .field("bootstrap", &self.bootstrap)
            .finish()
    }
}

impl EmbeddedBroker {
    pub fn start(brokers: i32) -> Result<Self> {
        let cluster = MockCluster::new(brokers).map_err(kafka("start embedded broker"))?;
        let bootstrap = cluster.bootstrap_servers();
        Ok(Self { cluster, bootstrap })
    }

    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }

    /// Creates every topic of the flow. (The mock cluster does not implement the
    /// CreateTopics admin request; it has its own call.)
    pub fn create_topics(&self, kafka: &KafkaConfig, partitions: i32) -> Result<()> {
        for t in Topic::ALL {
            let name = kafka.topic(t);
            self.cluster
                .create_topic(&name, partitions, 1)
                .map_err(kafka_err(format!("create topic {name}")))?;
        }
        Ok(())
    }

    pub fn cluster(&self) -> &MockCluster<'static, DefaultProducerContext> {
        &self.cluster
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_explains_bad_values() {
        let mut c = KafkaConfig::with_brokers("localhost");
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("'localhost' is not host:port"), "{e}");
        c.brokers = "a:1,b:2".into();
        assert!(c.validate().is_ok());
        c.consumer.insert("enable.auto.offset.store".into(), "true".into());
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("cannot be overridden"), "{e}");
    }

    #[test]
    fn topic_prefix_maps_both_ways() {
        let c = KafkaConfig {
            topic_prefix: "qn.".into(),
            ..KafkaConfig::default()
        };
        assert_eq!(c.topic(Topic::Submitted), "qn.dossier.submitted");
        assert_eq!(c.topic_of("qn.dossier.dlq"), Some(Topic::DeadLetter));
        assert_eq!(c.topic_of("dossier.dlq"), None);
    }
}
