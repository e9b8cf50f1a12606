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
    }
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
    let route = Route::new(r.clone(), RoutingFiles::default(), store(&dir).await)
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
    let route = Route::new(r.clone(), RoutingFiles::default(), store(&dir).await)
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
    let route = Route::new(r.clone(), files, store(&dir).await).await.expect("route");
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
