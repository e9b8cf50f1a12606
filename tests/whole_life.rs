//! Every stage at once, over one real broker and one real PostgreSQL, with the outside
//! world simulated (registries over HTTP, payment gateway, back office): dossiers go from
//! submission to a signed result, and the status API tells each one's whole life.

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use motcua_reference::Reference;
use motcua_runtime::Shutdown;
use motcua_schemas::{AnyEvent, Codec, Topic};
use motcua_simulators::gateway::GatewaySimConfig;
use motcua_simulators::portal::Generator;
use motcua_simulators::registries::{self as sim, Faults};
use motcua_simulators::world::World;
use motcua_store::Store;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dossiers_go_from_submission_to_a_signed_result_and_the_api_tells_their_life() {
    const N: usize = 40;
    // Everything the stages log, at debug, on every thread, to scan for personal data at
    // the end (this file's only test: the process-wide subscriber is its own).
    let logs = LogBuffer::default();
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "debug,sqlx=info,hyper=info,hyper_util=info,reqwest=info,h2=info",
            ))
            .with_writer(logs.clone())
            .with_ansi(false)
            .finish(),
    )
    .expect("the first subscriber of this test binary");
    let (_topics, kafka) = apache_kafka(2).await;
    let db = motcua_store::testing::scratch_postgres_url().await;
    let store = Store::connect(&db).await.expect("store");
    let r = Arc::new(Reference::embedded().expect("reference"));
    let codec = Codec::embedded().expect("codec");
    let world = World::for_province(&r.units, "22", 5, 100_000).expect("world");
    let (registry_url, _sim) = sim::spawn(world.clone(), Faults::default())
        .await
        .expect("registry simulator");

    let (wallet_url, _wallet) = motcua_simulators::wallet::spawn(Default::default(), 6)
        .await
        .expect("wallet simulator");
    let (stop, shutdown) = Shutdown::channel();
    let track = motcua_track::Track::connect(&db).await.expect("track");
    let pool = track.postgres().expect("postgres").clone();
    let set = StageSet {
        label: "e2e",
        back_office: Some(Default::default()),
        result: Some(wallet_url),
        portal: None,
        track: Some(track),
        gateway: GatewaySimConfig {
            min_delay_ms: 5,
            max_delay_ms: 50,
            ..GatewaySimConfig::default()
        },
    };
    let running = spawn_stages(set, &kafka, &codec, &r, &store, &registry_url, &shutdown).await;

    let collector = Collector::start(&kafka, &[Topic::Completed, Topic::Status]);
    let mut g = Generator::new(&r, "22", 6).expect("province").with_world(&world);
    let mut submissions: Vec<_> = (0..N).map(|i| g.valid(NOW + i as i64 * 60_000)).collect();
    // And some whose applicant the registries contradict, or whose ID intake refuses: the
    // reasons they get are scanned for personal data at the end.
    let at = NOW + N as i64 * 60_000;
    let population_checked = |s: &motcua_schemas::DossierSubmitted| {
        s.dossier.applicant.kind == motcua_schemas::ApplicantKind::Citizen
            && r.catalog
                .get(&s.dossier.procedure_code)
                .is_some_and(|p| p.registry_checks.contains(&motcua_schemas::Registry::Population))
    };
    let deceased = (0..100_000)
        .map(|i| world.citizen(i))
        .find(|c| c.deceased)
        .expect("a deceased citizen");
    let mut contradicted = Vec::new();
    while contradicted.len() < 6 {
        let mut s = g.valid(at);
        if !population_checked(&s) {
            continue;
        }
        let a = &mut s.dossier.applicant;
        match contradicted.len() % 3 {
            0 => a.full_name = "Trần Thị Khác Tên".to_owned(),
            1 => {
                a.citizen_id = Some(deceased.citizen_id.clone());
                a.full_name = deceased.full_name.clone();
                a.date_of_birth = Some(deceased.date_of_birth);
            }
            _ => a.date_of_birth = a.date_of_birth.map(|d| d + 1),
        }
        contradicted.push(s);
    }
    submissions.extend(contradicted);
    submissions.extend((0..3).map(|_| g.defective(at, motcua_simulators::portal::Defect::BadCitizenId)));
    let total = submissions.len();
    publish(&kafka, &submissions).await;

    // Every dossier ends: a result returned, or a stop on the way (supplement requested
    // by intake/verify, a registry record that does not qualify).
    let ended = |seen: &[Read]| {
        seen.iter()
            .filter_map(|r| match &r.event {
                Some(AnyEvent::Completed(c)) => Some(c.dossier_id.clone()),
                Some(AnyEvent::Status(s))
                    if s.stage != "backoffice"
                        && matches!(
                            s.status,
                            motcua_schemas::DossierStatus::SupplementRequested
                                | motcua_schemas::DossierStatus::RejectedAtReception
                                | motcua_schemas::DossierStatus::ProcessingStopped
                        ) =>
                {
                    Some(s.dossier_id.clone())
                }
                _ => None,
            })
            .collect::<HashSet<_>>()
            .len()
    };
    let done = collector
        .wait_for(Duration::from_secs(120), |s| ended(s) == total)
        .await;
    let completed: Vec<motcua_schemas::DossierCompleted> = collector
        .snapshot()
        .into_iter()
        .filter_map(|r| match r.event {
            Some(AnyEvent::Completed(c)) => Some(c),
            _ => None,
        })
        .collect();
    assert!(done, "{} of {total} dossiers ended", ended(&collector.snapshot()));
    // One trace per dossier across every stage: the statuses of intake, verify, payment,
    // route and result and the completion all carry it, in the event and in the header.
    let mut traces: HashMap<String, HashSet<String>> = HashMap::new();
    let mut stages_seen: HashSet<String> = HashSet::new();
    for read in collector.snapshot() {
        let header = read.headers.get("traceparent").cloned().unwrap_or_else(|| {
            panic!(
                "no traceparent header on {:?} {:?} {:?}",
                read.topic, read.event, read.headers
            )
        });
        let trace = motcua_schemas::trace_id(&header).expect("a W3C traceparent").to_owned();
        let (dossier, field) = match &read.event {
            Some(AnyEvent::Status(st)) => {
                stages_seen.insert(st.stage.clone());
                (st.dossier_id.clone(), st.traceparent.clone())
            }
            Some(AnyEvent::Completed(c)) => (c.dossier_id.clone(), c.traceparent.clone()),
            _ => continue,
        };
        assert_eq!(
            field.as_deref(),
            Some(header.as_str()),
            "the event carries its header's trace context"
        );
        traces.entry(dossier).or_default().insert(trace);
    }
    for (dossier, ids) in &traces {
        assert_eq!(ids.len(), 1, "dossier {dossier} spans {} traces", ids.len());
    }
    assert_eq!(traces.len(), total, "every dossier traced");
    for stage in ["intake", "verify", "payment", "route", "result"] {
        assert!(stages_seen.contains(stage), "no status from {stage}: {stages_seen:?}");
    }
    assert!(
        completed.len() >= N * 3 / 4,
        "most dossiers complete: {}",
        completed.len()
    );

    // The status API for one dossier's whole life, once the projection caught up: to an
    // operator with the province's key, and to the citizen with the receipt's token.
    let key = motcua_security::access::new_api_key();
    let keys = motcua_track::access::ApiKeys::parse(&format!(
        "[[key]]\nid = \"province\"\nrole = \"province\"\ndigest = \"{}\"\n",
        motcua_security::access::api_key_digest(&key)
    ))
    .expect("key file");
    let options = motcua_track::api::ApiOptions {
        keys,
        ..Default::default()
    };
    let api = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", api.local_addr().expect("addr"));
    let router = motcua_track::api::router(pool, options, motcua_track::api::system_clock());
    let server = tokio::spawn(motcua_track::api::serve(api, router, Default::default()));
    let client = reqwest::Client::new();
    let one = &completed[0];
    let deadline = Instant::now() + Duration::from_secs(30);
    let v: serde_json::Value = loop {
        let v: serde_json::Value = client
            .get(format!("{base}/dossiers/{}", one.dossier_code))
            .bearer_auth(&key)
            .send()
            .await
            .expect("GET /dossiers")
            .json()
            .await
            .expect("json");
        if v["status_code"] == 10 {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "the projection never showed the result returned: {v}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let token = collector
        .snapshot()
        .into_iter()
        .find_map(|r| match r.event {
            Some(AnyEvent::Status(s)) if s.dossier_id == one.dossier_id && s.lookup_token.is_some() => s.lookup_token,
            _ => None,
        })
        .expect("the received status carries the lookup token to the portal");
    let lookup = |token: String| {
        client
            .post(format!("{base}/lookup"))
            .json(&serde_json::json!({"dossier_code": one.dossier_code, "lookup_token": token}))
            .send()
    };
    let citizen = lookup(token.clone()).await.expect("POST /lookup");
    assert_eq!(citizen.status().as_u16(), 200);
    let citizen: serde_json::Value = citizen.json().await.expect("json");
    assert_eq!(citizen["status_code"], 10, "{citizen}");
    assert!(citizen.get("history").is_none(), "{citizen}");
    let wrong = lookup(token.chars().rev().collect()).await.expect("POST /lookup");
    assert_eq!(wrong.status().as_u16(), 404);

    // No personal data in any status reason (what goes to the portal and the projection),
    // in the operator's history of a dossier, or in the logs: not the applicants' citizen
    // IDs, tax codes, names or birth dates, nor what the registries hold of them.
    let mut personal: Vec<(String, &str)> = Vec::new();
    for s in &submissions {
        let a = &s.dossier.applicant;
        personal.extend(a.citizen_id.clone().map(|v| (v, "citizen ID")));
        personal.extend(a.tax_code.clone().map(|v| (v, "tax code")));
        personal.extend(s.dossier.enterprise_tax_codes.iter().map(|t| (t.clone(), "tax code")));
        if a.kind == motcua_schemas::ApplicantKind::Citizen {
            personal.push((a.full_name.clone(), "name"));
        }
        if let Some(c) = a.citizen_id.as_deref().and_then(|id| world.citizen_by_id(id)) {
            personal.push((c.full_name.clone(), "registry name"));
        }
    }
    let statuses: Vec<motcua_schemas::DossierStatusChanged> = collector
        .snapshot()
        .into_iter()
        .filter_map(|r| match r.event {
            Some(AnyEvent::Status(s)) => Some(s),
            _ => None,
        })
        .collect();
    let reasons: Vec<String> = statuses
        .iter()
        .flat_map(|s| s.reasons.iter().map(|r| format!("{}: {}", r.code, r.message)))
        .collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("CITIZEN_") || r.contains("NAME_MISMATCH") || r.contains("BUSINESS_")),
        "registries' answers made reasons to scan: {reasons:?}"
    );
    let logged = logs.text();
    assert!(logged.contains("registry lookup"), "the lookups were logged (masked)");
    let history = v.to_string();
    for (value, what) in &personal {
        for r in &reasons {
            assert!(!r.contains(value.as_str()), "a status reason carries a {what}: {r}");
        }
        assert!(!history.contains(value.as_str()), "the history carries a {what}");
        if let Some(line) = logged.lines().find(|l| l.contains(value.as_str())) {
            panic!("the logs carry a {what}: {line}");
        }
    }
    assert!(personal.len() >= N, "{} values scanned", personal.len());
    for s in &statuses {
        assert!(
            !s.reasons.iter().any(|r| r.message.contains("đã mất")),
            "death status in a reason"
        );
    }
    running.stop(stop).await;
    server.abort();

    let stages: Vec<&str> = v["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter_map(|h| h["stage"].as_str())
        .collect();
    eprintln!("{}", serde_json::to_string_pretty(&v).expect("pretty"));
    for stage in ["intake", "route", "result"] {
        assert!(stages.contains(&stage), "{stage} missing from the history {stages:?}");
    }
    assert_eq!(v["dossier_code"], one.dossier_code.as_str());
    assert_eq!(v["status_code"], 10);
}

/// A `tracing` writer into memory.
#[derive(Clone, Default)]
struct LogBuffer(Arc<std::sync::Mutex<Vec<u8>>>);

impl LogBuffer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log buffer")).into_owned()
    }
}

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuffer {
    type Writer = LogBuffer;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}
