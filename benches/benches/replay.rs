//! Load harness: rebuilding the status projection from the event log (`motcua replay`)
//! next to live ingest, on PostgreSQL and on the embedded demo's SQLite, in one run.
//!
//! - **live ingest**: the track worker (under a fresh group, on an empty database) runs
//!   while a producer publishes the log; timed from the first publish to the moment the
//!   worker has committed the whole log;
//! - **replay**: the log is already in the topics; a second fresh group reads it from the
//!   beginning into a second empty database — what `motcua replay` does (the same
//!   function).
//!
//! Kafka is librdkafka's in-process cluster over TCP (so the process's CPU time includes
//! the broker's and, for live ingest, the producer's); PostgreSQL is a server of its own
//! (its CPU time is not included). Workload: `samples::event_log` (11 events per dossier).
//!
//! `cargo bench -p motcua-benches --bench replay [-- --dossiers 10000]`
//! Database server: `MOTCUA_BENCH_DATABASE_URL` (default
//! `postgres://motcua@127.0.0.1:55499/postgres`); scratch databases are created and dropped.

use std::time::Duration;

use motcua_kafka::EmbeddedBroker;
use motcua_runtime::Shutdown;
use motcua_schemas::{samples, AnyEvent, Codec};
use motcua_wiring::replay::{replay, ReplayOptions, ReplaySummary};
use motcua_wiring::Config;
use rdkafka::producer::{FutureProducer, FutureRecord};
use sqlx::Connection;

const PARTITIONS: i32 = 4;

async fn scratch_postgres(server: &str, tag: &str) -> (String, String) {
    let name = format!("motcua_bench_replay_{}_{tag}", std::process::id());
    let mut conn = sqlx::PgConnection::connect(server)
        .await
        .expect("connect to the bench server");
    for sql in [
        format!("DROP DATABASE IF EXISTS {name}"),
        format!("CREATE DATABASE {name}"),
    ] {
        sqlx::query(&sql).execute(&mut conn).await.expect("scratch database");
    }
    let base = &server[..server.rfind('/').expect("url with a database")];
    (format!("{base}/{name}"), name)
}

async fn drop_postgres(server: &str, name: &str) {
    if let Ok(mut conn) = sqlx::PgConnection::connect(server).await {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut conn)
            .await;
    }
}

async fn publish(config: &Config, codec: &Codec, events: &[AnyEvent]) {
    let producer: FutureProducer = config
        .kafka
        .producer_config("motcua-bench-replay")
        .create()
        .expect("producer");
    let mut pending = Vec::with_capacity(5_000);
    let mut buf = Vec::new();
    for e in events {
        buf.clear();
        e.encode(codec, &mut buf).expect("encode");
        let topic = config.kafka.topic(e.topic());
        pending.push(
            producer
                .send_result(FutureRecord::to(&topic).key(e.key()).payload(&buf))
                .map_err(|(e, _)| e)
                .expect("enqueue"),
        );
        if pending.len() >= 5_000 {
            for f in pending.drain(..) {
                f.await.expect("delivery").expect("acknowledged");
            }
        }
    }
    for f in pending {
        f.await.expect("delivery").expect("acknowledged");
    }
}

fn line(variant: &str, s: &ReplaySummary) {
    println!(
        "{variant:<40} {:>8} messages {:>7.2} s {:>9.0} messages/s   CPU {:>6.1} µs/message",
        s.messages,
        s.elapsed.as_secs_f64(),
        s.messages_per_second(),
        s.cpu_per_message().map_or(f64::NAN, |c| c.as_secs_f64() * 1e6)
    );
}

/// Live ingest then replay of the same log into one kind of database.
async fn measure(broker: &EmbeddedBroker, codec: &Codec, events: &[AnyEvent], db: &str, urls: [String; 2]) {
    let mut config = Config::default();
    config.kafka.brokers = broker.bootstrap_servers().to_owned();
    config.kafka.topic_prefix = format!("{db}.");
    broker.create_topics(&config.kafka, PARTITIONS).expect("topics");
    let [live_url, replay_url] = urls;

    config.database.url = live_url;
    let (_stop, shutdown) = Shutdown::channel();
    let mut options = ReplayOptions::new(&config.kafka);
    options.group = config.kafka.group("track-bench-live");
    let (published_tx, published_rx) = tokio::sync::oneshot::channel::<()>();
    let producer = {
        let (config, codec, events) = (config.clone(), codec.clone(), events.to_vec());
        tokio::spawn(async move {
            publish(&config, &codec, &events).await;
            let _ = published_tx.send(());
        })
    };
    let live = replay(
        &config,
        codec.clone(),
        options,
        async {
            let _ = published_rx.await;
        },
        shutdown.clone(),
    )
    .await
    .expect("live ingest");
    producer.await.expect("producer");
    line(&format!("{db}: live ingest"), &live);

    config.database.url = replay_url;
    let mut options = ReplayOptions::new(&config.kafka);
    options.group = config.kafka.group("track-bench-replay");
    let replayed = replay(&config, codec.clone(), options, std::future::ready(()), shutdown)
        .await
        .expect("replay");
    line(&format!("{db}: replay into an empty projection"), &replayed);
    assert_eq!(replayed.messages, events.len() as i64, "the whole log was replayed");
}

fn main() {
    let dossiers = motcua_benches::dossiers_arg(10_000);
    let server = motcua_benches::bench_database_server();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let codec = Codec::embedded().expect("codec");
        let events = samples::event_log(dossiers);
        let broker = EmbeddedBroker::start(1).expect("in-process broker");
        println!(
            "projection rebuilt from the log: {dossiers} dossiers, {} events, {PARTITIONS} partitions per topic",
            events.len()
        );
        let (live, live_name) = scratch_postgres(&server, "live").await;
        let (again, again_name) = scratch_postgres(&server, "replay").await;
        measure(&broker, &codec, &events, "postgres", [live, again]).await;
        drop_postgres(&server, &live_name).await;
        drop_postgres(&server, &again_name).await;

        let dir = tempfile::tempdir().expect("tempdir");
        let sqlite = |name: &str| format!("sqlite://{}", dir.path().join(name).display());
        measure(
            &broker,
            &codec,
            &events,
            "sqlite",
            [sqlite("live.db"), sqlite("replay.db")],
        )
        .await;
    });
    // Let the workers' last commits settle before the broker goes away.
    std::thread::sleep(Duration::from_millis(100));
}
