//! The verify stage over a real broker, real PostgreSQL and the registry simulator over
//! HTTP with faults injected: every dossier ends exactly once as verified, supplement
//! requested, or escalated — none lost, none twice.

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use motcua_reference::Reference;
use motcua_registries::audit::PgAuditLog;
use motcua_registries::http::{HttpConfig, HttpRegistries};
use motcua_runtime::{RuntimeConfig, Shutdown};
use motcua_schemas::{AnyEvent, Codec, DossierAccepted, DossierStatus, DossierSubmitted, Topic};
use motcua_simulators::portal::Generator;
use motcua_simulators::registries::{self as sim, Faults};
use motcua_simulators::world::World;
use motcua_store::Store;
use motcua_verify::{RetryPolicy, Verify};
use support::*;

fn accepted(r: &Reference, s: DossierSubmitted, n: usize) -> DossierAccepted {
    let procedure = r.catalog.get(&s.dossier.procedure_code).expect("catalog").summary();
    DossierAccepted {
        event_id: format!("accepted-{}", s.event_id),
        causation_id: s.event_id.clone(),
        dossier_code: format!("H22.{}-251125-{n:04}", s.dossier.receiving_unit_code),
        receiving_agency_code: format!("H22.{}", s.dossier.receiving_unit_code),
        received_at: s.dossier.submitted_at,
        procedure,
        dossier: s.dossier,
        traceparent: None,
    }
}

/// The outcome of one dossier, from the events it produced.
fn outcome(e: &AnyEvent) -> Option<(String, &'static str)> {
    match e {
        AnyEvent::Verified(v) => Some((v.dossier.dossier_id.clone(), "verified")),
        AnyEvent::Status(s) if s.stage == "verify" => match s.status {
            DossierStatus::SupplementRequested => Some((s.dossier_id.clone(), "supplement_requested")),
            DossierStatus::Processing => Some((s.dossier_id.clone(), "escalated")),
            _ => None,
        },
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_30_percent_errors_and_500_ms_latency_every_dossier_ends_exactly_once() {
    let (_topics, kafka) = apache_kafka(3).await;
    let r = Arc::new(Reference::embedded().expect("reference"));
    let world = World::for_province(&r.units, "22", 77, 200_000).expect("world");
    let faults = Faults {
        latency_ms: 500,
        latency_p99_ms: 500,
        error_rate: 0.3,
        ..Faults::default()
    };
    let (registry_url, _sim) = sim::spawn(world.clone(), faults.clone()).await.expect("simulator");

    let db = motcua_store::testing::scratch_postgres_url().await;
    let store = Store::connect(&db).await.expect("store");
    let pool = sqlx::PgPool::connect(&db).await.expect("pool");
    PgAuditLog::migrate(&pool).await.expect("audit table");
    let audit = PgAuditLog::start(pool.clone(), Duration::from_millis(100));
    let http = HttpRegistries::new(
        HttpConfig {
            base_url: registry_url.clone(),
            max_attempts: 2,
            backoff_initial_ms: 10,
            backoff_max_ms: 50,
            breaker_failures: 50,
            ..HttpConfig::default()
        },
        Arc::new(audit.clone()),
    )
    .expect("client");
    let policy = RetryPolicy {
        first_delay: Duration::from_millis(200),
        max_delay: Duration::from_millis(500),
        // Long enough that group A's parked dossiers get several retries (each fails with
        // probability 0.3² = 9 %), short enough for group B's outage to escalate.
        escalate_after: Duration::from_secs(5),
    };
    let codec = Codec::embedded().expect("codec");
    let verify = Arc::new(
        Verify::new(
            http.clone(),
            r.clone(),
            store.clone(),
            codec.clone(),
            "verify/test".into(),
            policy,
        )
        // The stage's timer retries parked dossiers, through the worker's producer.
        .with_retry_poll(Duration::from_millis(100)),
    );

    // Group A: 120 dossiers drawn from the registry world; every 10th claims a wrong name.
    let mut g = Generator::new(&r, "22", 78).expect("province").with_world(&world);
    let mut renamed = HashSet::new();
    let group_a: Vec<DossierAccepted> = (0..120)
        .map(|i| {
            let mut s = g.valid(NOW + i as i64 * 1_000);
            let checks_population = r
                .catalog
                .get(&s.dossier.procedure_code)
                .is_some_and(|p| p.registry_checks.contains(&motcua_schemas::Registry::Population));
            if i % 10 == 0 && checks_population && s.dossier.applicant.kind == motcua_schemas::ApplicantKind::Citizen {
                s.dossier.applicant.full_name.push_str(" Thêm");
                renamed.insert(s.dossier.dossier_id.clone());
            }
            accepted(&r, s, i)
        })
        .collect();
    let collector = Collector::start(&kafka, &[Topic::Verified, Topic::Status]);
    publish(&kafka, &group_a).await;

    let (stop, shutdown) = Shutdown::channel();
    let mut rt = RuntimeConfig::new(kafka.clone());
    rt.instance_id = "verify-test".into();
    let worker = tokio::spawn(motcua_runtime::run(verify.clone(), codec.clone(), rt, shutdown.clone()));

    let ids_a: HashSet<String> = group_a.iter().map(|a| a.dossier.dossier_id.clone()).collect();
    let ended = |seen: &[Read], ids: &HashSet<String>| {
        seen.iter()
            .filter_map(|r| r.event.as_ref().and_then(outcome))
            .filter(|(id, _)| ids.contains(id))
            .map(|(id, _)| id)
            .collect::<HashSet<_>>()
            .len()
    };
    assert!(
        collector
            .wait_for(Duration::from_secs(120), |s| ended(s, &ids_a) == ids_a.len())
            .await,
        "group A: only {} of {} ended",
        ended(&collector.snapshot(), &ids_a),
        ids_a.len()
    );
    let parked_during_a: i64 =
        sqlx::query_scalar("SELECT COUNT(DISTINCT dossier_id) FROM registry_audit WHERE outcome = 'unavailable'")
            .fetch_one(&pool)
            .await
            .unwrap_or(0);

    // Group B: the registries go down; these dossiers are parked, then escalated.
    let client = reqwest::Client::new();
    let down = Faults {
        down: true,
        ..faults.clone()
    };
    assert_eq!(
        client
            .put(format!("{registry_url}/admin/faults"))
            .json(&down)
            .send()
            .await
            .expect("admin")
            .status(),
        204
    );
    // Only procedures that consult a registry (two certification procedures consult none).
    let mut group_b = Vec::new();
    while group_b.len() < 20 {
        let s = g.valid(NOW + 500_000 + group_b.len() as i64);
        if !r
            .catalog
            .get(&s.dossier.procedure_code)
            .expect("catalog")
            .registry_checks
            .is_empty()
        {
            group_b.push(accepted(&r, s, 1_000 + group_b.len()));
        }
    }
    let ids_b: HashSet<String> = group_b.iter().map(|a| a.dossier.dossier_id.clone()).collect();
    publish(&kafka, &group_b).await;
    assert!(
        collector
            .wait_for(Duration::from_secs(60), |s| ended(s, &ids_b) == ids_b.len())
            .await,
        "group B: only {} of {} ended",
        ended(&collector.snapshot(), &ids_b),
        ids_b.len()
    );
    tokio::time::sleep(Duration::from_millis(500)).await; // anything late would show now
    stop.send(true).expect("stop");
    let summary = worker.await.expect("join").expect("clean stop");
    // What the stage's timer produced: parked dossiers decided or escalated.
    let retried = summary.tick_events;

    // Count: one outcome per dossier, never two.
    let mut outcomes: HashMap<String, Vec<&'static str>> = HashMap::new();
    let seen = collector.snapshot();
    for r in &seen {
        if let Some((id, o)) = r.event.as_ref().and_then(outcome) {
            outcomes.entry(id).or_default().push(o);
        }
    }
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for (id, os) in &outcomes {
        assert_eq!(os.len(), 1, "dossier {id} ended {} times: {os:?}", os.len());
        *counts.entry(os[0]).or_default() += 1;
    }
    assert_eq!(outcomes.len(), 140, "every dossier of both groups ended");
    for id in &ids_b {
        assert_eq!(outcomes[id], ["escalated"], "group B dossier {id}");
    }
    for id in &renamed {
        assert_eq!(outcomes[id], ["supplement_requested"], "renamed dossier {id}");
    }
    let verified = counts.get("verified").copied().unwrap_or(0);
    let supplement = counts.get("supplement_requested").copied().unwrap_or(0);
    assert_eq!(verified + supplement, 120);
    assert!(verified >= 90, "most of group A verifies: {counts:?}");
    assert_eq!(
        store.parked_count(motcua_store::Lot::Verify).await.expect("parked"),
        0,
        "nothing left parked"
    );
    audit.flush().await;
    let audited: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM registry_audit")
        .fetch_one(&pool)
        .await
        .expect("audit");
    let [(_, population), (_, land), (_, business)] = http.stats();
    eprintln!(
        "outcomes {counts:?}; dossiers that met an unavailable registry in group A: {parked_during_a}; retrier {retried:?}; \
         audit rows {audited}; population {population:?} (hit rate {:.2}), land {land:?}, business {business:?}",
        population.hit_rate()
    );
    assert!(retried >= 20, "the retrier decided the parked dossiers: {retried}");
    assert!(audited > 140);

    // Operators see the escalated dossiers; an officer verifies one by hand and it goes
    // on through the normal path (dossier.verified), once.
    let escalated = store.escalated(100).await.expect("escalated");
    let escalated_ids: HashSet<String> = escalated.iter().map(|e| e.dossier_id.clone()).collect();
    assert_eq!(escalated_ids, ids_b, "every escalated dossier is listed");
    let cli = |args: &[&str]| {
        motcua()
            .args(args)
            .envs(kafka_env(&kafka))
            .args(["--brokers", &kafka.brokers, "--database-url", &db])
            .output()
            .expect("motcua dossiers")
    };
    let listing = cli(&["dossiers", "escalated"]);
    let listing = String::from_utf8_lossy(&listing.stdout).into_owned();
    assert!(listing.contains("20 escalated"), "{listing}");
    let chosen = &escalated[0];
    assert!(listing.contains(&chosen.dossier_code), "{listing}");
    let out = cli(&[
        "dossiers",
        "verify",
        &chosen.dossier_code,
        "--by",
        "officer-7",
        "--note",
        "original ID card seen at the counter",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let by_hand = |seen: &[Read]| {
        seen.iter()
            .filter_map(|r| match &r.event {
                Some(AnyEvent::Verified(v)) if v.dossier.dossier_id == chosen.dossier_id => Some(v.clone()),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    assert!(
        collector
            .wait_for(Duration::from_secs(30), |s| !by_hand(s).is_empty())
            .await,
        "published"
    );
    let v = by_hand(&collector.snapshot()).remove(0);
    assert_eq!(v.dossier_code, chosen.dossier_code);
    assert!(!v.checks.is_empty());
    assert!(v.checks.iter().all(
        |c| c.outcome == motcua_schemas::CheckOutcome::Skipped && c.detail.as_deref() == Some("VERIFIED_MANUALLY")
    ));
    let again = cli(&[
        "dossiers",
        "verify",
        &chosen.dossier_code,
        "--by",
        "officer-8",
        "--note",
        "again",
    ]);
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(
        !again.status.success() && err.contains("verified by officer-7"),
        "{err}"
    );
    let not_escalated = cli(&[
        "dossiers",
        "verify",
        &group_a[0].dossier_code,
        "--by",
        "officer-8",
        "--note",
        "x",
    ]);
    assert!(!not_escalated.status.success());
    assert_eq!(
        store.escalated(100).await.expect("escalated").len(),
        19,
        "one fewer waits"
    );
}
