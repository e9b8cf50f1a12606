//! `motcua demo`: the pipeline's intake on one machine, with nothing to install.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use motcua_intake::generate::{Defect, Generator};
use motcua_kafka::{EmbeddedBroker, KafkaConfig};
use motcua_reference::Reference;
use motcua_runtime::{RuntimeConfig, Shutdown};
use motcua_schemas::{AnyEvent, Codec, DossierStatus, Topic};
use motcua_store::Store;
use rand::{Rng, SeedableRng};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::Message;

use crate::publish::{now_ms, Publisher};

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// How many submissions to publish.
    #[arg(long, default_value_t = 5_000)]
    dossiers: u64,
    /// Seed of the generated dossiers.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// 2-digit code of the province whose centers receive (22 = Quảng Ninh).
    #[arg(long, default_value = "22")]
    province: String,
    /// Share of submissions with a defect (missing paper, bad citizen ID, unknown or
    /// abolished procedure, unknown center).
    #[arg(long, default_value_t = 0.04)]
    defect_rate: f64,
    /// Share of messages that are not Avro at all (a portal publishing JSON by mistake).
    #[arg(long, default_value_t = 0.005)]
    malformed_rate: f64,
    /// Partitions per topic.
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    /// Use this Kafka cluster instead of the in-process broker.
    #[arg(long)]
    brokers: Option<String>,
    /// Use this database instead of an embedded SQLite file in a temporary directory.
    #[arg(long)]
    database_url: Option<String>,
    /// Give up waiting for the pipeline after this many seconds.
    #[arg(long, default_value_t = 300)]
    timeout_secs: u64,
}

#[derive(Debug, Default)]
struct Tally {
    accepted: u64,
    rejected: BTreeMap<String, u64>,
    rejected_dossiers: u64,
    supplement: BTreeMap<String, u64>,
    supplement_dossiers: u64,
    dead_letters: BTreeMap<String, u64>,
    dead_lettered: u64,
    sample_codes: Vec<String>,
}

impl Tally {
    fn outcomes(&self) -> u64 {
        self.accepted + self.rejected_dossiers + self.supplement_dossiers + self.dead_lettered
    }
}

pub(crate) async fn run(args: DemoArgs) -> Result<ExitCode> {
    if !(0.0..=1.0).contains(&args.defect_rate) || !(0.0..=1.0).contains(&args.malformed_rate) {
        bail!("--defect-rate and --malformed-rate must be between 0 and 1");
    }
    if args.dossiers == 0 {
        bail!("--dossiers must be at least 1");
    }
    let reference = Arc::new(Reference::embedded()?);
    let province = reference
        .units
        .province(&args.province)
        .with_context(|| {
            format!(
                "--province '{}' is not one of the 34 province codes (e.g. 22, 01, 79)",
                args.province
            )
        })?
        .clone();

    // The broker: the in-process one unless pointed at a cluster. It must outlive the run.
    let embedded = match &args.brokers {
        Some(_) => None,
        None => Some(EmbeddedBroker::start(1)?),
    };
    let brokers = match (&args.brokers, &embedded) {
        (Some(b), _) => b.clone(),
        (None, Some(e)) => e.bootstrap_servers().to_owned(),
        (None, None) => unreachable!(),
    };
    let mut kafka = KafkaConfig::with_brokers(brokers.clone());
    // One run's topics never mix with another's on a shared cluster.
    if args.brokers.is_some() {
        kafka.topic_prefix = format!("demo-{}.", now_ms());
    }
    kafka.validate()?;
    match &embedded {
        Some(e) => e.create_topics(&kafka, args.partitions)?,
        None => {
            kafka.create_topics(args.partitions, 1).await?;
        }
    }

    let tmp = tempfile::tempdir().context("creating a temporary directory")?;
    let db_url = args
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", tmp.path().join("motcua-demo.db").display()));
    let store = Store::connect(&db_url).await?;

    println!(
        "motcua demo — {} (province {}), {} submissions, seed {}",
        province.name, province.code, args.dossiers, args.seed
    );
    println!(
        "  broker     {} ({}), {} partitions per topic",
        if embedded.is_some() {
            "in-process librdkafka mock cluster"
        } else {
            "external cluster"
        },
        brokers,
        args.partitions
    );
    println!("  store      {} ({})", store.backend(), motcua_store::redact(&db_url));

    // Publish the backlog first, so intake's throughput is measured on its own.
    let codec = Codec::embedded()?;
    let mut publisher = Publisher::new(&kafka, codec.clone())?;
    let mut g = Generator::new(&reference, &province.code, args.seed).context("generator")?;
    let mut rng = rand::rngs::SmallRng::seed_from_u64(args.seed ^ 0xdeadbeef);
    let (mut valid, mut defective, mut malformed) = (0u64, 0u64, 0u64);
    let start_ms = now_ms();
    let publish_started = Instant::now();
    for i in 0..args.dossiers {
        let at = start_ms - (args.dossiers - i) as i64 * 50;
        if rng.gen_bool(args.malformed_rate) {
            let junk = format!("{{\"dossier_id\": \"junk-{i}\", \"note\": \"JSON where Avro belongs\"}}");
            publisher
                .send_raw(
                    &kafka.topic(Topic::Submitted),
                    format!("junk-{i}").as_bytes(),
                    junk.as_bytes(),
                    None,
                )
                .await?;
            malformed += 1;
        } else if rng.gen_bool(args.defect_rate) {
            let d = Defect::ALL[rng.gen_range(0..Defect::ALL.len())];
            publisher.send(&g.defective(at, d)).await?;
            defective += 1;
        } else {
            publisher.send(&g.valid(at)).await?;
            valid += 1;
        }
    }
    publisher.flush().await?;
    let publish_secs = publish_started.elapsed().as_secs_f64();
    println!(
        "  published  {} in {:.2} s ({:.0}/s): {valid} valid, {defective} defective, {malformed} malformed",
        args.dossiers,
        publish_secs,
        args.dossiers as f64 / publish_secs
    );

    // Watch what intake emits, as a downstream consumer would.
    let watcher: StreamConsumer = kafka
        .consumer_config(
            &format!("motcua-demo-watch-{}", std::process::id()),
            "motcua-demo-watch",
        )
        .create()?;
    watcher.subscribe(&[&kafka.topic(Topic::Status), &kafka.topic(Topic::DeadLetter)])?;
    // Join the watcher's group before intake starts, so the time from the first outcome
    // to the last is intake's own throughput as a downstream consumer sees it.
    let join_deadline = Instant::now() + Duration::from_secs(60);
    while watcher.assignment()?.count() == 0 && Instant::now() < join_deadline {
        let _ = tokio::time::timeout(Duration::from_millis(100), watcher.recv()).await;
    }

    let (stop, shutdown) = Shutdown::channel();
    let mut rt = RuntimeConfig::new(kafka.clone());
    rt.instance_id = "demo".into();
    let intake = Arc::new(motcua_intake::Intake::new(reference.clone(), store.clone()));
    let intake_started = Instant::now();
    let worker = tokio::spawn(motcua_runtime::run(intake, codec.clone(), rt, shutdown));

    let mut tally = Tally::default();
    let mut first_outcome: Option<Instant> = None;
    let deadline = Instant::now() + Duration::from_secs(args.timeout_secs);
    let status_topic = kafka.topic(Topic::Status);
    while tally.outcomes() < args.dossiers {
        if worker.is_finished() {
            break;
        }
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            break;
        };
        let m = match tokio::time::timeout(left.min(Duration::from_secs(1)), watcher.recv()).await {
            Err(_) => continue,
            Ok(m) => m?,
        };
        let Some(payload) = m.payload() else { continue };
        first_outcome.get_or_insert_with(Instant::now);
        let topic = if m.topic() == status_topic {
            Topic::Status
        } else {
            Topic::DeadLetter
        };
        match AnyEvent::decode(&codec, topic, payload)? {
            AnyEvent::Status(s) => match s.status {
                DossierStatus::Received => {
                    tally.accepted += 1;
                    if tally.sample_codes.len() < 3 {
                        tally.sample_codes.extend(s.dossier_code);
                    }
                }
                DossierStatus::RejectedAtReception => {
                    tally.rejected_dossiers += 1;
                    for r in s.reasons {
                        *tally.rejected.entry(r.code).or_default() += 1;
                    }
                }
                DossierStatus::SupplementRequested => {
                    tally.supplement_dossiers += 1;
                    for r in s.reasons {
                        *tally.supplement.entry(r.code).or_default() += 1;
                    }
                }
                _ => {}
            },
            AnyEvent::DeadLetter(d) => {
                tally.dead_lettered += 1;
                *tally.dead_letters.entry(d.reason_code).or_default() += 1;
            }
            _ => {}
        }
    }
    let finished = Instant::now();
    let first = first_outcome.unwrap_or(finished);
    let join_secs = (first - intake_started).as_secs_f64();
    let intake_secs = (finished - first).as_secs_f64().max(1e-3);
    let _ = stop.send(true);
    let summary = worker.await.context("intake task")??;
    let codes = store.count_codes().await?;
    store.close().await;

    let fmt = |m: &BTreeMap<String, u64>| m.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ");
    // The worker's own busy time (first message in → last output acknowledged) is the
    // throughput figure; the watcher's view adds its fetch latency.
    let busy = summary.busy.map_or(intake_secs, |d| d.as_secs_f64().max(1e-3));
    println!(
        "  intake     {} messages in {:.2} s → {:.0} dossiers/s (consume, validate, allocate code, produce, \
         acknowledge; first outcome {:.1} s after start, incl. joining the consumer group)",
        summary.consumed,
        busy,
        summary.consumed as f64 / busy,
        join_secs
    );
    println!(
        "  accepted   {:>6}   e.g. {}",
        tally.accepted,
        tally.sample_codes.join(", ")
    );
    println!("  rejected   {:>6}   {}", tally.rejected_dossiers, fmt(&tally.rejected));
    println!(
        "  supplement {:>6}   {}",
        tally.supplement_dossiers,
        fmt(&tally.supplement)
    );
    println!("  dead-letter{:>6}   {}", tally.dead_lettered, fmt(&tally.dead_letters));
    println!("  codes      {codes:>6}   allocated in the store (one per accepted dossier)");
    if tally.outcomes() != args.dossiers {
        println!(
            "  INCOMPLETE: {} of {} submissions reached an outcome",
            tally.outcomes(),
            args.dossiers
        );
        return Ok(ExitCode::FAILURE);
    }
    if codes != tally.accepted as i64 {
        println!("  MISMATCH: {} codes for {} accepted dossiers", codes, tally.accepted);
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
