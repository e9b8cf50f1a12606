//! Payment over a real broker and real PostgreSQL, against the gateway simulator failing,
//! duplicating and reordering confirmations: every dossier is paid exactly once.

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use motcua_payment::{FeeSchedule, Payment};
use motcua_reference::Reference;
use motcua_runtime::{RuntimeConfig, Shutdown};
use motcua_schemas::{AnyEvent, Codec, DossierVerified, Topic};
use motcua_simulators::gateway::{self as gateway_sim, GatewaySimConfig};
use motcua_simulators::portal::Generator;
use motcua_store::Store;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn duplicate_failed_and_reordered_confirmations_pay_each_dossier_once() {
    const N: usize = 150;
    let (_topics, kafka) = apache_kafka(3).await;
    let r = Reference::embedded().expect("reference");
    let mut g = Generator::new(&r, "22", 12).expect("province");
    let verified: Vec<DossierVerified> = (0..N)
        .map(|i| {
            let s = g.valid(NOW + i as i64);
            DossierVerified {
                event_id: format!("verified-{}", s.event_id),
                causation_id: s.event_id.clone(),
                dossier_code: format!("H22.{}-251125-{i:04}", s.dossier.receiving_unit_code),
                received_at: s.dossier.submitted_at,
                procedure: r.catalog.get(&s.dossier.procedure_code).expect("catalog").summary(),
                dossier: s.dossier,
                checks: vec![],
                verified_at: NOW + 1_000,
                traceparent: None,
            }
        })
        .collect();
    let billed: HashSet<String> = verified
        .iter()
        .filter(|v| v.procedure.fee_vnd > 0)
        .map(|v| v.dossier.dossier_id.clone())
        .collect();
    assert!(billed.len() > N / 2, "most procedures carry a fee");

    let store = Store::connect(&motcua_store::testing::scratch_postgres_url().await)
        .await
        .expect("store");
    let codec = Codec::embedded().expect("codec");
    let payment = Arc::new(Payment::new(
        store.clone(),
        codec.clone(),
        FeeSchedule::embedded().expect("fees"),
    ));
    let collector = Collector::start(&kafka, &[Topic::Paid]);
    publish(&kafka, &verified).await;

    let (stop, shutdown) = Shutdown::channel();
    let mut rt = RuntimeConfig::new(kafka.clone());
    rt.instance_id = "payment-test".into();
    let worker = tokio::spawn(motcua_runtime::run(payment, codec, rt, shutdown.clone()));
    let sim = GatewaySimConfig {
        min_delay_ms: 10,
        max_delay_ms: 400,
        failure_rate: 0.3,
        duplicate_rate: 0.5,
        seed: 7,
    };
    let gateway = tokio::spawn(gateway_sim::run(
        kafka.clone(),
        Codec::embedded().expect("codec"),
        sim,
        shutdown,
    ));

    let all_paid = |s: &[Read]| {
        s.iter()
            .filter_map(|r| match &r.event {
                Some(AnyEvent::Paid(p)) => Some(p.dossier.dossier_id.clone()),
                _ => None,
            })
            .collect::<HashSet<_>>()
            .len()
            == N
    };
    let done = collector.wait_for(Duration::from_secs(90), all_paid).await;
    // Give late duplicates time to arrive: they must not pay again.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    stop.send(true).expect("stop");
    worker.await.expect("join").expect("clean stop");
    let stats = gateway.await.expect("join").expect("gateway");
    assert!(done, "not every dossier was paid");

    let mut paid_ids: HashMap<String, HashSet<String>> = HashMap::new();
    for r in collector.snapshot() {
        if let Some(AnyEvent::Paid(p)) = &r.event {
            paid_ids
                .entry(p.dossier.dossier_id.clone())
                .or_default()
                .insert(p.event_id.clone());
            if billed.contains(&p.dossier.dossier_id) {
                assert!(p.bill_reference.is_some() && p.amount_vnd > 0, "{p:?}");
            }
        }
    }
    assert_eq!(paid_ids.len(), N);
    for (id, events) in &paid_ids {
        assert_eq!(events.len(), 1, "dossier {id} paid by {} distinct events", events.len());
    }
    let bills = store.bills().await.expect("bills");
    assert_eq!(bills.len(), billed.len());
    assert!(bills.iter().all(|b| b.status == "paid"));
    let (failures, duplicates) = (
        stats.failures.load(Ordering::Relaxed),
        stats.duplicates.load(Ordering::Relaxed),
    );
    assert!(
        failures > 0 && duplicates > 0,
        "the gateway injected failures {failures} and duplicates {duplicates}"
    );
    eprintln!(
        "{N} dossiers, {} billed; gateway: {} confirmations, {failures} failed first attempts, {duplicates} duplicates",
        billed.len(),
        stats.confirmations.load(Ordering::Relaxed)
    );
}
