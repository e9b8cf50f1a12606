//! Every process of the pipeline SIGKILLed mid-stream, several times, on Apache Kafka:
//! the stages (`motcua run <stage>`) and the gateway and back-office simulators, while
//! portals keep publishing. Each is restarted at once under its name (static group
//! membership, as the Kubernetes manifests run them). Counted by a client we did not
//! write: no dossier lost, every one ended once and nothing after its end, every stage
//! that writes to Kafka emitted again after a kill, and every event emitted again is
//! byte-identical to its first emission (an input written again after a kill comes in a
//! new message, with a new broker time: outputs must not depend on it).

mod support;

use std::time::{Duration, Instant};

use motcua_schemas::Topic;
use support::processes::{settled, unsettled_stories, PipelineCount, ProcessPipeline, ROLES};
use support::*;

/// The run: what the checker counted, and the kills per role.
async fn killed_mid_stream() -> (PipelineCount, std::collections::BTreeMap<&'static str, u32>) {
    /// Dossiers per second the portals publish, and for how long.
    const RATE: usize = 40;
    const SECONDS: usize = 45;
    const N: usize = RATE * SECONDS;
    /// Kills: one process every `EVERY`, round-robin over every role.
    const EVERY: Duration = Duration::from_millis(2_000);
    let (_topics, kafka) = apache_kafka(2).await;
    let mut pipeline = ProcessPipeline::on(&kafka).await;
    let submissions = pipeline.submissions(N, 17);
    let ids: Vec<String> = submissions.iter().map(|s| s.dossier.dossier_id.clone()).collect();
    let collector = Collector::start(&kafka, &[Topic::Status]);

    // The portals publish at a steady rate while the processes are killed one by one.
    let portal = publish_steadily(&kafka, submissions, RATE / 10);
    let started = Instant::now();
    let mut next = ROLES.iter().cycle();
    while !portal.is_finished() {
        pipeline.run_for(&collector, EVERY).await;
        let role = next.next().expect("cycle");
        pipeline.kill_and_restart(role);
    }
    portal.await.expect("portal");
    let kills: usize = pipeline.kills.values().map(|n| *n as usize).sum();
    let published = started.elapsed();
    let all = pipeline
        .wait_for(&collector, Duration::from_secs(180), |s| settled(s) >= N)
        .await;
    let took = started.elapsed();
    eprintln!("restarted after exiting by themselves: {:?}", pipeline.restarts);
    let count = PipelineCount::take(&kafka.brokers, &kafka.topic_prefix, &ids);
    assert!(
        all,
        "only {} of {N} dossiers settled: {}\nunsettled as read: {}",
        settled(&collector.snapshot()),
        count.0["dossiers"],
        unsettled_stories(&collector.snapshot(), 4)
    );
    pipeline.stop();

    let repeated = |topic: Topic| count.repeated(topic);
    eprintln!(
        "{N} dossiers in {took:?} (published in {published:?}), {kills} kills {:?}: {}; re-emitted: accepted {}, verified {}, \
         payment.requested {}, paid {}, routed {}, completed {}, status {}",
        pipeline.kills,
        count.0["dossiers"],
        repeated(Topic::Accepted),
        repeated(Topic::Verified),
        repeated(Topic::PaymentRequested),
        repeated(Topic::Paid),
        repeated(Topic::Routed),
        repeated(Topic::Completed),
        repeated(Topic::Status),
    );
    assert_eq!(
        count.dossiers("ended") + count.dossiers("waiting_on_citizen"),
        N as i64,
        "{}",
        count.0["dossiers"]
    );
    (count, pipeline.kills.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_process_killed_mid_stream_loses_nothing_ends_each_dossier_once_and_re_emits_identical_events() {
    let (count, kills) = killed_mid_stream().await;
    count.assert_sound();
    let repeated = |topic: Topic| count.repeated(topic);
    // The kills hit work in flight: each stage that writes to Kafka wrote something again.
    for (stage, outputs) in [
        ("intake", &[Topic::Accepted][..]),
        ("verify", &[Topic::Verified]),
        ("payment", &[Topic::PaymentRequested, Topic::Paid]),
        ("route", &[Topic::Routed]),
        ("result", &[Topic::Completed]),
    ] {
        let again: i64 = outputs.iter().map(|t| repeated(*t)).sum();
        assert!(
            again > 0,
            "{stage} was killed {} times and re-emitted nothing",
            kills[stage]
        );
    }
}
