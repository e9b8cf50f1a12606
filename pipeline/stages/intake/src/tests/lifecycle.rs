//! Supplements, withdrawals and stops, against a real SQLite store.

use motcua_runtime::Origin;
use motcua_schemas::{
    samples, ClockPause, DossierRouted, DossierSupplementRequested, DossierSupplemented, DossierWithdrawn,
};
use motcua_store::{Bill, ClosureKind, Pause, WaitRequest, WaitState};

use super::*;

const DAY: i64 = 86_400_000;
const HOUR: i64 = 3_600_000;

fn input(e: IntakeInput, offset: i64) -> Envelope<IntakeInput> {
    Envelope {
        event: e,
        origin: Origin {
            topic: "dossier.supplemented".into(),
            partition: 0,
            offset,
            timestamp_ms: None,
        },
        door: Default::default(),
    }
}

fn supplement(id: &str, dossier_id: &str, code: Option<&str>, at: i64) -> DossierSupplemented {
    DossierSupplemented {
        event_id: id.to_owned(),
        dossier_id: dossier_id.to_owned(),
        dossier_code: code.map(str::to_owned),
        portal: "dvc".to_owned(),
        documents: vec![],
        form_fields: Default::default(),
        land_parcels: None,
        residence_unit_code: None,
        full_name: None,
        date_of_birth: None,
        supplemented_at: at,
        published_at: at + 500,
        traceparent: None,
    }
}

fn withdrawal(id: &str, dossier_id: &str, code: Option<&str>, at: i64) -> DossierWithdrawn {
    DossierWithdrawn {
        event_id: id.to_owned(),
        dossier_id: dossier_id.to_owned(),
        dossier_code: code.map(str::to_owned),
        portal: "dvc".to_owned(),
        reason_code: None,
        withdrawn_at: at,
        published_at: at + 500,
        traceparent: None,
    }
}

async fn one(stage: &Intake, e: impl Into<IntakeInputOf>) -> Outcome {
    let e: IntakeInputOf = e.into();
    let mut out = stage.handle_batch(&[input(e.0, 1)]).await.expect("handled");
    out.pop().expect("one outcome")
}

/// Wraps each kind of input (the test passes plain events).
struct IntakeInputOf(IntakeInput);
impl From<DossierSubmitted> for IntakeInputOf {
    fn from(s: DossierSubmitted) -> Self {
        Self(s.into())
    }
}
impl From<DossierSupplemented> for IntakeInputOf {
    fn from(s: DossierSupplemented) -> Self {
        Self(IntakeInput::Supplemented(Box::new(s)))
    }
}
impl From<DossierSupplementRequested> for IntakeInputOf {
    fn from(r: DossierSupplementRequested) -> Self {
        Self(IntakeInput::SupplementRequested(Box::new(r)))
    }
}
impl From<DossierWithdrawn> for IntakeInputOf {
    fn from(w: DossierWithdrawn) -> Self {
        Self(IntakeInput::Withdrawn(Box::new(w)))
    }
}

fn events(o: &Outcome) -> &[AnyEvent] {
    match o {
        Outcome::Emit(e) => e,
        other => panic!("not emitted: {other:?}"),
    }
}

fn dead_letter_code(o: &Outcome) -> &str {
    match o {
        Outcome::DeadLetter { reason_code, .. } => reason_code,
        other => panic!("not refused: {other:?}"),
    }
}

fn status(o: &Outcome) -> &DossierStatusChanged {
    events(o)
        .iter()
        .find_map(|e| match e {
            AnyEvent::Status(s) => Some(s),
            _ => None,
        })
        .expect("a status")
}

fn reason_codes(s: &DossierStatusChanged) -> Vec<&str> {
    s.reasons.iter().map(|r| r.code.as_str()).collect()
}

/// A dossier received and given its code, as verify would read it.
async fn accepted(stage: &Intake, g: &mut Generator<'_>, at: i64) -> DossierAccepted {
    let out = one(stage, g.valid(at)).await;
    match &events(&out)[0] {
        AnyEvent::Accepted(a) => a.clone(),
        other => panic!("not accepted: {other:?}"),
    }
}

#[tokio::test]
async fn a_dossier_missing_a_paper_at_reception_is_received_when_the_supplement_completes_it() {
    let (stage, _dir) = intake().await;
    let r = reference();
    let mut g = Generator::new(&r, "22", 31).expect("province");
    let mut s = g.valid(NOW);
    let missing = s.dossier.documents.pop().expect("a document");
    let dossier_id = s.dossier.dossier_id.clone();

    let asked = one(&stage, s.clone()).await;
    assert_eq!(status(&asked).status, DossierStatus::SupplementRequested);
    let waits = stage.store.waits_of(&dossier_id).await.expect("waits");
    assert_eq!(waits.len(), 1);
    assert_eq!(
        (waits[0].state, waits[0].request.step.as_str()),
        (WaitState::Waiting, "intake")
    );
    assert_eq!(waits[0].request.request_event_id, status(&asked).event_id);

    // An incomplete supplement (nothing in it) asks again, from the supplement's time.
    let empty = supplement("sp-empty", &dossier_id, None, NOW + DAY);
    let again = one(&stage, empty).await;
    assert_eq!(status(&again).status, DossierStatus::SupplementRequested);
    assert_eq!(reason_codes(status(&again)), ["MISSING_DOCUMENT"]);
    let waits = stage.store.waits_of(&dossier_id).await.expect("waits");
    assert_eq!(
        waits.iter().map(|w| w.state).collect::<Vec<_>>(),
        [WaitState::Answered, WaitState::Waiting]
    );

    // Three days later (Friday 28 Nov) the citizen brings the paper: received then, with
    // a code of that day.
    let at = NOW + 3 * DAY;
    let mut complete = supplement("sp-1", &dossier_id, None, at);
    complete.documents = vec![missing];
    let out = one(&stage, complete.clone()).await;
    let [AnyEvent::Accepted(a), AnyEvent::Status(received)] = events(&out) else {
        panic!("{out:?}")
    };
    assert_eq!(a.received_at, at, "the clock starts when the dossier is complete");
    assert!(a.dossier_code.contains("-251128-"), "{}", a.dossier_code);
    assert_eq!(a.dossier.documents.len(), s.dossier.documents.len() + 1);
    assert_eq!(received.status, DossierStatus::Received);
    assert!(received.lookup_token.is_some());
    // A redelivered supplement emits the same events; another one is not awaited.
    assert_eq!(one(&stage, complete).await, out);
    let late = one(&stage, supplement("sp-2", &dossier_id, None, at + HOUR)).await;
    assert_eq!(dead_letter_code(&late), "SUPPLEMENT_NOT_AWAITED");
    // No pause is counted: the dossier was not received while it waited.
    let pauses = stage.store.clock_pauses(&[dossier_id.as_str()]).await.expect("pauses");
    assert!(!pauses.contains_key(&dossier_id), "{pauses:?}");
}

#[tokio::test]
async fn a_supplement_answering_verify_resumes_the_dossier_under_its_code_and_pauses_the_clock() {
    let (stage, _dir) = intake().await;
    let r = reference();
    let mut g = Generator::new(&r, "22", 32).expect("province");
    let a = accepted(&stage, &mut g, NOW).await;
    let other = accepted(&stage, &mut g, NOW).await;
    let id = a.dossier.dossier_id.clone();
    let asked_at = NOW + HOUR;
    stage
        .store
        .await_supplements(&[WaitRequest {
            request_event_id: "verify-asked".into(),
            dossier_id: id.clone(),
            dossier_code: Some(a.dossier_code.clone()),
            step: "verify".into(),
            requested_at_ms: asked_at,
            payload: stage.codec.encode(&a).expect("encode"),
        }])
        .await
        .expect("wait");

    let refusals = [
        (
            supplement("x1", "nobody", None, NOW + DAY),
            "SUPPLEMENT_UNKNOWN_DOSSIER",
        ),
        (
            supplement("x2", &other.dossier.dossier_id, None, NOW + DAY),
            "SUPPLEMENT_NOT_AWAITED",
        ),
        (
            supplement("x3", &id, Some("H22.06652-251125-9999"), NOW + DAY),
            "SUPPLEMENT_CODE_MISMATCH",
        ),
        (supplement("x4", &id, None, asked_at - 1), "SUPPLEMENT_INVALID_TIME"),
    ];
    for (s, code) in refusals {
        assert_eq!(dead_letter_code(&one(&stage, s).await), code);
    }

    let at = NOW + DAY; // Wednesday 26 Nov 09:00
    let mut s = supplement("sp-v", &id, Some(&a.dossier_code), at);
    s.full_name = Some("Nguyễn Thị Hương".to_owned());
    let out = one(&stage, s.clone()).await;
    let [AnyEvent::Accepted(resumed), AnyEvent::Status(st)] = events(&out) else {
        panic!("{out:?}")
    };
    assert_eq!(resumed.dossier_code, a.dossier_code, "same code");
    assert_eq!(resumed.received_at, a.received_at, "same reception time");
    assert_ne!(resumed.event_id, a.event_id, "a new message for verify to check");
    assert_eq!(resumed.dossier.applicant.full_name, "Nguyễn Thị Hương");
    assert_eq!(resumed.dossier.documents, a.dossier.documents);
    assert_eq!((st.status, st.occurred_at), (DossierStatus::Processing, at));
    assert_eq!(reason_codes(st), ["SUPPLEMENT_RECEIVED"]);
    let pauses = stage.store.clock_pauses(&[id.as_str()]).await.expect("pauses");
    assert_eq!(
        pauses[&id],
        [Pause {
            step: "verify".into(),
            from_ms: asked_at,
            to_ms: at
        }]
    );
    assert_eq!(one(&stage, s).await, out, "a redelivery re-emits the same events");
}

/// The back office's request for papers of a routed dossier.
fn office_request(id: &str, dossier_id: &str, code: &str, at: i64) -> DossierSupplementRequested {
    DossierSupplementRequested {
        event_id: id.to_owned(),
        dossier_id: dossier_id.to_owned(),
        dossier_code: code.to_owned(),
        competent_unit_code: "06652".to_owned(),
        reasons: vec![Reason {
            code: "DOCUMENT_ILLEGIBLE".to_owned(),
            message: "Bản sao không rõ".to_owned(),
        }],
        requested_by: "06652/D1".to_owned(),
        requested_at: at,
        traceparent: None,
    }
}

#[tokio::test]
async fn the_back_office_s_request_waits_and_the_supplement_sends_the_dossier_back_with_the_pause() {
    let (stage, _dir) = intake().await;
    let r = reference();
    let mut g = Generator::new(&r, "22", 35).expect("province");
    let a = accepted(&stage, &mut g, NOW).await;
    let id = a.dossier.dossier_id.clone();
    let code = a.dossier_code.clone();
    // Routed Tuesday 25 Nov 2025 10:00, due Tuesday 2 Dec 09:00 (what route stored).
    let routed = DossierRouted {
        event_id: "routed-1".into(),
        causation_id: "paid-1".into(),
        dossier_code: code.clone(),
        received_at: a.received_at,
        procedure: a.procedure.clone(),
        dossier: a.dossier.clone(),
        competent_unit_code: "06652".into(),
        competent_unit_name: "Phường".into(),
        desk: "D1".into(),
        transferred: false,
        due_at: NOW + 7 * DAY,
        routed_at: NOW + HOUR,
        traceparent: None,
        calendar_version: None,
        clock_pauses: vec![],
    };
    stage
        .store
        .assign(&[motcua_store::Assignment {
            dossier_id: id.clone(),
            authority_code: "06652".into(),
            desk_code: "D1".into(),
            transferred: false,
            due_at_ms: routed.due_at,
            routed_at_ms: routed.routed_at,
            calendar_version: None,
            clock_pauses: "[]".into(),
            routed: Some(stage.codec.encode(&routed).expect("encode")),
        }])
        .await
        .expect("assign");

    // Friday 28 Nov 15:00.
    let asked_at = NOW + 3 * DAY + 6 * HOUR;
    let mut no_reason = office_request("q0", &id, &code, asked_at);
    no_reason.reasons.clear();
    let refusals = [
        (
            office_request("q1", "nobody", &code, asked_at),
            "SUPPLEMENT_REQUEST_UNKNOWN_DOSSIER",
        ),
        (
            office_request("q2", &id, "H22.06652-251125-9999", asked_at),
            "SUPPLEMENT_REQUEST_CODE_MISMATCH",
        ),
        (no_reason, "SUPPLEMENT_REQUEST_NO_REASON"),
        (
            office_request("q3", &id, &code, a.received_at - 1),
            "SUPPLEMENT_REQUEST_INVALID_TIME",
        ),
    ];
    for (q, reason) in refusals {
        assert_eq!(dead_letter_code(&one(&stage, q).await), reason);
    }
    assert!(
        stage.store.waits_of(&id).await.expect("waits").is_empty(),
        "refusals record nothing"
    );

    let q = office_request("q-ok", &id, &code, asked_at);
    let out = one(&stage, q.clone()).await;
    let [AnyEvent::Status(st)] = events(&out) else {
        panic!("{out:?}")
    };
    assert_eq!(
        (st.status, st.stage.as_str(), st.occurred_at),
        (DossierStatus::SupplementRequested, STAGE, asked_at)
    );
    assert_eq!(st.causation_id.as_deref(), Some("q-ok"));
    assert_eq!(
        (st.dossier_code.as_deref(), st.unit_code.as_deref(), st.due_at),
        (Some(code.as_str()), Some("06652"), Some(routed.due_at))
    );
    assert_eq!(reason_codes(st), ["DOCUMENT_ILLEGIBLE"]);
    let [w] = &stage.store.waits_of(&id).await.expect("waits")[..] else {
        panic!("one wait")
    };
    assert_eq!(
        (w.request.step.as_str(), w.request.request_event_id.as_str(), w.state),
        ("backoffice", st.event_id.as_str(), WaitState::Waiting),
        "recorded before the status goes out"
    );
    assert_eq!(one(&stage, q).await, out, "a redelivered request is announced the same");

    // The citizen brings the papers Monday 1 Dec 08:00: Friday 15:00–17:00 and Monday
    // 07:00–08:00 are 3 working hours; Tuesday 09:00 + 3 h = 11:30 + 0.5 h after the
    // lunch break = Tuesday 2 Dec 14:00.
    let answered_at = NOW + 6 * DAY - HOUR;
    let s = supplement("sp-b", &id, Some(&code), answered_at);
    let out = one(&stage, s.clone()).await;
    let [AnyEvent::Routed(back), AnyEvent::Status(resumed)] = events(&out) else {
        panic!("{out:?}")
    };
    assert_eq!(back.due_at, NOW + 7 * DAY + 5 * HOUR);
    assert_eq!(
        back.clock_pauses,
        [ClockPause {
            step: "backoffice".into(),
            from_at: asked_at,
            to_at: answered_at,
            paused_working_ms: 3 * HOUR,
        }]
    );
    assert_eq!(
        (&back.dossier_code, back.received_at, back.routed_at, back.desk.as_str()),
        (&code, a.received_at, answered_at, "D1"),
        "same code, reception and desk; sent back when the papers came"
    );
    assert_ne!(back.event_id, routed.event_id);
    assert!(
        back.is_return() && !routed.is_return(),
        "sent back by intake, not routed"
    );
    assert_eq!(back.causation_id, "sp-b");
    assert_eq!(
        (resumed.status, resumed.due_at, resumed.occurred_at),
        (DossierStatus::Processing, Some(back.due_at), answered_at)
    );
    assert_eq!(reason_codes(resumed), ["SUPPLEMENT_RECEIVED"]);
    assert_eq!(one(&stage, s).await, out, "a redelivery re-emits the same events");
    assert_eq!(
        stage.store.clock_pauses(&[id.as_str()]).await.expect("pauses")[&id],
        [Pause {
            step: "backoffice".into(),
            from_ms: asked_at,
            to_ms: answered_at
        }]
    );

    // A second request resumes from what was sent back: both pauses, the due time moved
    // twice (Tuesday 13:30 to 15:30 is 2 h: 14:00 becomes 16:00).
    let again_at = NOW + 7 * DAY + 4 * HOUR + HOUR / 2;
    one(&stage, office_request("q-2", &id, &code, again_at)).await;
    let out = one(&stage, supplement("sp-b2", &id, Some(&code), again_at + 2 * HOUR)).await;
    let [AnyEvent::Routed(twice), _] = events(&out) else {
        panic!("{out:?}")
    };
    assert_eq!(twice.clock_pauses.len(), 2);
    assert_eq!(twice.due_at, NOW + 7 * DAY + 7 * HOUR);

    // Decided: a later request is refused, and nothing is kept.
    stage
        .store
        .close_dossier(&id, ClosureKind::Decided, "dc-b", NOW + 8 * DAY)
        .await
        .expect("decide");
    let out = one(&stage, office_request("q-late", &id, &code, NOW + 8 * DAY + HOUR)).await;
    assert_eq!(dead_letter_code(&out), "SUPPLEMENT_REQUEST_DOSSIER_CLOSED");
}

#[tokio::test]
async fn a_withdrawal_ends_the_dossier_once_and_follows_the_fee_rule() {
    let (stage, _dir) = intake().await;
    let r = reference();
    let mut g = Generator::new(&r, "22", 33).expect("province");

    // Received, no bill yet.
    let a = accepted(&stage, &mut g, NOW).await;
    let id = a.dossier.dossier_id.as_str();
    let w = withdrawal("wd-1", id, Some(&a.dossier_code), NOW + HOUR);
    let out = one(&stage, w.clone()).await;
    let st = status(&out);
    assert_eq!((st.status, st.occurred_at), (DossierStatus::Withdrawn, NOW + HOUR));
    assert_eq!(st.dossier_code.as_deref(), Some(a.dossier_code.as_str()));
    assert_eq!(reason_codes(st), ["WITHDRAWN_BY_APPLICANT", "NO_FEE_PAID"]);
    assert_eq!(one(&stage, w).await, out, "a redelivery re-emits it");
    let twice = one(&stage, withdrawal("wd-1b", id, None, NOW + 2 * HOUR)).await;
    assert_eq!(dead_letter_code(&twice), "WITHDRAWAL_DOSSIER_CLOSED");
    assert_eq!(
        stage.store.closure(id).await.expect("read").expect("closed").kind,
        ClosureKind::Withdrawn
    );

    // Billed, unpaid: the bill is cancelled.
    let b = accepted(&stage, &mut g, NOW).await;
    let bill = |dossier_id: &str, reference: &str, payload: Vec<u8>| Bill {
        bill_reference: reference.to_owned(),
        dossier_id: dossier_id.to_owned(),
        amount_vnd: 50_000,
        status: "pending".to_owned(),
        issued_at_ms: NOW,
        expires_at_ms: NOW + 3 * DAY,
        paid_at_ms: None,
        gateway_tx: None,
        failures: 0,
        verified_payload: payload,
    };
    let codec = &stage.codec;
    let verified = samples::events()
        .into_iter()
        .find_map(|e| match e {
            AnyEvent::Verified(v) => Some(v),
            _ => None,
        })
        .expect("a verified sample (a land procedure)");
    let payload = codec.encode(&verified).expect("encode");
    stage
        .store
        .issue_bill(&bill(&b.dossier.dossier_id, "HD-B", payload.clone()))
        .await
        .expect("bill");
    let out = one(&stage, withdrawal("wd-2", &b.dossier.dossier_id, None, NOW + HOUR)).await;
    assert_eq!(reason_codes(status(&out)), ["WITHDRAWN_BY_APPLICANT", "BILL_CANCELLED"]);
    let bills = stage.store.bills().await.expect("bills");
    assert_eq!(
        bills.iter().find(|x| x.bill_reference == "HD-B").expect("bill").status,
        "expired"
    );
    // The citizen pays the cancelled bill anyway (the gateway took the money: honoured,
    // to refund), then the portal re-sends the withdrawal in a new message: the status
    // already announced, not one that now reads FEE_REFUND_DUE under the same id.
    stage
        .store
        .settle("HD-B", true, 50_000, "TX-B", NOW + 2 * HOUR)
        .await
        .expect("paid late");
    let resent = stage
        .handle_batch(&[input(
            IntakeInputOf::from(withdrawal("wd-2", &b.dossier.dossier_id, None, NOW + HOUR)).0,
            77,
        )])
        .await
        .expect("handled");
    assert_eq!(resent, [out], "the withdrawal as first announced");

    // Paid for a land procedure: its appraisal fee is not refunded.
    let c = accepted(&stage, &mut g, NOW).await;
    stage
        .store
        .issue_bill(&bill(&c.dossier.dossier_id, "HD-C", payload))
        .await
        .expect("bill");
    stage
        .store
        .settle("HD-C", true, 50_000, "TX-C", NOW + HOUR)
        .await
        .expect("paid");
    let out = one(&stage, withdrawal("wd-3", &c.dossier.dossier_id, None, NOW + 2 * HOUR)).await;
    assert_eq!(
        reason_codes(status(&out)),
        ["WITHDRAWN_BY_APPLICANT", "FEE_NOT_REFUNDABLE"]
    );
    assert!(!refund_on_withdrawal(verified.procedure.field));
    assert!(refund_on_withdrawal(motcua_schemas::ProcedureField::CivilStatus));

    // Decided first: too late.
    let d = accepted(&stage, &mut g, NOW).await;
    stage
        .store
        .close_dossier(&d.dossier.dossier_id, ClosureKind::Decided, "dc", NOW + HOUR)
        .await
        .expect("decided");
    let out = one(&stage, withdrawal("wd-4", &d.dossier.dossier_id, None, NOW + 2 * HOUR)).await;
    assert_eq!(dead_letter_code(&out), "WITHDRAWAL_AFTER_DECISION");

    // Unknown, or the code of another dossier.
    let out = one(&stage, withdrawal("wd-5", "nobody", None, NOW)).await;
    assert_eq!(dead_letter_code(&out), "WITHDRAWAL_UNKNOWN_DOSSIER");
    let out = one(
        &stage,
        withdrawal("wd-6", &d.dossier.dossier_id, Some(&a.dossier_code), NOW),
    )
    .await;
    assert_eq!(dead_letter_code(&out), "WITHDRAWAL_CODE_MISMATCH");

    // Waiting at reception (no code yet): withdrawn, its wait ended, a supplement refused.
    let mut s = g.valid(NOW);
    s.dossier.documents.pop();
    let waiting = s.dossier.dossier_id.clone();
    one(&stage, s).await;
    let out = one(&stage, withdrawal("wd-7", &waiting, None, NOW + HOUR)).await;
    assert_eq!(status(&out).status, DossierStatus::Withdrawn);
    assert_eq!(status(&out).dossier_code, None);
    assert_eq!(
        stage.store.waits_of(&waiting).await.expect("waits")[0].state,
        WaitState::Withdrawn
    );
    let out = one(&stage, supplement("sp-late", &waiting, None, NOW + 2 * HOUR)).await;
    assert_eq!(dead_letter_code(&out), "SUPPLEMENT_DOSSIER_CLOSED");
}

#[tokio::test]
async fn a_supplement_that_never_comes_stops_the_dossier_after_its_working_days() {
    let (stage, _dir) = intake().await;
    let stage = stage.with_supplement_wait(SupplementWait {
        working_days: 2,
        ..SupplementWait::embedded().expect("calendar")
    });
    assert!(stage.tick_interval().is_some());
    let r = reference();
    let mut g = Generator::new(&r, "22", 34).expect("province");
    let mut s = g.valid(NOW);
    s.published_at = NOW; // Tuesday 25 Nov 2025 09:00
    s.dossier.documents.pop();
    let id = s.dossier.dossier_id.clone();
    let asked = one(&stage, s).await;
    assert_eq!(status(&asked).occurred_at, NOW);

    // Two working days from Tuesday 09:00: Thursday 27 Nov 09:00.
    let stop_at = NOW + 2 * DAY;
    let tick = stage.tick(stop_at - 1).await.expect("tick");
    assert!(tick.events.is_empty(), "not due yet");
    assert_eq!(
        stage.store.waits_of(&id).await.expect("waits")[0].stop_at_ms,
        Some(stop_at)
    );
    let tick = stage.tick(stop_at).await.expect("tick");
    let [AnyEvent::Status(stopped)] = &tick.events[..] else {
        panic!("{:?}", tick.events)
    };
    assert_eq!(
        (stopped.status, stopped.occurred_at, stopped.dossier_id.as_str()),
        (DossierStatus::ProcessingStopped, stop_at, id.as_str())
    );
    assert_eq!(reason_codes(stopped), ["SUPPLEMENT_NOT_RECEIVED"]);
    // Not acknowledged yet: the next round announces it again, identically.
    let again = stage.tick(stop_at + 1).await.expect("tick");
    assert_eq!(again.events, tick.events);
    stage.ticked(&again).await.expect("ticked");
    assert!(stage.tick(stop_at + 2).await.expect("tick").events.is_empty());
    let c = stage.store.closure(&id).await.expect("read").expect("closed");
    assert_eq!(c.kind, ClosureKind::Stopped);
    let out = one(&stage, supplement("sp-late", &id, None, stop_at + HOUR)).await;
    assert_eq!(dead_letter_code(&out), "SUPPLEMENT_DOSSIER_CLOSED");
}

/// A wait counts on the calendar of the center that received the dossier: one working
/// day from Friday 16:00 ends Monday 10:00 at a center open on Saturday mornings
/// (1 h + 4 h + 3 h), Monday 16:00 elsewhere.
#[test]
fn an_unanswered_wait_counts_the_receiving_center_s_hours() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hours = dir.path().join("unit-hours.csv");
    std::fs::write(&hours, "center,hours,saturday\n06652,,07:30-11:30\n").expect("write");
    let r = reference();
    let tables = motcua_routing::RoutingTables::load(
        &r,
        &motcua_routing::RoutingFiles {
            unit_hours: Some(hours),
            ..Default::default()
        },
    )
    .expect("tables");
    let wait = SupplementWait {
        calendars: Arc::new(tables),
        working_days: 1,
        ..SupplementWait::embedded().expect("calendar")
    };
    let friday_4pm = NOW + 3 * 24 * HOUR + 7 * HOUR;
    let monday = NOW + 6 * 24 * HOUR - 9 * HOUR; // Monday 00:00
    assert_eq!(wait.stop_at("06652", friday_4pm).expect("stop"), monday + 10 * HOUR);
    assert_eq!(wait.stop_at("07090", friday_4pm).expect("stop"), monday + 16 * HOUR);
}

/// Asked for papers at reception, then resubmitted complete by the portal (a new
/// submission instead of a supplement): the dossier is accepted, and the wait it no longer
/// needs is superseded — past its working days it must not stop the live dossier.
#[tokio::test]
async fn a_dossier_resubmitted_complete_is_not_stopped_by_its_old_wait() {
    let (stage, _dir) = intake().await;
    let stage = stage.with_supplement_wait(SupplementWait {
        working_days: 2,
        ..SupplementWait::embedded().expect("calendar")
    });
    let r = reference();
    let mut g = Generator::new(&r, "22", 35).expect("province");
    let complete = g.valid(NOW);
    let mut incomplete = complete.clone();
    incomplete.event_id = format!("{}-first", complete.event_id);
    incomplete.dossier.documents.pop();
    let id = complete.dossier.dossier_id.clone();
    let asked = one(&stage, incomplete).await;
    assert_eq!(status(&asked).status, DossierStatus::SupplementRequested);
    let accepted = one(&stage, complete).await;
    assert!(matches!(&events(&accepted)[0], AnyEvent::Accepted(_)), "{accepted:?}");
    let waits = stage.store.waits_of(&id).await.expect("waits");
    assert_eq!(waits[0].state, WaitState::Superseded, "{waits:?}");
    let tick = stage.tick(NOW + 30 * DAY).await.expect("tick");
    assert!(tick.events.is_empty(), "a live dossier stopped: {:?}", tick.events);
    assert_eq!(stage.store.closure(&id).await.expect("read"), None);
}

/// A supplement completing a dossier asked for papers at reception, whose id another
/// dossier took meanwhile: refused as a duplicate id, and its wait left open — so the
/// dossier still ends (stopped when no valid supplement comes), never open forever.
#[tokio::test]
async fn a_supplement_refused_as_a_duplicate_id_leaves_its_wait_to_end_the_dossier() {
    let (stage, _dir) = intake().await;
    let stage = stage.with_supplement_wait(SupplementWait {
        working_days: 2,
        ..SupplementWait::embedded().expect("calendar")
    });
    let r = reference();
    let mut g = Generator::new(&r, "22", 36).expect("province");
    let mut s = g.valid(NOW);
    let missing = s.dossier.documents.pop().expect("a document");
    let id = s.dossier.dossier_id.clone();
    one(&stage, s).await;
    // Another dossier with this id got a code meanwhile.
    stage
        .store
        .allocate_codes(&[CodeRequest {
            dossier_id: id.clone(),
            agency_code: "H22.06652".into(),
            day: "251125".into(),
            received_at_ms: NOW,
            content_digest: "another dossier".into(),
            lookup_token: "t".into(),
        }])
        .await
        .expect("allocate");
    let mut sp = supplement("sp-dup", &id, None, NOW + HOUR);
    sp.documents = vec![missing];
    let out = one(&stage, sp).await;
    assert_eq!(dead_letter_code(&out), "DUPLICATE_DOSSIER_ID");
    assert_eq!(
        stage.store.waits_of(&id).await.expect("waits")[0].state,
        WaitState::Waiting
    );
    let tick = stage.tick(NOW + 30 * DAY).await.expect("tick");
    assert!(
        matches!(&tick.events[..], [AnyEvent::Status(s)] if s.status == DossierStatus::ProcessingStopped),
        "{:?}",
        tick.events
    );
}

mod door;
