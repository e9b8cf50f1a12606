use std::collections::HashMap;

use motcua_runtime::Origin;
use motcua_schemas::{CompetentLevel, DossierSubmitted, ProcedureField};
use motcua_simulators::portal::Generator;

use super::*;

/// 2025-11-25 09:00 in Hà Nội.
const NOW: i64 = 1_764_036_000_000;

fn paid(r: &Reference, s: DossierSubmitted, n: usize) -> DossierPaid {
    DossierPaid {
        event_id: format!("paid-{}", s.event_id),
        causation_id: s.event_id.clone(),
        dossier_code: format!("H22.{}-251125-{n:04}", s.dossier.receiving_unit_code),
        received_at: s.dossier.submitted_at,
        procedure: r.catalog.get(&s.dossier.procedure_code).expect("catalog").summary(),
        dossier: s.dossier,
        bill_reference: None,
        amount_vnd: 0,
        paid_at: NOW + 3_600_000,
        traceparent: None,
    }
}

fn envelope(p: DossierPaid, offset: i64) -> Envelope<DossierPaid> {
    Envelope {
        event: p,
        origin: Origin {
            topic: "dossier.paid".into(),
            partition: 0,
            offset,
            timestamp_ms: Some(NOW + 3_700_000),
        },
        door: Default::default(),
    }
}

fn codec() -> motcua_schemas::Codec {
    motcua_schemas::Codec::embedded().expect("codec")
}

async fn store(dir: &tempfile::TempDir) -> Store {
    Store::connect(&format!("sqlite://{}", dir.path().join("r.db").display()))
        .await
        .expect("store")
}

fn routed(o: &Outcome) -> &DossierRouted {
    match o {
        Outcome::Emit(events) => match &events[0] {
            AnyEvent::Routed(r) => r,
            other => panic!("not routed: {other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn paid_dossiers_go_to_their_competent_authority_with_a_due_time_and_redelivery_repeats_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = Arc::new(Reference::embedded().expect("reference"));
    let route = Route::new(r.clone(), RoutingFiles::default(), store(&dir).await, codec())
        .await
        .expect("route");
    let mut g = Generator::new(&r, "22", 3).expect("province");
    let batch: Vec<_> = (0..200)
        .map(|i| envelope(paid(&r, g.valid(NOW + i * 60_000), i as usize), i))
        .collect();
    let out = route.handle_batch(&batch).await.expect("handled");
    for (o, e) in out.iter().zip(&batch) {
        let x = routed(o);
        let p = &e.event;
        match p.procedure.level {
            CompetentLevel::Commune => {
                let jurisdiction = match p.procedure.field {
                    ProcedureField::Land => p.dossier.land_parcels[0].unit_code.clone(),
                    _ => p.dossier.applicant.residence_unit_code.clone().expect("residence"),
                };
                assert_eq!(x.competent_unit_code, jurisdiction, "{}", p.procedure.code);
                assert_eq!(x.transferred, p.dossier.receiving_unit_code != jurisdiction);
            }
            CompetentLevel::Province => assert!(x.competent_unit_code.starts_with("S22."), "{}", x.competent_unit_code),
        }
        assert!(x.due_at > p.received_at, "due after reception");
        assert!(!x.desk.is_empty());
        let Outcome::Emit(events) = o else { unreachable!() };
        let AnyEvent::Status(s) = &events[1] else {
            panic!("status expected")
        };
        assert_eq!(s.status, DossierStatus::Processing);
        assert_eq!(s.due_at, Some(x.due_at));
    }
    let routed_once = route.open_assignments();
    assert_eq!(routed_once, 200, "one open assignment per routed dossier");
    // Redelivered (after desk loads changed): the same desks and due times, and the desk
    // loads do not grow again.
    let again = route.handle_batch(&batch).await.expect("handled");
    assert_eq!(again, out);
    assert_eq!(route.open_assignments(), routed_once, "a redelivery adds no load");
}

#[tokio::test]
async fn desks_of_one_field_share_the_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = Arc::new(Reference::embedded().expect("reference"));
    let route = Route::new(r.clone(), RoutingFiles::default(), store(&dir).await, codec())
        .await
        .expect("route");
    // Construction at a commune is served by several desks (specialised and general).
    let mut g = Generator::new(&r, "22", 4).expect("province");
    let mut batch = Vec::new();
    while batch.len() < 40 {
        let mut s = g.valid(NOW);
        let p = r.catalog.get(&s.dossier.procedure_code).expect("catalog");
        if p.field == ProcedureField::Construction && p.level == CompetentLevel::Commune {
            s.dossier.applicant.residence_unit_code = Some("07090".into());
            s.dossier.receiving_unit_code = "07090".into();
            s.dossier.land_parcels.clear();
            batch.push(envelope(paid(&r, s, batch.len()), batch.len() as i64));
        }
    }
    let out = route.handle_batch(&batch).await.expect("handled");
    let mut per_desk: HashMap<String, usize> = HashMap::new();
    for o in &out {
        *per_desk.entry(routed(o).desk.clone()).or_default() += 1;
    }
    assert!(per_desk.len() >= 2, "{per_desk:?}");
    let counts: Vec<usize> = per_desk.values().copied().collect();
    assert!(
        counts.iter().max().expect("max") - counts.iter().min().expect("min") <= 1,
        "least-loaded spreads evenly: {per_desk:?}"
    );
}

#[tokio::test]
async fn reloading_the_tables_changes_routing_without_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let departments = dir.path().join("departments.csv");
    std::fs::write(&departments, motcua_routing::EMBEDDED_DEPARTMENTS).expect("write");
    let files = RoutingFiles {
        departments: Some(departments.clone()),
        ..RoutingFiles::default()
    };
    let r = Arc::new(Reference::embedded().expect("reference"));
    let route = Route::new(r.clone(), files, store(&dir).await, codec())
        .await
        .expect("route");
    let mut g = Generator::new(&r, "22", 5).expect("province");
    let land_at_province = |g: &mut Generator<'_>, n: usize| loop {
        let s = g.valid(NOW);
        let p = r.catalog.get(&s.dossier.procedure_code).expect("catalog");
        if p.field == ProcedureField::Land && p.level == CompetentLevel::Province {
            return envelope(paid(&r, s, n), n as i64);
        }
    };
    let before = route
        .handle_batch(&[land_at_province(&mut g, 0)])
        .await
        .expect("handled");
    assert_eq!(routed(&before[0]).competent_unit_code, "S22.NNMT");

    // Quảng Ninh gives land to a department of its own: the file changes, the stage reloads.
    let mut text = motcua_routing::EMBEDDED_DEPARTMENTS.to_owned();
    text.push_str("22,land,DD,Văn phòng Đăng ký đất đai\n");
    std::fs::write(&departments, text).expect("write");
    assert_eq!(route.reload().await.expect("reload"), 2);
    let after = route
        .handle_batch(&[land_at_province(&mut g, 1)])
        .await
        .expect("handled");
    assert_eq!(routed(&after[0]).competent_unit_code, "S22.DD");
    assert!(routed(&after[0])
        .competent_unit_name
        .starts_with("Văn phòng Đăng ký đất đai"));

    // A broken file is refused and the current tables stay.
    std::fs::write(&departments, "province,field\n").expect("write");
    assert!(route.reload().await.is_err());
    assert_eq!(route.generation(), 2);
    let still = route
        .handle_batch(&[land_at_province(&mut g, 2)])
        .await
        .expect("handled");
    assert_eq!(routed(&still[0]).competent_unit_code, "S22.DD");
}

const HOUR: i64 = 3_600_000;

/// `y-m-d h:min` in Hà Nội (UTC+7), in epoch ms.
fn vn(y: i32, m: u32, d: u32, h: i64, min: i64) -> i64 {
    motcua_reference::civil::days_from_civil(y, m, d) * 86_400_000 + (h - 7) * HOUR + min * 60_000
}

/// Hand-checked against the 2026 calendar (07:00–11:30 and 13:30–17:00, Monday to
/// Friday; Tết Bính Ngọ off from Monday 16 to Friday 20 February).
#[test]
fn a_pause_gives_back_exactly_its_working_time_across_a_weekend_and_tet() {
    let calendar = motcua_routing::Calendar::embedded().expect("calendar");
    let pause = |from, to| Pause {
        step: "verify".into(),
        from_ms: from,
        to_ms: to,
    };
    // Received Thursday 5 Feb 09:00, three working days: due Tuesday 10 Feb 09:00.
    let due = calendar
        .deadline(
            vn(2026, 2, 5, 9, 0),
            motcua_reference::LeadTime {
                value: 3,
                unit: motcua_schemas::LeadTimeUnit::WorkingDays,
            },
        )
        .expect("deadline")
        .due_ms;
    assert_eq!(due, vn(2026, 2, 10, 9, 0));
    // Asked Friday 15:00, answered Monday 08:00: Friday 15–17 and Monday 7–8 are 3 h of
    // work (the weekend is none); Tuesday 09:00 + 3 h = 2.5 h to 11:30, then 13:30 + 0.5 h.
    let (moved, pauses) =
        paused_due(&calendar, due, &[pause(vn(2026, 2, 6, 15, 0), vn(2026, 2, 9, 8, 0))]).expect("moved");
    assert_eq!(pauses[0].paused_working_ms, 3 * HOUR);
    assert_eq!(moved, vn(2026, 2, 10, 14, 0));

    // Received Wednesday 11 Feb 08:00, five working days: Thursday, Friday, then Tết and
    // its weekends, Monday 23, Tuesday 24, Wednesday 25 Feb 08:00.
    let due = calendar
        .deadline(
            vn(2026, 2, 11, 8, 0),
            motcua_reference::LeadTime {
                value: 5,
                unit: motcua_schemas::LeadTimeUnit::WorkingDays,
            },
        )
        .expect("deadline")
        .due_ms;
    assert_eq!(due, vn(2026, 2, 25, 8, 0));
    // Asked Friday 13 Feb 10:00, answered Monday 23 Feb 09:30: 1.5 h + 3.5 h that Friday,
    // nothing during Tết, 2.5 h on Monday = 7.5 h. Wednesday 08:00 + 7 h is its end of
    // day; the last 0.5 h falls on Thursday 26 Feb 07:30.
    let tet = pause(vn(2026, 2, 13, 10, 0), vn(2026, 2, 23, 9, 30));
    let (moved, pauses) = paused_due(&calendar, due, std::slice::from_ref(&tet)).expect("moved");
    assert_eq!(pauses[0].paused_working_ms, 7 * HOUR + HOUR / 2);
    assert_eq!(moved, vn(2026, 2, 26, 7, 30));
    // A second, later pause adds its own: Wednesday 25 Feb 14:00–16:00 is 2 h.
    let (twice, pauses) = paused_due(
        &calendar,
        due,
        &[tet, pause(vn(2026, 2, 25, 14, 0), vn(2026, 2, 25, 16, 0))],
    )
    .expect("moved");
    assert_eq!(
        pauses.iter().map(|p| p.paused_working_ms).sum::<i64>(),
        9 * HOUR + HOUR / 2
    );
    assert_eq!(twice, vn(2026, 2, 26, 9, 30));
    // A pause wholly inside Tết gives nothing back.
    let (same, pauses) =
        paused_due(&calendar, due, &[pause(vn(2026, 2, 16, 9, 0), vn(2026, 2, 20, 16, 0))]).expect("moved");
    assert_eq!((same, pauses[0].paused_working_ms), (due, 0));
}

#[tokio::test]
async fn a_dossier_that_waited_is_due_later_by_its_pause_and_an_ended_one_is_not_routed() {
    let r = Arc::new(Reference::embedded().expect("reference"));
    let mut g = Generator::new(&r, "22", 5).expect("province");
    let batch: Vec<_> = (0..3)
        .map(|i| envelope(paid(&r, g.valid(NOW + i * 60_000), i as usize), i))
        .collect();
    let plain_dir = tempfile::tempdir().expect("tempdir");
    let plain = Route::new(r.clone(), RoutingFiles::default(), store(&plain_dir).await, codec())
        .await
        .expect("route");
    let before = plain.handle_batch(&batch).await.expect("handled");

    let dir = tempfile::tempdir().expect("tempdir");
    let s = store(&dir).await;
    let waited = &batch[0].event.dossier.dossier_id;
    s.await_supplements(&[motcua_store::WaitRequest {
        request_event_id: "asked".into(),
        dossier_id: waited.clone(),
        dossier_code: Some(batch[0].event.dossier_code.clone()),
        step: "verify".into(),
        // Tuesday 25 Nov 2025 10:00 to Wednesday 09:00: 1.5 + 3.5 + 2 = 7 h of work.
        requested_at_ms: NOW + HOUR,
        payload: Vec::new(),
    }])
    .await
    .expect("wait");
    assert!(s
        .answer_wait("asked", "answer", NOW + 24 * HOUR, None)
        .await
        .expect("answer"));
    s.close_dossier(&batch[1].event.dossier.dossier_id, ClosureKind::Withdrawn, "wd", NOW)
        .await
        .expect("withdrawn");
    let route = Route::new(r.clone(), RoutingFiles::default(), s, codec())
        .await
        .expect("route");
    let out = route.handle_batch(&batch).await.expect("handled");

    let calendar = motcua_routing::Calendar::embedded().expect("calendar");
    let (was, now) = (routed(&before[0]), routed(&out[0]));
    assert_eq!(now.clock_pauses.len(), 1);
    assert_eq!(now.clock_pauses[0].paused_working_ms, 7 * HOUR);
    assert_eq!(
        (now.clock_pauses[0].from_at, now.clock_pauses[0].to_at),
        (NOW + HOUR, NOW + 24 * HOUR)
    );
    assert_eq!(
        calendar.working_ms_between(was.due_at, now.due_at).expect("span"),
        7 * HOUR
    );
    assert_eq!(now.calendar_version.as_deref(), Some(calendar.version()));
    assert!(calendar.version().starts_with("sha256:"), "{}", calendar.version());
    assert_eq!(out[1], Outcome::Emit(Vec::new()), "withdrawn: not routed");
    assert_eq!(
        routed(&out[2]).due_at,
        routed(&before[2]).due_at,
        "no pause, same due time"
    );
    assert!(routed(&out[2]).clock_pauses.is_empty());
    // A redelivery re-emits the stored due time and pauses.
    assert_eq!(route.handle_batch(&batch).await.expect("again"), out);
}

/// A dossier received at a center with hours of its own is due on that center's calendar,
/// and its routing names that calendar's version; the others keep the default.
#[tokio::test]
async fn a_center_s_own_hours_give_its_dossiers_their_due_time_and_calendar_version() {
    let r = Arc::new(Reference::embedded().expect("reference"));
    let mut g = Generator::new(&r, "22", 5).expect("province");
    let batch: Vec<_> = (0..6)
        .map(|i| envelope(paid(&r, g.valid(NOW + i * 60_000), i as usize), i))
        .collect();
    let own = &batch[0].event.dossier.receiving_unit_code;
    let dir = tempfile::tempdir().expect("tempdir");
    let hours = dir.path().join("unit-hours.csv");
    std::fs::write(&hours, format!("center,hours,saturday\n{own},,07:30-11:30\n")).expect("write");
    let files = RoutingFiles {
        unit_hours: Some(hours),
        ..RoutingFiles::default()
    };
    let route = Route::new(r.clone(), files.clone(), store(&dir).await, codec())
        .await
        .expect("route");
    let out = route.handle_batch(&batch).await.expect("handled");
    let tables = RoutingTables::load(&r, &files).expect("tables");
    let default = tables.calendar().version().to_owned();
    let mut own_seen = 0;
    for (e, o) in batch.iter().zip(&out) {
        let routed = routed(o);
        let center = &e.event.dossier.receiving_unit_code;
        let calendar = tables.calendar_of_center(center);
        assert_eq!(routed.calendar_version.as_deref(), Some(calendar.version()));
        let lead = r.catalog.get(&e.event.procedure.code).expect("procedure").lead_time;
        assert_eq!(
            routed.due_at,
            calendar.deadline(e.event.received_at, lead).expect("due").due_ms
        );
        if center == own {
            own_seen += 1;
            assert_ne!(calendar.version(), default);
        }
    }
    assert!(own_seen >= 1);
}

#[tokio::test]
async fn a_withdrawn_dossier_frees_its_desk_at_the_next_refresh() {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = Arc::new(Reference::embedded().expect("reference"));
    let s = store(&dir).await;
    let route = Route::new(r.clone(), RoutingFiles::default(), s.clone(), codec())
        .await
        .expect("route");
    assert!(route.tick_interval().is_some(), "the refresh runs on the stage's timer");
    let mut g = Generator::new(&r, "22", 9).expect("province");
    let batch: Vec<_> = (0..20)
        .map(|i| envelope(paid(&r, g.valid(NOW + i * 60_000), i as usize), i))
        .collect();
    route.handle_batch(&batch).await.expect("handled");
    assert_eq!(route.open_assignments(), 20);
    for e in &batch[..3] {
        s.close_dossier(&e.event.dossier.dossier_id, ClosureKind::Withdrawn, "wd", NOW)
            .await
            .expect("withdrawn");
    }
    assert_eq!(route.open_assignments(), 20, "in memory until the refresh");
    let tick = route.tick(NOW).await.expect("tick");
    assert!(tick.events.is_empty());
    assert_eq!(route.open_assignments(), 17);
    assert_eq!(route.refresh_loads().await.expect("refresh"), 17);
}

/// A dossier no authority is found for is stopped once: paid again in a new message (a
/// later broker time) it gets the same stop, the stop closes the dossier (a withdrawal
/// afterwards finds it ended), and its id is not the one a routed dossier's processing
/// status takes.
#[tokio::test]
async fn an_unroutable_dossier_sent_again_in_a_new_message_gets_the_same_stop_which_closes_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = Arc::new(Reference::embedded().expect("reference"));
    let store = store(&dir).await;
    let route = Route::new(r.clone(), RoutingFiles::default(), store.clone(), codec())
        .await
        .expect("route");
    let mut g = Generator::new(&r, "22", 5).expect("province");
    let routable = paid(&r, g.valid(NOW), 0);
    let mut unroutable = routable.clone();
    unroutable.event_id = "paid-unroutable".into();
    unroutable.dossier.dossier_id = "unroutable".into();
    unroutable.dossier.receiving_unit_code = "99999".into();
    unroutable.dossier.applicant.residence_unit_code = Some("99999".into());
    for p in &mut unroutable.dossier.land_parcels {
        p.unit_code = "99999".into();
    }
    let at = |mut e: Envelope<DossierPaid>, ms: i64| {
        e.origin.timestamp_ms = Some(ms);
        e
    };
    let first = route
        .handle_batch(&[at(envelope(unroutable.clone(), 0), NOW + 1_000)])
        .await
        .expect("handled");
    let Outcome::Emit(stop) = &first[0] else {
        panic!("{first:?}")
    };
    let [AnyEvent::Status(s)] = &stop[..] else {
        panic!("{stop:?}")
    };
    assert_eq!(s.status, DossierStatus::ProcessingStopped);
    let again = route
        .handle_batch(&[at(envelope(unroutable.clone(), 9), NOW + 3_600_000)])
        .await
        .expect("handled");
    assert_eq!(again, first, "the same stop, not restamped");
    let closure = store.closure("unroutable").await.expect("closure").expect("closed");
    assert_eq!(
        (closure.kind, closure.event_id.as_str()),
        (ClosureKind::Stopped, s.event_id.as_str())
    );
    // The same input routed would announce its processing status under another id.
    let routed_out = route
        .handle_batch(&[envelope(routable.clone(), 1)])
        .await
        .expect("handled");
    let Outcome::Emit(routed_events) = &routed_out[0] else {
        panic!()
    };
    let processing = routed_events[1].event_id();
    let mut same_cause = routable.clone();
    same_cause.event_id = unroutable.event_id.clone();
    let status_id =
        DossierStatusChanged::caused_by(&same_cause, STAGE, "status", DossierStatus::Processing, 0).event_id;
    assert_ne!(
        s.event_id, status_id,
        "a stop and a processing status of one payment differ"
    );
    assert_ne!(processing, s.event_id.as_str());
}
