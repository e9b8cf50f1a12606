//! Kafka over TLS, for real: Apache Kafka's own TLS listener, certificates from a CA the
//! test makes, verification on. A `motcua run intake`
//! process works through it; a worker that does not trust the broker's certificate, or
//! that is pointed at a plaintext port while TLS is configured, refuses to start and says
//! why.

mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use motcua_kafka::{KafkaConfig, KafkaTls};
use motcua_schemas::{samples, AnyEvent, Topic};
use support::{motcua, publish, read_until, sigterm, wait_exit, ClusterSpec, KafkaCluster, TestPki};

fn tls_config(brokers: &str, ca: &str) -> KafkaConfig {
    let mut kafka = KafkaConfig::with_brokers(brokers);
    kafka.tls = Some(KafkaTls {
        ca_file: Some(ca.into()),
        ..KafkaTls::default()
    });
    kafka
}

/// Runs `motcua run intake` with `env` until it exits (or `timeout`); returns whether it
/// succeeded and what it wrote to stderr.
fn intake_exit(env: &[(&str, &str)], timeout: Duration) -> (bool, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = format!("sqlite://{}", dir.path().join("intake.db").display());
    let mut child = motcua()
        .args(["run", "intake"])
        .env("MOTCUA_DATABASE__URL", &db)
        .env("MOTCUA_RUNTIME__CONNECT_TIMEOUT_MS", "4000")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let status = wait_exit(&mut child, timeout);
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr).expect("read");
    (status.success(), stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intake_works_over_verified_tls_and_refuses_brokers_it_cannot_trust() {
    let pki = TestPki::create();
    let cluster = KafkaCluster::start(ClusterSpec::tls(&pki, false));
    let plain_port = cluster.node(1).internal_port;
    let tls_brokers = cluster.bootstrap();
    let kafka = tls_config(&tls_brokers, &pki.path("ca.pem"));
    kafka.validate().expect("valid");
    kafka.create_topics(2, 1).await.expect("topics created over TLS");

    // The worker, its input and its outputs all over TLS.
    let dir = tempfile::tempdir().expect("tempdir");
    let db = format!("sqlite://{}", dir.path().join("intake.db").display());
    let ca = pki.path("ca.pem");
    let mut worker = motcua()
        .args(["run", "intake"])
        .env("MOTCUA_KAFKA__BROKERS", &tls_brokers)
        .env("MOTCUA_KAFKA__TLS__CA_FILE", &ca)
        .env("MOTCUA_DATABASE__URL", &db)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn intake");
    let submission = samples::submitted();
    publish(&kafka, std::slice::from_ref(&submission)).await;
    let dossier = submission.dossier.dossier_id.clone();
    let reads = read_until(&kafka, &[Topic::Status], Duration::from_secs(60), |r| {
        r.iter()
            .any(|r| matches!(&r.event, Some(AnyEvent::Status(s)) if s.dossier_id == dossier))
    })
    .await;
    assert!(
        reads
            .iter()
            .any(|r| matches!(&r.event, Some(AnyEvent::Status(s)) if s.dossier_id == dossier)),
        "intake answered the submission over TLS"
    );
    sigterm(&worker);
    assert!(wait_exit(&mut worker, Duration::from_secs(30)).success());

    // A CA that did not sign the broker's certificate: no connection, a reason, exit 1.
    let started = Instant::now();
    let other = pki.path("other-ca.pem");
    let (ok, stderr) = intake_exit(
        &[
            ("MOTCUA_KAFKA__BROKERS", tls_brokers.as_str()),
            ("MOTCUA_KAFKA__TLS__CA_FILE", other.as_str()),
        ],
        Duration::from_secs(60),
    );
    assert!(!ok, "a worker that cannot verify the broker does not run");
    assert!(stderr.contains("cannot reach the Kafka brokers"), "{stderr}");
    assert!(stderr.to_lowercase().contains("certificate verify failed"), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "it gave up after the connect timeout"
    );

    // TLS configured but pointed at the broker's plaintext port: the handshake fails.
    let plain_brokers = format!("localhost:{plain_port}");
    let (ok, stderr) = intake_exit(
        &[
            ("MOTCUA_KAFKA__BROKERS", plain_brokers.as_str()),
            ("MOTCUA_KAFKA__TLS__CA_FILE", ca.as_str()),
        ],
        Duration::from_secs(60),
    );
    assert!(!ok && stderr.contains("cannot reach the Kafka brokers"), "{stderr}");

    // A plaintext URL while TLS is configured is refused before any connection.
    let plaintext_url = format!("plaintext://localhost:{plain_port}");
    let (ok, stderr) = intake_exit(
        &[
            ("MOTCUA_KAFKA__BROKERS", plaintext_url.as_str()),
            ("MOTCUA_KAFKA__TLS__CA_FILE", ca.as_str()),
        ],
        Duration::from_secs(30),
    );
    assert!(
        !ok && stderr.contains("refusing to connect without encryption"),
        "{stderr}"
    );
}
