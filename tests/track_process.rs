//! `motcua run track` as a real process: events in, the status API answers.

mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use motcua_schemas::samples;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_track_worker_projects_events_and_serves_the_status_api() {
    let (_broker, kafka) = mock_cluster(2);
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
        .env("MOTCUA_KAFKA__BROKERS", &kafka.brokers)
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
