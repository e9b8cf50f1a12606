//! `motcua export` against a real broker (librdkafka's mock cluster over TCP): events on
//! two days, one before and one after the range, a non-Avro message, an unknown schema id
//! and a tombstone; the real binary writes Parquet, and pyarrow (a reader we did not
//! write) reads it back. Exporting again gives the same rows, never twice.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use motcua_kafka::KafkaConfig;
use motcua_schemas::{samples, Codec, Topic};
use rdkafka::producer::FutureRecord;
use serde_json::Value;
use support::*;

const DAY: i64 = 86_400_000;
/// 2025-11-25T00:00:00Z.
const DAY1: i64 = 1_764_028_800_000;

async fn send_at(kafka: &KafkaConfig, topic: Topic, key: &str, payload: Option<&[u8]>, timestamp: i64) {
    let p = producer(kafka);
    let name = kafka.topic(topic);
    let mut record = FutureRecord::<str, [u8]>::to(&name).key(key).timestamp(timestamp);
    if let Some(b) = payload {
        record = record.payload(b);
    }
    p.send(record, Duration::from_secs(10)).await.expect("delivered");
}

/// A submission of its own dossier id, submitted at `at`.
fn submission(codec: &Codec, n: u32, at: i64) -> (String, Vec<u8>) {
    let mut s = samples::submitted();
    s.event_id = format!("00000000-0000-4000-8000-{n:012}");
    s.dossier.dossier_id = format!("10000000-0000-4000-8000-{n:012}");
    s.dossier.submitted_at = at - 500;
    s.published_at = at;
    (s.dossier.dossier_id.clone(), codec.encode(&s).expect("encode"))
}

fn export(kafka: &KafkaConfig, out: &Path, extra: &[&str]) -> Value {
    let mut c = motcua();
    c.envs(kafka_env(kafka))
        .args([
            "export",
            "--from",
            "2025-11-25T00:00:00Z",
            "--to",
            "2025-11-27",
            "--json",
            "--brokers",
            &kafka.brokers,
        ])
        .arg("--out")
        .arg(out)
        .args(extra);
    let o = c.output().expect("run motcua export");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "motcua export failed: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("summary is JSON ({e}): {}", String::from_utf8_lossy(&o.stdout)))
}

fn read_back(kafka: &KafkaConfig, out: &Path) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/python/read_export.py");
    let o = python()
        .arg(script)
        .arg(out)
        .arg(kafka.topic(Topic::Submitted))
        .output()
        .expect("run python");
    assert!(
        o.status.success(),
        "read_export.py: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).expect("JSON from read_export.py")
}

/// The summary's rows per topic and date.
fn summary_rows(s: &Value) -> BTreeMap<String, BTreeMap<String, u64>> {
    let mut out = BTreeMap::new();
    for t in s["topics"].as_array().expect("topics") {
        let rows: BTreeMap<String, u64> = t["rows"]
            .as_object()
            .expect("rows")
            .iter()
            .map(|(d, n)| (d.clone(), n.as_u64().expect("count")))
            .collect();
        if !rows.is_empty() {
            out.insert(t["topic"].as_str().expect("name").to_owned(), rows);
        }
    }
    out
}

fn skipped(s: &Value, topic: &str) -> BTreeMap<String, u64> {
    let t = s["topics"]
        .as_array()
        .expect("topics")
        .iter()
        .find(|t| t["topic"] == topic)
        .unwrap_or_else(|| panic!("{topic} in the summary"));
    t["skipped"]
        .as_object()
        .expect("skipped")
        .iter()
        .map(|(c, n)| (c.clone(), n.as_u64().expect("count")))
        .collect()
}

/// Every file under `dir`, relative to it.
fn tree(dir: &Path) -> BTreeSet<String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
        for e in std::fs::read_dir(dir).expect("read dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.insert(p.strip_prefix(root).expect("inside").display().to_string());
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(dir, dir, &mut out);
    out
}

/// (partition, offset) of every exported dossier.submitted row.
fn positions(read: &Value) -> BTreeSet<(i64, i64)> {
    read["submitted"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| (r["partition"].as_i64().expect("p"), r["offset"].as_i64().expect("o")))
        .collect()
}

#[tokio::test]
async fn a_time_range_becomes_parquet_that_pyarrow_reads() {
    let (_topics, kafka) = apache_kafka(2).await;
    let codec = Codec::embedded().expect("codec");

    // Before the range, then day 1, day 2, then after the range (last on its partition).
    let (early, bytes) = submission(&codec, 0, DAY1 - 3_600_000);
    send_at(&kafka, Topic::Submitted, &early, Some(&bytes), DAY1 - 3_600_000).await;
    let mut expected: BTreeMap<String, (String, i64)> = BTreeMap::new();
    for (n, at) in [
        (1, DAY1 + 3_600_000),
        (2, DAY1 + 7_200_000),
        (3, DAY1 + 10_800_000),
        (4, DAY1 + DAY + 60_000),
        (5, DAY1 + 2 * DAY - 1),
    ] {
        let (id, bytes) = submission(&codec, n, at);
        send_at(&kafka, Topic::Submitted, &id, Some(&bytes), at).await;
        let date = if at < DAY1 + DAY { "2025-11-25" } else { "2025-11-26" };
        expected.insert(id, (date.to_owned(), at));
    }
    // Not Avro; framed with a schema id nobody registered; a tombstone.
    send_at(
        &kafka,
        Topic::Submitted,
        "junk",
        Some(b"{\"dossier_id\": 1}"),
        DAY1 + 60_000,
    )
    .await;
    send_at(
        &kafka,
        Topic::Submitted,
        "unknown-id",
        Some(&[0, 0, 0, 3, 231, 2, 4]),
        DAY1 + 61_000,
    )
    .await;
    send_at(&kafka, Topic::Status, "gone", None, DAY1 + 62_000).await;
    // One event of every topic, so every schema goes through Arrow and Parquet.
    let sample_at = DAY1 + 4 * 3_600_000;
    for (topic, bytes) in samples::one_of_each(&codec).expect("samples") {
        send_at(
            &kafka,
            topic,
            "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0",
            Some(&bytes),
            sample_at,
        )
        .await;
    }
    let sample = samples::submitted();
    expected.insert(sample.dossier.dossier_id.clone(), ("2025-11-25".to_owned(), sample_at));
    let (late, bytes) = submission(&codec, 9, DAY1 + 2 * DAY);
    send_at(&kafka, Topic::Submitted, &late, Some(&bytes), DAY1 + 2 * DAY).await;

    let out = tempfile::tempdir().expect("tempdir");
    let summary = export(&kafka, out.path(), &[]);

    // The summary: rows per topic and date, skipped messages by reason.
    let mut want: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for t in Topic::ALL {
        want.insert(kafka.topic(t), BTreeMap::from([("2025-11-25".to_owned(), 1)]));
    }
    let (submitted, status) = (kafka.topic(Topic::Submitted), kafka.topic(Topic::Status));
    want.insert(
        submitted.clone(),
        BTreeMap::from([("2025-11-25".to_owned(), 4), ("2025-11-26".to_owned(), 2)]),
    );
    assert_eq!(summary_rows(&summary), want, "{summary:#}");
    assert_eq!(
        skipped(&summary, &submitted),
        BTreeMap::from([("BAD_MAGIC_BYTE".to_owned(), 1), ("UNKNOWN_SCHEMA_ID".to_owned(), 1)])
    );
    assert_eq!(skipped(&summary, &status), BTreeMap::from([("NO_VALUE".to_owned(), 1)]));

    // The files: Hive-style names, one per topic and date, nothing half-written.
    let files = tree(out.path());
    let from = DAY1;
    let mut want_files: BTreeSet<String> = Topic::ALL
        .iter()
        .map(|t| format!("topic={}/date=2025-11-25/part-{from}-0.parquet", kafka.topic(*t)))
        .collect();
    want_files.insert(format!("topic={submitted}/date=2025-11-26/part-{from}-0.parquet"));
    assert_eq!(files, want_files);

    // Read back by pyarrow: the same counts, the values as published.
    let read = read_back(&kafka, out.path());
    let counts: BTreeMap<String, BTreeMap<String, u64>> =
        serde_json::from_value(read["counts"].clone()).expect("counts");
    assert_eq!(counts, want);
    let types = &read["types"];
    assert_eq!(types["_timestamp"], "timestamp[ms, tz=UTC]");
    assert_eq!(types["submitted_at"], "timestamp[ms, tz=UTC]");
    assert_eq!(types["date_of_birth"], "date32[day]");
    // pyarrow names a map read from Parquet after its column: map<string, string ('form_fields')>.
    let map = types["form_fields"].as_str().expect("map type");
    assert!(map.starts_with("map<string, string"), "{map}");
    assert_eq!(types["channel"], "string");
    let rows = read["submitted"].as_array().expect("rows");
    assert_eq!(rows.len(), expected.len());
    for r in rows {
        let id = r["dossier_id"].as_str().expect("dossier id");
        let (date, at) = expected.get(id).unwrap_or_else(|| panic!("unexpected dossier {id}"));
        assert_eq!(r["date"], date.as_str(), "{id}");
        assert_eq!(r["timestamp"].as_i64(), Some(*at), "Kafka timestamp of {id}");
        let submitted_at = if id == sample.dossier.dossier_id {
            sample.dossier.submitted_at
        } else {
            at - 500
        };
        assert_eq!(r["submitted_at"].as_i64(), Some(submitted_at), "{id}");
        assert_eq!(r["schema_id"], 1);
        assert_eq!(r["channel"], "ONLINE");
        assert_eq!(r["date_of_birth"], 7_440);
        assert_eq!(r["documents"], 1);
        assert_eq!(
            r["form_fields"],
            serde_json::json!([["purpose", "Mua bán chuyển nhượng"]])
        );
    }
    let first = positions(&read);

    // The same range again: the same files, the same rows, none twice.
    let again = export(&kafka, out.path(), &[]);
    assert_eq!(summary_rows(&again), want);
    assert_eq!(tree(out.path()), want_files);
    let read_again = read_back(&kafka, out.path());
    assert_eq!(read_again["counts"], read["counts"]);
    assert_eq!(positions(&read_again), first);

    // Small files for two topics: day 1's four submissions in two parts; then the default
    // again replaces them with one, removing the extra part.
    let split = export(
        &kafka,
        out.path(),
        &[
            "--topics",
            "dossier.submitted,dossier.status",
            "--max-rows-per-file",
            "2",
        ],
    );
    let topics: Vec<&str> = split["topics"]
        .as_array()
        .expect("topics")
        .iter()
        .map(|t| t["topic"].as_str().expect("name"))
        .collect();
    assert_eq!(topics, [submitted.as_str(), status.as_str()]);
    assert!(tree(out.path()).contains(&format!("topic={submitted}/date=2025-11-25/part-{from}-1.parquet")));
    assert_eq!(read_back(&kafka, out.path())["counts"], read["counts"]);
    let last = export(&kafka, out.path(), &[]);
    let removed = last["topics"][0]["removed"].as_array().expect("removed");
    assert_eq!(removed.len(), 1, "{last}");
    assert_eq!(tree(out.path()), want_files);
    let read_last = read_back(&kafka, out.path());
    assert_eq!(read_last["counts"], read["counts"]);
    assert_eq!(positions(&read_last), first);
}

fn fails_with(args: &[&str], expected: &str) {
    let out = tempfile::tempdir().expect("tempdir");
    let o = motcua()
        .arg("export")
        .args(args)
        .arg("--out")
        .arg(out.path())
        .output()
        .expect("run motcua export");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{args:?} was accepted");
    assert!(stderr.contains(expected), "{args:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(
        std::fs::read_dir(out.path()).expect("dir").count(),
        0,
        "nothing written"
    );
}

#[test]
fn bad_arguments_are_explained() {
    fails_with(&["--from", "2025-11-26", "--to", "2025-11-25"], "is not after --from");
    fails_with(&["--from", "2025-11-25", "--to", "2025-11-25"], "is not after --from");
    fails_with(
        &["--from", "yesterday", "--to", "2025-11-25"],
        "is not an RFC 3339 time",
    );
    fails_with(&["--from", "2025-02-30", "--to", "2025-11-25"], "'2025-02-30' is not");
    fails_with(
        &[
            "--from",
            "2025-11-25",
            "--to",
            "2025-11-26",
            "--topics",
            "dossier.submited",
        ],
        "unknown topic 'dossier.submited'; known topics: dossier.submitted",
    );
    fails_with(
        &["--from", "0", "--to", "1", "--max-rows-per-file", "0"],
        "--max-rows-per-file",
    );
}
