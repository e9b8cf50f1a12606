//! Load harness: projection ingest (events/s) of the track stage into PostgreSQL (and the
//! embedded demo's SQLite) — the
//! batched write (one transaction per batch: UNNEST history insert + UNNEST dossier upsert)
//! next to a row-at-a-time baseline (the same statements, one transaction per event), in
//! the same run, on the same workload.
//!
//! `cargo bench -p motcua-benches --bench track [-- --dossiers 10000]`
//! Database server: `MOTCUA_BENCH_DATABASE_URL` (default
//! `postgres://motcua@127.0.0.1:55499/postgres`); the harness creates and drops its own
//! scratch databases there.

use std::time::{Duration, Instant};

use motcua_schemas::*;
use motcua_track::Track;
use sqlx::Connection;

struct Scratch {
    server: String,
    name: String,
    url: String,
}

async fn scratch(server: &str, tag: &str) -> Scratch {
    let name = format!("motcua_bench_track_{}_{tag}", std::process::id());
    let mut conn = sqlx::PgConnection::connect(server)
        .await
        .expect("connect to the bench server");
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
        .execute(&mut conn)
        .await
        .expect("drop");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("create");
    let base = &server[..server.rfind('/').expect("url with a database")];
    Scratch {
        server: server.to_owned(),
        url: format!("{base}/{name}"),
        name,
    }
}

impl Scratch {
    async fn drop_db(self) {
        if let Ok(mut conn) = sqlx::PgConnection::connect(&self.server).await {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name))
                .execute(&mut conn)
                .await;
        }
    }
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

async fn batched(server: &str, events: &[AnyEvent], batch: usize) -> (f64, f64) {
    let db = scratch(server, &format!("b{batch}")).await;
    let track = Track::connect(&db.url).await.expect("track");
    let refs: Vec<&AnyEvent> = events.iter().collect();
    let start = Instant::now();
    for chunk in refs.chunks(batch) {
        track.apply(chunk).await.expect("apply");
    }
    let first = start.elapsed();
    // Redelivery of everything (a replay from the earliest offset): history rows are
    // skipped by event id, dossier rows merged to the same values.
    let start = Instant::now();
    for chunk in refs.chunks(batch) {
        track.apply(chunk).await.expect("apply again");
    }
    let again = start.elapsed();
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM track_history")
        .fetch_one(track.postgres().expect("postgres"))
        .await
        .expect("count");
    assert_eq!(rows as usize, events.len());
    track.postgres().expect("postgres").close().await;
    db.drop_db().await;
    (rate(events.len(), first), rate(events.len(), again))
}

/// `writers` concurrent writers on disjoint dossiers (as replicas owning disjoint
/// partitions: the key is the dossier id), each writing batches of `batch` events.
async fn concurrent(server: &str, events: &[AnyEvent], batch: usize, writers: usize) -> f64 {
    let db = scratch(server, &format!("w{writers}")).await;
    let track = Track::connect(&db.url).await.expect("track");
    let mut streams: Vec<Vec<AnyEvent>> = vec![Vec::new(); writers];
    for e in events {
        let h = e
            .key()
            .bytes()
            .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
        streams[h % writers].push(e.clone());
    }
    let start = Instant::now();
    let tasks: Vec<_> = streams
        .into_iter()
        .map(|s| {
            let track = track.clone();
            tokio::spawn(async move {
                let refs: Vec<&AnyEvent> = s.iter().collect();
                for chunk in refs.chunks(batch) {
                    track.apply(chunk).await.expect("apply");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("writer");
    }
    let took = start.elapsed();
    track.postgres().expect("postgres").close().await;
    db.drop_db().await;
    rate(events.len(), took)
}

async fn row_at_a_time(server: &str, events: &[AnyEvent]) -> f64 {
    let db = scratch(server, "each").await;
    let track = Track::connect(&db.url).await.expect("track");
    let refs: Vec<&AnyEvent> = events.iter().collect();
    let start = Instant::now();
    track.apply_each(&refs).await.expect("apply each");
    let took = start.elapsed();
    track.postgres().expect("postgres").close().await;
    db.drop_db().await;
    rate(events.len(), took)
}

/// The embedded demo's SQLite projection: the same events, batched like the stage's
/// batches, on a file in a temporary directory; the baseline one event per transaction.
async fn sqlite(events: &[AnyEvent], batch: usize) -> (f64, f64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = |name: &str| format!("sqlite://{}", dir.path().join(name).display());
    let track = Track::connect(&url("batched.db")).await.expect("sqlite");
    let refs: Vec<&AnyEvent> = events.iter().collect();
    let start = Instant::now();
    for chunk in refs.chunks(batch) {
        track.apply(chunk).await.expect("apply");
    }
    let batched = rate(events.len(), start.elapsed());
    let slice = &refs[..refs.len() / 20];
    let each = Track::connect(&url("each.db")).await.expect("sqlite");
    let start = Instant::now();
    each.apply_each(slice).await.expect("apply each");
    (batched, rate(slice.len(), start.elapsed()))
}

fn main() {
    let dossiers = motcua_benches::dossiers_arg(10_000);
    let server = motcua_benches::bench_database_server();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let events = samples::event_log(dossiers);
        // The baseline on a slice of the same workload (it is slow), in stage order too.
        let slice: Vec<AnyEvent> = samples::event_log(dossiers / 20);
        println!(
            "track projection ingest into PostgreSQL: {} dossiers, {} events (baseline: {} events)",
            dossiers,
            events.len(),
            slice.len()
        );
        for batch in [500, 2_000, 5_000] {
            let (first, again) = batched(&server, &events, batch).await;
            println!(
                "batched, {batch:>5} events/transaction: {first:>9.0} events/s   redelivered: {again:>9.0} events/s"
            );
        }
        for writers in [2, 4] {
            let r = concurrent(&server, &events, 2_000, writers).await;
            println!("batched, 2000 events/transaction, {writers} writers: {r:>9.0} events/s");
        }
        let each = row_at_a_time(&server, &slice).await;
        println!("baseline: 1 event/transaction:         {each:>9.0} events/s");
        for batch in [500, 2_000] {
            let (batched, each) = sqlite(&events, batch).await;
            println!(
                "SQLite (embedded demo), {batch:>5} events/transaction: {batched:>9.0} events/s   baseline 1 event/transaction: {each:>7.0} events/s"
            );
        }
    });
}
