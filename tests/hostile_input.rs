//! A hostile portal, on Apache Kafka and a real PostgreSQL:
//! good submissions, then what an attacker or a buggy upstream would send, then good ones
//! again — to `motcua run intake` and `motcua run track`, wired by the stage table. No
//! worker may stop; every good dossier gets exactly one outcome; every hostile message
//! exactly one dead letter (by the group that owns its topic) or one rejection, with a
//! reason that does not quote it; every group's lag reaches zero.

mod support;

use std::collections::{HashMap, HashSet};
use std::process::Child;
use std::time::{Duration, Instant};

use motcua_kafka::KafkaConfig;
use motcua_reference::Reference;
use motcua_schemas::{AnyEvent, Codec, DossierStatus, DossierStatusChanged, DossierSubmitted, Reason, Topic};
use motcua_simulators::portal::{Defect, Generator};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::TopicPartitionList;
use support::*;

const PARTITIONS: i32 = 2;

fn spawn_stage(stage: &str, kafka: &KafkaConfig, db: &str) -> Child {
    motcua()
        .args(["run", stage, "--brokers", &kafka.brokers, "--database-url", db])
        .envs(kafka_env(kafka))
        .env("MOTCUA_RUNTIME__INSTANCE_ID", format!("hostile-{stage}"))
        .env("MOTCUA_TRACK__API_LISTEN", "")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn motcua run")
}

/// Committed offsets of `group` against the partitions' ends, summed over `topics`.
fn lag(kafka: &KafkaConfig, group: &str, topics: &[Topic]) -> i64 {
    let consumer: BaseConsumer = kafka
        .consumer_config(group, "motcua-test-lag")
        .create()
        .expect("lag consumer");
    let mut tpl = TopicPartitionList::new();
    for t in topics {
        for p in 0..PARTITIONS {
            tpl.add_partition(&kafka.topic(*t), p);
        }
    }
    let Ok(committed) = consumer.committed_offsets(tpl, Duration::from_secs(10)) else {
        return i64::MAX;
    };
    let mut total = 0;
    for e in committed.elements() {
        let (_, high) = consumer
            .fetch_watermarks(e.topic(), e.partition(), Duration::from_secs(10))
            .expect("watermarks");
        let at = e.offset().to_raw().filter(|o| *o >= 0).unwrap_or(0);
        assert!(
            at <= high,
            "{}[{}]: committed {at} past the end {high}",
            e.topic(),
            e.partition()
        );
        total += high - at;
    }
    total
}

/// An encoded submission whose enterprise tax-code array claims 2^40 items: a decoder
/// that believed it would try to allocate terabytes.
fn claims_a_huge_array(codec: &Codec, s: &DossierSubmitted) -> Vec<u8> {
    let mut empty = s.clone();
    empty.dossier.enterprise_tax_codes.clear();
    let mut one = empty.clone();
    one.dossier.enterprise_tax_codes.push("0100109106".into());
    let a = codec.encode(&empty).expect("encode");
    let b = codec.encode(&one).expect("encode");
    let at = a.iter().zip(&b).position(|(x, y)| x != y).expect("the arrays differ");
    assert_eq!(a[at], 0, "an empty array's block count");
    // Zig-zag varint of 2^40.
    let mut count: u64 = 1 << 41;
    let mut varint = Vec::new();
    loop {
        let byte = (count & 0x7f) as u8;
        count >>= 7;
        if count == 0 {
            varint.push(byte);
            break;
        }
        varint.push(byte | 0x80);
    }
    [&a[..at], &varint[..], &a[at + 1..]].concat()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_messages_are_set_aside_once_each_while_every_good_dossier_flows() {
    let (_topics, kafka) = apache_kafka(PARTITIONS).await;
    let db = motcua_store::testing::scratch_postgres_url().await;
    let codec = Codec::embedded().expect("codec");
    let reference = Reference::embedded().expect("reference");
    let mut g = Generator::new(&reference, "22", 11).expect("province");

    let mut intake = spawn_stage("intake", &kafka, &db);
    let mut track = spawn_stage("track", &kafka, &db);

    // Good ones first.
    let mut good: Vec<DossierSubmitted> = (0..40).map(|i| g.valid(NOW + i)).collect();
    good.extend(Defect::ALL.iter().map(|d| g.defective(NOW, *d)));
    publish(&kafka, &good).await;

    // Then the hostile ones, each keyed so its dead letter can be told apart; the value
    // is the reason code its dead letter must carry.
    let mut hostile: HashMap<String, &str> = HashMap::new();
    let mut send_hostile = |key: &str, code: &'static str| {
        hostile.insert(key.to_owned(), code);
    };
    let secret_name = "Nguyễn Thị Bí Mật ".repeat(32_000); // ≈ 600 KB, under the broker's 1 MB
    let mut s = g.valid(NOW);
    s.dossier.applicant.full_name = secret_name.clone();
    publish_raw(
        &kafka,
        Topic::Submitted,
        "h-600kb-name",
        Some(&codec.encode(&s).expect("encode")),
    )
    .await;
    send_hostile("h-600kb-name", "FIELD_TOO_LONG");

    let mut s = g.valid(NOW);
    s.dossier.dossier_id = "d-1\0; DROP TABLE dossier_codes".into();
    publish_raw(
        &kafka,
        Topic::Submitted,
        "h-nul-id",
        Some(&codec.encode(&s).expect("encode")),
    )
    .await;
    send_hostile("h-nul-id", "BAD_IDENTIFIER");

    let mut s = g.valid(NOW);
    s.dossier.dossier_id = "x".repeat(10_000);
    publish_raw(
        &kafka,
        Topic::Submitted,
        "h-long-id",
        Some(&codec.encode(&s).expect("encode")),
    )
    .await;
    send_hostile("h-long-id", "BAD_IDENTIFIER");

    let mut s = g.valid(NOW);
    let doc = s.dossier.documents[0].clone();
    s.dossier.documents = vec![doc; 2_000];
    publish_raw(
        &kafka,
        Topic::Submitted,
        "h-2000-docs",
        Some(&codec.encode(&s).expect("encode")),
    )
    .await;
    send_hostile("h-2000-docs", "TOO_MANY_ITEMS");

    let mut s = g.valid(NOW);
    for i in 0..5_000 {
        s.dossier.form_fields.insert(format!("f{i}"), "v".into());
    }
    publish_raw(
        &kafka,
        Topic::Submitted,
        "h-5000-fields",
        Some(&codec.encode(&s).expect("encode")),
    )
    .await;
    send_hostile("h-5000-fields", "TOO_MANY_ITEMS");

    let mut s = g.valid(NOW);
    s.dossier.submitted_at = i64::MAX;
    publish_raw(
        &kafka,
        Topic::Submitted,
        "h-year-292m",
        Some(&codec.encode(&s).expect("encode")),
    )
    .await;
    send_hostile("h-year-292m", "TIMESTAMP_OUT_OF_RANGE");

    let mut s = g.valid(NOW);
    s.dossier.applicant.date_of_birth = Some(i32::MIN);
    publish_raw(
        &kafka,
        Topic::Submitted,
        "h-birth",
        Some(&codec.encode(&s).expect("encode")),
    )
    .await;
    send_hostile("h-birth", "TIMESTAMP_OUT_OF_RANGE");

    let mut s = g.valid(NOW);
    s.dossier.applicant.full_name = "Trần\u{1b}[2J Văn A".into();
    publish_raw(
        &kafka,
        Topic::Submitted,
        "h-escape",
        Some(&codec.encode(&s).expect("encode")),
    )
    .await;
    send_hostile("h-escape", "CONTROL_CHARACTER");

    let huge = claims_a_huge_array(&codec, &g.valid(NOW));
    publish_raw(&kafka, Topic::Submitted, "h-huge-array", Some(&huge)).await;
    send_hostile("h-huge-array", "AVRO_DECODE");

    publish_raw(&kafka, Topic::Submitted, "h-json", Some(br#"{"dossier_id":"x"}"#)).await;
    send_hostile("h-json", "BAD_MAGIC_BYTE");
    publish_raw(&kafka, Topic::Submitted, "h-schema", Some(&[0, 0, 0, 0x30, 0x39, 2, 4])).await;
    send_hostile("h-schema", "UNKNOWN_SCHEMA_ID");
    publish_raw(&kafka, Topic::Submitted, "h-empty", None).await;
    send_hostile("h-empty", "EMPTY_PAYLOAD");

    // Topics only track reads: its own to dead-letter.
    let status = |dossier_id: &str, message: String| {
        DossierStatusChanged::new("e-1".into(), "route", dossier_id, DossierStatus::Processing, NOW).with_reasons(vec![
            Reason {
                code: "X".into(),
                message,
            },
        ])
    };
    publish_raw(&kafka, Topic::Status, "h-status-json", Some(b"not avro")).await;
    send_hostile("h-status-json", "BAD_MAGIC_BYTE");
    let bad = status("d\0", "ok".into());
    publish_raw(
        &kafka,
        Topic::Status,
        "h-status-nul",
        Some(&codec.encode(&bad).expect("encode")),
    )
    .await;
    send_hostile("h-status-nul", "BAD_IDENTIFIER");
    let bad = status("d-2", secret_name.chars().take(60_000).collect());
    publish_raw(
        &kafka,
        Topic::Status,
        "h-status-long",
        Some(&codec.encode(&bad).expect("encode")),
    )
    .await;
    send_hostile("h-status-long", "FIELD_TOO_LONG");

    // Good ones again.
    let after: Vec<DossierSubmitted> = (0..40).map(|i| g.valid(NOW + 10_000 + i)).collect();
    publish(&kafka, &after).await;
    good.extend(after);
    let good_ids: HashSet<String> = good.iter().map(|s| s.dossier.dossier_id.clone()).collect();

    // Every good dossier's outcome from intake, every dead letter.
    let out = read_until(
        &kafka,
        &[Topic::Status, Topic::DeadLetter],
        Duration::from_secs(120),
        |r| {
            let statuses = r
                .iter()
                .filter(|m| matches!(&m.event, Some(AnyEvent::Status(s)) if s.stage == "intake"))
                .count();
            let dead = r.iter().filter(|m| m.topic == Topic::DeadLetter).count();
            statuses >= good.len() && dead >= hostile.len()
        },
    )
    .await;

    let mut outcomes: HashMap<String, Vec<i32>> = HashMap::new();
    let mut dead: HashMap<String, Vec<(String, String, String)>> = HashMap::new();
    for m in &out {
        match &m.event {
            Some(AnyEvent::Status(s)) if s.stage == "intake" => {
                outcomes.entry(s.dossier_id.clone()).or_default().push(s.status_code);
                if s.status_code != 2 {
                    assert!(!s.reasons.is_empty(), "a rejection has a reason");
                }
            }
            Some(AnyEvent::DeadLetter(d)) => {
                let key = String::from_utf8_lossy(d.origin_key.as_deref().unwrap_or_default()).into_owned();
                assert!(
                    !d.reason.contains("Bí Mật") && !d.reason.contains("DROP TABLE"),
                    "{}",
                    d.reason
                );
                assert!(
                    m.payload.len() < 100_000,
                    "dead letter of {key} is {} bytes",
                    m.payload.len()
                );
                dead.entry(key)
                    .or_default()
                    .push((d.stage.clone(), d.reason_code.clone(), d.reason.clone()));
            }
            _ => {}
        }
    }
    for id in &good_ids {
        let o = outcomes.get(id).map(Vec::as_slice).unwrap_or_default();
        assert_eq!(o.len(), 1, "dossier {id} had outcomes {o:?}");
    }
    assert_eq!(
        outcomes.len(),
        good_ids.len(),
        "no outcome for anything but the good dossiers"
    );
    for (key, code) in &hostile {
        let d = dead.get(key).map(Vec::as_slice).unwrap_or_default();
        assert_eq!(d.len(), 1, "{key}: dead letters {d:?}");
        let owner = if key.starts_with("h-status") { "track" } else { "intake" };
        assert_eq!((d[0].0.as_str(), d[0].1.as_str()), (owner, *code), "{key}: {}", d[0].2);
    }
    assert_eq!(
        dead.len(),
        hostile.len(),
        "nothing else was dead-lettered: {:?}",
        dead.keys()
    );

    // No worker stopped, and both groups caught up with everything.
    assert!(intake.try_wait().expect("intake").is_none(), "intake exited");
    assert!(track.try_wait().expect("track").is_none(), "track exited");
    let deadline = Instant::now() + Duration::from_secs(60);
    let all: Vec<Topic> = Topic::ALL.into_iter().filter(|t| *t != Topic::DeadLetter).collect();
    loop {
        let (a, b) = (
            lag(&kafka, &kafka.group("intake"), &[Topic::Submitted]),
            lag(&kafka, &kafka.group("track"), &all),
        );
        if a == 0 && b == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "lag did not reach 0: intake {a}, track {b}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // The projection holds the good dossiers and nothing else.
    let pool = sqlx::PgPool::connect(&db).await.expect("pg");
    let projected: Vec<String> = sqlx::query_scalar("SELECT dossier_id FROM track_dossiers")
        .fetch_all(&pool)
        .await
        .expect("projection");
    let projected: HashSet<String> = projected.into_iter().collect();
    assert_eq!(projected, good_ids);

    sigterm(&intake);
    sigterm(&track);
    assert!(wait_exit(&mut intake, Duration::from_secs(30)).success());
    assert!(wait_exit(&mut track, Duration::from_secs(30)).success());
}
