use motcua_schemas::samples;

use super::*;
use motcua_simulators::backoffice;
use motcua_store::{ClosureKind, Store};

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
        event: d,
    }
}

#[tokio::test]
async fn a_decision_ends_the_dossier_unless_a_withdrawal_or_stop_came_first() {
    let dir = tempfile::tempdir().expect("dir");
    let store = store(&dir).await;
    let stage = ResultStage::new(Signer25519::insecure_demo("test"), store.clone());
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
    // A redelivered decision finds its own closure and emits the same result.
    let again = stage.handle_batch(&[envelope(decided_one, 1)]).await.expect("again");
    assert_eq!(again[0], out[0]);
}

#[tokio::test]
async fn results_are_signed_verifiable_and_classified_by_timeliness() {
    let dir = tempfile::tempdir().expect("dir");
    let signer = Signer25519::insecure_demo("test");
    let stage = ResultStage::new(signer.clone(), store(&dir).await);
    let due = 1_764_036_000_000 + 5 * DAY;
    let d = decided(due - 2 * DAY, due);
    let events = stage.complete(&d, d.decided_at + 1_000).expect("signed");
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
    assert_eq!(stage.complete(&d, d.decided_at + 1_000).expect("signed"), events);

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
