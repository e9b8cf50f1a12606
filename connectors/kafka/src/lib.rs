//! Kafka client configuration for motcua workers, topic administration, and the embedded
//! in-process broker (librdkafka's mock cluster) used by `motcua demo` and the fast tests.
//!
//! Every Kafka byte goes through librdkafka over TCP, whichever broker is on the other side.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use motcua_schemas::Topic;
use motcua_security::{SecretSource, TlsFiles};
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
    #[error("invalid Kafka configuration: {0}")]
    Security(#[from] motcua_security::Error),
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
    /// `[kafka.tls]`: encrypt the broker connections and verify the brokers' certificates
    /// (an empty section trusts the system's CAs). Absent: plaintext.
    pub tls: Option<KafkaTls>,
    /// `[kafka.sasl]`: authenticate with a user name and password (needs `[kafka.tls]`).
    pub sasl: Option<KafkaSasl>,
}

/// TLS to the brokers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaTls {
    /// PEM file of the CA(s) that signed the brokers' certificates; none: the system's.
    pub ca_file: Option<PathBuf>,
    /// Our certificate (PEM), for brokers that authenticate clients by certificate.
    pub cert_file: Option<PathBuf>,
    /// Its private key (PEM).
    pub key_file: Option<PathBuf>,
    /// The key's passphrase, from a file or an environment variable.
    pub key_password_file: Option<PathBuf>,
    pub key_password_env: Option<String>,
    /// Check that the broker's certificate names the host we connect to. Leave it on.
    pub verify_hostname: bool,
}

impl Default for KafkaTls {
    fn default() -> Self {
        Self {
            ca_file: None,
            cert_file: None,
            key_file: None,
            key_password_file: None,
            key_password_env: None,
            verify_hostname: true,
        }
    }
}

impl KafkaTls {
    fn files(&self) -> TlsFiles {
        TlsFiles {
            ca_file: self.ca_file.clone(),
            cert_file: self.cert_file.clone(),
            key_file: self.key_file.clone(),
        }
    }

    fn key_password(&self) -> SecretSource {
        SecretSource::new(self.key_password_file.clone(), self.key_password_env.clone())
    }
}

/// SASL authentication to the brokers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSasl {
    pub mechanism: SaslMechanism,
    pub username: String,
    /// The password, from a file (a mounted secret) or an environment variable; never in
    /// the configuration file.
    pub password_file: Option<PathBuf>,
    pub password_env: Option<String>,
}

impl KafkaSasl {
    fn password(&self) -> SecretSource {
        SecretSource::new(self.password_file.clone(), self.password_env.clone())
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
pub enum SaslMechanism {
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
    #[serde(rename = "PLAIN")]
    Plain,
}

impl SaslMechanism {
    fn name(self) -> &'static str {
        match self {
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
            SaslMechanism::Plain => "PLAIN",
        }
    }
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
            tls: None,
            sasl: None,
        }
    }
}

/// Properties we set ourselves because the delivery guarantees depend on them; a user
/// override would silently break "no message lost".
const PROTECTED_CONSUMER_KEYS: &[&str] = &["enable.auto.offset.store", "group.id"];
const PROTECTED_PRODUCER_KEYS: &[&str] = &["enable.idempotence", "acks", "transactional.id"];
/// Connection security comes from `[kafka.tls]` and `[kafka.sasl]` only: an override could
/// silently turn encryption or certificate checks off, or put a password in the file.
const SECURITY_KEY_PREFIXES: &[&str] = &["security.protocol", "ssl.", "sasl.", "enable.ssl."];

/// The scheme a `kafka.brokers` entry may carry (`ssl://host:9093`), as Kafka names its
/// listeners; without one, the entry follows `[kafka.tls]`.
fn broker_scheme(entry: &str) -> Option<&str> {
    entry.split_once("://").map(|(scheme, _)| scheme)
}

fn strip_scheme(entry: &str) -> &str {
    entry.split_once("://").map_or(entry, |(_, rest)| rest)
}

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
        for entry in self.brokers.split(',') {
            let entry = entry.trim();
            match broker_scheme(entry).map(str::to_ascii_lowercase).as_deref() {
                None => {}
                Some("ssl" | "sasl_ssl") if self.tls.is_some() => {}
                Some("ssl" | "sasl_ssl") => {
                    return Err(Error::Config(format!(
                        "kafka.brokers entry '{entry}' is a TLS listener, but [kafka.tls] is not configured (an empty [kafka.tls] section trusts the system's CAs)"
                    )))
                }
                Some("plaintext" | "sasl_plaintext" | "tcp") if self.tls.is_some() => {
                    return Err(Error::Config(format!(
                        "kafka.brokers entry '{entry}' is a plaintext listener, but [kafka.tls] is configured: refusing to connect without encryption"
                    )))
                }
                Some("plaintext" | "tcp") => {}
                Some(other) => {
                    return Err(Error::Config(format!(
                        "kafka.brokers entry '{entry}': unknown scheme '{other}' (use ssl:// or plaintext://, or none)"
                    )))
                }
            }
            let b = strip_scheme(entry);
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
                    "kafka.producer.\"{k}\" is managed by motcua (idempotent, acks=all, not transactional) and cannot be overridden"
                )));
            }
        }
        for (section, k) in self
            .consumer
            .keys()
            .map(|k| ("consumer", k))
            .chain(self.producer.keys().map(|k| ("producer", k)))
        {
            if SECURITY_KEY_PREFIXES.iter().any(|p| k.starts_with(p)) {
                return Err(Error::Config(format!(
                    "kafka.{section}.\"{k}\": connection security is configured in [kafka.tls] and [kafka.sasl], not by librdkafka properties"
                )));
            }
        }
        if let Some(tls) = &self.tls {
            tls.files().validate("kafka.tls")?;
            tls.key_password().read("kafka.tls.key_password")?;
        }
        if let Some(sasl) = &self.sasl {
            if self.tls.is_none() {
                return Err(Error::Config(
                    "[kafka.sasl] without [kafka.tls] would send credentials over an unencrypted connection; configure [kafka.tls]".into(),
                ));
            }
            if sasl.username.trim().is_empty() {
                return Err(Error::Config("kafka.sasl.username is empty".into()));
            }
            if sasl.password().read("kafka.sasl.password")?.is_none() {
                return Err(Error::Config(
                    "kafka.sasl needs password_file or password_env (the password is never written in the configuration file)".into(),
                ));
            }
        }
        Ok(())
    }

    /// The bootstrap list as librdkafka takes it (schemes removed).
    fn bootstrap_servers(&self) -> String {
        self.brokers
            .split(',')
            .map(|e| strip_scheme(e.trim()))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `security.protocol` and the TLS and SASL properties. Secrets are read here, when a
    /// client is made (and checked once by [`KafkaConfig::validate`] at start-up).
    fn security(&self, c: &mut ClientConfig) {
        let protocol = match (&self.tls, &self.sasl) {
            (None, _) => "plaintext",
            (Some(_), None) => "ssl",
            (Some(_), Some(_)) => "sasl_ssl",
        };
        c.set("security.protocol", protocol);
        if let Some(tls) = &self.tls {
            let path = |p: &PathBuf| p.display().to_string();
            if let Some(ca) = &tls.ca_file {
                c.set("ssl.ca.location", path(ca));
            }
            if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
                c.set("ssl.certificate.location", path(cert))
                    .set("ssl.key.location", path(key));
            }
            if let Ok(Some(pw)) = tls.key_password().read("kafka.tls.key_password") {
                c.set("ssl.key.password", pw.expose());
            }
            c.set("enable.ssl.certificate.verification", "true").set(
                "ssl.endpoint.identification.algorithm",
                if tls.verify_hostname { "https" } else { "none" },
            );
        }
        if let Some(sasl) = &self.sasl {
            c.set("sasl.mechanism", sasl.mechanism.name())
                .set("sasl.username", &sasl.username);
            if let Ok(Some(pw)) = sasl.password().read("kafka.sasl.password") {
                c.set("sasl.password", pw.expose());
            }
        }
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
        c.set("bootstrap.servers", self.bootstrap_servers())
            .set("client.id", client_id)
            .set("broker.address.family", "v4");
        self.security(&mut c);
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

    /// The largest message the producer sends (`message.max.bytes`, librdkafka's
    /// default 1,000,000 unless `kafka.producer` sets it).
    pub fn max_message_bytes(&self) -> usize {
        self.producer
            .get("message.max.bytes")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1_000_000)
    }

    /// An idempotent producer: no duplicates or reordering from retries, acks from all
    /// in-sync replicas.
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
        // Topics that exist already are left alone without asking to create them: a
        // cluster whose topics an administrator made may not grant CreateTopics at all.
        let existing: Vec<String> = admin
            .inner()
            .fetch_metadata(None, Duration::from_secs(30))
            .map_err(kafka("list topics"))?
            .topics()
            .iter()
            .filter(|t| t.error().is_none())
            .map(|t| t.name().to_owned())
            .collect();
        let names: Vec<String> = Topic::ALL
            .iter()
            .map(|t| self.topic(*t))
            .filter(|n| !existing.contains(n))
            .collect();
        if names.is_empty() {
            return Ok(Vec::new());
        }
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
        c.consumer.clear();
        // A transactional id in the file would make every worker share one and fence the others.
        c.producer.insert("transactional.id".into(), "x".into());
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("kafka.producer.\"transactional.id\" is managed by motcua"),
            "{e}"
        );
    }

    /// A CA file (content is not parsed here, only that it is PEM) and a password file.
    fn secured(dir: &std::path::Path) -> KafkaConfig {
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n").expect("ca");
        let pw = dir.join("password");
        std::fs::write(&pw, "s3cret-password\n").expect("password");
        let mut c = KafkaConfig::with_brokers("broker-1:9093");
        c.tls = Some(KafkaTls {
            ca_file: Some(ca),
            ..KafkaTls::default()
        });
        c.sasl = Some(KafkaSasl {
            mechanism: SaslMechanism::ScramSha512,
            username: "motcua-intake".into(),
            password_file: Some(pw),
            password_env: None,
        });
        c
    }

    #[test]
    fn tls_and_sasl_become_librdkafka_properties_and_the_build_supports_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = secured(dir.path());
        c.validate().expect("valid");
        let cc = c.producer_config("test");
        assert_eq!(cc.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(cc.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(cc.get("sasl.password"), Some("s3cret-password"));
        assert_eq!(cc.get("ssl.endpoint.identification.algorithm"), Some("https"));
        assert!(cc.get("ssl.ca.location").is_some_and(|p| p.ends_with("ca.pem")));
        // librdkafka refuses at creation a mechanism or protocol its build lacks (the
        // system's CAs here: the file above is not a real certificate).
        let mut system_cas = c.clone();
        system_cas.tls = Some(KafkaTls::default());
        let made: std::result::Result<rdkafka::producer::BaseProducer, _> = system_cas.producer_config("test").create();
        assert!(made.is_ok(), "this build has TLS and SCRAM: {:?}", made.err());
        // Neither our configuration nor librdkafka's shows the password.
        assert!(!format!("{c:?} {cc:?}").contains("s3cret-password"));
    }

    #[test]
    fn insecure_combinations_are_refused_with_a_reason() {
        let dir = tempfile::tempdir().expect("tempdir");
        let refused = |c: KafkaConfig, expected: &str| {
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(expected), "{e}");
        };
        let mut c = secured(dir.path());
        c.brokers = "plaintext://broker-1:9092".into();
        refused(c, "refusing to connect without encryption");
        let mut c = secured(dir.path());
        c.tls = None;
        refused(c, "without [kafka.tls]");
        let mut c = secured(dir.path());
        c.sasl.as_mut().expect("sasl").password_file = None;
        refused(c, "needs password_file or password_env");
        let mut c = secured(dir.path());
        c.consumer.insert("security.protocol".into(), "plaintext".into());
        refused(c, "configured in [kafka.tls]");
        let mut c = KafkaConfig::with_brokers("ssl://broker-1:9093");
        refused(c.clone(), "[kafka.tls] is not configured");
        c.tls = Some(KafkaTls::default());
        c.validate().expect("an empty [kafka.tls] trusts the system's CAs");
        assert_eq!(c.producer_config("t").get("bootstrap.servers"), Some("broker-1:9093"));
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
