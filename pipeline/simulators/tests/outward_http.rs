//! The simulated National Public Service Portal and e-wallet gateway over real HTTP: what
//! they file, how they stay idempotent, and each fault they inject.

use base64::Engine as _;
use motcua_simulators::faults::Faults;
use motcua_simulators::national_portal::{self, PortalFaults, PortalRecord, PortalStats, StatusChange};
use motcua_simulators::wallet::{self, Filed, WalletFaults, WalletStats};
use serde_json::{json, Value};
use sha2::Digest;

async fn put(url: &str, body: &Value) -> (u16, Value) {
    let r = reqwest::Client::new().put(url).json(body).send().await.expect("PUT");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn get<T: serde::de::DeserializeOwned>(url: &str) -> (u16, Option<T>) {
    let r = reqwest::get(url).await.expect("GET");
    let status = r.status().as_u16();
    (status, r.json().await.ok())
}

fn change(code: &str, status: u8, at: i64) -> Value {
    json!(StatusChange {
        dossier_code: code.into(),
        status,
        changed_at_ms: at,
        procedure_code: Some("1.004227".into()),
        agency_code: Some("06652".into()),
        received_at_ms: Some(1_000),
        due_at_ms: Some(9_000),
    })
}

#[tokio::test]
async fn the_portal_files_each_change_once_keeps_the_latest_and_counts_what_came_late() {
    let (base, _task) = national_portal::spawn(PortalFaults::default(), 1)
        .await
        .expect("portal");
    let code = "H22.06652-251125-0001";
    let at = |id: &str| format!("{base}/v1/dossiers/{code}/status-changes/{id}");
    let (status, first) = put(&at("c1"), &change(code, 2, 1_000)).await;
    assert_eq!(status, 201, "{first}");
    // The same change again (a retry): the same receipt, filed once.
    let (status, again) = put(&at("c1"), &change(code, 2, 1_000)).await;
    assert_eq!(
        (status, &again["receipt_id"], &again["duplicate"]),
        (200, &first["receipt_id"], &json!(true))
    );
    // The same id with other content is a conflict, not an overwrite.
    assert_eq!(put(&at("c1"), &change(code, 4, 1_000)).await.0, 409);
    assert_eq!(put(&at("c2"), &change(code, 4, 3_000)).await.0, 201);
    // Older than the latest: filed, but the record keeps the newer status.
    assert_eq!(put(&at("c3"), &change(code, 3, 2_000)).await.0, 201);
    // Not the portal's vocabulary, or another dossier's code: refused.
    assert_eq!(put(&at("c4"), &change(code, 11, 4_000)).await.0, 422);
    assert_eq!(put(&at("c5"), &change("H22.06652-251125-0002", 4, 4_000)).await.0, 422);

    let (status, record) = get::<PortalRecord>(&format!("{base}/v1/dossiers/{code}")).await;
    let record = record.expect("record");
    assert_eq!(status, 200);
    assert_eq!(
        (record.status, record.changed_at_ms, record.due_at_ms),
        (4, 3_000, Some(9_000))
    );
    let ids: Vec<&str> = record.changes.iter().map(|c| c.change_id.as_str()).collect();
    assert_eq!(ids, ["c1", "c2", "c3"], "in the order they arrived");
    let (_, stats) = get::<PortalStats>(&format!("{base}/admin/stats")).await;
    assert_eq!(
        stats.expect("stats"),
        PortalStats {
            filed: 3,
            duplicates: 1,
            conflicts: 1,
            out_of_order: 1,
            faulted: 0,
            lost_acks: 0
        }
    );
    // Forgotten (the reconciliation test's deleted record): 404 until sent again.
    let forget = reqwest::Client::new()
        .delete(format!("{base}/admin/dossiers/{code}"))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(forget.status().as_u16(), 204);
    assert_eq!(get::<Value>(&format!("{base}/v1/dossiers/{code}")).await.0, 404);
}

#[tokio::test]
async fn the_portal_loses_acknowledgements_and_goes_down_as_told() {
    let (base, _task) = national_portal::spawn(PortalFaults::default(), 2)
        .await
        .expect("portal");
    let code = "H22.06652-251125-0003";
    let url = format!("{base}/v1/dossiers/{code}/status-changes/a1");
    let set = |f: Value| {
        let base = base.clone();
        async move { put(&format!("{base}/admin/faults"), &f).await.0 }
    };
    // Filed, then answered 503: the client retries and gets the same receipt, once filed.
    assert_eq!(set(json!({"lost_ack_rate": 1.0})).await, 204);
    assert_eq!(put(&url, &change(code, 2, 1_000)).await.0, 503);
    assert_eq!(set(json!({"lost_ack_rate": 0.0})).await, 204);
    let (status, retry) = put(&url, &change(code, 2, 1_000)).await;
    assert_eq!((status, &retry["duplicate"]), (200, &json!(true)));
    // Down: every request 503, nothing filed.
    assert_eq!(set(json!({"down": true})).await, 204);
    let other = format!("{base}/v1/dossiers/{code}/status-changes/a2");
    assert_eq!(put(&other, &change(code, 4, 2_000)).await.0, 503);
    assert_eq!(get::<Value>(&format!("{base}/v1/dossiers/{code}")).await.0, 503);
    assert_eq!(set(json!({"down": false})).await, 204);
    let (_, record) = get::<PortalRecord>(&format!("{base}/v1/dossiers/{code}")).await;
    assert_eq!(record.expect("record").changes.len(), 1);
    let (_, stats) = get::<PortalStats>(&format!("{base}/admin/stats")).await;
    let stats = stats.expect("stats");
    assert_eq!((stats.filed, stats.lost_acks, stats.faulted), (1, 1, 2));
    // Faults it does not know, or out of range, are refused.
    assert_eq!(set(json!({"lost_ack_rate": 2.0})).await, 422);
    assert_eq!(set(json!({"error_rate": 0.5, "bogus": 1})).await, 422);
    let (_, faults) = get::<PortalFaults>(&format!("{base}/admin/faults")).await;
    assert_eq!(faults.expect("faults").common, Faults::default());
}

fn delivery(code: &str, document: &[u8]) -> Value {
    let sha: String = sha2::Sha256::digest(document)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    json!({
        "dossier_code": code,
        "document_base64": base64::engine::general_purpose::STANDARD.encode(document),
        "document_sha256": sha,
        "signed_record": "{\"format\":\"motcua-result-record/1\"}",
        "record_signature": "c2ln",
    })
}

#[tokio::test]
async fn the_wallet_files_a_document_once_per_key_and_refuses_what_it_cannot_hold() {
    let faults = WalletFaults {
        capacity: 2,
        unknown_owners: ["079123000000".to_owned()].into(),
        ..WalletFaults::default()
    };
    let (base, _task) = wallet::spawn(faults, 3).await.expect("wallet");
    let owner = "079123456789";
    let at = |key: &str| format!("{base}/v1/owners/{owner}/documents/{key}");
    let (status, first) = put(&at("d1"), &delivery("H22.06652-251125-0001", b"%PDF result 1")).await;
    assert_eq!(status, 201, "{first}");
    assert!(
        first["receipt_id"].as_str().is_some_and(|r| r.starts_with("EW-")),
        "{first}"
    );
    let (status, again) = put(&at("d1"), &delivery("H22.06652-251125-0001", b"%PDF result 1")).await;
    assert_eq!(
        (status, &again["receipt_id"]),
        (200, &first["receipt_id"]),
        "a retry files nothing twice"
    );
    assert_eq!(
        put(&at("d1"), &delivery("H22.06652-251125-0001", b"%PDF other"))
            .await
            .0,
        409
    );
    // A document whose digest does not match, or that is not base64: refused.
    let mut bad = delivery("H22.06652-251125-0002", b"%PDF result 2");
    bad["document_sha256"] = json!("00".repeat(32));
    assert_eq!(put(&at("d2"), &bad).await.0, 422);
    bad["document_base64"] = json!("not base64!");
    assert_eq!(put(&at("d2"), &bad).await.0, 422);
    // An owner it does not know; a wallet that is full.
    let unknown = format!("{base}/v1/owners/079123000000/documents/d9");
    let (status, body) = put(&unknown, &delivery("H22.06652-251125-0009", b"x")).await;
    assert_eq!((status, body["error"].as_str()), (404, Some("owner_unknown")));
    assert_eq!(
        put(&at("d2"), &delivery("H22.06652-251125-0002", b"%PDF result 2"))
            .await
            .0,
        201
    );
    let (status, body) = put(&at("d3"), &delivery("H22.06652-251125-0003", b"%PDF result 3")).await;
    assert_eq!((status, body["error"].as_str()), (507, Some("wallet_full")));
    let (_, held) = get::<Vec<Filed>>(&format!("{base}/v1/owners/{owner}/documents")).await;
    let keys: Vec<String> = held
        .expect("documents")
        .into_iter()
        .map(|f| f.idempotency_key)
        .collect();
    assert_eq!(keys, ["d1", "d2"]);
    let (_, stats) = get::<WalletStats>(&format!("{base}/admin/stats")).await;
    assert_eq!(
        stats.expect("stats"),
        WalletStats {
            filed: 2,
            duplicates: 1,
            conflicts: 1,
            invalid: 2,
            unknown_owner: 1,
            full: 1,
            faulted: 0,
            lost_acks: 0
        }
    );
}

#[tokio::test]
async fn the_wallet_loses_acknowledgements_and_the_retry_gets_the_same_receipt() {
    let faults = WalletFaults {
        lost_ack_rate: 1.0,
        ..WalletFaults::default()
    };
    let (base, _task) = wallet::spawn(faults, 4).await.expect("wallet");
    let url = format!("{base}/v1/owners/079123456789/documents/k1");
    assert_eq!(put(&url, &delivery("H22.06652-251125-0001", b"%PDF")).await.0, 503);
    let (status, _) = put(&format!("{base}/admin/faults"), &json!({"lost_ack_rate": 0.0})).await;
    assert_eq!(status, 204);
    let (status, _) = put(&format!("{base}/admin/faults"), &json!({"capacity": 3, "bogus": 1})).await;
    assert_eq!(status, 422, "a fault the wallet does not know is refused");
    let (status, retry) = put(&url, &delivery("H22.06652-251125-0001", b"%PDF")).await;
    assert_eq!((status, &retry["duplicate"]), (200, &json!(true)));
    let (_, stats) = get::<WalletStats>(&format!("{base}/admin/stats")).await;
    let stats = stats.expect("stats");
    assert_eq!((stats.filed, stats.lost_acks, stats.duplicates), (1, 1, 1));
}
