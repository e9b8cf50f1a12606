//! The legal clock over the real pipeline (every stage, one real broker, one real
//! PostgreSQL, registries simulated over HTTP): verify asks for a supplement when the
//! population registry contradicts the applicant; the citizen's supplement resumes the
//! dossier under the same code, verify checks it again, and its due time moves by
//! exactly the paused working time, recomputable from the routed event alone.

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use motcua_reference::Reference;
use motcua_registries::audit::TracingAudit;
use motcua_registries::http::{HttpConfig, HttpRegistries};
use motcua_runtime::{RuntimeConfig, Shutdown};
use motcua_schemas::{AnyEvent, Codec, DossierStatus, DossierSupplemented, Topic};
use motcua_simulators::gateway::{self as gateway_sim, GatewaySimConfig};
use motcua_simulators::portal::Generator;
use motcua_simulators::registries::{self as sim, Faults};
use motcua_simulators::world::World;
use motcua_store::Store;
use support::*;

const DAY: i64 = 86_400_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_supplement_resumes_verification_keeps_the_code_and_moves_the_due_time_by_the_pause() {
    let (_broker, kafka) = mock_cluster(2);
    let db = motcua_store::testing::scratch_postgres_url().await;
    let store = Store::connect(&db).await.expect("store");
    let r = Arc::new(Reference::embedded().expect("reference"));
    let codec = Codec::embedded().expect("codec");
    let world = World::for_province(&r.units, "22", 7, 100_000).expect("world");
    let (registry_url, _sim) = sim::spawn(world.clone(), Faults::default())
        .await
        .expect("registry simulator");
    let (stop, shutdown) = Shutdown::channel();
    let rt = |name: &str| {
        let mut c = RuntimeConfig::new(kafka.clone());
        c.instance_id = name.to_owned();
        c
    };
    let mut tasks = Vec::new();
    macro_rules! stage {
        ($stage:expr) => {
            tasks.push(tokio::spawn(motcua_runtime::run(
                Arc::new($stage),
                codec.clone(),
                rt("legal-clock"),
                shutdown.clone(),
            )));
        };
    }
    stage!(motcua_intake::Intake::new(r.clone(), store.clone(), codec.clone()));
    let http = HttpRegistries::new(
        HttpConfig {
            base_url: registry_url,
            ..HttpConfig::default()
        },
        Arc::new(TracingAudit),
    )
    .expect("registries");
    stage!(motcua_verify::Verify::new(
        http,
        r.clone(),
        store.clone(),
        codec.clone(),
        "verify/legal-clock".into(),
        Default::default()
    ));
    stage!(motcua_payment::Payment::new(
        store.clone(),
        codec.clone(),
        motcua_payment::FeeSchedule::embedded().expect("fees")
    ));
    stage!(motcua_route::Route::new(r.clone(), Default::default(), store.clone())
        .await
        .expect("route"));
    let tables = motcua_routing::RoutingTables::embedded(&r).expect("tables");
    stage!(motcua_simulators::backoffice::BackOffice::new(
        tables.clone(),
        Default::default()
    ));
    stage!(motcua_result::ResultStage::new(
        motcua_result::Signer25519::insecure_demo("legal-clock"),
        store.clone()
    ));
    let gateway = GatewaySimConfig {
        min_delay_ms: 5,
        max_delay_ms: 30,
        // Every bill paid: this test is about the clock, not failed payments.
        failure_rate: 0.0,
        ..GatewaySimConfig::default()
    };
    let gateway_task = tokio::spawn(gateway_sim::run(
        kafka.clone(),
        codec.clone(),
        gateway,
        shutdown.clone(),
    ));
    let collector = Collector::start(&kafka, &[Topic::Status, Topic::Routed, Topic::Completed]);

    // Citizens whose name the population registry contradicts (a typo on the form).
    let mut g = Generator::new(&r, "22", 8).expect("province").with_world(&world);
    let mut right_names = HashMap::new();
    let mut submissions = Vec::new();
    while submissions.len() < 4 {
        let mut s = g.valid(NOW);
        let checked = s.dossier.applicant.kind == motcua_schemas::ApplicantKind::Citizen
            && r.catalog
                .get(&s.dossier.procedure_code)
                .is_some_and(|p| p.registry_checks.contains(&motcua_schemas::Registry::Population));
        if !checked {
            continue;
        }
        right_names.insert(s.dossier.dossier_id.clone(), s.dossier.applicant.full_name.clone());
        s.dossier.applicant.full_name = "Trần Thị Gõ Nhầm".to_owned();
        submissions.push(s);
    }
    publish(&kafka, &submissions).await;
    let ids: HashSet<String> = right_names.keys().cloned().collect();
    let asked = |seen: &[Read]| -> HashMap<String, motcua_schemas::DossierStatusChanged> {
        seen.iter()
            .filter_map(|r| match &r.event {
                Some(AnyEvent::Status(s)) if s.stage == "verify" && s.status == DossierStatus::SupplementRequested => {
                    Some((s.dossier_id.clone(), s.clone()))
                }
                _ => None,
            })
            .collect()
    };
    assert!(
        collector
            .wait_for(Duration::from_secs(60), |s| asked(s).len() == ids.len())
            .await,
        "verify asked for {} of {} supplements",
        asked(&collector.snapshot()).len(),
        ids.len()
    );
    let requests = asked(&collector.snapshot());

    // Two weeks later (the portal's clock), each citizen corrects the name.
    let supplements: Vec<DossierSupplemented> = requests
        .values()
        .map(|req| {
            let at = req.occurred_at + 14 * DAY;
            DossierSupplemented {
                event_id: format!("supplement-{}", req.dossier_id),
                dossier_id: req.dossier_id.clone(),
                dossier_code: req.dossier_code.clone(),
                portal: "dvc-test".into(),
                documents: vec![],
                form_fields: Default::default(),
                land_parcels: None,
                residence_unit_code: None,
                full_name: Some(right_names[&req.dossier_id].clone()),
                date_of_birth: None,
                supplemented_at: at,
                published_at: at,
                traceparent: None,
            }
        })
        .collect();
    publish(&kafka, &supplements).await;
    let completed = |seen: &[Read]| {
        seen.iter()
            .filter_map(|r| match &r.event {
                Some(AnyEvent::Completed(c)) if ids.contains(&c.dossier_id) => Some((c.dossier_id.clone(), c.clone())),
                _ => None,
            })
            .collect::<HashMap<_, _>>()
    };
    let done = collector
        .wait_for(Duration::from_secs(90), |s| completed(s).len() == ids.len())
        .await;
    let seen = collector.snapshot();
    assert!(
        done,
        "{} of {} supplemented dossiers completed",
        completed(&seen).len(),
        ids.len()
    );

    let calendar = tables.calendar();
    for (id, c) in completed(&seen) {
        let req = &requests[&id];
        assert_eq!(Some(&c.dossier_code), req.dossier_code.as_ref(), "the same code");
        let routed = seen
            .iter()
            .find_map(|r| match &r.event {
                Some(AnyEvent::Routed(x)) if x.dossier.dossier_id == id => Some(x.clone()),
                _ => None,
            })
            .expect("routed");
        assert_eq!(
            routed.dossier.applicant.full_name, right_names[&id],
            "verified as corrected"
        );
        let [pause] = &routed.clock_pauses[..] else {
            panic!("one pause: {:?}", routed.clock_pauses)
        };
        assert_eq!((pause.step.as_str(), pause.from_at), ("verify", req.occurred_at));
        assert_eq!(pause.to_at, req.occurred_at + 14 * DAY);
        let paused = calendar.working_ms_between(pause.from_at, pause.to_at).expect("span");
        assert!(
            paused >= 8 * 3_600_000,
            "two weeks hold at least a working day: {paused}"
        );
        assert_eq!(pause.paused_working_ms, paused);
        // The due time, recomputed from the routed event alone and the calendar it names.
        assert_eq!(routed.calendar_version.as_deref(), Some(calendar.version()));
        let lead = motcua_reference::LeadTime {
            value: routed.procedure.lead_time as u32,
            unit: routed.procedure.lead_time_unit,
        };
        let plain = calendar.deadline(routed.received_at, lead).expect("deadline").due_ms;
        let (due, _) = motcua_route::paused_due(
            calendar,
            plain,
            &[motcua_store::Pause {
                step: pause.step.clone(),
                from_ms: pause.from_at,
                to_ms: pause.to_at,
            }],
        )
        .expect("moved");
        assert_eq!(routed.due_at, due);
        assert_eq!(calendar.working_ms_between(plain, routed.due_at).expect("span"), paused);
        // Its life: asked, resumed, verified again, returned.
        let resumed = seen.iter().any(|r| {
            matches!(&r.event, Some(AnyEvent::Status(s))
                if s.dossier_id == id && s.stage == "intake" && s.status == DossierStatus::Processing
                    && s.reasons.iter().any(|x| x.code == "SUPPLEMENT_RECEIVED"))
        });
        assert!(resumed, "intake announced the resumption of {id}");
    }
    let _ = stop.send(true);
    for t in tasks {
        t.await.expect("join").expect("stage stopped cleanly");
    }
    gateway_task.await.expect("join").expect("gateway");
}
