//! Losing brokers, for real: three Apache Kafka nodes on loopback (replication factor 3,
//! `min.insync.replicas` 2, producers `acks=all`), the whole pipeline as processes. Mid-run
//! the node that leads most partitions is SIGKILLed and restarted; later all three are
//! killed for 30 s, during which every worker stays alive and says on `/readyz` that no
//! broker answers, then restarted. Counted by a client we did not write: no dossier lost,
//! every one ended once, every repeated event byte-identical.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use motcua_kafka::KafkaConfig;
use motcua_schemas::Topic;
use rdkafka::consumer::{BaseConsumer, Consumer};
use support::processes::{settled, unsettled_stories, PipelineCount, ProcessPipeline, ROLES};
use support::*;

/// The tests of this file take turns: each starts a cluster of its own, and two clusters
/// with their workers on a 2-core machine would measure the machine, not the pipeline.
static ONE_CLUSTER_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The node that leads most partitions of the flow's topics.
fn busiest_leader(kafka: &KafkaConfig) -> u32 {
    let consumer: BaseConsumer = kafka
        .consumer_config("motcua-test-metadata", "motcua-test-metadata")
        .create()
        .expect("consumer");
    let meta = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("metadata");
    let mut led: BTreeMap<i32, usize> = BTreeMap::new();
    for t in meta.topics().iter().filter(|t| kafka.topic_of(t.name()).is_some()) {
        for p in t.partitions() {
            *led.entry(p.leader()).or_default() += 1;
        }
    }
    let (node, _) = led.into_iter().max_by_key(|(_, n)| *n).expect("leaders");
    node as u32
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "its steps are the first half of losing_every_broker_for_30_s_mid_stream_loses_no_dossier, which runs in the suite (10/10 in a row, 169-184 s each, issue 32's fifth session); this one stops there, and the suite is near its 30-minute budget: run with --ignored"]
async fn losing_the_busiest_broker_mid_stream_loses_no_dossier() {
    brokers_lost(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_every_broker_for_30_s_mid_stream_loses_no_dossier() {
    brokers_lost(true).await;
}

/// A whole pipeline over three nodes while the busiest node is killed and restarted, and
/// with `total_outage` all three for 30 s afterwards.
async fn brokers_lost(total_outage: bool) {
    const N: usize = 5_000;
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    let spec = ClusterSpec {
        nodes: 3,
        properties: [("default.replication.factor", "3"), ("min.insync.replicas", "2")]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .to_vec(),
        heap: "320m",
        ..ClusterSpec::default()
    };
    let cluster = KafkaCluster::start(spec);
    let kafka = KafkaConfig::with_brokers(cluster.bootstrap());
    kafka.create_topics(3, 3).await.expect("topics");
    let mut pipeline = ProcessPipeline::on(&kafka).await;
    let submissions = pipeline.submissions(N, 11);
    let ids: Vec<String> = submissions.iter().map(|s| s.dossier.dossier_id.clone()).collect();
    let collector = Collector::start(&kafka, &[Topic::Status]);
    // The portals publish at a steady rate through both losses (about 60 s).
    let portal = publish_steadily(&kafka, submissions, N / 600);
    let started = Instant::now();

    // One broker lost: the one that leads most partitions, killed, then back.
    pipeline.run_for(&collector, Duration::from_secs(8)).await;
    let victim = busiest_leader(&kafka);
    let at = settled(&collector.snapshot());
    cluster.kill(victim);
    pipeline.run_for(&collector, Duration::from_secs(10)).await;
    let during = settled(&collector.snapshot()) - at;
    cluster.restart(victim);
    eprintln!(
        "node {victim} (leading most partitions) killed at {at} settled; {during} more settled in the 10 s without it"
    );
    assert!(during > 0, "the pipeline went on with two of three brokers");

    if total_outage {
        pipeline.run_for(&collector, Duration::from_secs(8)).await;
        every_broker_lost(&cluster, &mut pipeline, &collector).await;
    }
    portal.await.expect("portal");

    let all = pipeline
        .wait_for(&collector, Duration::from_secs(300), |s| settled(s) >= N)
        .await;
    let took = started.elapsed();
    eprintln!("restarted after exiting by themselves: {:?}", pipeline.restarts);
    let count = PipelineCount::take(&kafka.brokers, "", &ids);
    assert!(
        all,
        "only {} of {N} dossiers settled: {}\nunsettled as read: {}",
        settled(&collector.snapshot()),
        count.0["dossiers"],
        unsettled_stories(&collector.snapshot(), 4)
    );
    pipeline.stop();
    eprintln!(
        "{N} dossiers in {took:?}: {}; {} messages re-emitted",
        count.0["dossiers"],
        count.topics("repeated")
    );
    count.assert_sound();
    assert_eq!(
        count.dossiers("ended") + count.dossiers("waiting_on_citizen"),
        N as i64,
        "{}",
        count.0["dossiers"]
    );
}

/// Kills every node for 30 s; checks the workers wait alive and say on `/readyz` why
/// they are not ready; restarts the nodes.
async fn every_broker_lost(cluster: &KafkaCluster, pipeline: &mut ProcessPipeline, collector: &Collector) {
    let at = settled(&collector.snapshot());
    for n in &cluster.nodes {
        cluster.kill(n.id);
    }
    let outage = Instant::now();
    tokio::time::sleep(Duration::from_secs(15)).await;
    let mut not_ready = Vec::new();
    for role in ROLES.into_iter().filter(|r| !["gateway", "backoffice"].contains(r)) {
        let port = pipeline.metrics_ports[role];
        let (code, body) = http_get_status(port, "/readyz", Duration::from_secs(5));
        if code == 503 && body.contains("no Kafka broker answers") {
            not_ready.push(role);
        }
    }
    tokio::time::sleep(Duration::from_secs(30).saturating_sub(outage.elapsed())).await;
    let exited = pipeline.exited();
    assert!(
        exited.is_empty(),
        "workers died while the brokers were down: {exited:?}"
    );
    cluster.restart_all();
    eprintln!(
        "all three nodes killed at {at} settled for {:?}; not ready meanwhile: {not_ready:?}",
        outage.elapsed()
    );
    assert!(at < 4_500, "the outage came mid-stream ({at} settled)");
    // Every stage said so while the brokers were down (the gateway and back-office
    // simulators serve no probes).
    assert_eq!(not_ready.len(), 7, "every stage says no broker answers: {not_ready:?}");
}

/// One worker, its only broker killed for 30 s and restarted: the worker, alive all along,
/// goes on by itself with what was published before and after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_resumes_by_itself_after_its_broker_was_down_for_30_s() {
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    let cluster = KafkaCluster::start(ClusterSpec::default());
    let kafka = KafkaConfig::with_brokers(cluster.bootstrap());
    kafka.create_topics(2, 1).await.expect("topics");
    let db = motcua_store::testing::scratch_postgres_url().await;
    let r = motcua_reference::Reference::embedded().expect("reference");
    let mut g = motcua_simulators::portal::Generator::new(&r, "22", 3).expect("province");
    let collector = Collector::start(&kafka, &[Topic::Accepted]);
    let mut worker = spawn_intake_with(&kafka, &db, "alone", &[("MOTCUA_RUNTIME__STATIC_MEMBERSHIP", "true")]);
    let first: Vec<_> = (0..100).map(|i| g.valid(NOW + i)).collect();
    publish(&kafka, &first).await;
    assert!(
        collector
            .wait_count(Topic::Accepted, 100, Duration::from_secs(60))
            .await
    );
    cluster.kill(1);
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(
        worker.try_wait().expect("status").is_none(),
        "the worker waited for its broker"
    );
    cluster.restart(1);
    let second: Vec<_> = (0..100).map(|i| g.valid(NOW + 1_000 + i)).collect();
    publish(&kafka, &second).await;
    let resumed = collector
        .wait_count(Topic::Accepted, 200, Duration::from_secs(90))
        .await;
    sigterm(&worker);
    wait_exit(&mut worker, Duration::from_secs(30));
    assert!(
        resumed,
        "accepted after the restart: {}",
        collector.count(Topic::Accepted) - 100
    );
}
