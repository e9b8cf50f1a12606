//! The track stage end to end: events of every topic, each published twice, through a
//! real Kafka-protocol broker (librdkafka's in-process mock cluster over TCP) and the
//! no-loss runtime into real PostgreSQL; then deadline warnings, the stage's timer work,
//! produced by the runtime to `dossier.status` and consumed back by the same worker.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use motcua_kafka::{EmbeddedBroker, KafkaConfig};
use motcua_runtime::{RuntimeConfig, Shutdown};
use motcua_schemas::{AnyEvent, Codec, Timeliness};
use motcua_track::{Track, WallClock, WarningConfig};
use rdkafka::producer::{FutureProducer, FutureRecord};
use sqlx::PgPool;

async fn publish(
    producer: &FutureProducer,
    kafka: &KafkaConfig,
    codec: &Codec,
    events: &[AnyEvent],
) -> Result<(), String> {
    let mut pending = Vec::new();
    for e in events {
        let mut payload = Vec::new();
        e.encode(codec, &mut payload).map_err(|e| e.to_string())?;
        let topic = kafka.topic(e.topic());
        let record = FutureRecord::to(&topic).key(e.key()).payload(&payload);
        pending.push(producer.send_result(record).map_err(|(e, _)| e.to_string())?);
    }
    for p in pending {
        p.await
            .map_err(|_| "cancelled".to_owned())?
            .map_err(|(e, _)| e.to_string())?;
    }
    Ok(())
}

async fn wait_for(pool: &PgPool, sql: &str, expected: i64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n: i64 = sqlx::query_scalar(sql).fetch_one(pool).await.expect("count");
        if n == expected {
            return;
        }
        assert!(Instant::now() < deadline, "{sql}: {n}, expected {expected}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_topic_through_kafka_into_the_projection() {
    let broker = EmbeddedBroker::start(1).expect("broker");
    let kafka = KafkaConfig::with_brokers(broker.bootstrap_servers());
    broker.create_topics(&kafka, 3).expect("topics");
    let codec = Codec::embedded().expect("codec");
    let producer: FutureProducer = kafka.producer_config("track-test").create().expect("producer");

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    let lives: Vec<Life> = (1..=40)
        .map(|n| {
            let mut l = Life::new(n, now - 5 * DAY);
            l.due_at = if n <= 5 { now + HOUR } else { now + 10 * DAY };
            if n > 30 {
                l.done = Some((now - DAY, Timeliness::Early));
            }
            l
        })
        .collect();
    let events: Vec<AnyEvent> = lives.iter().flat_map(Life::events).collect();
    assert_eq!(events.len(), 40 * 9 + 10 * 2);
    // Everything twice: the second copy is a redelivery.
    publish(&producer, &kafka, &codec, &events).await.expect("publish");
    publish(&producer, &kafka, &codec, &events)
        .await
        .expect("publish again");

    let pool = database().await;
    let (stop, shutdown) = Shutdown::channel();
    let mut rt = RuntimeConfig::new(kafka.clone());
    rt.instance_id = "track-test".into();
    let worker = tokio::spawn(motcua_runtime::run(
        Arc::new(Track::new(pool.clone())),
        codec.clone(),
        rt,
        shutdown.clone(),
    ));
    wait_for(&pool, "SELECT count(*) FROM track_history", 380).await;
    wait_for(
        &pool,
        "SELECT count(*) FROM track_dossiers WHERE status_code = 4 AND due_at IS NOT NULL",
        30,
    )
    .await;
    wait_for(&pool, "SELECT count(*) FROM track_dossiers WHERE status_code = 10", 10).await;
    let ingested = snapshot(&pool).await;

    // The same events applied directly, in order, give the same projection as the
    // topics interleaved by the broker.
    let direct = database().await;
    Track::new(direct.clone()).apply(&refs(&events)).await.expect("direct");
    assert_eq!(snapshot(&direct).await, ingested);

    stop.send(true).expect("stop");
    let ingesting = worker.await.expect("join").expect("clean stop");
    assert_eq!(ingesting.consumed, 2 * 380);
    assert_eq!(ingesting.dead_lettered, 0);

    // Deadline warnings: the stage's timer, produced by the runtime to dossier.status and
    // consumed back by the same worker (same group: it reads only what came since).
    let mut config = WarningConfig::new(8);
    config.interval = Duration::from_millis(100);
    let (stop, shutdown) = Shutdown::channel();
    let mut rt = RuntimeConfig::new(kafka.clone());
    rt.instance_id = "track-test".into();
    let worker = tokio::spawn(motcua_runtime::run(
        Arc::new(Track::new(pool.clone()).with_warnings(config, Arc::new(WallClock))),
        codec.clone(),
        rt,
        shutdown,
    ));
    wait_for(&pool, "SELECT count(*) FROM track_history WHERE stage = 'track'", 5).await;
    wait_for(
        &pool,
        "SELECT count(*) FROM track_dossiers WHERE warned_due_at IS NOT NULL",
        5,
    )
    .await;
    // A few more scans: nothing is warned twice.
    tokio::time::sleep(Duration::from_millis(400)).await;
    stop.send(true).expect("stop");
    let summary = worker.await.expect("join").expect("clean stop");
    assert_eq!(summary.consumed, 5, "the five warnings, read back");
    assert_eq!(summary.dead_lettered, 0);
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM track_history WHERE stage = 'track'")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(n, 5);
    // Warnings did not move any status.
    let open: i64 = sqlx::query_scalar("SELECT count(*) FROM track_dossiers WHERE status_code = 4")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(open, 30);
}
