//! `motcua demo` end to end, as a user runs it (the real binary): over Apache Kafka and
//! PostgreSQL, every dossier ends in exactly one terminal
//! state, the report's figures equal what the test counts in the database itself, and the
//! dead-letter topic holds the deliberately malformed messages and nothing else. Then on
//! embedded defaults (in-process broker, SQLite), as a soak, and with bad flags.

mod support;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use motcua_kafka::KafkaConfig;
use motcua_schemas::{AnyEvent, Topic};
use serde_json::Value;
use sqlx::Row;
use support::*;

fn demo(args: &[&str]) -> (bool, String, String) {
    let out = motcua().arg("demo").args(args).output().expect("run motcua demo");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn report(path: &std::path::Path) -> Value {
    let text = std::fs::read_to_string(path.with_extension("json")).expect("report json");
    serde_json::from_str(&text).expect("report is JSON")
}

fn num(v: &Value, path: &[&str]) -> i64 {
    let mut v = v;
    for p in path {
        v = &v[*p];
    }
    v.as_i64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_ends_every_dossier_once_and_its_report_equals_the_database() {
    let (_topics, suite) = suite_kafka();
    let db = motcua_store::testing::scratch_postgres_url().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let html = dir.path().join("report.html");
    let (ok, out, err) = demo(&[
        "--dossiers",
        "1200",
        "--seed",
        "7",
        "--malformed-rate",
        "0.01",
        "--registry-error-rate",
        "0.05",
        "--brokers",
        &suite.brokers,
        "--topic-prefix",
        &suite.topic_prefix,
        "--database-url",
        &db,
        "--report",
        html.to_str().expect("utf-8 path"),
        "--progress",
        "plain",
    ]);
    assert!(ok, "demo failed:\n{out}\n{err}");
    assert!(out.contains("checked    all"), "{out}");
    let r = report(&html);
    let page = std::fs::read_to_string(&html).expect("html");
    assert!(page.contains("<svg") && page.contains("Checked against the database"));
    assert!(
        !page.contains("src=\"http") && !page.contains("<script"),
        "self-contained"
    );

    let dossiers = num(&r, &["published", "valid"]) + num(&r, &["published", "defective"]);
    let malformed = num(&r, &["published", "malformed"]);
    assert_eq!(num(&r, &["published", "total"]), 1200);
    assert!(malformed > 0, "some malformed messages were published");
    assert_eq!(num(&r, &["ended"]), dossiers);

    // Counted here, straight from PostgreSQL.
    let pool = sqlx::PgPool::connect(&db).await.expect("connect");
    let by_status: BTreeMap<i32, i64> = sqlx::query("SELECT status_code, count(*) FROM track_dossiers GROUP BY 1")
        .fetch_all(&pool)
        .await
        .expect("statuses")
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(
        by_status.values().sum::<i64>(),
        dossiers,
        "one projected row per dossier"
    );
    for (name, code) in [
        ("result_returned", 10),
        ("rejected_at_reception", 3),
        ("withdrawn", 7),
        ("stopped", 8),
        ("escalated", 4),
    ] {
        assert_eq!(
            num(&r, &["terminal", name]),
            by_status.get(&code).copied().unwrap_or(0),
            "{name}"
        );
    }
    assert!(
        by_status.keys().all(|c| [3, 4, 7, 8, 10].contains(c)),
        "every dossier is in a terminal state: {by_status:?}"
    );

    // Exactly one terminal event per dossier in its history.
    let terminal_events: Vec<(String, i64)> = sqlx::query_as(
        "SELECT dossier_id, count(*) FROM track_history
         WHERE event = 'dossier.completed'
            OR (stage = 'intake' AND status_code IN (3, 7, 8))
            OR (stage = 'verify' AND status_code = 4)
         GROUP BY dossier_id",
    )
    .fetch_all(&pool)
    .await
    .expect("terminal events");
    assert_eq!(terminal_events.len() as i64, dossiers, "every dossier ended");
    assert!(terminal_events.iter().all(|(_, n)| *n == 1), "each exactly once");

    let timeliness: BTreeMap<String, i64> =
        sqlx::query_as("SELECT timeliness, count(*) FROM track_dossiers WHERE timeliness IS NOT NULL GROUP BY 1")
            .fetch_all(&pool)
            .await
            .expect("timeliness")
            .into_iter()
            .collect();
    for (k, v) in &timeliness {
        assert_eq!(num(&r, &["timeliness", k]), *v, "{k}");
    }
    let codes: i64 = sqlx::query_scalar("SELECT count(*) FROM dossier_codes")
        .fetch_one(&pool)
        .await
        .expect("codes");
    assert_eq!(num(&r, &["steps", "accepted"]), codes);
    let (bills, paid): (i64, i64) = sqlx::query_as("SELECT count(*), count(paid_at_ms) FROM bills")
        .fetch_one(&pool)
        .await
        .expect("bills");
    assert_eq!(num(&r, &["steps", "billed"]), bills);
    assert_eq!(bills, paid, "every bill was paid");
    let online: i64 = sqlx::query_scalar("SELECT count(*) FROM track_dossiers WHERE channel = 'online'")
        .fetch_one(&pool)
        .await
        .expect("online");
    assert_eq!(num(&r, &["online"]), online);
    let centers: i64 = r["centers"]
        .as_array()
        .expect("centers")
        .iter()
        .map(|c| c["online"].as_i64().unwrap_or(0) + c["other"].as_i64().unwrap_or(0))
        .sum();
    let received_in_province: i64 =
        sqlx::query_scalar("SELECT count(*) FROM track_dossiers WHERE receiving_unit IN (SELECT unnest($1::text[]))")
            .bind(
                r["centers"]
                    .as_array()
                    .expect("centers")
                    .iter()
                    .map(|c| c["code"].as_str().unwrap_or("").to_owned())
                    .collect::<Vec<_>>(),
            )
            .fetch_one(&pool)
            .await
            .expect("load per center");
    assert_eq!(centers, received_in_province, "load per center");
    assert_eq!(r["centers"].as_array().map(Vec::len), Some(54), "Quảng Ninh's 54 units");

    // The legal clock lived: citizens answered supplement requests days later (and some
    // never: stopped), withdrew, and officers gave new appointments.
    let clock = &r["clock"];
    let requested = num(clock, &["requested", "intake"]) + num(clock, &["requested", "verify"]);
    assert!(requested > 0, "supplements were requested: {clock}");
    assert!(num(clock, &["supplements"]) > 0, "and answered: {clock}");
    assert!(num(clock, &["routed_paused"]) > 0, "clocks were paused: {clock}");
    assert!(num(clock, &["withdrawals"]) > 0, "citizens withdrew: {clock}");
    assert!(num(clock, &["reappointments"]) > 0, "officers reappointed: {clock}");
    assert!(
        num(&r, &["terminal", "stopped"]) > 0,
        "unanswered requests stopped dossiers"
    );
    assert!(num(&r, &["terminal", "withdrawn"]) > 0, "withdrawals ended dossiers");

    // The statistics by definition: the fold over the topics equals the projection's
    // (the report checks it row by row), and its totals equal counts made here.
    let st = &r["statistics"];
    assert_eq!(num(st, &["rows_differing_from_projection"]), 0, "{st}");
    let totals = &st["totals"];
    assert_eq!(num(totals, &["resolved"]), by_status.get(&10).copied().unwrap_or(0));
    assert_eq!(num(totals, &["withdrawn"]), by_status.get(&7).copied().unwrap_or(0));
    assert_eq!(num(totals, &["stopped"]), by_status.get(&8).copied().unwrap_or(0));
    let received: i64 = sqlx::query_scalar("SELECT count(*) FROM track_dossiers WHERE received_at IS NOT NULL")
        .fetch_one(&pool)
        .await
        .expect("received");
    assert_eq!(num(totals, &["received"]), received);
    let late_reappointed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM track_dossiers WHERE timeliness IS NOT NULL AND appointment_due_at IS NOT NULL",
    )
    .fetch_one(&pool)
    .await
    .expect("reappointed");
    assert_eq!(num(totals, &["resolved_reappointed"]), late_reappointed);

    // The dead-letter topic, read back from the broker: the malformed messages, each
    // dead-lettered once, by intake (track, which reads submissions too, skips them), and
    // the citizens' requests intake refused with a reason (a withdrawal after the
    // decision, a supplement after the dossier was stopped).
    let mut kafka = KafkaConfig::with_brokers(suite.brokers.clone());
    kafka.topic_prefix = r["settings"]["topic_prefix"].as_str().expect("prefix").to_owned();
    let refused: i64 = r["refused_requests"]
        .as_object()
        .map(|m| m.values().filter_map(Value::as_i64).sum())
        .unwrap_or(0);
    let expected = (malformed + refused) as usize;
    let dead = read_until(&kafka, &[Topic::DeadLetter], Duration::from_secs(60), |seen| {
        seen.len() >= expected
    })
    .await;
    assert_eq!(dead.len(), expected, "dead letters");
    let mut origins = HashSet::new();
    for d in &dead {
        let Some(AnyEvent::DeadLetter(d)) = &d.event else {
            panic!("not a dead letter: {d:?}")
        };
        assert_eq!(d.stage, "intake", "dead-lettered by the group that owns its topic");
        if d.origin_topic.ends_with(Topic::Submitted.name()) {
            let key = String::from_utf8_lossy(d.origin_key.as_deref().unwrap_or_default()).into_owned();
            assert!(key.starts_with("junk-"), "only malformed submissions: {key}");
            assert_eq!(d.reason_code, "BAD_MAGIC_BYTE");
        } else {
            assert!(
                d.origin_topic.ends_with(Topic::Supplemented.name())
                    || d.origin_topic.ends_with(Topic::Withdrawn.name()),
                "{d:?}"
            );
            assert!(
                d.reason_code.starts_with("SUPPLEMENT_") || d.reason_code.starts_with("WITHDRAWAL_"),
                "{d:?}"
            );
        }
        origins.insert((d.origin_topic.clone(), d.origin_partition, d.origin_offset));
    }
    assert_eq!(origins.len(), expected);
    assert_eq!(num(&r, &["dead_lettered"]), malformed + refused);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_runs_on_embedded_defaults_and_as_a_soak() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().expect("tempdir");
    let html = dir.path().join("r.html");
    // With --keep-serving the status API (over the SQLite projection) stays up after the
    // report: ask it, then Ctrl-C (SIGINT).
    let mut child = motcua()
        .arg("demo")
        .args(["--dossiers", "400", "--progress", "plain", "--keep-serving", "--report"])
        .arg(&html)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn demo");
    let stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut out = String::new();
    let mut api = None;
    let mut key_file = None;
    for line in stdout.lines() {
        let line = line.expect("line");
        out.push_str(&line);
        out.push('\n');
        if let Some(rest) = line.trim().strip_prefix("keys     operator API key ") {
            key_file = rest.split_whitespace().next().map(std::path::PathBuf::from);
        }
        if let Some(rest) = line.trim().strip_prefix("status   still at ") {
            api = rest
                .split_whitespace()
                .next()
                .map(|u| u.trim_end_matches('/').to_owned());
            break;
        }
    }
    let api = api.unwrap_or_else(|| panic!("no status API announced:\n{out}"));
    assert!(out.contains("in-process"), "{out}");
    assert!(out.contains("sqlite"), "{out}");
    assert!(
        out.contains("] published"),
        "plain progress lines when not on a terminal: {out}"
    );
    assert!(out.contains("checked    all"), "{out}");
    let key_file = key_file.unwrap_or_else(|| panic!("no operator key announced:\n{out}"));
    let key = std::fs::read_to_string(&key_file).expect("the announced key file");
    let key = key.trim();
    let client = reqwest::Client::new();
    let get = |path: String, key: Option<&str>| {
        let r = client.get(path);
        match key {
            Some(k) => r.bearer_auth(k),
            None => r,
        }
        .send()
    };
    let r = report(&html);
    let anonymous = get(format!("{api}/stats"), None).await.expect("GET /stats");
    assert_eq!(anonymous.status().as_u16(), 401, "statistics need an operator's key");
    // The simulated decisions lie weeks ahead: figures as of after all of them.
    let stats: Value = get(format!("{api}/stats?as_of=2100-01-01"), Some(key))
        .await
        .expect("GET /stats")
        .json()
        .await
        .expect("json");
    assert_eq!(
        stats["resolved"].as_i64(),
        Some(num(&r, &["terminal", "result_returned"]))
    );
    let code = r["sample_code"].as_str().expect("a sample dossier code");
    let d: Value = get(format!("{api}/dossiers/{code}"), Some(key))
        .await
        .expect("GET /dossiers")
        .json()
        .await
        .expect("json");
    assert_eq!(d["status"], "result_returned", "{d}");
    sigint(&child);
    let status = wait_exit(&mut child, Duration::from_secs(30));
    assert!(status.success(), "{status:?}");
    assert_eq!(r["drained"], Value::Bool(true));
    assert!(r["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .all(|c| c["ok"] == Value::Bool(true)));
    assert_eq!(
        num(&r, &["ended"]),
        num(&r, &["published", "valid"]) + num(&r, &["published", "defective"])
    );

    // A short soak: publishes at a rate until its duration, then drains and reports.
    let dir = tempfile::tempdir().expect("tempdir");
    let html = dir.path().join("soak.html");
    let (ok, out, err) = demo(&[
        "--soak",
        "--rate",
        "100",
        "--duration-secs",
        "3",
        "--report",
        html.to_str().expect("utf-8 path"),
        "--progress",
        "off",
    ]);
    assert!(ok, "soak failed:\n{out}\n{err}");
    let r = report(&html);
    let published = num(&r, &["published", "total"]);
    assert!((200..=400).contains(&published), "about 100/s for 3 s: {published}");
    assert_eq!(r["drained"], Value::Bool(true));
}

#[test]
fn bad_demo_flags_are_explained() {
    for (args, expected) in [
        (
            &["--registry-error-rate", "2"][..],
            "--registry-error-rate must be a share",
        ),
        (&["--duration-secs", "5"][..], "--duration-secs needs --soak"),
        (&["--dossiers", "0"][..], "--dossiers must be at least 1"),
        (&["--province", "99"][..], "not one of the 34 province codes"),
        (&["--progress", "fancy"][..], "invalid value 'fancy'"),
        (&["--database-url", "mysql://x"][..], "not supported"),
    ] {
        let (ok, out, err) = demo(args);
        assert!(!ok, "{args:?} accepted");
        assert!(!err.contains("panicked"), "panic: {err}");
        assert!(
            err.contains(expected) || out.contains(expected),
            "{args:?}: expected {expected:?} in:\n{out}\n{err}"
        );
    }
}
