//! Load harness: what each stage of the pipeline costs per message, next to raw Kafka
//! clients over the same messages, on one broker, in one run.
//!
//! `benches/cost.sh` (it builds the `motcua` binary, prepares the Python client and a
//! scratch PostgreSQL, then runs `cargo bench -p motcua-benches --bench cost -- …`).
//! Options: `--dossiers 5000 --rounds 2 --partitions 12 --stages intake,verify,…
//! --replicas 1,2,4 --scale-stage verify`.
//!
//! 1. librdkafka's in-process broker (real TCP) runs in this process; the registry,
//!    e-wallet and portal simulators run as `motcua …-sim` processes.
//! 2. `motcua demo --brokers <it>` runs the whole province once: every topic then holds a
//!    realistic day of traffic (submissions, supplements, payments, decisions, statuses).
//!    The harness reads that log into memory.
//! 3. Round after round, each variant in turn (A B C … A B C …, so a drift of the shared
//!    machine hits every variant alike):
//!    - `raw-rust`: an rdkafka consume→produce loop copying every message of the log (the
//!      floor; the same messages track reads, of every size);
//!    - `raw-python`: the same loop in Python with confluent-kafka;
//!    - each stage: `motcua run <stage>` as an operator runs it, on fresh topics (their
//!      own prefix) and a fresh database. Once its group is joined (`/readyz`), the
//!      harness copies the stage's input topics from the log into those topics (same
//!      partitions, keys, headers, timestamps) and waits until the group's committed
//!      offsets reach the end: the worker's effects are then durable and its outputs
//!      acknowledged. A stage is fed its main flow, topic after topic in pipeline order
//!      (payment's verified dossiers, then the gateway's confirmations of their bills);
//!      track takes every topic at once. Supplements, withdrawals and the back office's
//!      requests are left out: they refer to what other stages recorded in the shared
//!      store, which a stage alone on a fresh database does not have (see [`phases`]).
//!
//! Every figure is the process's CPU time (user + system, every thread, /proc) over the
//! measured window, per input message: for the raw loops from their first message to
//! their last output delivered; for a stage from its readiness (start-up, migrations and
//! the group join left out) to its last commit. The broker (this process) and the
//! simulators are not counted. Wall throughput and peak RSS are printed too, but the
//! broker shares the two cores: CPU per message is the headline.
//!
//! With `MOTCUA_BENCH_DATABASE_URL` (a PostgreSQL server the harness may create databases
//! on) intake and track are also run on PostgreSQL; `MOTCUA_BENCH_PYTHON` is a Python
//! with confluent-kafka. Finally one stage runs with 1, 2 and 4 replicas over the
//! partitions (the scale-out figure). `--baseline-bin PATH` runs every stage a second time
//! with another build of `motcua` (say, the commit before a change), in the same rounds.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use motcua_benches::harness::{median, raw_loop, send, Measured};
use motcua_kafka::{EmbeddedBroker, KafkaConfig};
use motcua_schemas::Topic;
use motcua_wiring::stages::STAGES;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

const ROLE: &str = "MOTCUA_BENCH_ROLE";
/// The prefix of the demo's topics: the recorded log every run copies from.
const LOG_PREFIX: &str = "bench-log.";

struct Options {
    dossiers: u64,
    rounds: usize,
    partitions: i32,
    stages: Vec<String>,
    replicas: Vec<usize>,
    scale_stage: String,
    database_url: Option<String>,
    python: Option<String>,
    /// Another build of `motcua` whose stages run next to this one's (before/after).
    baseline_bin: Option<PathBuf>,
    /// Profile each stage worker's measured window with `perf record` into this directory
    /// (the figures of such a run include perf's sampling overhead).
    perf: Option<PathBuf>,
}

fn options() -> Options {
    let mut o = Options {
        dossiers: 5_000,
        rounds: 2,
        partitions: 12,
        stages: STAGES.iter().map(|s| s.name.to_owned()).collect(),
        replicas: vec![1, 2, 4],
        scale_stage: "verify".to_owned(),
        database_url: std::env::var("MOTCUA_BENCH_DATABASE_URL")
            .ok()
            .filter(|v| !v.is_empty()),
        python: std::env::var("MOTCUA_BENCH_PYTHON").ok().filter(|v| !v.is_empty()),
        baseline_bin: None,
        perf: None,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    let list = |v: &str| {
        v.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    while i < args.len() {
        let value = || {
            args.get(i + 1)
                .unwrap_or_else(|| panic!("{} needs a value", args[i]))
                .clone()
        };
        match args[i].as_str() {
            "--dossiers" => o.dossiers = value().parse().expect("--dossiers: a number"),
            "--rounds" => o.rounds = value().parse().expect("--rounds: a number"),
            "--partitions" => o.partitions = value().parse().expect("--partitions: a number"),
            "--stages" => o.stages = list(&value()),
            "--replicas" => {
                o.replicas = list(&value())
                    .iter()
                    .map(|r| r.parse().expect("--replicas: numbers, e.g. 1,2,4"))
                    .collect()
            }
            "--scale-stage" => o.scale_stage = value(),
            "--baseline-bin" => o.baseline_bin = Some(PathBuf::from(value())),
            "--perf" => o.perf = Some(PathBuf::from(value())),
            // What cargo bench passes (`--bench`) and anything else: not ours.
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    for s in o.stages.iter().chain([&o.scale_stage]) {
        assert!(
            motcua_wiring::stage(s).is_some(),
            "no stage called {s:?} (stages: {})",
            STAGES.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
        );
    }
    o
}

/// One message of the recorded log.
struct Recorded {
    partition: i32,
    key: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
    headers: Vec<(String, Vec<u8>)>,
    timestamp: Option<i64>,
}

/// Every message of every topic under `kafka`'s prefix, in partition order.
fn read_log(kafka: &KafkaConfig) -> BTreeMap<Topic, Vec<Recorded>> {
    let consumer: BaseConsumer = kafka
        .consumer_config("bench-log-reader", "bench-log-reader")
        .create()
        .expect("consumer");
    let mut log = BTreeMap::new();
    for topic in Topic::ALL {
        let name = kafka.topic(topic);
        let metadata = consumer
            .fetch_metadata(Some(&name), Duration::from_secs(10))
            .expect("metadata");
        let partitions: Vec<i32> = metadata.topics()[0].partitions().iter().map(|p| p.id()).collect();
        let mut tpl = TopicPartitionList::new();
        let mut remaining = 0;
        for &p in &partitions {
            let (_, high) = consumer
                .fetch_watermarks(&name, p, Duration::from_secs(10))
                .expect("watermarks");
            remaining += high;
            tpl.add_partition_offset(&name, p, Offset::Beginning).expect("tpl");
        }
        let mut messages = Vec::with_capacity(remaining as usize);
        consumer.assign(&tpl).expect("assign");
        while remaining > 0 {
            let Some(m) = consumer.poll(Duration::from_secs(10)) else {
                panic!("{name}: {remaining} messages not read back");
            };
            let m = m.expect("read the log");
            messages.push(Recorded {
                partition: m.partition(),
                key: m.key().map(<[u8]>::to_vec),
                payload: m.payload().map(<[u8]>::to_vec),
                headers: m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec).unwrap_or_default()))
                            .collect()
                    })
                    .unwrap_or_default(),
                timestamp: m.timestamp().to_millis(),
            });
            remaining -= 1;
        }
        log.insert(topic, messages);
    }
    log
}

/// Copies `topics` of the log into `kafka`'s (same partitions), interleaved in time as
/// they were written: each partition keeps its order, and across partitions and topics
/// the earliest timestamp goes first (a payment confirmation after its bill). Returns,
/// per topic and partition, how many messages went there.
fn copy_log(
    log: &BTreeMap<Topic, Vec<Recorded>>,
    kafka: &KafkaConfig,
    topics: &[Topic],
) -> BTreeMap<(String, i32), i64> {
    let producer: ThreadedProducer<DefaultProducerContext> =
        kafka.producer_config("bench-copy").create().expect("producer");
    // One queue per topic and partition, merged by timestamp (a k-way merge).
    let mut queues: Vec<(String, std::collections::VecDeque<&Recorded>)> = Vec::new();
    for topic in topics {
        let mut by_partition: BTreeMap<i32, std::collections::VecDeque<&Recorded>> = BTreeMap::new();
        for m in &log[topic] {
            by_partition.entry(m.partition).or_default().push_back(m);
        }
        queues.extend(by_partition.into_values().map(|q| (kafka.topic(*topic), q)));
    }
    let mut heads: std::collections::BinaryHeap<std::cmp::Reverse<(i64, usize)>> = queues
        .iter()
        .enumerate()
        .filter_map(|(i, (_, q))| Some(std::cmp::Reverse((q.front()?.timestamp.unwrap_or(0), i))))
        .collect();
    let mut counts = BTreeMap::new();
    while let Some(std::cmp::Reverse((_, i))) = heads.pop() {
        let (name, queue) = &mut queues[i];
        let m = queue.pop_front().expect("a queue in the heap has a head");
        if let Some(next) = queue.front() {
            heads.push(std::cmp::Reverse((next.timestamp.unwrap_or(0), i)));
        }
        let mut record = BaseRecord::<[u8], [u8]>::to(name).partition(m.partition);
        if let Some(k) = &m.key {
            record = record.key(&k[..]);
        }
        if let Some(p) = &m.payload {
            record = record.payload(&p[..]);
        }
        if let Some(t) = m.timestamp {
            record = record.timestamp(t);
        }
        if !m.headers.is_empty() {
            let mut headers = OwnedHeaders::new_with_capacity(m.headers.len());
            for (k, v) in &m.headers {
                headers = headers.insert(Header {
                    key: k,
                    value: Some(&v[..]),
                });
            }
            record = record.headers(headers);
        }
        send(&producer, record);
        *counts.entry((name.clone(), m.partition)).or_insert(0) += 1;
    }
    producer.flush(Duration::from_secs(120)).expect("flush the copy");
    counts
}

/// Kills the process when dropped (the simulators, a stage worker that failed).
struct Running {
    name: String,
    child: Child,
}

impl Running {
    fn start(name: &str, cmd: &mut Command, log_dir: &Path) -> Self {
        let log = std::fs::File::create(log_dir.join(format!("{name}.log"))).expect("log file");
        let child = cmd
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Self {
            name: name.to_owned(),
            child,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then waits for a clean exit; its log.
    fn stop(mut self, log_dir: &Path) -> String {
        let _ = Command::new("kill").arg("-TERM").arg(self.pid().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = std::fs::read_to_string(log_dir.join(format!("{}.log", self.name))).unwrap_or_default();
                assert!(status.success(), "{} exited with {status}:\n{}", self.name, tail(&log));
                return log;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("{} did not stop within 60 s of SIGTERM", self.name);
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Whether the worker serving probes on `port` is in its group: `/readyz` answers 200, or
/// (builds before portal-sync's fix, whose `/readyz` waited for a database it does not
/// have) its body says the group is joined.
fn joined(port: u16) -> bool {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if write!(
        s,
        "GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .is_err()
    {
        return false;
    }
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer.split(' ').nth(1) == Some("200") || answer.contains("\"group_joined\":true")
}

fn wait_for_port(port: u16, what: &Running) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{} does not listen on {port}", what.name);
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What the harness runs besides the broker: the binary and the simulators.
struct World {
    dir: tempfile::TempDir,
    brokers: String,
    partitions: i32,
    registries: u16,
    wallet: u16,
    portal: u16,
    signing_key: PathBuf,
    database_url: Option<String>,
    next_db: std::cell::Cell<u32>,
    perf: Option<PathBuf>,
}

/// Where a stage worker keeps its state.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Db {
    Sqlite,
    Postgres,
}

impl World {
    fn config(&self, kafka: &KafkaConfig, database_url: &str) -> PathBuf {
        let path = self.dir.path().join(format!("{}toml", kafka.topic_prefix));
        let text = format!(
            r#"[kafka]
brokers = "{brokers}"
topic_prefix = "{prefix}"

[kafka.consumer]
# Committed offsets are how the harness sees the end: commit them often.
"auto.commit.interval.ms" = "100"

[database]
url = "{database_url}"

[registries]
mode = "http"

[registries.http]
base_url = "http://127.0.0.1:{registries}"

[result]
signing_key_file = "{key}"

[result.wallet]
base_url = "http://127.0.0.1:{wallet}"

[portal.http]
base_url = "http://127.0.0.1:{portal}"

[track]
api_listen = ""
"#,
            brokers = self.brokers,
            prefix = kafka.topic_prefix,
            registries = self.registries,
            wallet = self.wallet,
            portal = self.portal,
            key = self.signing_key.display(),
        );
        std::fs::write(&path, text).expect("config");
        path
    }

    /// A fresh database for one run.
    fn database(&self, db: Db, rt: &tokio::runtime::Runtime) -> String {
        let n = self.next_db.get();
        self.next_db.set(n + 1);
        match db {
            Db::Sqlite => format!("sqlite://{}", self.dir.path().join(format!("run-{n}.db")).display()),
            Db::Postgres => {
                let server = self.database_url.as_deref().expect("a PostgreSQL server");
                let name = format!("motcua_cost_{}_{n}", std::process::id());
                rt.block_on(async {
                    use sqlx::Connection;
                    let mut c = sqlx::PgConnection::connect(server).await.expect("PostgreSQL server");
                    sqlx::query(&format!("CREATE DATABASE {name}"))
                        .execute(&mut c)
                        .await
                        .expect("create database");
                });
                format!(
                    "{}/{name}",
                    &server[..server.rfind('/').expect("a URL with a database")]
                )
            }
        }
    }
}

/// Runs `stage` with `replicas` workers over a copy of its inputs; their CPU summed.
#[allow(clippy::too_many_arguments)]
fn run_stage(
    world: &World,
    motcua: &Path,
    broker: &EmbeddedBroker,
    log: &BTreeMap<Topic, Vec<Recorded>>,
    rt: &tokio::runtime::Runtime,
    stage: &str,
    db: Db,
    replicas: usize,
    run: &str,
) -> (Measured, BTreeMap<String, u64>) {
    let spec = motcua_wiring::stage(stage).expect("a stage");
    let mut kafka = KafkaConfig::with_brokers(world.brokers.clone());
    kafka.topic_prefix = format!("{run}.");
    broker.create_topics(&kafka, world.partitions).expect("topics");
    let database_url = world.database(db, rt);
    let config = world.config(&kafka, &database_url);
    let mut workers: Vec<(Running, u16)> = (0..replicas)
        .map(|r| {
            let port = free_port();
            let worker = Running::start(
                &format!("{run}-{r}"),
                Command::new(motcua)
                    .args(["run", stage, "--config"])
                    .arg(&config)
                    .env("MOTCUA_METRICS__LISTEN", format!("127.0.0.1:{port}"))
                    .env("MOTCUA_RUNTIME__INSTANCE_ID", format!("{run}-{r}")),
                world.dir.path(),
            );
            (worker, port)
        })
        .collect();
    // Ready: the group joined and the database answers.
    let deadline = Instant::now() + Duration::from_secs(120);
    for (w, port) in &workers {
        while !joined(*port) {
            let log = std::fs::read_to_string(world.dir.path().join(format!("{}.log", w.name))).unwrap_or_default();
            assert!(
                Instant::now() < deadline,
                "{} did not become ready:\n{}",
                w.name,
                tail(&log)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    // Replicas that joined one after the other settle their assignment first.
    std::thread::sleep(Duration::from_millis(if replicas > 1 { 3_000 } else { 300 }));
    let cpu_before: Vec<f64> = workers
        .iter()
        .map(|(w, _)| motcua_benches::harness::cpu_seconds(Some(w.pid())).expect("worker alive"))
        .collect();
    // `perf record` attached to each worker for the measured window only.
    let profilers: Vec<Running> = match &world.perf {
        None => Vec::new(),
        Some(dir) => workers
            .iter()
            .map(|(w, _)| {
                std::fs::create_dir_all(dir).expect("perf directory");
                let out = dir.join(format!("{stage}-{}.perf.data", w.name));
                let p = Running::start(
                    &format!("perf-{}", w.name),
                    Command::new("perf")
                        .args(["record", "-e", "cpu-clock", "-F", "999", "-g", "-p"])
                        .arg(w.pid().to_string())
                        .arg("-o")
                        .arg(&out),
                    world.dir.path(),
                );
                std::thread::sleep(Duration::from_millis(500));
                p
            })
            .collect(),
    };
    let started = Instant::now();
    let watcher: BaseConsumer = kafka
        .consumer_config(&kafka.group(stage), "bench-watcher")
        .create()
        .expect("consumer");
    let mut messages = 0;
    for phase in phases(spec) {
        let counts = copy_log(log, &kafka, &phase);
        messages += counts.values().sum::<i64>();
        wait_committed(&watcher, &kafka, &phase, world.partitions, &counts, &mut workers, run);
    }
    let wall_s = started.elapsed().as_secs_f64();
    let cpu_s: f64 = workers
        .iter()
        .zip(&cpu_before)
        .map(|((w, _), before)| motcua_benches::harness::cpu_seconds(Some(w.pid())).expect("worker alive") - before)
        .sum();
    let rss_kib = workers
        .iter()
        .map(|(w, _)| motcua_benches::harness::peak_rss_kib(Some(w.pid())))
        .max()
        .unwrap_or(0);
    for mut p in profilers {
        let _ = Command::new("kill").arg("-INT").arg(p.pid().to_string()).status();
        let _ = p.child.wait();
    }
    // Dead letters by reason, from the workers' logs (one warning each).
    let mut dead_lettered = BTreeMap::new();
    for (w, _) in workers {
        let log = w.stop(world.dir.path());
        for line in log.lines().filter(|l| l.contains("dead-lettering message")) {
            let reason = line
                .split("reason_code=")
                .nth(1)
                .and_then(|v| v.split_whitespace().next())
                .unwrap_or("?");
            *dead_lettered.entry(reason.to_owned()).or_insert(0) += 1;
        }
    }
    (
        Measured {
            messages: messages as u64,
            cpu_s,
            wall_s,
            rss_kib,
        },
        dead_lettered,
    )
}

/// The inputs a stage run is fed, phase after phase (each copied once the previous one is
/// committed): a stage's main flow in pipeline order — payment's bills before the
/// gateway's confirmations of them. Supplements, withdrawals, reappointments and the back
/// office's requests are left out: they refer to what other stages recorded in the shared
/// store, which a stage run alone on a fresh database does not have. Track, which keeps
/// no such state, takes every topic at once, interleaved in time.
fn phases(spec: &motcua_wiring::stages::StageSpec) -> Vec<Vec<Topic>> {
    const MAIN_FLOW: [Topic; 7] = [
        Topic::Submitted,
        Topic::Accepted,
        Topic::Verified,
        Topic::PaymentConfirmed,
        Topic::Paid,
        Topic::Decided,
        Topic::Status,
    ];
    let inputs = (spec.inputs)();
    if spec.name == motcua_schemas::component::TRACK {
        return vec![inputs];
    }
    MAIN_FLOW
        .iter()
        .filter(|t| inputs.contains(t))
        .map(|t| vec![*t])
        .collect()
}

/// Waits until the stage's group has committed every message copied into `topics`: its
/// effects are then durable and its outputs acknowledged.
fn wait_committed(
    watcher: &BaseConsumer,
    kafka: &KafkaConfig,
    topics: &[Topic],
    partitions: i32,
    counts: &BTreeMap<(String, i32), i64>,
    workers: &mut [(Running, u16)],
    run: &str,
) {
    let mut tpl = TopicPartitionList::new();
    for t in topics {
        for p in 0..partitions {
            tpl.add_partition(&kafka.topic(*t), p);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        let committed = watcher
            .committed_offsets(tpl.clone(), Duration::from_secs(10))
            .expect("committed");
        let behind = tpl
            .elements()
            .iter()
            .filter(|e| {
                let want = counts.get(&(e.topic().to_owned(), e.partition())).copied().unwrap_or(0);
                let have = committed
                    .find_partition(e.topic(), e.partition())
                    .and_then(|c| c.offset().to_raw())
                    .unwrap_or(-1)
                    .max(0);
                have < want
            })
            .count();
        if behind == 0 {
            return;
        }
        for (w, _) in workers.iter_mut() {
            if let Ok(Some(status)) = w.child.try_wait() {
                panic!("{} exited ({status}) before the end of its input", w.name);
            }
        }
        assert!(
            Instant::now() < deadline,
            "{run}: {behind} partitions still behind after 900 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn raw_child() {
    let env = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} is set by the harness"));
    let kafka = KafkaConfig::with_brokers(env("MOTCUA_BENCH_BROKERS"));
    let messages: u64 = env("MOTCUA_BENCH_MESSAGES").parse().expect("messages");
    let inputs = env("MOTCUA_BENCH_INPUTS");
    raw_loop(
        &kafka,
        &env("MOTCUA_BENCH_GROUP"),
        &inputs.split(',').collect::<Vec<_>>(),
        &env("MOTCUA_BENCH_OUTPUT"),
        messages,
        None,
    )
    .print();
}

fn run_raw(world: &World, python: Option<&str>, messages: u64, run: &str) -> Measured {
    // Every topic of the log: the most messages (CPU time comes in 10 ms ticks), of every
    // size, the same ones track reads.
    let input = Topic::ALL
        .iter()
        .map(|t| format!("{LOG_PREFIX}{}", t.name()))
        .collect::<Vec<_>>()
        .join(",");
    let output = format!("{run}.out");
    let out = match python {
        None => Command::new(std::env::current_exe().expect("current exe"))
            .env(ROLE, "raw-rust")
            .env("MOTCUA_BENCH_BROKERS", &world.brokers)
            .env("MOTCUA_BENCH_GROUP", run)
            .env("MOTCUA_BENCH_INPUTS", &input)
            .env("MOTCUA_BENCH_OUTPUT", &output)
            .env("MOTCUA_BENCH_MESSAGES", messages.to_string())
            .output(),
        Some(python) => Command::new(python)
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("raw_loop.py"))
            .args([
                "--brokers",
                &world.brokers,
                "--group",
                run,
                "--input",
                &input,
                "--output",
                &output,
            ])
            .args(["--messages", &messages.to_string()])
            .output(),
    }
    .expect("start the raw loop");
    let m = Measured::parse(&String::from_utf8_lossy(&out.stdout));
    match m {
        Some(m) if out.status.success() && m.messages == messages => m,
        _ => panic!(
            "{run} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// One line of the table: a variant's runs.
struct Row {
    name: String,
    runs: Vec<Measured>,
    /// Dead letters by reason, in the last round.
    dead_lettered: BTreeMap<String, u64>,
}

fn main() {
    if std::env::var(ROLE).is_ok() {
        return raw_child();
    }
    let o = options();
    let motcua = std::env::current_exe()
        .ok()
        .and_then(|e| Some(e.parent()?.parent()?.join("motcua")))
        .filter(|p| p.exists())
        .expect("target/release/motcua: build it first (benches/cost.sh does: cargo build --release -p motcua)");
    let dir = tempfile::tempdir().expect("temporary directory");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio");
    let broker = EmbeddedBroker::start(1).expect("broker");
    let brokers = broker.bootstrap_servers().to_owned();

    // The outside world, as simulators: the registries of the demo's world (its seed and
    // size), an e-wallet gateway and the national portal, without faults.
    let registries = free_port();
    let wallet = free_port();
    let portal = free_port();
    let sims = [
        Running::start(
            "registry-sim",
            Command::new(&motcua).args([
                "registry-sim",
                "--listen",
                &format!("127.0.0.1:{registries}"),
                "--seed",
                "42",
                "--citizens",
                "200000",
            ]),
            dir.path(),
        ),
        Running::start(
            "wallet-sim",
            Command::new(&motcua).args(["wallet-sim", "--listen", &format!("127.0.0.1:{wallet}")]),
            dir.path(),
        ),
        Running::start(
            "portal-sim",
            Command::new(&motcua).args(["portal-sim", "--listen", &format!("127.0.0.1:{portal}")]),
            dir.path(),
        ),
    ];
    for (sim, port) in sims.iter().zip([registries, wallet, portal]) {
        wait_for_port(port, sim);
    }
    let signing_key = dir.path().join("result.key");
    let made = Command::new(&motcua)
        .arg("result-key")
        .arg(&signing_key)
        .output()
        .expect("motcua result-key");
    assert!(
        made.status.success(),
        "result-key: {}",
        String::from_utf8_lossy(&made.stderr)
    );
    let world = World {
        dir,
        brokers: brokers.clone(),
        partitions: o.partitions,
        registries,
        wallet,
        portal,
        signing_key,
        database_url: o.database_url.clone(),
        next_db: std::cell::Cell::new(0),
        perf: o.perf.clone(),
    };

    // The recorded log: one whole-province demo over this broker.
    let mut log_kafka = KafkaConfig::with_brokers(brokers.clone());
    log_kafka.topic_prefix = LOG_PREFIX.to_owned();
    broker.create_topics(&log_kafka, o.partitions).expect("topics");
    let t = Instant::now();
    let demo = Command::new(&motcua)
        .args([
            "demo",
            "--brokers",
            &brokers,
            "--topic-prefix",
            LOG_PREFIX,
            "--progress",
            "off",
        ])
        .args([
            "--dossiers",
            &o.dossiers.to_string(),
            "--partitions",
            &o.partitions.to_string(),
        ])
        .arg("--report")
        .arg(world.dir.path().join("demo.html"))
        .output()
        .expect("motcua demo");
    if !demo.status.success() {
        // Its report (demo.json names what differed) outlives the run.
        let kept = world.dir.keep();
        panic!(
            "the demo failed ({}); its report and logs are kept in {}:\n{}\n{}",
            demo.status,
            kept.display(),
            tail(&String::from_utf8_lossy(&demo.stdout)),
            tail(&String::from_utf8_lossy(&demo.stderr))
        );
    }
    let log = read_log(&log_kafka);
    eprintln!(
        "recorded the demo's log in {:.1} s: {} messages ({})",
        t.elapsed().as_secs_f64(),
        log.values().map(Vec::len).sum::<usize>(),
        log.iter()
            .filter(|(_, m)| !m.is_empty())
            .map(|(t, m)| format!("{} {}", t.name(), m.len()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let submissions = log[&Topic::Submitted].len() as u64;
    let logged = log.values().map(Vec::len).sum::<usize>() as u64;

    // The variants, round after round.
    // (name, stage, database, binary)
    type Variant = (String, Option<(String, Db)>, PathBuf);
    let mut variants: Vec<Variant> = vec![("raw-rust".to_owned(), None, motcua.clone())];
    if o.python.is_some() {
        variants.push(("raw-python".to_owned(), None, motcua.clone()));
    } else {
        eprintln!("MOTCUA_BENCH_PYTHON is not set: no Python baseline (benches/cost.sh sets it)");
    }
    for s in &o.stages {
        let mut dbs = vec![("", Db::Sqlite)];
        if o.database_url.is_some() && (s == "intake" || s == "track") {
            dbs.push((" (PostgreSQL)", Db::Postgres));
        }
        for (label, db) in dbs {
            variants.push((format!("{s}{label}"), Some((s.clone(), db)), motcua.clone()));
            if let Some(baseline) = &o.baseline_bin {
                variants.push((format!("{s}{label} @baseline"), Some((s.clone(), db)), baseline.clone()));
            }
        }
    }
    if o.database_url.is_none() {
        eprintln!("MOTCUA_BENCH_DATABASE_URL is not set: stages on SQLite only (benches/cost.sh sets it)");
    }
    let mut rows: Vec<Row> = variants
        .iter()
        .map(|(name, _, _)| Row {
            name: name.clone(),
            runs: Vec::new(),
            dead_lettered: BTreeMap::new(),
        })
        .collect();
    for round in 0..o.rounds {
        for (i, (name, stage, bin)) in variants.iter().enumerate() {
            let run = format!("r{round}-{i}");
            let (m, dl) = match (name.as_str(), stage) {
                ("raw-rust", _) => (run_raw(&world, None, logged, &run), BTreeMap::new()),
                ("raw-python", _) => (run_raw(&world, o.python.as_deref(), logged, &run), BTreeMap::new()),
                (_, Some((stage, db))) => run_stage(&world, bin, &broker, &log, &rt, stage, *db, 1, &run),
                _ => unreachable!(),
            };
            eprintln!(
                "round {round} {name:>22}: {:>8} messages, {:7.2} µs CPU/message, {:6.0} messages/s, peak RSS {:.0} MiB{}",
                m.messages,
                m.cpu_us_per_message(),
                m.per_second(),
                m.rss_kib as f64 / 1024.0,
                if dl.is_empty() { String::new() } else { format!(", dead-lettered {dl:?}") }
            );
            rows[i].dead_lettered = dl;
            rows[i].runs.push(m);
        }
    }

    // Scale-out: one stage, 1, 2, 4 … replicas over the partitions.
    let mut scale = Vec::new();
    for &replicas in &o.replicas {
        let run = format!("scale-{}-{replicas}", o.scale_stage);
        let (m, _) = run_stage(
            &world,
            &motcua,
            &broker,
            &log,
            &rt,
            &o.scale_stage,
            Db::Sqlite,
            replicas,
            &run,
        );
        eprintln!(
            "scale-out {} × {replicas}: {:.2} µs CPU/message, {:.0} messages/s",
            o.scale_stage,
            m.cpu_us_per_message(),
            m.per_second()
        );
        scale.push((replicas, m));
    }
    drop(sims);

    // The table: medians over rounds; the ratio to the raw Rust loop pair by pair.
    let raw: Vec<f64> = rows[0].runs.iter().map(Measured::cpu_us_per_message).collect();
    println!(
        "\n{} dossiers ({} submissions, {} messages in the log), {} rounds, {} partitions; medians over rounds, ratios to raw-rust round by round",
        o.dossiers,
        submissions,
        log.values().map(Vec::len).sum::<usize>(),
        o.rounds,
        o.partitions
    );
    println!("| variant | input messages | CPU µs/message (min–max) | vs raw-rust | messages/s (wall) | peak RSS MiB | dead-lettered |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for row in &rows {
        let cpu: Vec<f64> = row.runs.iter().map(Measured::cpu_us_per_message).collect();
        let (lo, hi) = (
            cpu.iter().copied().fold(f64::INFINITY, f64::min),
            cpu.iter().copied().fold(0.0, f64::max),
        );
        let ratio = median(cpu.iter().zip(&raw).map(|(x, r)| x / r).collect());
        println!(
            "| {} | {} | {:.2} ({lo:.2}–{hi:.2}) | {ratio:.1}× | {:.0} | {:.0} | {} |",
            row.name,
            row.runs[0].messages,
            median(cpu.clone()),
            median(row.runs.iter().map(Measured::per_second).collect()),
            row.runs.iter().map(|m| m.rss_kib).max().unwrap_or(0) as f64 / 1024.0,
            if row.dead_lettered.is_empty() {
                "0".to_owned()
            } else {
                row.dead_lettered
                    .iter()
                    .map(|(reason, n)| format!("{n} {reason}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        );
    }
    if !scale.is_empty() {
        println!(
            "\nScale-out: {} with N replicas over {} partitions (CPU summed over the replicas)",
            o.scale_stage, o.partitions
        );
        println!("| replicas | CPU µs/message | messages/s (wall) | peak RSS MiB (largest replica) |");
        println!("|---:|---:|---:|---:|");
        for (replicas, m) in &scale {
            println!(
                "| {replicas} | {:.2} | {:.0} | {:.0} |",
                m.cpu_us_per_message(),
                m.per_second(),
                m.rss_kib as f64 / 1024.0
            );
        }
    }
}
