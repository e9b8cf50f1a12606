//! The intake stage through the real runtime, on Apache Kafka.

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use motcua_reference::Reference;
use motcua_runtime::{RuntimeConfig, Shutdown};
use motcua_schemas::{AnyEvent, Codec, DossierStatus, Topic};
use motcua_simulators::portal::{Defect, Generator};
use motcua_store::Store;
use support::*;

fn reference() -> Arc<Reference> {
    Arc::new(Reference::embedded().expect("reference"))
}

async fn sqlite_store(dir: &tempfile::TempDir) -> Store {
    Store::connect(&format!("sqlite://{}", dir.path().join("t.db").display()))
        .await
        .expect("store")
}

fn runtime_config(kafka: &motcua_kafka::KafkaConfig) -> RuntimeConfig {
    let mut rt = RuntimeConfig::new(kafka.clone());
    rt.instance_id = "test".into();
    rt
}

fn is_code(code: &str) -> bool {
    // H<province>.<unit or TTHC>-<YYMMDD>-<NNNN>
    let parts: Vec<&str> = code.split('-').collect();
    parts.len() == 3
        && parts[0].starts_with('H')
        && parts[1].len() == 6
        && parts[1].bytes().all(|b| b.is_ascii_digit())
        && parts[2].len() >= 4
        && parts[2].bytes().all(|b| b.is_ascii_digit())
}

async fn valid_dossiers_are_accepted_with_unique_codes(store: Store) {
    let (_topics, kafka) = apache_kafka(4).await;
    let r = reference();
    let mut g = Generator::new(&r, "22", 1).expect("province");
    let submissions: Vec<_> = (0..600).map(|i| g.valid(NOW + i * 1_000)).collect();
    publish(&kafka, &submissions).await;

    let (stop, shutdown) = Shutdown::channel();
    let stage = Arc::new(motcua_intake::Intake::new(
        r.clone(),
        store.clone(),
        Codec::embedded().expect("codec"),
    ));
    let worker = tokio::spawn(motcua_runtime::run(
        stage,
        Codec::embedded().expect("codec"),
        runtime_config(&kafka),
        shutdown,
    ));

    let out = read_until(
        &kafka,
        &[Topic::Accepted, Topic::Status],
        Duration::from_secs(60),
        |r| r.len() >= 1_200,
    )
    .await;
    stop.send(true).expect("stop");
    let summary = worker.await.expect("join").expect("clean stop");
    assert_eq!(summary.consumed, 600);
    assert_eq!(summary.processed, 600);
    assert_eq!(summary.dead_lettered, 0);

    let mut codes = HashSet::new();
    let mut accepted_ids = HashSet::new();
    let mut received = 0;
    for m in &out {
        match m.event.as_ref().expect("every output decodes") {
            AnyEvent::Accepted(a) => {
                assert!(is_code(&a.dossier_code), "{}", a.dossier_code);
                assert!(a.dossier_code.starts_with("H22."), "{}", a.dossier_code);
                assert!(
                    codes.insert(a.dossier_code.clone()),
                    "code {} given twice",
                    a.dossier_code
                );
                accepted_ids.insert(a.dossier.dossier_id.clone());
                assert_eq!(
                    m.key.as_deref(),
                    Some(a.dossier.dossier_id.as_str()),
                    "keyed by dossier id"
                );
                assert_eq!(m.headers.get("motcua-event-id"), Some(&a.event_id));
            }
            AnyEvent::Status(s) => {
                assert_eq!(s.status, DossierStatus::Received);
                received += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let submitted: HashSet<String> = submissions.iter().map(|s| s.dossier.dossier_id.clone()).collect();
    assert_eq!(accepted_ids, submitted, "every dossier accepted exactly once");
    assert_eq!(received, 600);
    assert_eq!(store.count_codes().await.expect("count"), 600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_dossiers_are_accepted_with_unique_codes_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    valid_dossiers_are_accepted_with_unique_codes(sqlite_store(&dir).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_dossiers_are_accepted_with_unique_codes_postgres() {
    let store = Store::connect(&motcua_store::testing::scratch_postgres_url().await)
        .await
        .expect("pg");
    valid_dossiers_are_accepted_with_unique_codes(store).await;
}

/// Bad bytes go to the dead-letter topic with reason and origin; invalid dossiers are
/// refused with reasons; everything else keeps flowing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_invalid_inputs_are_set_aside_while_the_rest_flow() {
    let (_topics, kafka) = apache_kafka(2).await;
    let r = reference();
    let codec = Codec::embedded().expect("codec");
    let mut g = Generator::new(&r, "22", 2).expect("province");

    let valid_before: Vec<_> = (0..50).map(|i| g.valid(NOW + i)).collect();
    publish(&kafka, &valid_before).await;
    // Not Avro at all; an unknown schema id; a truncated body; another topic's event; no value.
    publish_raw(&kafka, Topic::Submitted, "junk-json", Some(br#"{"dossier_id":"x"}"#)).await;
    publish_raw(
        &kafka,
        Topic::Submitted,
        "junk-id",
        Some(&[0, 0, 0, 0x30, 0x39, 2, 4, 6]),
    )
    .await;
    let mut truncated = codec.encode(&g.valid(NOW)).expect("encode");
    truncated.truncate(truncated.len() / 3);
    publish_raw(&kafka, Topic::Submitted, "junk-truncated", Some(&truncated)).await;
    let status = motcua_schemas::samples::one_of_each(&codec)
        .expect("samples")
        .remove(9)
        .1;
    publish_raw(&kafka, Topic::Submitted, "junk-subject", Some(&status)).await;
    publish_raw(&kafka, Topic::Submitted, "junk-empty", None).await;
    let defective: Vec<_> = Defect::ALL.iter().map(|d| g.defective(NOW, *d)).collect();
    publish(&kafka, &defective).await;
    let valid_after: Vec<_> = (0..50).map(|i| g.valid(NOW + 10_000 + i)).collect();
    publish(&kafka, &valid_after).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let (stop, shutdown) = Shutdown::channel();
    let stage = Arc::new(motcua_intake::Intake::new(
        r.clone(),
        sqlite_store(&dir).await,
        codec.clone(),
    ));
    let worker = tokio::spawn(motcua_runtime::run(
        stage,
        codec.clone(),
        runtime_config(&kafka),
        shutdown,
    ));

    // One status event per dossier (100 valid + one per defect), 5 dead letters.
    let expected = valid_before.len() + valid_after.len() + defective.len() + 5;
    let out = read_until(
        &kafka,
        &[Topic::Status, Topic::DeadLetter],
        Duration::from_secs(60),
        |r| r.len() >= expected,
    )
    .await;
    stop.send(true).expect("stop");
    let summary = worker.await.expect("join").expect("clean stop");
    assert_eq!(summary.dead_lettered, 5);

    let mut dead: HashMap<String, String> = HashMap::new();
    let mut statuses: HashMap<DossierStatus, usize> = HashMap::new();
    let mut refused_codes = HashSet::new();
    for m in &out {
        match m.event.as_ref().expect("decodes") {
            AnyEvent::DeadLetter(d) => {
                let key = m.key.clone().expect("dead letters keep the original key");
                assert_eq!(d.origin_topic, kafka.topic(Topic::Submitted));
                assert_eq!(
                    m.headers.get("motcua-origin-topic"),
                    Some(&kafka.topic(Topic::Submitted))
                );
                assert_eq!(
                    m.headers.get("motcua-origin-offset"),
                    Some(&d.origin_offset.to_string())
                );
                assert_eq!(
                    m.headers.get("motcua-origin-partition"),
                    Some(&d.origin_partition.to_string())
                );
                assert_eq!(m.headers.get("motcua-dlq-reason-code"), Some(&d.reason_code));
                assert!(!d.reason.is_empty());
                assert_eq!(d.origin_key.as_deref(), Some(key.as_bytes()));
                dead.insert(key, d.reason_code.clone());
            }
            AnyEvent::Status(s) => {
                *statuses.entry(s.status).or_default() += 1;
                for r in &s.reasons {
                    refused_codes.insert(r.code.clone());
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let expect_dead: HashMap<String, String> = [
        ("junk-json", "BAD_MAGIC_BYTE"),
        ("junk-id", "UNKNOWN_SCHEMA_ID"),
        ("junk-truncated", "AVRO_DECODE"),
        ("junk-subject", "WRONG_SUBJECT"),
        ("junk-empty", "EMPTY_PAYLOAD"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    assert_eq!(dead, expect_dead);
    // The valid ones and the birth-date typo, which only the registry (verify) can see.
    assert_eq!(statuses.get(&DossierStatus::Received), Some(&101), "{statuses:?}");
    assert_eq!(statuses.get(&DossierStatus::RejectedAtReception), Some(&4));
    assert_eq!(statuses.get(&DossierStatus::SupplementRequested), Some(&1));
    for code in [
        "MISSING_DOCUMENT",
        "INVALID_CITIZEN_ID",
        "UNKNOWN_PROCEDURE",
        "PROCEDURE_INACTIVE",
        "UNKNOWN_RECEIVING_UNIT",
    ] {
        assert!(refused_codes.contains(code), "{code} missing from {refused_codes:?}");
    }
}

/// A database outage (every connection cut, new ones refused) is retried with backoff:
/// offsets do not move, nothing is lost, and when the database is back everything flows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_is_retried_without_loss() {
    let (_topics, kafka) = apache_kafka(2).await;
    let r = reference();
    let url = motcua_store::testing::scratch_postgres_url().await;
    let proxy = FaultyProxy::start(&url).await;
    let store = Store::connect(&proxy.url).await.expect("pg through the proxy");
    proxy.cut();

    let mut g = Generator::new(&r, "22", 3).expect("province");
    let submissions: Vec<_> = (0..40).map(|i| g.valid(NOW + i)).collect();
    publish(&kafka, &submissions).await;

    let (stop, shutdown) = Shutdown::channel();
    let mut rt = runtime_config(&kafka);
    rt.retry_initial = Duration::from_millis(50);
    rt.retry_max = Duration::from_millis(200);
    let stage = Arc::new(motcua_intake::Intake::new(
        r.clone(),
        store.clone(),
        Codec::embedded().expect("codec"),
    ));
    let worker = tokio::spawn(motcua_runtime::run(
        stage,
        Codec::embedded().expect("codec"),
        rt,
        shutdown,
    ));
    let during = read_until(
        &kafka,
        &[Topic::Accepted, Topic::Status],
        Duration::from_secs(5),
        |_| false,
    )
    .await;
    assert!(during.is_empty(), "nothing is emitted while the database is down");
    assert!(!worker.is_finished(), "a retryable outage does not stop the worker");

    proxy.restore();
    let after = read_until(&kafka, &[Topic::Accepted], Duration::from_secs(60), |r| r.len() >= 40).await;
    stop.send(true).expect("stop");
    worker.await.expect("join").expect("clean stop");
    assert_eq!(after.len(), 40);
    assert_eq!(store.count_codes().await.expect("count"), 40);
}

/// A supplement that would make its waiting dossier larger than a portal may send one is
/// dead-lettered before intake acts, and the dossier still waits: the supplement that
/// fits is received. (Merged and only then found too large for its topic, the resumed
/// dossier was dead-lettered after its wait was answered: nothing announced, a later
/// supplement "not awaited", the dossier open for ever.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supplement_that_would_outgrow_its_dossier_s_topic_is_refused_and_the_dossier_still_waits() {
    let (_topics, portal) = apache_kafka(1).await;
    let r = reference();
    let codec = Codec::embedded().expect("codec");
    let mut g = Generator::new(&r, "22", 4).expect("province");
    let notes = |prefix: &str, n: usize| -> std::collections::BTreeMap<String, String> {
        (0..n).map(|i| (format!("{prefix}-{i}"), "x".repeat(3_000))).collect()
    };
    let mut submitted = g.valid(NOW);
    submitted.dossier.form_fields.extend(notes("ban-dau", 12));
    let missing = submitted.dossier.documents.pop().expect("a document");
    let id = submitted.dossier.dossier_id.clone();
    let supplement = |event_id: &str, at: i64| motcua_schemas::DossierSupplemented {
        event_id: event_id.to_owned(),
        dossier_id: id.clone(),
        dossier_code: None,
        portal: "dvc".to_owned(),
        documents: vec![missing.clone()],
        form_fields: Default::default(),
        land_parcels: None,
        residence_unit_code: None,
        full_name: None,
        date_of_birth: None,
        supplemented_at: at,
        published_at: at + 500,
        traceparent: None,
    };
    let mut large = supplement("sp-large", NOW + 3_600_000);
    large.form_fields = notes("ghi-chu", 10);
    let small = supplement("sp-small", NOW + 7_200_000);

    // The flow's topics take 60,000 bytes and leave 10,000 for what the flow adds: a
    // portal's message passes up to 50,000. The submission (~36 KB) and the large
    // supplement (~30 KB) each pass; merged (~66 KB) the dossier would not even fit.
    let mut worker_kafka = portal.clone();
    worker_kafka.producer.insert("message.max.bytes".into(), "60000".into());
    let mut rt = runtime_config(&worker_kafka);
    rt.limits.output_room_bytes = 10_000;
    let sizes = [
        codec.encode(&submitted).expect("encodes").len(),
        codec.encode(&large).expect("encodes").len(),
    ];
    assert!(sizes.iter().all(|n| (25_000..50_000).contains(n)), "{sizes:?}");

    let dir = tempfile::tempdir().expect("tempdir");
    let (stop, shutdown) = Shutdown::channel();
    let stage = Arc::new(motcua_intake::Intake::new(r, sqlite_store(&dir).await, codec.clone()));
    let worker = tokio::spawn(motcua_runtime::run(stage, codec.clone(), rt, shutdown));
    let reader = Collector::start(&portal, &[Topic::Status, Topic::Accepted, Topic::DeadLetter]);
    let status_of = |seen: &[Read], status: DossierStatus| {
        seen.iter()
            .any(|m| matches!(&m.event, Some(AnyEvent::Status(s)) if s.status == status))
    };
    let dead_letters = |seen: &[Read]| -> Vec<String> {
        seen.iter()
            .filter_map(|m| match &m.event {
                Some(AnyEvent::DeadLetter(d)) => Some(format!("{}: {}", d.reason_code, d.reason)),
                _ => None,
            })
            .collect()
    };

    publish(&portal, std::slice::from_ref(&submitted)).await;
    let asked = reader
        .wait_for(Duration::from_secs(60), |seen| {
            status_of(seen, DossierStatus::SupplementRequested)
        })
        .await;
    assert!(asked, "the missing paper is asked for");
    publish(&portal, std::slice::from_ref(&large)).await;
    let refused = reader
        .wait_for(Duration::from_secs(60), |seen| !dead_letters(seen).is_empty())
        .await;
    assert!(refused, "the large supplement is dead-lettered");
    publish(&portal, std::slice::from_ref(&small)).await;
    let received = reader
        .wait_for(Duration::from_secs(60), |seen| {
            status_of(seen, DossierStatus::Received) || dead_letters(seen).len() > 1
        })
        .await;
    stop.send(true).expect("stop");
    let summary = worker.await.expect("join").expect("clean stop");
    let seen = reader.snapshot();
    let dead = dead_letters(&seen);
    assert!(received, "{summary:?} {dead:?}");
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(dead[0].starts_with("SUPPLEMENT_TOO_LARGE: "), "{dead:?}");
    assert!(status_of(&seen, DossierStatus::Received), "{dead:?}");
    let accepted: Vec<_> = seen
        .iter()
        .filter_map(|m| match &m.event {
            Some(AnyEvent::Accepted(a)) => Some(a),
            _ => None,
        })
        .collect();
    assert_eq!(accepted.len(), 1);
    assert!(
        !accepted[0].dossier.form_fields.contains_key("ghi-chu-0"),
        "the refused supplement left no trace"
    );
}
