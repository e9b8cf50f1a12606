//! Least privilege on Apache Kafka, for real: SASL SCRAM-SHA-512 over TLS, the
//! StandardAuthorizer on, and only the ACLs `deploy/kafka/acls.sh` grants. A whole
//! pipeline runs with every stage (and the gateway and back-office simulators) under its
//! own principal; a stage without the ACLs it needs, a wrong password, an unknown user and
//! a client without TLS each exit non-zero with the reason, rather than hang.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use motcua_kafka::{KafkaConfig, KafkaSasl, KafkaTls, SaslMechanism};
use motcua_schemas::Topic;
use support::processes::{settled, PipelineCount, ProcessPipeline, ROLES};
use support::*;

/// Principals: every role, and the portals that publish submissions.
fn principals() -> Vec<String> {
    ROLES
        .iter()
        .chain(["portal"].iter())
        .map(|r| format!("motcua-{r}"))
        .collect()
}

fn password(user: &str) -> String {
    format!("secret-of-{user}")
}

/// A client configuration for `user` over SASL_SSL, its password in a file under `dir`.
fn client(cluster: &KafkaCluster, pki: &TestPki, dir: &Path, user: &str, password: &str) -> KafkaConfig {
    let file = dir.join(format!("{user}.password"));
    std::fs::write(&file, password).expect("password file");
    let mut kafka = KafkaConfig::with_brokers(cluster.bootstrap());
    kafka.tls = Some(KafkaTls {
        ca_file: Some(pki.path("ca.pem").into()),
        ..KafkaTls::default()
    });
    kafka.sasl = Some(KafkaSasl {
        mechanism: SaslMechanism::ScramSha512,
        username: user.to_owned(),
        password_file: Some(file),
        password_env: None,
    });
    kafka
}

/// The environment that gives a `motcua` process `kafka`'s connection settings.
fn env_of(kafka: &KafkaConfig) -> Vec<(String, String)> {
    let mut env = vec![("MOTCUA_KAFKA__BROKERS".to_owned(), kafka.brokers.clone())];
    if let Some(tls) = &kafka.tls {
        let ca = tls.ca_file.as_ref().expect("ca").display().to_string();
        env.push(("MOTCUA_KAFKA__TLS__CA_FILE".to_owned(), ca));
    }
    if let Some(sasl) = &kafka.sasl {
        env.extend([
            ("MOTCUA_KAFKA__SASL__MECHANISM".to_owned(), "SCRAM-SHA-512".to_owned()),
            ("MOTCUA_KAFKA__SASL__USERNAME".to_owned(), sasl.username.clone()),
            (
                "MOTCUA_KAFKA__SASL__PASSWORD_FILE".to_owned(),
                sasl.password_file.as_ref().expect("file").display().to_string(),
            ),
        ]);
    }
    env
}

/// Runs `motcua run <stage>` with `env` until it exits (at most `timeout`): whether it
/// succeeded, what it wrote to stderr, how long it took.
fn run_until_exit(stage: &str, env: &[(String, String)], timeout: Duration) -> (bool, String, Duration) {
    let dir = tempfile::tempdir().expect("tempdir");
    let started = Instant::now();
    let mut child = motcua()
        .args(["run", stage])
        .env(
            "MOTCUA_DATABASE__URL",
            format!("sqlite://{}", dir.path().join("s.db").display()),
        )
        .env("MOTCUA_RUNTIME__CONNECT_TIMEOUT_MS", "5000")
        .env("MOTCUA_METRICS__LISTEN", "")
        .env("MOTCUA_TRACK__API_LISTEN", "")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let status = wait_exit(&mut child, timeout);
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr).expect("read");
    (status.success(), stderr, started.elapsed())
}

/// The last line a process wrote (its error, for a process that failed).
fn last_line(stderr: &str) -> &str {
    stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_stage_runs_under_its_own_principal_with_only_its_acls_and_refusals_are_explained() {
    const N: usize = 40;
    let pki = TestPki::create();
    let mut spec = ClusterSpec::tls(&pki, true);
    spec.properties.extend(
        [
            (
                "authorizer.class.name",
                "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            ),
            // The nodes themselves and the test's administration, on the plaintext
            // listener the nodes use among themselves (never offered to a worker).
            ("super.users", "User:ANONYMOUS"),
            ("allow.everyone.if.no.acl.found", "false"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    spec.scram_users = principals()
        .iter()
        .map(|u| format!("SCRAM-SHA-512=[name={u},password={}]", password(u)))
        .collect();
    let cluster = KafkaCluster::start(spec);
    let admin = KafkaConfig::with_brokers(format!("127.0.0.1:{}", cluster.node(1).internal_port));
    admin.create_topics(2, 1).await.expect("topics");

    // The deployment's own ACL script, with Kafka's own kafka-acls.sh.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new("bash")
        .arg(root.join("deploy/kafka/acls.sh"))
        .args(["--bootstrap-server", &admin.brokers])
        .env("KAFKA_ACLS", root.join("tests/kafka/kafka-acls.sh"))
        .output()
        .expect("acls.sh");
    assert!(
        out.status.success(),
        "acls.sh: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // The whole pipeline, each role as motcua-<role>.
    let secrets = tempfile::tempdir().expect("tempdir");
    let clients: std::collections::BTreeMap<String, KafkaConfig> = principals()
        .into_iter()
        .map(|u| {
            let c = client(&cluster, &pki, secrets.path(), &u, &password(&u));
            (u, c)
        })
        .collect();
    let env_for = {
        let clients = clients.clone();
        move |role: &str| env_of(&clients[&format!("motcua-{role}")])
    };
    let mut pipeline = ProcessPipeline::start(Box::new(env_for)).await;
    let submissions = pipeline.submissions(N, 5);
    let ids: Vec<String> = submissions.iter().map(|s| s.dossier.dossier_id.clone()).collect();
    let collector = Collector::start(&admin, &[Topic::Status]);
    publish(&clients["motcua-portal"], &submissions).await;
    let all_ended = collector.wait_for(Duration::from_secs(240), |s| settled(s) >= N).await;
    let exited = pipeline.exited();
    assert!(exited.is_empty(), "workers stopped during the run: {exited:?}");
    assert!(
        all_ended,
        "only {} of {N} dossiers settled",
        settled(&collector.snapshot())
    );
    pipeline.stop();
    let count = PipelineCount::take(&admin.brokers, "", &ids);
    count.assert_sound();
    eprintln!("under their own principals: {}", count.0["dossiers"]);

    // A stage without its ACLs: route, authenticated as verify (who may read neither
    // dossier.paid nor route's group).
    let as_verify = env_of(&clients["motcua-verify"]);
    let (ok, err, took) = run_until_exit("route", &as_verify, Duration::from_secs(60));
    let reason = last_line(&err);
    assert!(!ok, "route ran without its ACLs");
    assert!(
        reason.contains("not authorized") && (reason.contains("motcua-route") || reason.contains("dossier.paid")),
        "the reason names the group or topic and what was refused: {reason}"
    );
    eprintln!("route as motcua-verify: exit after {took:?}: {reason}");

    // A wrong password, an unknown user.
    let wrong = env_of(&client(
        &cluster,
        &pki,
        secrets.path(),
        "motcua-intake",
        "not-the-password",
    ));
    let (ok, err, took) = run_until_exit("intake", &wrong, Duration::from_secs(60));
    let reason = last_line(&err);
    assert!(!ok && reason.contains("uthentication"), "wrong password: {reason}");
    eprintln!("wrong password: exit after {took:?}: {reason}");
    let stranger = env_of(&client(&cluster, &pki, secrets.path(), "motcua-nobody", "x"));
    let (ok, err, took) = run_until_exit("intake", &stranger, Duration::from_secs(60));
    let reason = last_line(&err);
    assert!(!ok && reason.contains("uthentication"), "unknown user: {reason}");
    eprintln!("unknown user: exit after {took:?}: {reason}");

    // No TLS offered to the SASL_SSL listener.
    let plain = vec![("MOTCUA_KAFKA__BROKERS".to_owned(), cluster.bootstrap())];
    let (ok, err, took) = run_until_exit("intake", &plain, Duration::from_secs(60));
    let reason = last_line(&err);
    assert!(
        !ok && reason.contains("cannot reach the Kafka brokers"),
        "no TLS: {reason}"
    );
    eprintln!("no TLS: exit after {took:?}: {reason}");
}
