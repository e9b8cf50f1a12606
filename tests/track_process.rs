//! `motcua run track` as a real process: events in, the status API answers.

mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use motcua_schemas::{samples, AnyEvent};
use sqlx::Connection;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_track_worker_projects_events_and_serves_the_status_api() {
    let (_topics, kafka) = apache_kafka(2).await;
    let db = motcua_store::testing::scratch_postgres_url().await;
    let api_port = free_port();
    // An operator's key, made the way an operator makes one.
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = dir.path().join("api-keys.toml");
    let made = motcua()
        .args(["api-key", "add", "--id", "province", "--role", "province", "--file"])
        .arg(&keys)
        .output()
        .expect("motcua api-key add");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let key = String::from_utf8(made.stdout).expect("utf-8").trim().to_owned();
    assert!(
        !std::fs::read_to_string(&keys).expect("key file").contains(&key),
        "only the digest is stored"
    );
    let mut worker = motcua()
        .args(["run", "track"])
        .envs(kafka_env(&kafka))
        .env("MOTCUA_DATABASE__URL", &db)
        .env("MOTCUA_TRACK__API_LISTEN", format!("127.0.0.1:{api_port}"))
        .env("MOTCUA_TRACK__API_KEYS_FILE", &keys)
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn motcua run track");
    let accepted = samples::accepted();
    publish(&kafka, &[samples::submitted()]).await;
    publish(&kafka, std::slice::from_ref(&accepted)).await;

    let deadline = Instant::now() + Duration::from_secs(60);
    let body = loop {
        if std::net::TcpStream::connect(("127.0.0.1", api_port)).is_ok() {
            let body = http_get_with(api_port, &format!("/dossiers/{}", accepted.dossier_code), &key);
            if body.contains("\"status_code\":2") {
                break body;
            }
        }
        assert!(Instant::now() < deadline, "the dossier never showed as received");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let missing = http_get_with(api_port, "/dossiers/H22.00000-000000-0000", &key);
    let anonymous = http_get(api_port, &format!("/dossiers/{}", accepted.dossier_code));
    sigterm(&worker);
    assert!(wait_exit(&mut worker, Duration::from_secs(30)).success());
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["dossier_code"], accepted.dossier_code.as_str());
    assert!(v["history"].as_array().is_some_and(|h| h.len() == 2), "{v}");
    let e: serde_json::Value = serde_json::from_str(&missing).expect("json error");
    assert_eq!(e["error"]["code"], "dossier_not_found");
    let e: serde_json::Value = serde_json::from_str(&anonymous).expect("json error");
    assert_eq!(e["error"]["code"], "unauthenticated", "no key, no history");
}

/// Every dossier row (without the deadline-warning bookkeeping) and the history size.
async fn projection_rows(url: &str) -> (Vec<String>, i64) {
    let mut conn = sqlx::PgConnection::connect(url).await.expect("projection");
    let rows: Vec<String> =
        sqlx::query_scalar("SELECT (to_jsonb(d) - 'warned_due_at')::text FROM track_dossiers d ORDER BY dossier_id")
            .fetch_all(&mut conn)
            .await
            .expect("dossiers");
    let history: i64 = sqlx::query_scalar("SELECT count(*) FROM track_history")
        .fetch_one(&mut conn)
        .await
        .expect("history");
    (rows, history)
}

/// `motcua replay` rebuilds, from the topics, the projection the live worker built: the
/// same rows; it refuses a projection that already holds events and leaves the live
/// group's offsets alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_rebuilds_the_live_projection_from_the_log() {
    let (_topics, kafka) = apache_kafka(2).await;
    let live_db = motcua_store::testing::scratch_postgres_url().await;
    let rebuilt_db = motcua_store::testing::scratch_postgres_url().await;
    // Forty straight lives, every status event delivered twice, and an undecodable message.
    let mut log = samples::event_log(40);
    let unique = log.len() as i64;
    let statuses: Vec<AnyEvent> = log
        .iter()
        .filter(|e| matches!(e, AnyEvent::Status(_)))
        .cloned()
        .collect();
    log.extend(statuses);
    publish_log(&kafka, &log).await;
    publish_raw(&kafka, motcua_schemas::Topic::Status, "junk", Some(b"not avro")).await;
    let total = log.len() + 1;

    let mut live = motcua()
        .args(["run", "track"])
        .envs(kafka_env(&kafka))
        .env("MOTCUA_DATABASE__URL", &live_db)
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn motcua run track");
    let deadline = Instant::now() + Duration::from_secs(90);
    let live_rows = loop {
        // Nothing to read until the worker has created its tables.
        let history: i64 = match sqlx::PgConnection::connect(&live_db).await {
            Ok(mut c) => sqlx::query_scalar("SELECT count(*) FROM track_history")
                .fetch_one(&mut c)
                .await
                .unwrap_or(0),
            Err(_) => 0,
        };
        if history == unique {
            break projection_rows(&live_db).await.0;
        }
        assert!(
            Instant::now() < deadline,
            "the live worker never projected the log ({history} events)"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    sigterm(&live);
    assert!(wait_exit(&mut live, Duration::from_secs(30)).success());
    assert_eq!(live_rows.len(), 40);

    let replay = |db: &str, extra: &[&str]| {
        motcua()
            .arg("replay")
            .args(extra)
            .envs(kafka_env(&kafka))
            .env("MOTCUA_DATABASE__URL", db)
            .output()
            .expect("motcua replay")
    };
    let out = replay(&rebuilt_db, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(&format!("replayed {total} messages")), "{stdout}");
    let (rebuilt_rows, rebuilt_history) = projection_rows(&rebuilt_db).await;
    assert_eq!(rebuilt_rows, live_rows, "the rebuilt projection is the live one");
    assert_eq!(rebuilt_history, unique);

    // A second replay into the same database is refused with the reason, and into the
    // live group never runs.
    let again = replay(&rebuilt_db, &[]);
    assert!(!again.status.success());
    let e = String::from_utf8_lossy(&again.stderr);
    assert!(e.contains("already holds events"), "{e}");
    let fresh = motcua_store::testing::scratch_postgres_url().await;
    let live_group = replay(&fresh, &["--group", &kafka.group("track")]);
    assert!(!live_group.status.success());
    let e = String::from_utf8_lossy(&live_group.stderr);
    assert!(e.contains("a consumer group of its own"), "{e}");
}
