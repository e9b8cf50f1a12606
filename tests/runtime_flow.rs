//! The stage runtime on Apache Kafka: backpressure that keeps the worker in its group, and
//! a replica joining mid-stream that takes partitions over without loss or duplicates.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use motcua_kafka::KafkaConfig;
use motcua_runtime::{Envelope, Outcome, RunSummary, RuntimeConfig, Shutdown, Stage, StageError};
use motcua_schemas::{samples, AnyEvent, Codec, DossierSubmitted, Topic};
use support::{apache_kafka, publish, Collector};

/// Accepts every submission: one output per input, its causation the input's event id;
/// each batch takes at least `work` (a stage that is busy when a rebalance comes).
struct Forward {
    work: Duration,
}

impl Stage for Forward {
    type Input = DossierSubmitted;

    fn name(&self) -> &'static str {
        "forward"
    }

    async fn handle_batch(&self, batch: &[Envelope<DossierSubmitted>]) -> Result<Vec<Outcome>, StageError> {
        tokio::time::sleep(self.work).await;
        Ok(batch
            .iter()
            .map(|e| {
                let mut a = samples::accepted();
                a.event_id = format!("accepted-{}", e.event.event_id);
                a.causation_id = e.event.event_id.clone();
                a.dossier = e.event.dossier.clone();
                Outcome::Emit(vec![AnyEvent::Accepted(a)])
            })
            .collect())
    }
}

fn submissions(range: std::ops::Range<usize>) -> Vec<DossierSubmitted> {
    range
        .map(|i| {
            let mut s = samples::submitted();
            s.event_id = format!("submission-{i}");
            s.dossier.dossier_id = format!("dossier-{i}");
            s
        })
        .collect()
}

/// Outputs per input (by causation id), read until every one of `expected` inputs has
/// one, then for `quiet` more (a duplicate would arrive then).
async fn outputs_per_input(kafka: &KafkaConfig, expected: usize, quiet: Duration) -> HashMap<String, u32> {
    let reader = Collector::start(kafka, &[Topic::Accepted]);
    // Missing outputs are reported by the caller's assertions, with the workers' counts.
    let _all = reader.wait_for(Duration::from_secs(60), |r| r.len() >= expected).await;
    tokio::time::sleep(quiet).await;
    let mut per_input = HashMap::new();
    for r in reader.snapshot() {
        let Some(AnyEvent::Accepted(a)) = r.event else {
            panic!("not an accepted event on dossier.accepted")
        };
        *per_input.entry(a.causation_id).or_insert(0) += 1;
    }
    per_input
}

fn spawn_worker(
    kafka: KafkaConfig,
    work: Duration,
    tune: impl FnOnce(&mut RuntimeConfig),
) -> (tokio::sync::watch::Sender<bool>, tokio::task::JoinHandle<RunSummary>) {
    let (stop, shutdown) = Shutdown::channel();
    let mut cfg = RuntimeConfig::new(kafka);
    tune(&mut cfg);
    let worker = tokio::spawn(async move {
        motcua_runtime::run(
            Arc::new(Forward { work }),
            Codec::embedded().expect("codec"),
            cfg,
            shutdown,
        )
        .await
        .expect("the worker runs until told to stop")
    });
    (stop, worker)
}

async fn wait_assigned(assigned: &AtomicUsize) {
    let until = Instant::now() + Duration::from_secs(60);
    while assigned.load(Ordering::Relaxed) == 0 {
        assert!(Instant::now() < until, "the worker never got partitions");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn written_twice(outputs: &HashMap<String, u32>) -> usize {
    outputs.values().filter(|n| **n > 1).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_too_much_in_flight_the_worker_pauses_keeps_polling_and_stays_in_its_group() {
    let (_topics, mut kafka) = apache_kafka(2).await;
    const N: usize = 150;
    publish(&kafka, &submissions(0..N)).await;

    // Deliveries take longer than the poll interval (the producer lingers 8 s before it
    // sends), so a worker that stopped polling while paused would be evicted from the
    // group. (6 s is the shortest session brokers accept by default.)
    kafka.linger_ms = 8_000;
    kafka.session_timeout_ms = 6_000;
    kafka.consumer.insert("max.poll.interval.ms".into(), "6500".into());
    kafka.consumer.insert("heartbeat.interval.ms".into(), "500".into());
    let assigned = Arc::new(AtomicUsize::new(0));
    let (stop, worker) = spawn_worker(kafka.clone(), Duration::ZERO, |c| {
        c.max_in_flight = 100;
        c.max_batch = 50;
        c.assigned = assigned.clone();
    });
    wait_assigned(&assigned).await;

    let outputs = outputs_per_input(&kafka, N, Duration::from_secs(10)).await;
    stop.send(true).expect("stop");
    let summary = worker.await.expect("worker");
    assert!(summary.pauses >= 1, "the worker paused for backpressure: {summary:?}");
    assert_eq!(summary.stale, 0, "no partition was taken away: {summary:?}");
    assert_eq!(summary.produced, N as u64, "{summary:?}");
    assert_eq!(outputs.len(), N);
    assert_eq!(
        written_twice(&outputs),
        0,
        "outputs written twice (the worker left its group?)"
    );
    assert_eq!(assigned.load(Ordering::Relaxed), 0, "partitions released at shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_worker_joining_mid_stream_takes_partitions_over_without_loss_or_duplicates() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
    let (_topics, kafka) = apache_kafka(4).await;
    let portal = kafka.clone();
    const N: usize = 6_000;

    let first_assigned = Arc::new(AtomicUsize::new(0));
    // 300 batches of 20 at 20 ms each: the first replica is still busy when the second
    // has joined.
    let work = Duration::from_millis(20);
    let (stop_first, first) = spawn_worker(kafka.clone(), work, |c| {
        c.max_batch = 20;
        c.instance_id = "first".into();
        c.assigned = first_assigned.clone();
    });
    wait_assigned(&first_assigned).await;
    publish(&portal, &submissions(0..N / 3)).await;

    // The second replica joins while the first is busy; the cooperative rebalance takes
    // partitions away from the first, which drains and commits them before letting go.
    let second_assigned = Arc::new(AtomicUsize::new(0));
    let (stop_second, second) = spawn_worker(kafka.clone(), work, |c| {
        c.max_batch = 20;
        c.instance_id = "second".into();
        c.assigned = second_assigned.clone();
    });
    publish(&portal, &submissions(N / 3..N)).await;
    wait_assigned(&second_assigned).await;

    let outputs = outputs_per_input(&kafka, N, Duration::from_secs(3)).await;
    stop_first.send(true).expect("stop");
    stop_second.send(true).expect("stop");
    let (a, b) = (first.await.expect("first"), second.await.expect("second"));
    assert!(a.processed > 0 && b.processed > 0, "both replicas worked: {a:?} {b:?}");
    let missing: Vec<_> = (0..N)
        .map(|i| format!("submission-{i}"))
        .filter(|id| !outputs.contains_key(id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} inputs without an output ({:?}…): {a:?} {b:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    assert_eq!(
        written_twice(&outputs),
        0,
        "inputs with outputs written twice across the handover: {a:?} {b:?}"
    );
    assert_eq!(a.produced + b.produced, N as u64, "{a:?} {b:?}");
}

/// Records the inputs it acted on (its "effects"), then forwards each as `Forward` does.
struct Acting {
    acted: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Stage for Acting {
    type Input = DossierSubmitted;

    fn name(&self) -> &'static str {
        "acting"
    }

    async fn handle_batch(&self, batch: &[Envelope<DossierSubmitted>]) -> Result<Vec<Outcome>, StageError> {
        self.acted
            .lock()
            .expect("acted")
            .extend(batch.iter().map(|e| e.event.event_id.clone()));
        Forward { work: Duration::ZERO }.handle_batch(batch).await
    }
}

/// Issue 33, break 7: an output too large for its topic was found only after the stage
/// had acted on its input (a dossier code allocated, a wallet filed), and the input was
/// dead-lettered with none of it announced. A submission that leaves its outputs no room
/// below the topics' limit is now refused at the door, before the stage sees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submission_whose_outputs_would_not_fit_is_dead_lettered_before_the_stage_acts() {
    let (_topics, portal) = apache_kafka(1).await;
    let mut inputs = submissions(0..2);
    for i in 0..49 {
        inputs[0]
            .dossier
            .form_fields
            .insert(format!("note-{i}"), "x".repeat(4_000));
    }
    publish(&portal, &inputs).await;
    // The worker may write a little more than the large submission: the submission fits
    // there, what a stage adds to it does not.
    let large = Codec::embedded()
        .expect("codec")
        .encode(&inputs[0])
        .expect("encodes")
        .len();
    let mut kafka = portal.clone();
    kafka
        .producer
        .insert("message.max.bytes".into(), (large + 200).to_string());

    let acted = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (stop, shutdown) = Shutdown::channel();
    let stage = Arc::new(Acting { acted: acted.clone() });
    let worker = tokio::spawn(motcua_runtime::run(
        stage,
        Codec::embedded().expect("codec"),
        RuntimeConfig::new(kafka.clone()),
        shutdown,
    ));
    let reader = Collector::start(&kafka, &[Topic::Accepted, Topic::DeadLetter]);
    let both = reader
        .wait_for(Duration::from_secs(60), |r| {
            r.iter().filter(|m| m.topic == Topic::Accepted).count() >= 1
                && r.iter().filter(|m| m.topic == Topic::DeadLetter).count() >= 1
        })
        .await;
    stop.send(true).expect("stop");
    let summary = worker
        .await
        .expect("worker")
        .expect("the worker runs until told to stop");
    assert!(both, "an output and a dead letter: {summary:?}");
    let dead: Vec<_> = reader
        .snapshot()
        .into_iter()
        .filter_map(|m| match m.event {
            Some(AnyEvent::DeadLetter(d)) => Some(d),
            _ => None,
        })
        .collect();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].reason_code, "MESSAGE_TOO_LARGE", "{}", dead[0].reason);
    assert_eq!(
        *acted.lock().expect("acted"),
        vec!["submission-1".to_owned()],
        "the stage acted on the submission whose outputs could not be produced"
    );
}

/// Announces each submission as intake does: a "received" status, and the accepted event
/// the next stage acts on.
struct Announcing;

impl Stage for Announcing {
    type Input = DossierSubmitted;

    fn name(&self) -> &'static str {
        "announcing"
    }

    async fn handle_batch(&self, batch: &[Envelope<DossierSubmitted>]) -> Result<Vec<Outcome>, StageError> {
        let forwarded = Forward { work: Duration::ZERO }.handle_batch(batch).await?;
        Ok(batch
            .iter()
            .zip(forwarded)
            .map(|(e, forward)| {
                let Outcome::Emit(mut events) = forward else {
                    unreachable!("Forward emits")
                };
                let AnyEvent::Accepted(a) = &events[0] else {
                    unreachable!("an accepted event")
                };
                let received = motcua_schemas::DossierStatusChanged::about(
                    a,
                    &e.event.event_id,
                    "announcing",
                    "received",
                    motcua_schemas::DossierStatus::Received,
                    e.event.published_at,
                );
                events.insert(0, received.into());
                Outcome::Emit(events)
            })
            .collect())
    }
}

/// Issue 33 (the kill test's 1-in-10 failure, and the three-node outage's): a stage's
/// status and the event the next stage acts on went out together, each on its own. When
/// the status's delivery lagged (its partition's leader lost, or the worker killed between
/// the two), the next stage acted and its own status reached `dossier.status` first:
/// "supplement requested" before "received", and the dossier looked as if nobody had
/// asked for its papers. The status must be acknowledged before the event goes out.
/// In-process cluster: the status topic's leader is taken down while the rest runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_stage_hears_of_a_dossier_only_once_its_status_is_acknowledged() {
    let broker = motcua_kafka::EmbeddedBroker::start(2).expect("in-process cluster");
    let kafka = KafkaConfig::with_brokers(broker.bootstrap_servers());
    broker.create_topics(&kafka, 1).expect("topics");
    let cluster = broker.cluster();
    for t in Topic::ALL {
        let leader = if t == Topic::Status { 2 } else { 1 };
        cluster
            .partition_leader(&kafka.topic(t), 0, Some(leader))
            .expect("leader");
    }
    publish(&kafka, &submissions(0..1)).await;
    cluster.broker_down(2).expect("status leader down");

    let (stop, shutdown) = Shutdown::channel();
    let worker = tokio::spawn(motcua_runtime::run(
        Arc::new(Announcing),
        Codec::embedded().expect("codec"),
        RuntimeConfig::new(kafka.clone()),
        shutdown,
    ));
    let accepted = Collector::start(&kafka, &[Topic::Accepted]);
    let early = accepted.wait_for(Duration::from_secs(8), |r| !r.is_empty()).await;
    cluster.broker_up(2).expect("status leader up");
    let statuses = Collector::start(&kafka, &[Topic::Status]);
    let both = accepted.wait_for(Duration::from_secs(30), |r| !r.is_empty()).await
        && statuses.wait_for(Duration::from_secs(30), |r| !r.is_empty()).await;
    stop.send(true).expect("stop");
    let summary = worker
        .await
        .expect("worker")
        .expect("the worker runs until told to stop");
    assert!(
        !early,
        "the accepted event went out while its status was still unacknowledged: {summary:?}"
    );
    assert!(both, "once the status was acknowledged, both went out: {summary:?}");
}
