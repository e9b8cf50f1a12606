//! `motcua run intake` as real child processes on Apache Kafka: killed with SIGKILL
//! mid-stream and restarted, stopped with SIGTERM, restarted under its static name.

mod support;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use motcua_reference::Reference;
use motcua_schemas::{AnyEvent, Topic};
use motcua_simulators::portal::Generator;
use motcua_store::Store;
use support::*;

/// Kill workers (SIGKILL) in the middle of the stream, once alone and once while a second
/// replica shares the partitions; stop that replica with SIGTERM; a last run finishes. Nothing is lost, and what was emitted again is identical: same event ids,
/// same dossier codes, same bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_killed_mid_stream_and_restarted_loses_nothing_and_re_emits_identical_events() {
    const N: usize = 6_000;
    let (_topics, kafka) = apache_kafka(4).await;
    let db = motcua_store::testing::scratch_postgres_url().await;
    let r = Reference::embedded().expect("reference");
    let mut g = Generator::new(&r, "22", 21).expect("province");
    let submissions: Vec<_> = (0..N as i64).map(|i| g.valid(NOW + i * 100)).collect();
    publish(&kafka, &submissions).await;
    let collector = Collector::start(&kafka, &[Topic::Accepted, Topic::Status]);

    let accepted_at_least = |n: usize| move |s: &[Read]| s.iter().filter(|r| r.topic == Topic::Accepted).count() >= n;
    let mut kills = Vec::new();
    // One worker, killed a quarter of the way.
    let mut a = spawn_intake(&kafka, &db, "a");
    assert!(
        collector
            .wait_for(Duration::from_secs(120), accepted_at_least(N / 4))
            .await,
        "worker a made no progress"
    );
    sigkill(&mut a);
    kills.push(collector.count(Topic::Accepted));
    // Two replicas sharing the partitions: one killed, the other stopped with SIGTERM
    // (its partitions are drained and committed on the way out).
    let mut b1 = spawn_intake(&kafka, &db, "b1");
    let mut b2 = spawn_intake(&kafka, &db, "b2");
    assert!(
        collector
            .wait_for(Duration::from_secs(120), accepted_at_least(N / 2))
            .await,
        "workers b made no progress"
    );
    sigkill(&mut b1);
    kills.push(collector.count(Topic::Accepted));
    sigterm(&b2);
    let b2_status = wait_exit(&mut b2, Duration::from_secs(30));
    assert!(b2_status.success(), "SIGTERM: clean exit expected, got {b2_status}");
    for seen in &kills {
        assert!(*seen < N, "the kills must happen mid-stream (seen {seen} of {N})");
    }
    let mut last = spawn_intake(&kafka, &db, "c");
    let all: HashSet<String> = submissions.iter().map(|s| s.dossier.dossier_id.clone()).collect();
    let complete = collector
        .wait_for(Duration::from_secs(180), |s| {
            let done: HashSet<&str> = s
                .iter()
                .filter_map(|r| match &r.event {
                    Some(AnyEvent::Accepted(a)) => Some(a.dossier.dossier_id.as_str()),
                    _ => None,
                })
                .collect();
            done.len() == N
        })
        .await;
    sigterm(&last);
    let status = wait_exit(&mut last, Duration::from_secs(30));
    assert!(complete, "not every dossier was accepted after the restarts");
    assert!(status.success(), "SIGTERM must end the worker cleanly, got {status}");

    // Every dossier: one code, and every re-emitted event byte-identical to the first.
    let seen = collector.snapshot();
    let mut accepted: HashMap<String, Vec<u8>> = HashMap::new();
    let mut codes: HashMap<String, String> = HashMap::new();
    let mut statuses: HashMap<String, Vec<u8>> = HashMap::new();
    let (mut accepted_total, mut status_total) = (0, 0);
    for r in &seen {
        match r.event.as_ref().expect("decodes") {
            AnyEvent::Accepted(a) => {
                accepted_total += 1;
                let id = a.dossier.dossier_id.clone();
                if let Some(first) = accepted.insert(id.clone(), r.payload.clone()) {
                    assert_eq!(first, r.payload, "dossier {id}: a redelivered accepted event differs");
                }
                if let Some(other) = codes.insert(a.dossier_code.clone(), id.clone()) {
                    assert_eq!(other, id, "code {} given to two dossiers", a.dossier_code);
                }
            }
            AnyEvent::Status(s) => {
                status_total += 1;
                if let Some(first) = statuses.insert(s.dossier_id.clone(), r.payload.clone()) {
                    assert_eq!(
                        first, r.payload,
                        "dossier {}: a redelivered status event differs",
                        s.dossier_id
                    );
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let accepted_ids: HashSet<String> = accepted.keys().cloned().collect();
    assert_eq!(accepted_ids, all, "lost dossiers");
    assert_eq!(codes.len(), N, "one code per dossier");
    assert_eq!(statuses.len(), N);
    let store = Store::connect(&db).await.expect("store");
    assert_eq!(store.count_codes().await.expect("count"), N as i64);
    eprintln!(
        "killed at {kills:?} accepted events; {accepted_total} accepted and {status_total} status events for {N} dossiers \
         ({} re-emitted identically after the kills)",
        accepted_total - N
    );
}

/// `motcua topics create` on `kafka`'s brokers and prefix, three partitions, as an operator
/// would; its output.
fn create_topics(kafka: &motcua_kafka::KafkaConfig) -> String {
    let out = motcua()
        .envs(kafka_env(kafka))
        .args([
            "topics",
            "create",
            "--brokers",
            &kafka.brokers,
            "--partitions",
            "3",
            "--replication",
            "1",
        ])
        .output()
        .expect("topics create");
    assert!(
        out.status.success(),
        "topics create: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The worker against Apache Kafka, with the CLI doing what an operator and a portal
/// would: create topics, publish a file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intake_runs_against_a_separately_started_broker() {
    let (_topics, kafka) = suite_kafka();
    let db = motcua_store::testing::scratch_postgres_url().await;
    let dir = tempfile::tempdir().expect("tempdir");

    let created = create_topics(&kafka);
    assert!(created.contains("dossier.submitted"), "{created}");

    let file = dir.path().join("dossiers.jsonl");
    let out = motcua()
        .args(["generate", "--count", "300", "--seed", "5"])
        .output()
        .expect("generate");
    assert!(out.status.success());
    std::fs::write(&file, &out.stdout).expect("write");
    let ids: HashSet<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("json")["dossier_id"]
                .as_str()
                .expect("id")
                .to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 300);

    let out = motcua()
        .envs(kafka_env(&kafka))
        .args([
            "publish",
            file.to_str().expect("utf-8 path"),
            "--brokers",
            &kafka.brokers,
        ])
        .output()
        .expect("publish");
    assert!(
        out.status.success(),
        "publish: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "300 published, 0 refused");

    let metrics_port = free_port();
    let metrics_listen = format!("127.0.0.1:{metrics_port}");
    let mut worker = spawn_intake_with(&kafka, &db, "kafka", &[("MOTCUA_METRICS__LISTEN", &metrics_listen)]);
    let collector = Collector::start(&kafka, &[Topic::Accepted]);
    let done = collector.wait_for(Duration::from_secs(120), |s| s.len() >= 300).await;
    // The worker's Prometheus endpoint counts what it did; its probes say alive and ready.
    let scraped = http_get(metrics_port, "/metrics");
    let patience = Duration::from_secs(5);
    assert_eq!(http_get_status(metrics_port, "/healthz", patience).0, 200);
    let (code, ready) = http_get_status(metrics_port, "/readyz", patience);
    let ready: serde_json::Value = serde_json::from_str(&ready).expect("readiness JSON");
    assert_eq!(code, 200, "{ready}");
    assert_eq!(
        (
            &ready["ready"],
            &ready["group_joined"],
            &ready["database"],
            &ready["draining"]
        ),
        (&true.into(), &true.into(), &true.into(), &false.into())
    );
    sigterm(&worker);
    let status = wait_exit(&mut worker, Duration::from_secs(30));
    assert!(done, "only {} of 300 accepted", collector.count(Topic::Accepted));
    assert!(status.success(), "clean exit on SIGTERM, got {status}");
    let accepted: HashSet<String> = collector
        .snapshot()
        .iter()
        .filter_map(|r| match &r.event {
            Some(AnyEvent::Accepted(a)) => Some(a.dossier.dossier_id.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(accepted, ids);
    let processed = scraped
        .lines()
        .find(|l| {
            l.starts_with("motcua_stage_messages_total{")
                && l.contains("stage=\"intake\"")
                && l.contains("outcome=\"processed\"")
        })
        .unwrap_or_else(|| panic!("no processed counter in /metrics:\n{scraped}"));
    assert_eq!(processed.rsplit(' ').next(), Some("300"), "{processed}");
    assert!(scraped.contains("motcua_stage_batch_duration_seconds"), "{scraped}");

    // A client we did not write reads our topic: kcat sees Confluent-framed Avro keyed by
    // dossier id.
    let kcat = std::process::Command::new("kcat")
        .args([
            "-C",
            "-b",
            &kafka.brokers,
            "-t",
            &kafka.topic(Topic::Accepted),
            "-c",
            "5",
            "-e",
            "-q",
            "-f",
            "%k %S\n",
        ])
        .output()
        .unwrap_or_else(|e| panic!("kcat: {e} (tests/run.sh installs it)"));
    assert!(kcat.status.success(), "kcat: {}", String::from_utf8_lossy(&kcat.stderr));
    let lines: Vec<String> = String::from_utf8_lossy(&kcat.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(lines.len(), 5, "{lines:?}");
    for l in lines {
        let (key, size) = l.split_once(' ').expect("key size");
        assert!(ids.contains(key), "kcat read key {key}");
        assert!(size.parse::<usize>().expect("size") > 100);
    }
}

/// A worker whose brokers do not answer is alive but not ready: `/readyz` says why (503)
/// while it waits for them, so Kubernetes sends it no traffic and does not restart it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_waiting_for_its_brokers_is_alive_but_not_ready() {
    let db = motcua_store::testing::scratch_postgres_url().await;
    let nobody = motcua_kafka::KafkaConfig::with_brokers(format!("127.0.0.1:{}", free_port()));
    let metrics_port = free_port();
    let metrics_listen = format!("127.0.0.1:{metrics_port}");
    let mut worker = spawn_intake_with(&nobody, &db, "unready", &[("MOTCUA_METRICS__LISTEN", &metrics_listen)]);
    let patience = Duration::from_secs(30);
    let (code, body) = http_get_status(metrics_port, "/healthz", patience);
    assert_eq!((code, body.as_str()), (200, "alive\n"));
    // The store opens first, then the worker waits for the group; ask until the store is in.
    let deadline = std::time::Instant::now() + patience;
    let ready = loop {
        let (code, body) = http_get_status(metrics_port, "/readyz", patience);
        assert_eq!(code, 503, "{body}");
        let r: serde_json::Value = serde_json::from_str(&body).expect("readiness JSON");
        if r["database"] == true || std::time::Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        (
            &ready["ready"],
            &ready["group_joined"],
            &ready["database"],
            &ready["draining"]
        ),
        (&false.into(), &false.into(), &true.into(), &false.into()),
        "{ready}"
    );
    let reasons = ready["reasons"].to_string();
    assert!(reasons.contains("consumer group"), "{reasons}");
    assert!(!reasons.contains("postgres://"), "no connection string: {reasons}");
    sigterm(&worker);
    wait_exit(&mut worker, Duration::from_secs(40));
}

/// SIGTERM drains and commits: a worker started afterwards in the same group has nothing
/// to redo, so not a single event is emitted twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_clean_shutdown_a_restarted_worker_re_emits_nothing() {
    const N: usize = 1_500;
    let (_topics, kafka) = apache_kafka(3).await;
    let db = motcua_store::testing::scratch_postgres_url().await;
    let r = Reference::embedded().expect("reference");
    let mut g = Generator::new(&r, "22", 31).expect("province");
    let submissions: Vec<_> = (0..N as i64).map(|i| g.valid(NOW + i)).collect();
    publish(&kafka, &submissions).await;
    let collector = Collector::start(&kafka, &[Topic::Accepted]);

    let mut first = spawn_intake(&kafka, &db, "first");
    assert!(
        collector.wait_for(Duration::from_secs(120), |s| s.len() >= N).await,
        "first run incomplete"
    );
    sigterm(&first);
    assert!(wait_exit(&mut first, Duration::from_secs(30)).success());

    let mut second = spawn_intake(&kafka, &db, "second");
    // Long enough for the second worker to join, be assigned every partition and fetch.
    let redone = collector.wait_for(Duration::from_secs(10), |s| s.len() > N).await;
    sigterm(&second);
    assert!(wait_exit(&mut second, Duration::from_secs(30)).success());
    assert!(
        !redone,
        "{} events re-emitted after a clean shutdown",
        collector.count(Topic::Accepted) - N
    );
    assert_eq!(collector.count(Topic::Accepted), N);
}

/// A delivery the broker refuses for good is fatal: the worker exits non-zero without
/// committing, and once the broker accepts again a restarted worker processes everything.
/// On librdkafka's in-process cluster: refusing produce requests on command is a fault
/// only it injects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_delivery_is_fatal_and_nothing_is_committed_past_it() {
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    const N: usize = 300;
    let (broker, kafka) = mock_cluster(2);
    let db = motcua_store::testing::scratch_postgres_url().await;
    let r = Reference::embedded().expect("reference");
    let mut g = Generator::new(&r, "22", 41).expect("province");
    let submissions: Vec<_> = (0..N as i64).map(|i| g.valid(NOW + i)).collect();
    publish(&kafka, &submissions).await;

    // From now on the broker refuses every produce request with a non-retriable error.
    let refusals = vec![RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED; 10_000];
    broker.cluster().request_errors(RDKafkaApiKey::Produce, &refusals);
    let mut worker = spawn_intake(&kafka, &db, "refused");
    let status = wait_exit(&mut worker, Duration::from_secs(60));
    assert_eq!(status.code(), Some(1), "a fatal delivery failure exits with status 1");

    broker.cluster().clear_request_errors(RDKafkaApiKey::Produce);
    let collector = Collector::start(&kafka, &[Topic::Accepted]);
    let mut again = spawn_intake(&kafka, &db, "again");
    let complete = collector.wait_for(Duration::from_secs(120), |s| s.len() >= N).await;
    sigterm(&again);
    assert!(wait_exit(&mut again, Duration::from_secs(30)).success());
    assert!(
        complete,
        "only {} of {N} accepted after the restart",
        collector.count(Topic::Accepted)
    );
    let ids: HashSet<String> = collector
        .snapshot()
        .iter()
        .filter_map(|r| match &r.event {
            Some(AnyEvent::Accepted(a)) => Some(a.dossier.dossier_id.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(ids.len(), N);
}

/// A SIGTERM shortly after start, while the worker is still starting (connecting to the
/// store, joining its group), ends it cleanly: exit 0, not killed by the signal. (The
/// handlers are now installed before anything else; with them installed after the store
/// connection, a SIGTERM 20 ms after start killed the worker. 20 ms is too tight to
/// assert on a loaded machine, so this checks 60 and 300 ms.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigterm_shortly_after_start_ends_the_worker_cleanly() {
    let (_topics, kafka) = apache_kafka(1).await;
    let db = motcua_store::testing::scratch_postgres_url().await;
    for delay_ms in [60, 300] {
        let mut w = spawn_intake(&kafka, &db, "early");
        std::thread::sleep(Duration::from_millis(delay_ms));
        sigterm(&w);
        let status = wait_exit(&mut w, Duration::from_secs(30));
        assert!(status.success(), "SIGTERM {delay_ms} ms after start: {status}");
    }
}

/// Static group membership: a worker SIGKILLed and restarted under the same name (a pod's
/// container restarting) takes its partitions back at once, not after the dead member's
/// 45-second session timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_restarted_under_its_name_resumes_before_its_session_times_out() {
    let (_topics, kafka) = suite_kafka();
    let db = motcua_store::testing::scratch_postgres_url().await;
    create_topics(&kafka);
    let r = Reference::embedded().expect("reference");
    let mut g = Generator::new(&r, "22", 23).expect("province");
    let collector = Collector::start(&kafka, &[Topic::Accepted]);
    let spawn = |metrics_port: u16| {
        motcua()
            .args(["run", "intake"])
            .envs(kafka_env(&kafka))
            .env("MOTCUA_DATABASE__URL", &db)
            .env("MOTCUA_RUNTIME__INSTANCE_ID", "intake-0")
            .env("MOTCUA_RUNTIME__STATIC_MEMBERSHIP", "true")
            .env("MOTCUA_KAFKA__SESSION_TIMEOUT_MS", "45000")
            .env("MOTCUA_METRICS__LISTEN", format!("127.0.0.1:{metrics_port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("spawn motcua run intake")
    };
    let first: Vec<_> = (0..60).map(|i| g.valid(NOW + i)).collect();
    publish(&kafka, &first).await;
    let mut worker = spawn(free_port());
    assert!(
        collector.wait_for(Duration::from_secs(60), |s| s.len() >= 60).await,
        "the first worker processed {} of 60",
        collector.count(Topic::Accepted)
    );
    sigkill(&mut worker);
    let killed_at = std::time::Instant::now();
    let mut again = spawn(free_port());
    let second: Vec<_> = (0..60).map(|i| g.valid(NOW + 1_000 + i)).collect();
    publish(&kafka, &second).await;
    let resumed = collector.wait_for(Duration::from_secs(40), |s| s.len() >= 120).await;
    let took = killed_at.elapsed();
    sigterm(&again);
    wait_exit(&mut again, Duration::from_secs(30));
    assert!(
        resumed,
        "the restarted worker processed {} of 60 within 40 s of the kill (session timeout 45 s)",
        collector.count(Topic::Accepted) - 60
    );
    eprintln!("restarted under its name: all 60 new dossiers accepted {took:?} after the kill");
}
