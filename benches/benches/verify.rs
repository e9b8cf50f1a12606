//! Load harness: verify throughput (dossiers/s) against the registry simulator over real
//! HTTP on localhost, with and without the client's cache, on the same workload in the
//! same run. The workload draws half of its applicants again (people file several
//! dossiers), which is what a cache can save.
//!
//! `cargo bench -p motcua-benches --bench verify` (add `-- --latency-ms 20` for a
//! slower gateway).

use std::sync::Arc;
use std::time::{Duration, Instant};

use motcua_reference::Reference;
use motcua_registries::audit::TracingAudit;
use motcua_registries::http::{HttpConfig, HttpRegistries};
use motcua_runtime::{Envelope, Origin, Stage};
use motcua_schemas::{Codec, DossierAccepted};
use motcua_simulators::portal::Generator;
use motcua_simulators::registries::{self as sim, Faults};
use motcua_simulators::world::World;
use motcua_store::Store;
use motcua_verify::{RetryPolicy, Verify};

const DOSSIERS: usize = 4_000;
const BATCH: usize = 500;

fn workload(r: &Reference, world: &World) -> Vec<Envelope<DossierAccepted>> {
    let mut g = Generator::new(r, "22", 1).expect("province").with_world(world);
    let fresh: Vec<_> = (0..DOSSIERS / 2)
        .map(|i| g.valid(1_764_036_000_000 + i as i64))
        .collect();
    // The second half: the same applicants again, with new dossier ids.
    let again = fresh.iter().enumerate().map(|(i, s)| {
        let mut s = s.clone();
        s.dossier.dossier_id = format!("again-{i}");
        s.event_id = format!("again-event-{i}");
        s
    });
    fresh
        .iter()
        .cloned()
        .chain(again)
        .enumerate()
        .map(|(i, s)| Envelope {
            origin: Origin {
                topic: "dossier.accepted".into(),
                partition: 0,
                offset: i as i64,
                timestamp_ms: Some(s.dossier.submitted_at),
            },
            door: Default::default(),
            event: DossierAccepted {
                event_id: format!("a-{}", s.event_id),
                causation_id: s.event_id.clone(),
                dossier_code: format!("H22.X-251125-{i:04}"),
                receiving_agency_code: "H22.X".into(),
                received_at: s.dossier.submitted_at,
                procedure: r.catalog.get(&s.dossier.procedure_code).expect("catalog").summary(),
                dossier: s.dossier,
                traceparent: None,
            },
        })
        .collect()
}

async fn run(label: &str, base_url: &str, cache_ttl_s: u64, r: &Arc<Reference>, work: &[Envelope<DossierAccepted>]) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::connect(&format!("sqlite://{}", dir.path().join("v.db").display()))
        .await
        .expect("store");
    let http = HttpRegistries::new(
        HttpConfig {
            base_url: base_url.to_owned(),
            cache_ttl_s,
            max_concurrency: 64,
            ..HttpConfig::default()
        },
        Arc::new(TracingAudit),
    )
    .expect("client");
    let verify = Verify::new(
        http.clone(),
        r.clone(),
        store,
        Codec::embedded().expect("codec"),
        "bench".into(),
        RetryPolicy::default(),
    );
    let started = Instant::now();
    for chunk in work.chunks(BATCH) {
        let out = verify.handle_batch(chunk).await.expect("batch");
        assert_eq!(out.len(), chunk.len());
    }
    let secs = started.elapsed().as_secs_f64();
    let [(_, population), (_, land), (_, business)] = http.stats();
    let requests = population.requests + land.requests + business.requests;
    let hits = population.cache_hits + land.cache_hits + business.cache_hits;
    let lookups = hits + population.cache_misses + land.cache_misses + business.cache_misses;
    println!(
        "{label:<12} {:>7.0} dossiers/s   {requests:>5} HTTP requests   cache hit rate {:>5.1} %",
        work.len() as f64 / secs,
        100.0 * hits as f64 / lookups.max(1) as f64
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let latency_ms: u64 = args
        .iter()
        .position(|a| a == "--latency-ms")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let r = Arc::new(Reference::embedded().expect("reference"));
        let world = World::for_province(&r.units, "22", 1, 1_000_000).expect("world");
        let work = workload(&r, &world);
        let faults = Faults {
            latency_ms,
            latency_p99_ms: latency_ms * 4,
            ..Faults::default()
        };
        let (base, _server) = sim::spawn(world, faults).await.expect("simulator");
        println!(
            "verify: {} dossiers in batches of {BATCH}, simulator latency median {latency_ms} ms, p99 {} ms",
            work.len(),
            latency_ms * 4
        );
        for round in 0..2 {
            let _ = round;
            run("no cache", &base, 0, &r, &work).await;
            run("cache 300 s", &base, 300, &r, &work).await;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    });
}
