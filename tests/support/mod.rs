//! Helpers shared by the integration tests: real brokers (Apache Kafka, started by the test
//! script or by a test for a cluster of its own; librdkafka's in-process cluster where a
//! test injects faults only it offers), real PostgreSQL, and real clients.
#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod kafka;
pub mod processes;
mod stages;
#[allow(unused_imports)]
pub use kafka::{apache_kafka, fresh_prefix, kafka_env, suite_kafka, ClusterSpec, KafkaCluster, TestTopics};
#[allow(unused_imports)]
pub use stages::{spawn_stages, Running, StageSet};

use motcua_kafka::{EmbeddedBroker, KafkaConfig};
use motcua_schemas::{AnyEvent, Codec, Event, Topic};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};

/// 2025-11-25 09:00 in Hà Nội.
pub const NOW: i64 = 1_764_036_000_000;

/// librdkafka's in-process broker with every topic created: for the tests that inject
/// faults only it offers (refused requests, partition leaders moving on command).
pub fn mock_cluster(partitions: i32) -> (EmbeddedBroker, KafkaConfig) {
    let broker = EmbeddedBroker::start(1).expect("mock cluster starts");
    let kafka = KafkaConfig::with_brokers(broker.bootstrap_servers());
    broker.create_topics(&kafka, partitions).expect("topics");
    (broker, kafka)
}

pub fn producer(kafka: &KafkaConfig) -> FutureProducer {
    kafka
        .producer_config("motcua-test-producer")
        .create()
        .expect("producer")
}

pub async fn publish<E: Event>(kafka: &KafkaConfig, events: &[E]) {
    publish_with(&producer(kafka), kafka, events).await;
}

/// Publishes with a producer the caller keeps (one per portal, not one per call).
pub async fn publish_with<E: Event>(p: &FutureProducer, kafka: &KafkaConfig, events: &[E]) {
    let codec = Codec::embedded().expect("codec");
    let topic = kafka.topic(E::TOPIC);
    let mut pending = Vec::new();
    for e in events {
        let payload = codec.encode(e).expect("encode");
        let key = e.key().to_owned();
        pending.push(
            p.send_result(FutureRecord::to(&topic).key(&key).payload(&payload))
                .map_err(|(e, _)| e)
                .expect("enqueue"),
        );
        if pending.len() >= 5_000 {
            for f in pending.drain(..) {
                f.await.expect("delivery").expect("acknowledged");
            }
        }
    }
    for f in pending {
        f.await.expect("delivery").expect("acknowledged");
    }
}

/// Portals publishing `events` at a steady pace in the background: `per_tick` every
/// 100 ms (a tick missed while the brokers are away is made up later, not at once).
pub fn publish_steadily<E: Event + Send + Sync + 'static>(
    kafka: &KafkaConfig,
    events: Vec<E>,
    per_tick: usize,
) -> tokio::task::JoinHandle<()> {
    let kafka = kafka.clone();
    tokio::spawn(async move {
        let p = producer(&kafka);
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        for chunk in events.chunks(per_tick.max(1)) {
            tick.tick().await;
            publish_with(&p, &kafka, chunk).await;
        }
    })
}

/// Publishes events of any topics, each to its own topic, keyed by its dossier.
pub async fn publish_log(kafka: &KafkaConfig, events: &[AnyEvent]) {
    let codec = Codec::embedded().expect("codec");
    let p = producer(kafka);
    let mut pending = Vec::new();
    for e in events {
        let mut payload = Vec::new();
        e.encode(&codec, &mut payload).expect("encode");
        let topic = kafka.topic(e.topic());
        pending.push(
            p.send_result(FutureRecord::to(&topic).key(e.key()).payload(&payload))
                .map_err(|(e, _)| e)
                .expect("enqueue"),
        );
    }
    for f in pending {
        f.await.expect("delivery").expect("acknowledged");
    }
}

pub async fn publish_raw(kafka: &KafkaConfig, topic: Topic, key: &str, payload: Option<&[u8]>) {
    let p = producer(kafka);
    let topic = kafka.topic(topic);
    let mut record = FutureRecord::<str, [u8]>::to(&topic).key(key);
    if let Some(b) = payload {
        record = record.payload(b);
    }
    p.send(record, Duration::from_secs(10)).await.expect("raw delivery");
}

/// A message read back from a topic.
#[derive(Debug, Clone)]
pub struct Read {
    pub topic: Topic,
    pub key: Option<String>,
    pub payload: Vec<u8>,
    pub headers: HashMap<String, String>,
    pub event: Option<AnyEvent>,
}

impl Read {
    /// A message as read: topic, key, headers, the event when it decodes.
    fn of(kafka: &KafkaConfig, codec: &Codec, m: &rdkafka::message::BorrowedMessage<'_>) -> Self {
        let topic = kafka.topic_of(m.topic()).expect("one of our topics");
        let payload = m.payload().unwrap_or_default().to_vec();
        let headers = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        (
                            h.key.to_owned(),
                            String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        Read {
            topic,
            key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
            event: AnyEvent::decode(codec, topic, &payload).ok(),
            payload,
            headers,
        }
    }
}

/// Reads `topics` from the beginning (fresh consumer group) until `done` says so or the
/// timeout passes; returns everything read.
pub async fn read_until(
    kafka: &KafkaConfig,
    topics: &[Topic],
    timeout: Duration,
    mut done: impl FnMut(&[Read]) -> bool,
) -> Vec<Read> {
    let codec = Codec::embedded().expect("codec");
    let group = format!("motcua-test-reader-{}", uuid::Uuid::new_v4());
    let consumer: StreamConsumer = kafka
        .consumer_config(&group, "motcua-test-reader")
        .create()
        .expect("consumer");
    let names: Vec<String> = topics.iter().map(|t| kafka.topic(*t)).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    consumer.subscribe(&refs).expect("subscribe");
    let mut out = Vec::new();
    let deadline = Instant::now() + timeout;
    while !done(&out) {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            break;
        };
        let m = match tokio::time::timeout(left, consumer.recv()).await {
            Err(_) => break,
            Ok(m) => m.expect("consume"),
        };
        out.push(Read::of(kafka, &codec, &m));
    }
    out
}

pub fn motcua() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_motcua"));
    c.env("RUST_LOG", "warn").env("MOTCUA_METRICS__LISTEN", "");
    c
}

/// A `motcua run intake` worker as a real child process.
pub fn spawn_intake(kafka: &KafkaConfig, database_url: &str, instance: &str) -> Child {
    spawn_intake_with(kafka, database_url, instance, &[])
}

pub fn spawn_intake_with(kafka: &KafkaConfig, database_url: &str, instance: &str, env: &[(&str, &str)]) -> Child {
    motcua()
        .args(["run", "intake"])
        .envs(env.iter().copied())
        .envs(kafka_env(kafka))
        .env("MOTCUA_DATABASE__URL", database_url)
        .env("MOTCUA_RUNTIME__INSTANCE_ID", instance)
        // Short session timeout: a killed worker's partitions move on quickly.
        .env("MOTCUA_KAFKA__SESSION_TIMEOUT_MS", "6000")
        .env("MOTCUA_RUNTIME__DRAIN_TIMEOUT_MS", "5000")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn motcua run intake")
}

/// A plain HTTP/1.0 GET on localhost; returns the body.
pub fn http_get(port: u16, path: &str) -> String {
    http_request(port, path, "")
}

/// A plain GET that waits (up to `patience`) for the server to listen; returns the
/// status code and the body.
pub fn http_get_status(port: u16, path: &str, patience: Duration) -> (u16, String) {
    use std::io::{Read as _, Write as _};
    let deadline = Instant::now() + patience;
    let mut s = loop {
        match std::net::TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => break s,
            Err(e) if Instant::now() > deadline => panic!("nothing listens on {port}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").expect("request");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("response");
    let code = resp
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {resp:?}"));
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (code, body)
}

/// GET with an operator's API key.
pub fn http_get_with(port: u16, path: &str, key: &str) -> String {
    http_request(port, path, &format!("Authorization: Bearer {key}\r\n"))
}

fn http_request(port: u16, path: &str, headers: &str) -> String {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n{headers}\r\n").expect("request");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("response");
    resp.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

pub fn sigterm(child: &Child) {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
}

pub fn sigint(child: &Child) {
    let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
}

pub fn sigkill(child: &mut Child) {
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
}

/// Waits for a child to exit, at most `timeout`.
pub fn wait_exit(child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("process {} did not exit within {timeout:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A TCP proxy in front of a real server, to inject network faults: `cut` closes every
/// connection and refuses new ones until `restore`.
pub struct FaultyProxy {
    pub url: String,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    conns: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl FaultyProxy {
    /// Proxies the host:port of a postgres:// URL; `url` is the same URL through the proxy.
    pub async fn start(upstream_url: &str) -> Self {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::{Arc, Mutex};
        let after_scheme = upstream_url.split("://").nth(1).expect("url");
        let host_port = after_scheme
            .split('@')
            .next_back()
            .expect("host")
            .split('/')
            .next()
            .expect("host");
        let upstream = host_port.to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let url = upstream_url.replacen(host_port, &format!("127.0.0.1:{port}"), 1);
        let up = Arc::new(AtomicBool::new(true));
        let conns: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let (up2, conns2) = (up.clone(), conns.clone());
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                if !up2.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let upstream = upstream.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                conns2.lock().expect("lock").push(task.abort_handle());
            }
        });
        Self { url, up, conns, accept }
    }

    pub fn cut(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        for c in self.conns.lock().expect("lock").drain(..) {
            c.abort();
        }
    }

    pub fn restore(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for FaultyProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

/// Consumes topics in the background from the beginning, keeping everything read.
///
/// It reads every partition by assignment, not as a group member: a reader that wants
/// everything from the start needs no coordinator, and a group's own troubles (its
/// coordinator lost with a broker, a rebalance) must not pass for the pipeline's. (As a
/// group member it saw, about one run in ten, fewer dossiers settle than a checker
/// reading the same topics afterwards.)
pub struct Collector {
    pub seen: std::sync::Arc<std::sync::Mutex<Vec<Read>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Collector {
    pub fn start(kafka: &KafkaConfig, topics: &[Topic]) -> Self {
        let seen: std::sync::Arc<std::sync::Mutex<Vec<Read>>> = Default::default();
        let (kafka, topics, sink) = (kafka.clone(), topics.to_vec(), seen.clone());
        let task = tokio::spawn(async move {
            let codec = Codec::embedded().expect("codec");
            let group = format!("motcua-test-collector-{}", uuid::Uuid::new_v4());
            let consumer: StreamConsumer = kafka
                .consumer_config(&group, "motcua-test-collector")
                .create()
                .expect("consumer");
            let names: Vec<String> = topics.iter().map(|t| kafka.topic(*t)).collect();
            let assignment = every_partition(&consumer, &names).await;
            consumer.assign(&assignment).expect("assign");
            loop {
                // A broker lost for a while is reported and retried by librdkafka.
                let Ok(m) = consumer.recv().await else { continue };
                let read = Read::of(&kafka, &codec, &m);
                sink.lock().expect("lock").push(read);
            }
        });
        Self { seen, task }
    }

    pub fn count(&self, topic: Topic) -> usize {
        self.seen
            .lock()
            .expect("lock")
            .iter()
            .filter(|r| r.topic == topic)
            .count()
    }

    /// Waits until at least `n` messages of `topic` were read, at most `timeout`.
    pub async fn wait_count(&self, topic: Topic, n: usize, timeout: Duration) -> bool {
        self.wait_for(timeout, |seen| seen.iter().filter(|x| x.topic == topic).count() >= n)
            .await
    }

    /// Waits until `done` holds, at most `timeout`; returns whether it did.
    pub async fn wait_for(&self, timeout: Duration, mut done: impl FnMut(&[Read]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if done(&self.seen.lock().expect("lock")) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn snapshot(&self) -> Vec<Read> {
        self.seen.lock().expect("lock").clone()
    }
}

/// Every partition of `topics`, from the beginning; waits (at most a minute) for topics
/// the broker does not list yet.
async fn every_partition(consumer: &StreamConsumer, topics: &[String]) -> rdkafka::TopicPartitionList {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut list = rdkafka::TopicPartitionList::new();
        let mut missing = Vec::new();
        for topic in topics {
            let partitions = consumer
                .fetch_metadata(Some(topic), Duration::from_secs(5))
                .ok()
                .and_then(|m| m.topics().first().map(|t| t.partitions().len()))
                .unwrap_or(0);
            if partitions == 0 {
                missing.push(topic.as_str());
            }
            for p in 0..partitions as i32 {
                list.add_partition_offset(topic, p, rdkafka::Offset::Beginning)
                    .expect("offset");
            }
        }
        if missing.is_empty() {
            return list;
        }
        assert!(Instant::now() < deadline, "topics never listed: {missing:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A test certificate authority made with the OpenSSL command-line tool: `ca.pem`, a
/// server certificate for `localhost` and 127.0.0.1 signed by it (`server.pem`,
/// `server.key`), and a second CA nobody's certificate chains to (`other-ca.pem`).
pub struct TestPki {
    pub dir: tempfile::TempDir,
}

impl TestPki {
    pub fn create() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let run = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .output()
                .expect("the openssl command (tests/run.sh installs it)");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
        for (ca, key) in [("ca.pem", "ca.key"), ("other-ca.pem", "other-ca.key")] {
            let mut a = vec!["req", "-x509", "-days", "2", "-subj", "/CN=motcua test CA"];
            a.extend(ec);
            a.extend(["-keyout", key, "-out", ca]);
            run(&a);
        }
        let mut a = vec![
            "req",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ];
        a.extend(ec);
        run(&a);
        std::fs::write(dir.path().join("ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n").expect("ext");
        run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "ext",
            "-out",
            "server.pem",
        ]);
        // A client certificate, for servers that want mutual TLS.
        let mut a = vec![
            "req",
            "-subj",
            "/CN=motcua-verify",
            "-keyout",
            "client.key",
            "-out",
            "client.csr",
        ];
        a.extend(ec);
        run(&a);
        // An extension makes it X.509 v3 (TLS libraries refuse v1 certificates).
        std::fs::write(dir.path().join("ext-client"), "extendedKeyUsage=clientAuth\n").expect("ext");
        let sign = "x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile ext-client -out client.pem";
        run(&sign.split(' ').collect::<Vec<_>>());
        Self { dir }
    }

    pub fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

/// stunnel (a real TLS terminator) accepting TLS on `accept_port` with the test PKI's
/// server certificate and forwarding plaintext to `upstream`; killed on drop.
pub struct Stunnel {
    child: Child,
    _config: tempfile::NamedTempFile,
}

impl Stunnel {
    pub fn start(pki: &TestPki, accept_port: u16, upstream: &str) -> Self {
        Self::start_with(pki, accept_port, upstream, false)
    }

    /// With `client_certificates`, a client must present a certificate from the test CA.
    pub fn start_with(pki: &TestPki, accept_port: u16, upstream: &str, client_certificates: bool) -> Self {
        use std::io::Write as _;
        let bin = std::env::var("MOTCUA_TEST_STUNNEL").unwrap_or_else(|_| "stunnel4".to_owned());
        let mut config = tempfile::NamedTempFile::new().expect("config");
        write!(
            config,
            "foreground = yes\npid =\n[tls]\naccept = 127.0.0.1:{accept_port}\nconnect = {upstream}\ncert = {}\nkey = {}\n",
            pki.path("server.pem"),
            pki.path("server.key")
        )
        .expect("write config");
        if client_certificates {
            writeln!(config, "verify = 2\nCAfile = {}", pki.path("ca.pem")).expect("write config");
        }
        let child = Command::new(&bin)
            .arg(config.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start stunnel ({bin}): {e}. Run tests/run.sh, which installs it"));
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", accept_port)).is_err() {
            assert!(Instant::now() < deadline, "stunnel did not listen on {accept_port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, _config: config }
    }
}

impl Drop for Stunnel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Confluent-compatible Schema Registry on a free port, killed on drop.
#[allow(unused_imports)]
pub use motcua_schema_registry::testing::RegistryServer as SchemaRegistryServer;

/// The Python interpreter with the third-party clients of tests/python/requirements.txt
/// (tests/run.sh makes the virtualenv).
pub fn python() -> Command {
    let py = std::env::var("MOTCUA_TEST_PYTHON")
        .unwrap_or_else(|_| panic!("MOTCUA_TEST_PYTHON is not set: run tests/run.sh (it installs the Python clients)"));
    Command::new(py)
}

/// Messages a topic holds: the sum over its partitions of high minus low watermark.
pub fn topic_message_count(kafka: &KafkaConfig, topic: &str) -> i64 {
    use rdkafka::consumer::BaseConsumer;
    let consumer: BaseConsumer = kafka
        .consumer_config("motcua-test-watermarks", "motcua-test-watermarks")
        .create()
        .expect("consumer");
    let meta = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let mut n = 0;
    for t in meta.topics() {
        for p in t.partitions() {
            let (low, high) = consumer
                .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
                .expect("watermarks");
            n += high - low;
        }
    }
    n
}
