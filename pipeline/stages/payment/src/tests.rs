use motcua_runtime::Origin;
use motcua_schemas::{samples, DossierVerified, ProcedureSummary};

use super::*;
use motcua_runtime::Tick;
use motcua_schemas::DossierStatusChanged;

fn verified(id: &str, fee: i64) -> DossierVerified {
    let mut d = samples::dossier();
    d.dossier_id = id.to_owned();
    DossierVerified {
        event_id: format!("v-{id}"),
        causation_id: "a".into(),
        dossier_code: format!("H22.06652-251125-{id}"),
        received_at: 1,
        procedure: ProcedureSummary {
            fee_vnd: fee,
            code: "1.012811".into(),
            ..samples::procedure()
        },
        dossier: d,
        checks: vec![],
        verified_at: 2,
        traceparent: None,
    }
}

fn env(input: PaymentInput, offset: i64) -> Envelope<PaymentInput> {
    Envelope {
        event: input,
        origin: Origin {
            topic: "t".into(),
            partition: 0,
            offset,
            timestamp_ms: Some(1_000 + offset),
        },
        door: Default::default(),
    }
}

fn confirmation(bill: &str, tx: &str, outcome: PaymentOutcome, amount: i64) -> PaymentInput {
    PaymentInput::Confirmed(PaymentConfirmed {
        event_id: format!("c-{tx}-{outcome:?}"),
        bill_reference: bill.to_owned(),
        gateway: "g".into(),
        gateway_transaction_id: tx.to_owned(),
        amount_vnd: amount,
        outcome,
        failure_reason: None,
        confirmed_at: 5_000,
    })
}

async fn stage(dir: &tempfile::TempDir) -> Payment {
    let store = Store::connect(&format!("sqlite://{}", dir.path().join("p.db").display()))
        .await
        .expect("store");
    Payment::new(
        store,
        Codec::embedded().expect("codec"),
        FeeSchedule::embedded().expect("fees"),
    )
}

fn events(o: &Outcome) -> &[AnyEvent] {
    match o {
        Outcome::Emit(e) => e,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_bill_is_paid_once_whatever_the_gateway_sends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = stage(&dir).await;
    let v = verified("d1", 50_000);
    let out = p
        .handle_batch(&[env(PaymentInput::Verified(Box::new(v.clone())), 0)])
        .await
        .expect("billed");
    let [AnyEvent::PaymentRequested(req), AnyEvent::Status(s)] = events(&out[0]) else {
        panic!("{out:?}")
    };
    assert_eq!(req.amount_vnd, 70_000, "fee 50,000 + charge 20,000 from the schedule");
    assert_eq!(req.bill_reference, bill_reference("d1"));
    assert_eq!(s.status, DossierStatus::FinancialObligationRequested);
    // Redelivered: the same bill.
    let again = p
        .handle_batch(&[env(PaymentInput::Verified(Box::new(v)), 0)])
        .await
        .expect("billed");
    assert_eq!(again, out);

    let r = &req.bill_reference;
    let batch = [
        env(confirmation(r, "tx1", PaymentOutcome::Failed, 70_000), 1),
        env(confirmation(r, "tx2", PaymentOutcome::Succeeded, 60_000), 2), // short of the amount
        env(confirmation(r, "tx3", PaymentOutcome::Succeeded, 70_000), 3),
        env(confirmation(r, "tx3", PaymentOutcome::Succeeded, 70_000), 4), // duplicate of tx3
        env(confirmation(r, "tx4", PaymentOutcome::Succeeded, 70_000), 5), // a second payment
        env(confirmation("HDUNKNOWN", "tx5", PaymentOutcome::Succeeded, 1), 6),
    ];
    let out = p.handle_batch(&batch).await.expect("handled");
    assert!(matches!(events(&out[0]), [AnyEvent::Status(s)] if s.reasons[0].code == "PAYMENT_FAILED"));
    assert!(matches!(events(&out[1]), [AnyEvent::Status(s)] if s.reasons[0].code == "PAYMENT_FAILED"));
    let [AnyEvent::Paid(paid)] = events(&out[2]) else {
        panic!("{:?}", out[2])
    };
    assert_eq!(paid.amount_vnd, 70_000);
    assert_eq!(paid.bill_reference.as_deref(), Some(r.as_str()));
    assert_eq!(
        events(&out[3]),
        events(&out[2]),
        "the same transaction again re-emits the identical event"
    );
    assert!(events(&out[4]).is_empty(), "a second transaction pays nothing more");
    assert!(matches!(&out[5], Outcome::DeadLetter { reason_code, .. } if reason_code == "UNKNOWN_BILL"));

    // Verified again once paid (a replay): no second bill, the identical paid event.
    let replay = p
        .handle_batch(&[env(PaymentInput::Verified(Box::new(verified("d1", 50_000))), 9)])
        .await
        .expect("replayed");
    assert_eq!(events(&replay[0]), events(&out[2]), "the payment stands");
}

#[tokio::test]
async fn free_and_exempt_dossiers_skip_the_bill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = stage(&dir).await;
    let mut free = verified("d2", 0);
    free.procedure.code = "9.000001".into();
    let out = p
        .handle_batch(&[env(PaymentInput::Verified(Box::new(free)), 0)])
        .await
        .expect("handled");
    assert!(matches!(events(&out[0]), [AnyEvent::Paid(x)] if x.amount_vnd == 0 && x.bill_reference.is_none()));
    // Exempt from the fee, but the charge remains.
    let mut exempt = verified("d3", 50_000);
    exempt
        .dossier
        .form_fields
        .insert("beneficiary_group".into(), "poor_household".into());
    let out = p
        .handle_batch(&[env(PaymentInput::Verified(Box::new(exempt)), 1)])
        .await
        .expect("handled");
    assert!(matches!(events(&out[0]), [AnyEvent::PaymentRequested(x), _] if x.fee_vnd == 0 && x.amount_vnd == 20_000));
}

fn stops(tick: &Tick) -> Vec<&DossierStatusChanged> {
    tick.events
        .iter()
        .filter_map(|e| match e {
            AnyEvent::Status(s) if s.status == DossierStatus::ProcessingStopped => Some(s),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn unpaid_bills_expire_with_a_status_event_that_closes_the_dossier() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut p = stage(&dir).await;
    p.validity_ms = 100;
    p.handle_batch(&[env(PaymentInput::Verified(Box::new(verified("d4", 10_000))), 0)])
        .await
        .expect("billed");
    // Issued when it was verified (at 2): valid until 102.
    assert!(p.tick(50).await.expect("tick").events.is_empty(), "not yet");
    let expired = p.tick(200).await.expect("tick");
    let [stop] = &stops(&expired)[..] else {
        panic!("{expired:?}")
    };
    assert_eq!((stop.reasons[0].code.as_str(), stop.occurred_at), ("BILL_EXPIRED", 102));
    let closure = p.store.closure("d4").await.expect("closure").expect("closed");
    assert_eq!(closure.event_id, stop.event_id, "the stop ends the dossier");
    // Announced again until marked (a crash between the two repeats the same event).
    assert_eq!(p.tick(300).await.expect("tick"), expired);
    p.ticked(&expired).await.expect("ticked");
    assert!(
        p.tick(2_000).await.expect("tick").events.is_empty(),
        "once announced, done"
    );
}

/// A payment the gateway confirms just after the bill expired: the stop was announced,
/// so the dossier stays stopped; the payment is reported for refund, never announced as
/// `dossier.paid` (the dossier would be both stopped and routed).
#[tokio::test]
async fn a_bill_paid_while_its_expiry_is_announced_is_refunded_not_routed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut p = stage(&dir).await;
    p.validity_ms = 100;
    let out = p
        .handle_batch(&[env(PaymentInput::Verified(Box::new(verified("d7", 10_000))), 0)])
        .await
        .expect("billed");
    let [AnyEvent::PaymentRequested(req), _] = events(&out[0]) else {
        panic!("{out:?}")
    };
    let tick = p.tick(200).await.expect("tick");
    assert_eq!(stops(&tick).len(), 1);
    let paid = p
        .handle_batch(&[env(
            confirmation(&req.bill_reference, "tx7", PaymentOutcome::Succeeded, 30_000),
            1,
        )])
        .await
        .expect("confirmed");
    p.ticked(&tick).await.expect("ticked");
    assert!(events(&paid[0]).is_empty(), "stopped, then paid: {paid:?}");
}

/// A dossier withdrawn while its bill was pending ended with the withdrawal: the bill's
/// expiry announces nothing (no second end).
#[tokio::test]
async fn the_expiry_of_a_withdrawn_dossier_s_bill_announces_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut p = stage(&dir).await;
    p.validity_ms = 100;
    p.handle_batch(&[env(PaymentInput::Verified(Box::new(verified("d8", 10_000))), 0)])
        .await
        .expect("billed");
    p.store
        .close_dossier("d8", ClosureKind::Withdrawn, "w-d8", 50)
        .await
        .expect("withdrawn");
    let tick = p.tick(200).await.expect("tick");
    assert!(stops(&tick).is_empty(), "{tick:?}");
    p.ticked(&tick).await.expect("ticked");
}

/// Verify announcing a dossier again in a new message (another offset, a later broker
/// time) gets the same answer: a free dossier's `dossier.paid` and a bill's request carry
/// the times of the verification and of the stored bill, not of the message.
#[tokio::test]
async fn a_verified_dossier_sent_again_in_a_new_message_gets_the_same_events() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = stage(&dir).await;
    let mut free = verified("d5", 0);
    free.procedure.code = "9.000001".into();
    let billed = verified("d6", 10_000);
    let batch = |offset| {
        vec![
            env(PaymentInput::Verified(Box::new(free.clone())), offset),
            env(PaymentInput::Verified(Box::new(billed.clone())), offset + 1),
        ]
    };
    let first = p.handle_batch(&batch(0)).await.expect("first");
    assert!(matches!(events(&first[0]), [AnyEvent::Paid(_)]));
    assert!(matches!(
        events(&first[1]),
        [AnyEvent::PaymentRequested(_), AnyEvent::Status(_)]
    ));
    let again = p.handle_batch(&batch(3_600_000)).await.expect("again");
    assert_eq!(again, first);
}

/// The gateway re-sends a failed attempt's confirmation under its id with other details
/// (another time, another reason): the status already announced for it goes out again.
#[tokio::test]
async fn a_failed_attempt_re_sent_with_other_details_gets_the_first_status() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = stage(&dir).await;
    let out = p
        .handle_batch(&[env(PaymentInput::Verified(Box::new(verified("d9", 50_000))), 0)])
        .await
        .expect("billed");
    let [AnyEvent::PaymentRequested(req), _] = events(&out[0]) else {
        panic!("{out:?}")
    };
    let first = p
        .handle_batch(&[env(
            confirmation(&req.bill_reference, "tx9", PaymentOutcome::Failed, 70_000),
            1,
        )])
        .await
        .expect("failed");
    let PaymentInput::Confirmed(mut again) = confirmation(&req.bill_reference, "tx9", PaymentOutcome::Failed, 70_000)
    else {
        unreachable!()
    };
    again.confirmed_at += 60_000;
    again.failure_reason = Some("thẻ hết hạn".into());
    let resent = p
        .handle_batch(&[env(PaymentInput::Confirmed(again), 2)])
        .await
        .expect("re-sent");
    assert_eq!(resent, first);
}

/// The gateway reports a failed attempt after the citizen withdrew the dossier (the
/// withdrawal cancelled the bill and said so): nothing is announced after the end.
#[tokio::test]
async fn a_failed_attempt_after_a_withdrawal_announces_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = stage(&dir).await;
    let out = p
        .handle_batch(&[env(PaymentInput::Verified(Box::new(verified("d10", 50_000))), 0)])
        .await
        .expect("billed");
    let [AnyEvent::PaymentRequested(req), _] = events(&out[0]) else {
        panic!("{out:?}")
    };
    p.store
        .close_dossier("d10", ClosureKind::Withdrawn, "w-d10", 50)
        .await
        .expect("withdrawn");
    let failed = p
        .handle_batch(&[env(
            confirmation(&req.bill_reference, "tx10", PaymentOutcome::Failed, 70_000),
            1,
        )])
        .await
        .expect("failed");
    assert!(events(&failed[0]).is_empty(), "{failed:?}");
}
