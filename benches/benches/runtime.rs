//! Load harness: the runtime's own cost per message, next to raw rdkafka loops over the
//! same messages on the same broker in the same run.
//!
//! `cargo bench -p motcua-benches --bench runtime` (options: `-- --messages 50000
//! --rounds 3 --partitions 4`).
//!
//! The harness starts librdkafka's in-process broker (real TCP) in this process, publishes
//! N generated `dossier.submitted` events once, then runs each variant as its own child
//! process with a fresh consumer group reading all N from the start, in turn, round after
//! round (A B C A B C …), so a drift of the shared machine hits every variant alike:
//!
//! - `raw-bytes`: an rdkafka consume→produce loop that copies the bytes (the floor);
//! - `raw-codec`: the same loop doing the same work as the stage below by hand: decode the
//!   submission, build the accepted event, encode it;
//! - `runtime`: a pass-through stage (the same function from submission to accepted event)
//!   run by `motcua_runtime::run` as a worker runs it: limits check, per-message span,
//!   trace headers, metrics into a Prometheus recorder, delivery-tracked offsets.
//!
//! Each child reports its own process CPU time (user + system, every thread) from its first
//! message received to its last output acknowledged, so start-up and the group join are
//! not counted, and the broker's CPU (in the parent) is not either. CPU time, not wall
//! time, is the headline: the broker shares the two cores.

use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use motcua_benches::harness::{median, raw_loop, send, Measured, Start};
use motcua_kafka::{EmbeddedBroker, KafkaConfig};
use motcua_reference::Reference;
use motcua_runtime::{Envelope, Outcome, RuntimeConfig, Shutdown, Stage, StageError};
use motcua_schemas::{AnyEvent, Codec, DossierAccepted, DossierSubmitted, Event, Topic};
use motcua_simulators::portal::Generator;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

const ROLE: &str = "MOTCUA_BENCH_ROLE";
const VARIANTS: [&str; 3] = ["raw-bytes", "raw-codec", "runtime"];

/// The work both the hand-written loop and the stage do per message.
fn accept(reference: &Reference, s: DossierSubmitted) -> DossierAccepted {
    let procedure = reference
        .catalog
        .get(&s.dossier.procedure_code)
        .map(|p| p.summary())
        .expect("generated dossiers use catalog procedures");
    DossierAccepted {
        event_id: format!("accepted-{}", s.event_id),
        causation_id: s.event_id,
        dossier_code: "H22.BENCH-251202-0001".to_owned(),
        receiving_agency_code: "H22.BENCH".to_owned(),
        received_at: s.dossier.submitted_at,
        procedure,
        dossier: s.dossier,
        traceparent: None,
    }
}

/// The pass-through stage: the same function as `raw-codec`, under the runtime.
struct PassThrough {
    /// Per run (the group is named after the stage, and each run reads from the start).
    name: &'static str,
    reference: Reference,
    target: u64,
    seen: AtomicU64,
    start: OnceLock<Start>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Stage for PassThrough {
    type Input = DossierSubmitted;

    fn name(&self) -> &'static str {
        self.name
    }

    async fn handle_batch(&self, batch: &[Envelope<DossierSubmitted>]) -> Result<Vec<Outcome>, StageError> {
        self.start.get_or_init(Start::now);
        let outcomes = batch
            .iter()
            .map(|e| Outcome::Emit(vec![AnyEvent::Accepted(accept(&self.reference, e.event.clone()))]))
            .collect();
        let seen = self.seen.fetch_add(batch.len() as u64, Ordering::Relaxed) + batch.len() as u64;
        if seen >= self.target {
            // The runtime produces this batch's outputs, waits for their acknowledgements
            // and commits before `run` returns.
            let _ = self.stop.send(true);
        }
        Ok(outcomes)
    }
}

fn runtime_worker(kafka: KafkaConfig, group: &str, messages: u64) -> Measured {
    // What `motcua run` installs: a Prometheus recorder (no listener needed here) and an
    // info-level log subscriber that keeps the per-message processing spans (for an OTLP
    // exporter) out of the logs, as the binary's does.
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .expect("recorder");
    let filter = format!(
        "{},{}=off",
        std::env::var("MOTCUA_BENCH_LOG").unwrap_or_else(|_| "info".to_owned()),
        motcua_runtime::telemetry::PROCESS_SPAN_TARGET
    );
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio");
    rt.block_on(async move {
        let (stop, shutdown) = Shutdown::channel();
        let stage = Arc::new(PassThrough {
            name: Box::leak(group.to_owned().into_boxed_str()),
            reference: Reference::embedded().expect("reference"),
            target: messages,
            seen: AtomicU64::new(0),
            start: OnceLock::new(),
            stop,
        });
        let mut cfg = RuntimeConfig::new(kafka);
        cfg.instance_id = group.to_owned();
        let codec = Codec::embedded().expect("schemas");
        let summary = motcua_runtime::run(stage.clone(), codec, cfg, shutdown)
            .await
            .expect("runtime");
        assert_eq!(summary.produced, messages, "every input produced one output");
        stage.start.get().expect("handled a batch").until_now(summary.processed)
    })
}

fn child(role: &str) {
    let env = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} is set by the harness"));
    let kafka = KafkaConfig::with_brokers(env("MOTCUA_BENCH_BROKERS"));
    // Each variant and round has its own group (and so reads every message from the start).
    let group = env("MOTCUA_BENCH_GROUP");
    let messages: u64 = env("MOTCUA_BENCH_MESSAGES").parse().expect("messages");
    let (input, output) = (kafka.topic(Topic::Submitted), kafka.topic(Topic::Accepted));
    let measured = match role {
        "raw-bytes" => raw_loop(&kafka, &group, &[&input], &output, messages, None),
        "raw-codec" => {
            let codec = Codec::embedded().expect("schemas");
            let reference = Reference::embedded().expect("reference");
            let mut transform = |payload: &[u8], out: &mut Vec<u8>| {
                let s: DossierSubmitted = codec.decode(payload).expect("decode");
                codec.encode_into(&accept(&reference, s), out).expect("encode");
            };
            raw_loop(&kafka, &group, &[&input], &output, messages, Some(&mut transform))
        }
        "runtime" => runtime_worker(kafka, &group, messages),
        other => panic!("unknown role {other}"),
    };
    measured.print();
}

struct Options {
    messages: u64,
    rounds: usize,
    partitions: i32,
}

fn options() -> Options {
    let mut o = Options {
        messages: 50_000,
        rounds: 3,
        partitions: 4,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = || args.get(i + 1).unwrap_or_else(|| panic!("{} needs a value", args[i]));
        match args[i].as_str() {
            "--messages" => o.messages = value().parse().expect("--messages: a number"),
            "--rounds" => o.rounds = value().parse().expect("--rounds: a number"),
            "--partitions" => o.partitions = value().parse().expect("--partitions: a number"),
            // What cargo bench passes (`--bench`) and anything else: not ours.
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    o
}

fn publish(kafka: &KafkaConfig, messages: u64) {
    let codec = Codec::embedded().expect("schemas");
    let reference = Reference::embedded().expect("reference");
    let mut generator = Generator::new(&reference, "22", 7).expect("province");
    let producer: ThreadedProducer<DefaultProducerContext> =
        kafka.producer_config("bench-portal").create().expect("producer");
    let topic = kafka.topic(Topic::Submitted);
    for i in 0..messages {
        let s = generator.valid(1_764_036_000_000 + i as i64 * 1000);
        let bytes = codec.encode(&s).expect("encode");
        send(
            &producer,
            BaseRecord::to(&topic).key(s.key().as_bytes()).payload(&bytes[..]),
        );
    }
    producer.flush(Duration::from_secs(60)).expect("flush");
}

fn main() {
    if let Ok(role) = std::env::var(ROLE) {
        return child(&role);
    }
    let o = options();
    let broker = EmbeddedBroker::start(1).expect("broker");
    let kafka = KafkaConfig::with_brokers(broker.bootstrap_servers());
    broker.create_topics(&kafka, o.partitions).expect("topics");
    let t = Instant::now();
    publish(&kafka, o.messages);
    eprintln!(
        "published {} submissions in {:.1} s; {} rounds of {:?}",
        o.messages,
        t.elapsed().as_secs_f64(),
        o.rounds,
        VARIANTS
    );

    let exe = std::env::current_exe().expect("current exe");
    let mut results: Vec<Vec<Measured>> = VARIANTS.iter().map(|_| Vec::new()).collect();
    for round in 0..o.rounds {
        for (v, variant) in VARIANTS.iter().enumerate() {
            let out = Command::new(&exe)
                .env(ROLE, variant)
                .env("MOTCUA_BENCH_BROKERS", broker.bootstrap_servers())
                .env("MOTCUA_BENCH_GROUP", format!("bench-{variant}-{round}"))
                .env("MOTCUA_BENCH_MESSAGES", o.messages.to_string())
                .output()
                .expect("start child");
            let stdout = String::from_utf8_lossy(&out.stdout);
            let m = match Measured::parse(&stdout) {
                Some(m) if out.status.success() => m,
                _ => panic!(
                    "{variant} failed ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                ),
            };
            assert_eq!(m.messages, o.messages, "{variant} handled every message");
            eprintln!(
                "round {round} {variant:>9}: {:.2} µs CPU/message, {:.0} messages/s",
                m.cpu_s * 1e6 / m.messages as f64,
                m.messages as f64 / m.wall_s
            );
            results[v].push(m);
        }
    }

    let per_message = |v: usize| -> Vec<f64> { results[v].iter().map(|m| m.cpu_s * 1e6 / m.messages as f64).collect() };
    // Ratios pair by pair (same round), then their median.
    let ratio = |a: usize, b: usize| median(per_message(a).iter().zip(per_message(b)).map(|(x, y)| x / y).collect());
    println!(
        "\n{} messages × {} rounds, {} partitions (median over rounds; ratios pair by pair)",
        o.messages, o.rounds, o.partitions
    );
    println!("| variant | CPU µs/message (min–max) | messages/s wall | peak RSS MiB | vs raw-bytes | vs raw-codec |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (v, variant) in VARIANTS.iter().enumerate() {
        let cpu = per_message(v);
        let (lo, hi) = (
            cpu.iter().copied().fold(f64::INFINITY, f64::min),
            cpu.iter().copied().fold(0.0, f64::max),
        );
        let wall = median(results[v].iter().map(|m| m.messages as f64 / m.wall_s).collect());
        let rss = results[v].iter().map(|m| m.rss_kib).max().unwrap_or(0) as f64 / 1024.0;
        println!(
            "| {variant} | {:.2} ({lo:.2}–{hi:.2}) | {wall:.0} | {rss:.0} | {:.2}× | {:.2}× |",
            median(cpu.clone()),
            ratio(v, 0),
            ratio(v, 1)
        );
    }
}
