//! Apache Kafka for the tests: the suite's broker (`tests/run.sh` starts one and names it
//! in `MOTCUA_TEST_KAFKA`), shared by isolating each test under a topic prefix of its own
//! (its consumer groups follow the prefix), and clusters of a test's own (several nodes,
//! TLS, SASL, ACLs) started through `tests/kafka/kafka.sh`, the one way a broker starts.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use motcua_kafka::KafkaConfig;
use motcua_schemas::Topic;

/// This test's topics on the suite's broker, deleted when dropped.
pub struct TestTopics {
    kafka: KafkaConfig,
}

/// The suite's Apache Kafka, with every topic of the flow created under a fresh prefix
/// (`partitions` each).
pub async fn apache_kafka(partitions: i32) -> (TestTopics, KafkaConfig) {
    let (topics, kafka) = suite_kafka();
    kafka
        .create_topics(partitions, 1)
        .await
        .unwrap_or_else(|e| panic!("create the test's topics on {}: {e}", kafka.brokers));
    (topics, kafka)
}

/// The suite's Apache Kafka under a fresh topic prefix, no topic created yet (for tests
/// that create them as an operator would). Panics with instructions when no broker is
/// configured: these tests must run against the real broker, not be skipped.
pub fn suite_kafka() -> (TestTopics, KafkaConfig) {
    let brokers = std::env::var("MOTCUA_TEST_KAFKA").unwrap_or_else(|_| {
        panic!(
            "MOTCUA_TEST_KAFKA is not set: this test needs Apache Kafka. Run `tests/run.sh` \
             (starts one) or point the variable at a broker's host:port"
        )
    });
    let mut kafka = KafkaConfig::with_brokers(brokers);
    kafka.topic_prefix = fresh_prefix();
    (TestTopics { kafka: kafka.clone() }, kafka)
}

/// A topic prefix no other test uses: `t<12 hex digits>.`.
pub fn fresh_prefix() -> String {
    format!("t{}.", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

impl Drop for TestTopics {
    fn drop(&mut self) {
        // Keeps the shared broker small over a whole suite; on a thread of its own, as a
        // test's runtime may be the one dropping this.
        let kafka = self.kafka.clone();
        let _ = std::thread::spawn(move || {
            let Ok(admin) = kafka.admin_client() else { return };
            let names: Vec<String> = Topic::ALL.iter().map(|t| kafka.topic(*t)).collect();
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            let opts = rdkafka::admin::AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            let _ = rt.block_on(admin.delete_topics(&refs, &opts));
        })
        .join();
    }
}

/// The environment that points a `motcua` child process at `kafka`'s brokers and topics.
pub fn kafka_env(kafka: &KafkaConfig) -> Vec<(&'static str, String)> {
    vec![
        ("MOTCUA_KAFKA__BROKERS", kafka.brokers.clone()),
        ("MOTCUA_KAFKA__TOPIC_PREFIX", kafka.topic_prefix.clone()),
    ]
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/kafka/kafka.sh")
}

fn run_script(args: &[&str], heap: &str) {
    let out = Command::new("bash")
        .arg(script())
        .args(args)
        .env("KAFKA_TEST_HEAP", heap)
        .output()
        .unwrap_or_else(|e| panic!("run tests/kafka/kafka.sh: {e}"));
    assert!(
        out.status.success(),
        "tests/kafka/kafka.sh {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One node of a cluster of the test's own: its folder, its client listener's port and the
/// port of the plaintext listener the nodes use among themselves.
pub struct Node {
    pub id: u32,
    pub dir: PathBuf,
    pub port: u16,
    pub internal_port: u16,
}

/// How a cluster of the test's own is set up.
pub struct ClusterSpec {
    pub nodes: u32,
    /// Properties every node gets besides the cluster's own (listeners, quorum, folders).
    pub properties: Vec<(String, String)>,
    /// The client listener's name and security protocol (`PLAINTEXT`, `SSL`, `SASL_SSL`);
    /// the nodes talk to each other on a plaintext listener of their own.
    pub client_protocol: &'static str,
    /// `--add-scram` arguments for the storage format (SCRAM users exist from the start).
    pub scram_users: Vec<String>,
    /// Heap per node (`KAFKA_TEST_HEAP`), e.g. "384m".
    pub heap: &'static str,
}

impl ClusterSpec {
    /// The client listener speaks TLS with the test CA's `localhost` certificate (PEM, as
    /// the test made it); `sasl` adds SCRAM-SHA-512 on top of it.
    pub fn tls(pki: &super::TestPki, sasl: bool) -> Self {
        let key = std::fs::read_to_string(pki.path("server.key")).expect("server key");
        let cert = std::fs::read_to_string(pki.path("server.pem")).expect("server certificate");
        let keystore = pki.path("kafka-keystore.pem");
        std::fs::write(&keystore, format!("{key}{cert}")).expect("keystore");
        let mut properties = vec![
            ("ssl.keystore.type".to_owned(), "PEM".to_owned()),
            ("ssl.keystore.location".to_owned(), keystore),
        ];
        if sasl {
            properties.extend([
                ("sasl.enabled.mechanisms".to_owned(), "SCRAM-SHA-512".to_owned()),
                // The users live in the cluster's metadata (created at format time).
                (
                    "listener.name.client.scram-sha-512.sasl.jaas.config".to_owned(),
                    "org.apache.kafka.common.security.scram.ScramLoginModule required;".to_owned(),
                ),
            ]);
        }
        Self {
            properties,
            client_protocol: if sasl { "SASL_SSL" } else { "SSL" },
            ..Self::default()
        }
    }
}

impl Default for ClusterSpec {
    fn default() -> Self {
        Self {
            nodes: 1,
            properties: Vec::new(),
            client_protocol: "PLAINTEXT",
            scram_users: Vec::new(),
            heap: "384m",
        }
    }
}

/// Apache Kafka nodes of a test's own (each broker and controller), stopped on drop; their
/// logs are printed if the test is failing then.
pub struct KafkaCluster {
    _dir: tempfile::TempDir,
    pub nodes: Vec<Node>,
    heap: &'static str,
}

impl KafkaCluster {
    pub fn start(spec: ClusterSpec) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let ports: Vec<(u16, u16, u16)> = (0..spec.nodes)
            .map(|_| (super::free_port(), super::free_port(), super::free_port()))
            .collect();
        let voters = ports
            .iter()
            .enumerate()
            .map(|(i, (_, _, controller))| format!("{}@127.0.0.1:{controller}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let mut nodes = Vec::new();
        for (i, (client, internal, controller)) in ports.iter().enumerate() {
            let id = i as u32 + 1;
            let node_dir = dir.path().join(format!("node-{id}"));
            std::fs::create_dir_all(&node_dir).expect("node dir");
            let protocol = spec.client_protocol;
            let mut props = vec![
                ("process.roles".to_owned(), "broker,controller".to_owned()),
                ("node.id".to_owned(), id.to_string()),
                ("controller.quorum.voters".to_owned(), voters.clone()),
                (
                    "listeners".to_owned(),
                    format!("CLIENT://127.0.0.1:{client},INTERNAL://127.0.0.1:{internal},CONTROLLER://127.0.0.1:{controller}"),
                ),
                (
                    "advertised.listeners".to_owned(),
                    format!("CLIENT://localhost:{client},INTERNAL://127.0.0.1:{internal}"),
                ),
                (
                    "listener.security.protocol.map".to_owned(),
                    format!("CLIENT:{protocol},INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT"),
                ),
                ("controller.listener.names".to_owned(), "CONTROLLER".to_owned()),
                ("inter.broker.listener.name".to_owned(), "INTERNAL".to_owned()),
                ("log.dirs".to_owned(), node_dir.join("data").display().to_string()),
                ("group.initial.rebalance.delay.ms".to_owned(), "0".to_owned()),
                ("log.segment.bytes".to_owned(), "16777216".to_owned()),
                // Test events carry their own times (2025 dates, simulated days ahead):
                // kept and accepted whatever their age.
                ("log.retention.ms".to_owned(), "-1".to_owned()),
                ("log.message.timestamp.after.max.ms".to_owned(), i64::MAX.to_string()),
            ];
            let replication = spec.nodes.min(3).to_string();
            let min_isr = if spec.nodes >= 3 { "2" } else { "1" };
            props.extend([
                ("offsets.topic.replication.factor".to_owned(), replication.clone()),
                ("offsets.topic.num.partitions".to_owned(), "8".to_owned()),
                ("transaction.state.log.replication.factor".to_owned(), replication),
                ("transaction.state.log.min.isr".to_owned(), min_isr.to_owned()),
                ("transaction.state.log.num.partitions".to_owned(), "8".to_owned()),
            ]);
            props.extend(spec.properties.iter().cloned());
            let text: String = props.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
            std::fs::write(node_dir.join("server.properties"), text).expect("server.properties");
            if !spec.scram_users.is_empty() {
                std::fs::write(node_dir.join("format-args"), spec.scram_users.join("\n")).expect("format-args");
            }
            nodes.push(Node {
                id,
                dir: node_dir,
                port: *client,
                internal_port: *internal,
            });
        }
        let cluster = Self {
            _dir: dir,
            nodes,
            heap: spec.heap,
        };
        cluster.restart_all();
        cluster
    }

    fn script(&self, args: &[&str]) {
        run_script(args, self.heap);
    }

    /// The bootstrap list, as `kafka.brokers` takes it.
    pub fn bootstrap(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("localhost:{}", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn pid(&self, id: u32) -> String {
        std::fs::read_to_string(self.node(id).dir.join("pid"))
            .expect("pid file")
            .trim()
            .to_owned()
    }

    pub fn node(&self, id: u32) -> &Node {
        self.nodes.iter().find(|n| n.id == id).expect("node id")
    }

    /// SIGKILLs node `id` (no clean shutdown: its partitions' leadership moves on only
    /// when the controllers notice).
    pub fn kill(&self, id: u32) {
        let _ = Command::new("kill").args(["-KILL", &self.pid(id)]).status();
        let pid = self.pid(id);
        while Path::new(&format!("/proc/{pid}")).exists() && !is_zombie(&pid) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops node `id` cleanly (SIGTERM, waited for).
    pub fn stop(&self, id: u32) {
        self.script(&["stop", &self.node(id).dir.display().to_string()]);
    }

    /// Starts node `id` again (after `kill` or `stop`) and waits until it serves.
    pub fn restart(&self, id: u32) {
        let dir = self.node(id).dir.display().to_string();
        self.script(&["start", &dir]);
        self.script(&["wait", &dir, "180"]);
    }

    /// Starts every node again (after they were all killed) and waits until they serve:
    /// started together, since none serves before a majority of controllers is back.
    pub fn restart_all(&self) {
        for n in &self.nodes {
            self.script(&["start", &n.dir.display().to_string()]);
        }
        for n in &self.nodes {
            self.script(&["wait", &n.dir.display().to_string(), "180"]);
        }
    }

    /// The last lines each node logged.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for n in &self.nodes {
            let log = std::fs::read_to_string(n.dir.join("broker.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            out.push_str(&format!("--- Kafka node {} ({}):\n", n.id, n.dir.display()));
            for l in tail.into_iter().rev() {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }
}

fn is_zombie(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.split(") ").nth(1).is_some_and(|rest| rest.starts_with('Z')))
        .unwrap_or(true)
}

impl Drop for KafkaCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        for n in &self.nodes {
            let _ = Command::new("bash")
                .arg(script())
                .args(["stop", &n.dir.display().to_string()])
                .status();
        }
    }
}
