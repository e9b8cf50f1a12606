use motcua_outward::http::{HttpConfig, HttpPortal};
use motcua_runtime::Origin;
use motcua_schemas::{DossierStatus, DossierStatusChanged};
use motcua_simulators::national_portal::{self, PortalFaults, PortalRecord, PortalStats};

use super::*;

async fn portal(faults: PortalFaults) -> (String, HttpPortal) {
    let (url, _server) = national_portal::spawn(faults, 3).await.expect("portal simulator");
    let client = HttpPortal::new(
        "portal",
        HttpConfig {
            base_url: url.clone(),
            max_attempts: 1,
            breaker_failures: 1_000,
            ..HttpConfig::default()
        },
    )
    .expect("client");
    (url, client)
}

fn status(dossier: &str, code: Option<&str>, n: i64, status: DossierStatus) -> Envelope<DossierStatusChanged> {
    Envelope {
        event: DossierStatusChanged {
            event_id: format!("{dossier}-s{n}"),
            causation_id: None,
            dossier_id: dossier.to_owned(),
            dossier_code: code.map(str::to_owned),
            status,
            status_code: status.code(),
            procedure_code: Some("1.004227".into()),
            stage: "intake".into(),
            reasons: vec![],
            unit_code: Some("06652".into()),
            due_at: Some(1_800_000_000_000),
            occurred_at: 1_790_000_000_000 + n * 1_000,
            traceparent: None,
            lookup_token: None,
        },
        origin: Origin {
            topic: "dossier.status".into(),
            partition: 0,
            offset: n,
            timestamp_ms: None,
        },
        door: Default::default(),
    }
}

async fn record(url: &str, code: &str) -> PortalRecord {
    reqwest::get(format!("{url}/v1/dossiers/{code}"))
        .await
        .expect("get")
        .json()
        .await
        .expect("record")
}

async fn stats(url: &str) -> PortalStats {
    reqwest::get(format!("{url}/admin/stats"))
        .await
        .expect("get")
        .json()
        .await
        .expect("stats")
}

async fn faults(url: &str, f: serde_json::Value) {
    let s = reqwest::Client::new()
        .put(format!("{url}/admin/faults"))
        .json(&f)
        .send()
        .await
        .expect("put")
        .status();
    assert!(s.is_success(), "{s}");
}

#[tokio::test]
async fn changes_reach_the_portal_once_in_order_and_an_outage_holds_the_batch() {
    let (url, client) = portal(PortalFaults::default()).await;
    let stage = PortalSync::new(client);
    let batch = [
        status("d1", Some("H22.1-0001"), 1, DossierStatus::Received),
        status("d2", Some("H22.1-0002"), 2, DossierStatus::Received),
        status("d1", Some("H22.1-0001"), 3, DossierStatus::Processing),
        status("d3", None, 4, DossierStatus::RejectedAtReception),
        status("d1", Some("H22.1-0001"), 5, DossierStatus::Completed),
    ];
    let out = stage.handle_batch(&batch).await.expect("pushed");
    assert!(out.iter().all(|o| *o == Outcome::Emit(Vec::new())), "{out:?}");
    let r = record(&url, "H22.1-0001").await;
    assert_eq!(
        r.changes
            .iter()
            .map(|c| (c.change_id.as_str(), c.change.status))
            .collect::<Vec<_>>(),
        [("d1-s1", 2), ("d1-s3", 4), ("d1-s5", 9)],
        "in order"
    );
    assert_eq!((r.status, r.due_at_ms), (9, Some(1_800_000_000_000)));
    assert_eq!(r.changes[1].change.agency_code.as_deref(), Some("06652"));

    // The same batch again (a redelivery): absorbed, nothing filed twice.
    stage.handle_batch(&batch).await.expect("again");
    let s = stats(&url).await;
    assert_eq!(
        (s.filed, s.duplicates, s.out_of_order, s.conflicts),
        (4, 4, 0, 0),
        "{s:?}"
    );

    // The portal goes down: the batch is held (retryable), nothing reordered.
    faults(&url, serde_json::json!({"down": true})).await;
    let next = [
        status("d2", Some("H22.1-0002"), 6, DossierStatus::Processing),
        status("d2", Some("H22.1-0002"), 7, DossierStatus::Completed),
    ];
    let err = stage.handle_batch(&next).await.expect_err("held");
    assert!(
        matches!(err, StageError::Retryable(ref r) if r.contains("portal unavailable")),
        "{err:?}"
    );
    faults(&url, serde_json::json!({})).await;
    stage.handle_batch(&next).await.expect("after the outage");
    let r = record(&url, "H22.1-0002").await;
    assert_eq!(
        r.changes.iter().map(|c| c.change_id.as_str()).collect::<Vec<_>>(),
        ["d2-s2", "d2-s6", "d2-s7"]
    );
    assert_eq!(stats(&url).await.out_of_order, 0);
}

#[tokio::test]
async fn a_change_sent_again_with_other_details_keeps_the_first_and_reconciliation_repairs_a_deleted_record() {
    let (url, client) = portal(PortalFaults::default()).await;
    let stage = PortalSync::new(client.clone());
    let batch = [
        status("d1", Some("H22.1-0001"), 1, DossierStatus::Received),
        status("d1", Some("H22.1-0001"), 2, DossierStatus::Processing),
        status("d2", Some("H22.1-0002"), 3, DossierStatus::Received),
    ];
    stage.handle_batch(&batch).await.expect("pushed");
    // The same change id with other details (announced again by a stage that stamped a
    // re-sent input with its own time): the portal keeps the first, nothing is lost or
    // dead-lettered.
    let mut conflicting = status("d2", Some("H22.1-0002"), 3, DossierStatus::Received);
    conflicting.event.due_at = Some(1);
    let out = stage.handle_batch(&[conflicting]).await.expect("handled");
    assert_eq!(out, [Outcome::Emit(Vec::new())]);
    assert_eq!(
        record(&url, "H22.1-0002").await.changes[0].change.due_at_ms,
        Some(1_800_000_000_000)
    );
    // What the portal refuses outright (a status code it does not know) is dead-lettered.
    let mut invalid = status("d2", Some("H22.1-0002"), 9, DossierStatus::Processing);
    invalid.event.dossier_code = Some("H22.1-0002".into());
    let refused = stage
        .portal
        .push(&StatusChange {
            status: 0,
            ..change_of(&invalid.event).expect("a change")
        })
        .await;
    assert!(
        matches!(&refused, Err(motcua_outward::Error::Refused { code, .. }) if code == "invalid"),
        "{refused:?}"
    );

    let expected: Vec<Vec<StatusChange>> = vec![
        batch[..2].iter().filter_map(|e| change_of(&e.event)).collect(),
        batch[2..].iter().filter_map(|e| change_of(&e.event)).collect(),
    ];
    let r = reconcile(&client, &expected, false).await;
    assert_eq!((r.dossiers, r.in_sync, r.resent), (2, 2, 0), "{r:?}");

    let deleted = reqwest::Client::new()
        .delete(format!("{url}/admin/dossiers/H22.1-0001"))
        .send()
        .await
        .expect("delete");
    assert_eq!(deleted.status(), 204);
    let dry = reconcile(&client, &expected, true).await;
    assert_eq!((dry.missing_records, dry.resent), (1, 0), "{dry:?}");
    let r = reconcile(&client, &expected, false).await;
    assert_eq!(
        (r.missing_records, r.incomplete_records, r.resent, r.in_sync),
        (1, 0, 2, 1),
        "{r:?}"
    );
    let rec = record(&url, "H22.1-0001").await;
    assert_eq!(
        rec.changes.iter().map(|c| c.change_id.as_str()).collect::<Vec<_>>(),
        ["d1-s1", "d1-s2"]
    );
    assert_eq!(rec.status, 4);
    assert!(reconcile(&client, &expected, false).await.failed.is_empty());

    // Unreachable: reported per dossier, nothing claimed.
    faults(&url, serde_json::json!({"down": true})).await;
    let r = reconcile(&client, &expected, false).await;
    assert_eq!((r.failed.len(), r.resent), (2, 0), "{r:?}");
}
