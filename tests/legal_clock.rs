//! The legal clock over the real pipeline (every stage, one real broker, one real
//! PostgreSQL, registries simulated over HTTP): verify asks for a supplement when the
//! population registry contradicts the applicant, or the back office asks for papers of
//! a routed dossier; the citizen's supplement resumes the dossier at the step that asked
//! under the same code, and its due time moves by exactly the paused working time,
//! recomputable from the routed event alone.

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use motcua_kafka::KafkaConfig;
use motcua_reference::Reference;
use motcua_runtime::Shutdown;
use motcua_schemas::{AnyEvent, Codec, DossierStatus, DossierSupplemented, Topic};
use motcua_simulators::gateway::GatewaySimConfig;
use motcua_simulators::portal::Generator;
use motcua_simulators::registries::{self as sim, Faults};
use motcua_simulators::world::World;
use motcua_store::Store;
use support::*;

const DAY: i64 = 86_400_000;

/// Every stage of the pipeline, the back-office simulator and the gateway simulator on
/// one in-process cluster and one PostgreSQL.
struct Pipeline {
    kafka: KafkaConfig,
    r: Arc<Reference>,
    world: World,
    tables: motcua_routing::RoutingTables,
    stop: tokio::sync::watch::Sender<bool>,
    running: Running,
    _topics: TestTopics,
    _registries: tokio::task::JoinHandle<()>,
}

impl Pipeline {
    async fn start(office: motcua_simulators::backoffice::BackOfficeConfig) -> Self {
        let (topics, kafka) = apache_kafka(2).await;
        let db = motcua_store::testing::scratch_postgres_url().await;
        let store = Store::connect(&db).await.expect("store");
        let r = Arc::new(Reference::embedded().expect("reference"));
        let codec = Codec::embedded().expect("codec");
        let world = World::for_province(&r.units, "22", 7, 100_000).expect("world");
        let (registry_url, registries) = sim::spawn(world.clone(), Faults::default())
            .await
            .expect("registry simulator");
        let (wallet_url, _wallet) = motcua_simulators::wallet::spawn(Default::default(), 7)
            .await
            .expect("wallet simulator");
        let (stop, shutdown) = Shutdown::channel();
        let set = StageSet {
            label: "legal-clock",
            back_office: Some(office),
            result: Some(wallet_url),
            portal: None,
            track: None,
            gateway: GatewaySimConfig {
                min_delay_ms: 5,
                max_delay_ms: 30,
                // Every bill paid: these tests are about the clock, not failed payments.
                failure_rate: 0.0,
                ..GatewaySimConfig::default()
            },
        };
        let running = spawn_stages(set, &kafka, &codec, &r, &store, &registry_url, &shutdown).await;
        Self {
            tables: motcua_routing::RoutingTables::embedded(&r).expect("tables"),
            kafka,
            r,
            world,
            stop,
            running,
            _topics: topics,
            _registries: registries,
        }
    }

    async fn stop(self) {
        self.running.stop(self.stop).await;
    }
}

/// The citizen's answer to a request, `after` it (no papers: the request was about the
/// name, or the papers are described by the portal elsewhere).
fn answer(req: &motcua_schemas::DossierStatusChanged, after: i64, full_name: Option<String>) -> DossierSupplemented {
    let at = req.occurred_at + after;
    DossierSupplemented {
        event_id: format!("supplement-{}", req.event_id),
        dossier_id: req.dossier_id.clone(),
        dossier_code: req.dossier_code.clone(),
        portal: "dvc-test".into(),
        documents: vec![],
        form_fields: Default::default(),
        land_parcels: None,
        residence_unit_code: None,
        full_name,
        date_of_birth: None,
        supplemented_at: at,
        published_at: at,
        traceparent: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_supplement_resumes_verification_keeps_the_code_and_moves_the_due_time_by_the_pause() {
    let p = Pipeline::start(Default::default()).await;
    let (kafka, r, world, tables) = (&p.kafka, &p.r, &p.world, &p.tables);
    let collector = Collector::start(kafka, &[Topic::Status, Topic::Routed, Topic::Completed]);

    // Citizens whose name the population registry contradicts (a typo on the form).
    let mut g = Generator::new(r, "22", 8).expect("province").with_world(world);
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
    publish(kafka, &submissions).await;
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
        .map(|req| answer(req, 14 * DAY, Some(right_names[&req.dossier_id].clone())))
        .collect();
    publish(kafka, &supplements).await;
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
    p.stop().await;
}

/// The back office asks for papers of every routed dossier: intake records each request
/// and announces it; the citizen's supplement three days later sends the dossier back to
/// the back office as a new routed message with the pause and the due time moved by
/// exactly its working time; the officers then decide it, and its result goes out under
/// the same code. A request for a dossier nobody routed is dead-lettered with its reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_back_office_s_request_for_papers_pauses_the_clock_until_the_supplement_sends_the_dossier_back() {
    let p = Pipeline::start(motcua_simulators::backoffice::BackOfficeConfig {
        supplement_rate: 1.0,
        reappoint_rate: 0.0,
        ..Default::default()
    })
    .await;
    let (kafka, r, world, tables) = (&p.kafka, &p.r, &p.world, &p.tables);
    let collector = Collector::start(
        kafka,
        &[
            Topic::Status,
            Topic::Routed,
            Topic::Completed,
            Topic::SupplementRequested,
            Topic::DeadLetter,
        ],
    );
    let mut g = Generator::new(r, "22", 9).expect("province").with_world(world);
    let submissions: Vec<_> = (0..4).map(|_| g.valid(NOW)).collect();
    let ids: HashSet<String> = submissions.iter().map(|s| s.dossier.dossier_id.clone()).collect();
    publish(kafka, &submissions).await;
    // A request for a dossier the pipeline never routed.
    publish(
        kafka,
        &[motcua_schemas::DossierSupplementRequested {
            event_id: "request-for-nobody".into(),
            dossier_id: "nobody".into(),
            dossier_code: "H22.06652-251125-9999".into(),
            competent_unit_code: "06652".into(),
            reasons: vec![motcua_schemas::Reason {
                code: "DOCUMENT_ILLEGIBLE".into(),
                message: "Bản sao không rõ".into(),
            }],
            requested_by: "06652/D1".into(),
            requested_at: NOW,
            traceparent: None,
        }],
    )
    .await;

    // Verify and payment may stop or escalate a dossier; follow the ones the back office got.
    let first_routed = |seen: &[Read]| -> HashMap<String, motcua_schemas::DossierRouted> {
        let mut out = HashMap::new();
        for x in seen {
            if let Some(AnyEvent::Routed(e)) = &x.event {
                if ids.contains(&e.dossier.dossier_id) && e.clock_pauses.is_empty() {
                    out.entry(e.dossier.dossier_id.clone()).or_insert_with(|| e.clone());
                }
            }
        }
        out
    };
    let announced = |seen: &[Read]| -> HashMap<String, motcua_schemas::DossierStatusChanged> {
        seen.iter()
            .filter_map(|x| match &x.event {
                Some(AnyEvent::Status(s))
                    if s.stage == "intake" && s.status == DossierStatus::SupplementRequested && s.due_at.is_some() =>
                {
                    Some((s.dossier_id.clone(), s.clone()))
                }
                _ => None,
            })
            .collect()
    };
    let refused = |seen: &[Read]| {
        seen.iter().any(|x| {
            matches!(&x.event, Some(AnyEvent::DeadLetter(d))
                if d.stage == "intake" && d.reason_code == "SUPPLEMENT_REQUEST_UNKNOWN_DOSSIER")
        })
    };
    // Every dossier has gone as far as it goes before the back office: routed, or held
    // on the way (a supplement verify asked for, a refusal, a stop).
    let held_before_routing = |seen: &[Read], routed: &HashMap<String, motcua_schemas::DossierRouted>| {
        seen.iter()
            .filter_map(|x| match &x.event {
                Some(AnyEvent::Status(st))
                    if ids.contains(&st.dossier_id)
                        && !routed.contains_key(&st.dossier_id)
                        && matches!(
                            st.status,
                            DossierStatus::SupplementRequested
                                | DossierStatus::RejectedAtReception
                                | DossierStatus::ProcessingStopped
                        ) =>
                {
                    Some(st.dossier_id.clone())
                }
                _ => None,
            })
            .collect::<HashSet<_>>()
            .len()
    };
    let all_asked = collector
        .wait_for(Duration::from_secs(90), |s| {
            let routed = first_routed(s);
            routed.len() + held_before_routing(s, &routed) == ids.len()
                && announced(s).len() == routed.len()
                && refused(s)
        })
        .await;
    let seen = collector.snapshot();
    let routed = first_routed(&seen);
    assert!(
        all_asked,
        "{} routed, {} requests announced, unknown refused: {}",
        routed.len(),
        announced(&seen).len(),
        refused(&seen)
    );
    assert!(
        routed.len() >= 2,
        "most dossiers reach the back office: {}",
        routed.len()
    );
    let requests = announced(&seen);
    // Nothing is decided while the papers are missing.
    assert!(
        !seen
            .iter()
            .any(|x| matches!(&x.event, Some(AnyEvent::Completed(c)) if ids.contains(&c.dossier_id))),
        "a dossier waiting for papers was decided"
    );

    // Three days later (the portal's clock) each citizen brings the papers.
    let supplements: Vec<DossierSupplemented> = requests.values().map(|req| answer(req, 3 * DAY, None)).collect();
    publish(kafka, &supplements).await;
    let completed = |seen: &[Read]| {
        seen.iter()
            .filter_map(|x| match &x.event {
                Some(AnyEvent::Completed(c)) if routed.contains_key(&c.dossier_id) => {
                    Some((c.dossier_id.clone(), c.clone()))
                }
                _ => None,
            })
            .collect::<HashMap<_, _>>()
    };
    let done = collector
        .wait_for(Duration::from_secs(90), |s| completed(s).len() == routed.len())
        .await;
    let seen = collector.snapshot();
    assert!(
        done,
        "{} of {} dossiers completed",
        completed(&seen).len(),
        routed.len()
    );

    let calendar = tables.calendar();
    for (id, c) in completed(&seen) {
        let (first, req) = (&routed[&id], &requests[&id]);
        let back = seen
            .iter()
            .find_map(|x| match &x.event {
                Some(AnyEvent::Routed(e)) if e.dossier.dossier_id == id && !e.clock_pauses.is_empty() => {
                    Some(e.clone())
                }
                _ => None,
            })
            .expect("sent back to the back office");
        assert_eq!(
            (&back.dossier_code, &c.dossier_code),
            (&first.dossier_code, &first.dossier_code),
            "the same code"
        );
        assert_eq!(back.received_at, first.received_at);
        assert!(back.is_return(), "intake sent it back");
        let [pause] = &back.clock_pauses[..] else {
            panic!("one pause: {:?}", back.clock_pauses)
        };
        assert_eq!(
            (pause.step.as_str(), pause.from_at, pause.to_at),
            ("backoffice", req.occurred_at, req.occurred_at + 3 * DAY)
        );
        let paused = calendar.working_ms_between(pause.from_at, pause.to_at).expect("span");
        assert!(
            paused >= 8 * 3_600_000,
            "three days hold at least a working day: {paused}"
        );
        assert_eq!(pause.paused_working_ms, paused);
        // The new due time: the first one moved by exactly the paused working time.
        assert_eq!(
            calendar.working_ms_between(first.due_at, back.due_at).expect("span"),
            paused
        );
        assert_eq!(
            back.due_at,
            calendar
                .extend_for_suspension(first.due_at, pause.from_at, pause.to_at)
                .expect("moved")
        );
        assert_eq!(req.due_at, Some(first.due_at), "asked against the first due time");
        assert_eq!(c.due_at, back.due_at, "judged against the moved due time");
        let asked = seen.iter().any(|x| {
            matches!(&x.event, Some(AnyEvent::SupplementRequested(q)) if q.dossier_id == id && req.causation_id.as_deref() == Some(q.event_id.as_str()))
        });
        assert!(asked, "the status names the back office's request as its cause");
    }
    p.stop().await;
}
