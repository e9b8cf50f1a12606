use motcua_schemas::samples;

use std::time::Duration;

use super::*;
use motcua_outward::http::{HttpConfig, HttpWallet};
use motcua_reference::civil::now_ms;
use motcua_runtime::{Envelope, Outcome, Stage};
use motcua_schemas::Codec;
use motcua_simulators::backoffice;
use motcua_simulators::wallet::{self, WalletFaults};
use motcua_store::{ClosureKind, Lot, Store};

/// A simulated wallet gateway (a real HTTP server) and its client, which tries once and
/// opens its circuit only after many failures (so each call reaches the server).
async fn wallet(faults: WalletFaults) -> (String, HttpWallet) {
    let (url, _server) = wallet::spawn(faults, 7).await.expect("wallet simulator");
    let client = HttpWallet::new(
        "result.wallet",
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

async fn set_faults(url: &str, faults: &serde_json::Value) {
    let status = reqwest::Client::new()
        .put(format!("{url}/admin/faults"))
        .json(faults)
        .send()
        .await
        .expect("faults")
        .status();
    assert!(status.is_success(), "{status}");
}

async fn documents(url: &str, owner: &str) -> Vec<wallet::Filed> {
    reqwest::get(format!("{url}/v1/owners/{owner}/documents"))
        .await
        .expect("documents")
        .json()
        .await
        .expect("json")
}

async fn stage(
    dir: &tempfile::TempDir,
    signer: Signer25519,
    faults: WalletFaults,
) -> (String, ResultStage<HttpWallet>, Store) {
    let store = store(dir).await;
    let (url, client) = wallet(faults).await;
    let stage = ResultStage::new(
        signer,
        client,
        store.clone(),
        Codec::embedded().expect("codec"),
        "result/test-0".to_owned(),
    );
    (url, stage, store)
}

fn decided(decided_at: i64, due_at: i64) -> DossierDecided {
    DossierDecided {
        event_id: "dc-1".into(),
        dossier_id: "d-1".into(),
        dossier_code: "H22.06652-251125-0001".into(),
        procedure_code: "1.012811".into(),
        competent_unit_code: "06652".into(),
        decision: Decision::Approved,
        reasons: vec![],
        decided_by: "officer".into(),
        applicant_citizen_id: Some("022090001234".into()),
        applicant_tax_code: None,
        received_at: 1_764_036_000_000,
        due_at,
        decided_at,
        traceparent: None,
        appraised_at: None,
    }
}

const DAY: i64 = 86_400_000;

async fn store(dir: &tempfile::TempDir) -> Store {
    Store::connect(&format!("sqlite://{}", dir.path().join("r.db").display()))
        .await
        .expect("store")
}

fn envelope(d: DossierDecided, offset: i64) -> Envelope<DossierDecided> {
    Envelope {
        origin: motcua_runtime::Origin {
            topic: "dossier.decided".into(),
            partition: 0,
            offset,
            timestamp_ms: Some(d.decided_at + 1_000),
        },
        door: Default::default(),
        event: d,
    }
}

#[tokio::test]
async fn a_decision_ends_the_dossier_unless_a_withdrawal_or_stop_came_first() {
    let dir = tempfile::tempdir().expect("dir");
    let (url, stage, store) = stage(&dir, Signer25519::insecure_demo("test"), WalletFaults::default()).await;
    let due = 1_764_036_000_000 + 5 * DAY;
    let decided_one = decided(due - DAY, due);
    let mut withdrawn = decided(due - DAY, due);
    withdrawn.event_id = "dc-2".into();
    withdrawn.dossier_id = "d-2".into();
    store
        .close_dossier("d-2", ClosureKind::Withdrawn, "wd-2", due - 2 * DAY)
        .await
        .expect("withdrawn");

    let out = stage
        .handle_batch(&[envelope(decided_one.clone(), 1), envelope(withdrawn.clone(), 2)])
        .await
        .expect("handled");
    let Outcome::Emit(first) = &out[0] else {
        panic!("{out:?}")
    };
    assert!(
        matches!(&first[..], [AnyEvent::Completed(_), AnyEvent::Status(_)]),
        "{first:?}"
    );
    assert_eq!(out[1], Outcome::Emit(Vec::new()), "withdrawn first: no result");
    let closure = store.closure("d-1").await.expect("read").expect("closed");
    assert_eq!(
        (closure.kind, closure.event_id.as_str()),
        (ClosureKind::Decided, "dc-1")
    );
    assert_eq!(
        store.closure("d-2").await.expect("read").expect("closed").kind,
        ClosureKind::Withdrawn,
        "the later decision does not overwrite the withdrawal"
    );
    // A redelivered decision finds its own closure and emits the same result; the
    // wallet files the document once and acknowledges the resend with the same receipt.
    let again = stage.handle_batch(&[envelope(decided_one, 1)]).await.expect("again");
    assert_eq!(again[0], out[0]);
    // The same decision sent again later, in another message (a back office re-sending
    // it): the same record, so the same document at the wallet, not a conflict.
    let mut resent = envelope(decided(due - DAY, due), 7);
    resent.origin.timestamp_ms = Some(due - DAY + 60_000);
    let later = stage.handle_batch(&[resent]).await.expect("resent");
    let (Outcome::Emit(a), Outcome::Emit(b)) = (&later[0], &out[0]) else {
        panic!("{later:?}")
    };
    assert_eq!(a, b, "the same events: announced at the first acknowledgement");
    let filed = documents(&url, "022090001234").await;
    assert_eq!(filed.len(), 1, "{filed:?}");
    let [AnyEvent::Completed(c), _] = &first[..] else {
        unreachable!()
    };
    let [AnyEvent::Completed(c2), _] = &a[..] else {
        unreachable!()
    };
    assert_eq!(
        (c2.wallet_receipt_id.as_ref(), c2.signed_record.as_ref()),
        (c.wallet_receipt_id.as_ref(), c.signed_record.as_ref())
    );
    assert_eq!(c.wallet_receipt_id.as_deref(), Some(filed[0].receipt_id.as_str()));
    let audit = store.wallet_deliveries(10).await.expect("audit");
    assert_eq!(
        audit
            .iter()
            .map(|a| (a.receipt_id.as_str(), a.delivered_by.as_str(), a.duplicate_ack))
            .collect::<Vec<_>>(),
        [(filed[0].receipt_id.as_str(), "result/test-0", false)],
        "one audit record per document, the first"
    );
}

#[tokio::test]
async fn a_wallet_that_is_down_parks_the_result_and_the_timer_delivers_it_once() {
    let dir = tempfile::tempdir().expect("dir");
    let signer = Signer25519::insecure_demo("test");
    let down = WalletFaults {
        common: motcua_simulators::faults::Faults {
            down: true,
            ..Default::default()
        },
        ..WalletFaults::default()
    };
    let (url, stage, store) = stage(&dir, signer.clone(), down).await;
    let stage = stage.with_settings(DeliverySettings {
        policy: motcua_resilience::ParkPolicy {
            first_delay: Duration::ZERO,
            max_delay: Duration::ZERO,
            escalate_after: Duration::from_secs(3_600),
        },
        ..DeliverySettings::default()
    });
    // Decided a moment ago (the escalation age counts from the decision's arrival).
    let due = now_ms() + 5 * DAY;
    let d = decided(now_ms() - 2_000, due);
    let out = stage.handle_batch(&[envelope(d.clone(), 1)]).await.expect("handled");
    assert_eq!(
        out,
        [Outcome::Emit(Vec::new())],
        "nothing announced before the wallet has it"
    );
    assert_eq!(store.parked_count(Lot::Result).await.expect("count"), 1);
    // Still down: the timer reschedules, announces nothing.
    let tick = stage.tick(now_ms()).await.expect("tick");
    assert!(tick.events.is_empty() && tick.done.is_empty(), "{tick:?}");

    set_faults(&url, &serde_json::json!({})).await;
    let at = now_ms() + 1;
    let tick = stage.tick(at).await.expect("tick");
    let [AnyEvent::Completed(c), AnyEvent::Status(s)] = &tick.events[..] else {
        panic!("{tick:?}")
    };
    let filed = documents(&url, "022090001234").await;
    assert_eq!(filed.len(), 1);
    assert_eq!(c.wallet_receipt_id.as_deref(), Some(filed[0].receipt_id.as_str()));
    assert_eq!(
        (c.delivered_at, s.occurred_at),
        (at, at),
        "announced at the acknowledgement"
    );
    // The record in the wallet is the event's, signed at the decision's time, and
    // verifies against the issuer's key.
    assert_eq!(Some(filed[0].signed_record.as_str()), c.signed_record.as_deref());
    let jwks = Jwks {
        keys: vec![Jwk::ed25519(&signer.public_key(), signer.key_id(), None, None)],
    };
    verify_record(
        &jwks,
        &filed[0].signed_record,
        c.record_signature.as_deref().expect("sig"),
    )
    .expect("verifies");

    // A crash before the events were acknowledged: the next round re-emits them byte for
    // byte without asking the wallet; once acknowledged, the row goes.
    let again = stage.tick(at + 200_000).await.expect("tick");
    assert_eq!(again.events, tick.events);
    stage.ticked(&again).await.expect("ticked");
    assert_eq!(store.parked_count(Lot::Result).await.expect("count"), 0);
    assert_eq!(documents(&url, "022090001234").await.len(), 1, "filed once");
}

#[tokio::test]
async fn a_refused_delivery_is_escalated_at_once_and_a_long_outage_after_the_escalation_age() {
    let dir = tempfile::tempdir().expect("dir");
    let faults = WalletFaults {
        unknown_owners: ["022090001234".to_owned()].into(),
        ..WalletFaults::default()
    };
    let (url, stage, store) = stage(&dir, Signer25519::insecure_demo("test"), faults).await;
    let stage = stage.with_settings(DeliverySettings {
        policy: motcua_resilience::ParkPolicy {
            first_delay: Duration::ZERO,
            max_delay: Duration::ZERO,
            escalate_after: Duration::from_secs(60),
        },
        ..DeliverySettings::default()
    });
    let due = now_ms() + 5 * DAY;
    let refused = decided(now_ms() - 2_000, due);
    let out = stage
        .handle_batch(&[envelope(refused.clone(), 1)])
        .await
        .expect("handled");
    let [Outcome::Emit(events)] = &out[..] else {
        panic!("{out:?}")
    };
    let [AnyEvent::Status(s)] = &events[..] else {
        panic!("{events:?}")
    };
    assert_eq!(
        s.status,
        DossierStatus::Completed,
        "the status stays: decided, not returned"
    );
    assert_eq!(s.reasons[0].code, "RESULT_DELIVERY_ESCALATED");
    assert!(s.reasons[0].message.contains("owner_unknown"), "{:?}", s.reasons);
    assert!(!s.reasons[0].message.contains("022090001234"), "no owner in the reason");
    let parked = store.parked(10).await.expect("parked");
    assert!(parked[0].escalated_at_ms.is_some(), "{parked:?}");

    // Another dossier, its wallet down since its decision over a minute ago: the timer
    // escalates it once, and keeps trying.
    set_faults(&url, &serde_json::json!({"down": true})).await;
    let mut late = decided(now_ms() - 2_000, due);
    late.event_id = "dc-9".into();
    late.dossier_id = "d-9".into();
    late.applicant_citizen_id = Some("001199000009".into());
    assert_eq!(
        stage.handle_batch(&[envelope(late.clone(), 2)]).await.expect("handled"),
        [Outcome::Emit(Vec::new())]
    );
    let signed_at = late.decided_at + 1_000;
    let tick = stage.tick(signed_at + 61_000).await.expect("tick");
    let escalations: Vec<&str> = tick
        .events
        .iter()
        .filter_map(|e| match e {
            AnyEvent::Status(s) if s.reasons.iter().any(|r| r.code == "RESULT_DELIVERY_ESCALATED") => {
                Some(s.dossier_id.as_str())
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        escalations,
        ["d-9"],
        "escalated once, the refused one was already: {tick:?}"
    );
    stage.ticked(&tick).await.expect("ticked");
    let tick = stage.tick(signed_at + 400_000).await.expect("tick");
    assert!(tick.events.is_empty(), "not escalated twice: {tick:?}");
    assert_eq!(
        store.parked_count(Lot::Result).await.expect("count"),
        2,
        "both still tried"
    );
}

#[test]
fn results_are_signed_verifiable_and_classified_by_timeliness() {
    let signer = Signer25519::insecure_demo("test");
    let issuer = Issuer::new(signer.clone());
    let due = 1_764_036_000_000 + 5 * DAY;
    let d = decided(due - 2 * DAY, due);
    let issued = issuer.issue(&d, d.decided_at + 1_000).expect("signed");
    assert_eq!(
        issued.document,
        document_text(&d, &issued.completed.result_document.reference).into_bytes()
    );
    assert_eq!(
        issued.idempotency_key(),
        format!("d-1.{}", issued.completed.result_document.sha256),
        "per dossier and document"
    );
    let events = issued.clone().delivered("EW-1", d.decided_at + 1_000);
    let [AnyEvent::Completed(c), AnyEvent::Status(s)] = &events[..] else {
        panic!("{events:?}")
    };
    assert_eq!(c.timeliness, Timeliness::Early);
    assert_eq!(s.status, DossierStatus::ResultReturned);
    assert_eq!(c.result_document.reference, "06652-KQ-H22.06652-251125-0001");
    assert_eq!(c.wallet_owner, "022090001234");
    let text = document_text(&d, &c.result_document.reference);
    assert!(
        verify_result(&signer.public_key(), &c.result_document, &text),
        "signature verifies"
    );
    assert!(!verify_result(
        &signer.public_key(),
        &c.result_document,
        &text.replace("APPROVED", "REFUSED")
    ));
    assert!(!verify_result(
        &Signer25519::insecure_demo("other").public_key(),
        &c.result_document,
        &text
    ));
    // The same decision again gives the same events (idempotent).
    assert_eq!(issuer.issue(&d, d.decided_at + 1_000).expect("signed"), issued);
    assert_eq!(c.wallet_receipt_id.as_deref(), Some("EW-1"));

    // The signed record verifies against the JWK Set, from the event alone; changed
    // bytes, another key, or a key not valid when it signed do not.
    let record = c.signed_record.as_deref().expect("a signed record");
    let sig = c.record_signature.as_deref().expect("its signature");
    let signed_at_s = (d.decided_at + 1_000) / 1_000;
    let jwks = Jwks {
        keys: vec![Jwk::ed25519(
            &signer.public_key(),
            signer.key_id(),
            Some(signed_at_s - 60),
            None,
        )],
    };
    let ok = verify_record(&jwks, record, sig).expect("verifies");
    assert_eq!(ok.record["decision"], "approved");
    assert_eq!(ok.record["documents"][0]["sha256"], c.result_document.sha256.as_str());
    assert!(
        !record.contains("022090001234"),
        "no personal data in the record: {record}"
    );
    assert_eq!(
        verify_record(&jwks, &record.replace("approved", "refused"), sig),
        Err(RecordError::BadSignature)
    );
    assert!(matches!(
        verify_record(&jwks, &record.replace(",", ", "), sig),
        Err(RecordError::NotCanonical(_))
    ));
    let other = Jwks {
        keys: vec![Jwk::ed25519(
            &Signer25519::insecure_demo("other").public_key(),
            signer.key_id(),
            None,
            None,
        )],
    };
    assert_eq!(verify_record(&other, record, sig), Err(RecordError::BadSignature));
    let not_yet = Jwks {
        keys: vec![Jwk::ed25519(
            &signer.public_key(),
            signer.key_id(),
            Some(signed_at_s + 1),
            None,
        )],
    };
    assert!(matches!(
        verify_record(&not_yet, record, sig),
        Err(RecordError::OutsideValidity { .. })
    ));
    let expired = Jwks {
        keys: vec![Jwk::ed25519(
            &signer.public_key(),
            signer.key_id(),
            None,
            Some(signed_at_s),
        )],
    };
    assert!(matches!(
        verify_record(&expired, record, sig),
        Err(RecordError::OutsideValidity { .. })
    ));
    assert!(matches!(
        verify_record(&Jwks::default(), record, sig),
        Err(RecordError::UnknownKey(_))
    ));

    assert_eq!(
        timeliness(due - 60_000, due),
        Timeliness::OnTime,
        "same day, before the due time"
    );
    assert_eq!(timeliness(due + 1, due), Timeliness::Late);
    assert!(Signer25519::from_hex_seed("abc", "k").is_err());
    let s = Signer25519::from_hex_seed(&"11".repeat(32), "k1").expect("seed");
    assert_eq!(s.public_key_hex().len(), 64);
}

#[test]
fn the_back_office_decides_deterministically_asks_for_papers_once_and_decides_after_them() {
    let office = backoffice::BackOffice::new(backoffice::BackOfficeConfig {
        supplement_rate: 0.5,
        late_rate: 0.2,
        refusal_rate: 0.1,
        reappoint_rate: 0.0,
    });
    let base = samples::dossier();
    let (mut supplements, mut late) = (0, 0);
    for i in 0..200i64 {
        let mut dossier = base.clone();
        dossier.dossier_id = format!("d-{i}");
        let routed = motcua_schemas::DossierRouted {
            event_id: format!("r-{i}"),
            causation_id: "p".into(),
            dossier_code: format!("H22.06652-251125-{i:04}"),
            received_at: 1_764_036_000_000 + i * 5 * 3_600_000,
            procedure: samples::procedure(),
            dossier,
            competent_unit_code: "06652".into(),
            competent_unit_name: "Phường".into(),
            desk: "DDXD".into(),
            transferred: false,
            due_at: 1_764_036_000_000 + i * 5 * 3_600_000 + 14 * DAY,
            routed_at: 1_764_036_000_000 + 3_600_000,
            traceparent: None,
            calendar_version: None,
            clock_pauses: Vec::new(),
        };
        let events = office.decide(&routed);
        assert_eq!(events, office.decide(&routed), "deterministic per dossier");
        let d = match events.as_slice() {
            [AnyEvent::SupplementRequested(q)] => {
                supplements += 1;
                assert_eq!(
                    (q.dossier_id.as_str(), &q.dossier_code),
                    (routed.dossier.dossier_id.as_str(), &routed.dossier_code)
                );
                assert!(q.requested_at > routed.received_at && q.requested_at < routed.due_at);
                // The papers come back three days later with the due time moved: the
                // officers decide then, after the pause, by the new due time, and do not
                // ask again.
                let back = motcua_schemas::DossierRouted {
                    event_id: format!("r-{i}-back"),
                    due_at: routed.due_at + DAY,
                    clock_pauses: vec![motcua_schemas::ClockPause {
                        step: "backoffice".into(),
                        from_at: q.requested_at,
                        to_at: q.requested_at + 3 * DAY,
                        paused_working_ms: DAY / 3,
                    }],
                    ..routed.clone()
                };
                let Some(AnyEvent::Decided(d)) = office.decide(&back).last().cloned() else {
                    panic!("decided after the papers")
                };
                assert_eq!(d.due_at, back.due_at);
                assert!(d.decided_at > q.requested_at + 3 * DAY, "after the pause");
                d
            }
            [.., AnyEvent::Decided(d)] => {
                assert_eq!(d.due_at, routed.due_at);
                d.clone()
            }
            other => panic!("{other:?}"),
        };
        if d.decided_at > d.due_at {
            late += 1;
        }
    }
    assert!((60..140).contains(&supplements), "{supplements}");
    assert!((15..70).contains(&late), "{late}");
}

/// An escalation is announced once with one content: the same decision re-sent in a new
/// message (a later broker time) while the wallet still refuses it, or a timer round
/// repeated after a crash before it was marked, announces the first escalation byte for
/// byte, not one restamped with the new time.
#[tokio::test]
async fn an_escalation_announced_again_is_the_first_one() {
    let dir = tempfile::tempdir().expect("dir");
    let faults = WalletFaults {
        unknown_owners: ["022090001234".to_owned()].into(),
        ..WalletFaults::default()
    };
    let (url, stage, _store) = stage(&dir, Signer25519::insecure_demo("test"), faults).await;
    let stage = stage.with_settings(DeliverySettings {
        policy: motcua_resilience::ParkPolicy {
            first_delay: Duration::ZERO,
            max_delay: Duration::ZERO,
            escalate_after: Duration::from_secs(60),
        },
        ..DeliverySettings::default()
    });
    let due = now_ms() + 5 * DAY;
    let refused = decided(now_ms() - 2_000, due);
    let first = stage
        .handle_batch(&[envelope(refused.clone(), 1)])
        .await
        .expect("handled");
    let mut resent = envelope(refused.clone(), 40);
    resent.origin.timestamp_ms = Some(refused.decided_at + 3_600_000);
    let again = stage.handle_batch(&[resent]).await.expect("handled again");
    assert_eq!(again, first, "the same escalation, not restamped");

    // The timer escalates a dossier whose wallet is down; the round is repeated (a crash
    // came before it was marked) later: the same event.
    set_faults(&url, &serde_json::json!({"down": true})).await;
    let mut late = decided(now_ms() - 2_000, due);
    late.event_id = "dc-9".into();
    late.dossier_id = "d-9".into();
    late.applicant_citizen_id = Some("001199000009".into());
    stage.handle_batch(&[envelope(late.clone(), 2)]).await.expect("parked");
    let signed_at = late.decided_at + 1_000;
    let escalation = |tick: &motcua_runtime::Tick| -> Vec<AnyEvent> {
        tick.events
            .iter()
            .filter(|e| e.event_id() != first_event_id(&first))
            .filter(|e| matches!(e, AnyEvent::Status(s) if s.dossier_id == "d-9"))
            .cloned()
            .collect()
    };
    let tick = stage.tick(signed_at + 61_000).await.expect("tick");
    let repeated = stage.tick(signed_at + 400_000).await.expect("tick repeated");
    assert_eq!(escalation(&tick).len(), 1, "{tick:?}");
    assert_eq!(escalation(&repeated), escalation(&tick));
}

fn first_event_id(out: &[Outcome]) -> &str {
    match out {
        [Outcome::Emit(events)] => events[0].event_id(),
        other => panic!("{other:?}"),
    }
}

/// A parked result that no longer decodes (a person must look) holds back neither the
/// results claimed with it nor the worker: reported, left parked, the others delivered.
#[tokio::test]
async fn an_unreadable_parked_result_does_not_starve_the_others() {
    let dir = tempfile::tempdir().expect("dir");
    let down = WalletFaults {
        common: motcua_simulators::faults::Faults {
            down: true,
            ..Default::default()
        },
        ..WalletFaults::default()
    };
    let (url, stage, store) = stage(&dir, Signer25519::insecure_demo("test"), down).await;
    let stage = stage.with_settings(DeliverySettings {
        policy: motcua_resilience::ParkPolicy {
            first_delay: Duration::ZERO,
            max_delay: Duration::ZERO,
            escalate_after: Duration::from_secs(3_600),
        },
        ..DeliverySettings::default()
    });
    let d = decided(now_ms() - 2_000, now_ms() + 5 * DAY);
    stage.handle_batch(&[envelope(d, 1)]).await.expect("parked");
    store
        .park(Lot::Result, "poison", b"not a framed message", 0, 0, "?")
        .await
        .expect("park poison");
    set_faults(&url, &serde_json::json!({})).await;
    let tick = stage.tick(now_ms() + 1).await.expect("a round despite the poison row");
    assert!(
        matches!(&tick.events[..], [AnyEvent::Completed(_), AnyEvent::Status(_)]),
        "{tick:?}"
    );
    stage.ticked(&tick).await.expect("ticked");
    assert_eq!(
        store.parked_count(Lot::Result).await.expect("count"),
        1,
        "left for a person"
    );
}
