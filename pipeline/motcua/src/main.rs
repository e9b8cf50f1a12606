//! `motcua`: run a stage worker, administer topics, publish dossiers, or try the whole
//! thing with `motcua demo`.

mod config;
mod demo;
mod portal_json;
mod publish;
mod registry;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use motcua_reference::Reference;
use motcua_runtime::Shutdown;
use motcua_schemas::Codec;
use tracing::{error, info};

use crate::config::Config;

/// motcua — a Kafka pipeline for administrative-procedure dossiers of one-stop public
/// service centers.
///
/// Portals publish submissions to `dossier.submitted`; stateless stage workers (scale =
/// more replicas of a stage) receive, verify, bill, route and return results. Every
/// worker reads a TOML config file (`--config`), then `MOTCUA_<SECTION>__<KEY>`
/// environment variables (e.g. `MOTCUA_KAFKA__BROKERS=k1:9092`), then flags.
#[derive(Debug, Parser)]
#[command(name = "motcua", version, propagate_version = true)]
struct Cli {
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one stage worker until SIGTERM/SIGINT (then drain, commit, exit 0).
    ///
    /// Exit status: 0 after a clean shutdown, 1 on a fatal error (broker delivery
    /// failure, database unavailable beyond the retry budget, bad configuration); the
    /// supervisor restarts it, and uncommitted input is processed again, idempotently.
    Run {
        #[arg(value_enum)]
        stage: StageName,
        #[command(flatten)]
        common: Common,
    },
    /// Administer the topics of the flow.
    Topics {
        #[command(subcommand)]
        command: TopicsCommand,
    },
    /// Publish dossiers from a JSON-lines file (one dossier per line) as Avro
    /// `dossier.submitted` events — what a portal or a tester does.
    ///
    /// Lines that are not valid dossiers are reported with their line number and not
    /// published; the exit status is 1 if any line was refused.
    Publish {
        /// The JSON-lines file (`-` for standard input). `motcua generate` writes one.
        file: PathBuf,
        /// Check every line, publish nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Write generated, realistic dossiers as JSON lines (input for `publish`).
    Generate {
        /// How many dossiers.
        #[arg(long, default_value_t = 100)]
        count: u64,
        /// Seed: the same seed gives the same dossiers.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// 2-digit province code of the receiving centers (22 = Quảng Ninh).
        #[arg(long, default_value = "22")]
        province: String,
        /// Share of deliberately defective dossiers (0.0–1.0).
        #[arg(long, default_value_t = 0.0)]
        defect_rate: f64,
        /// Draw applicants from the synthetic registry world of this size (the one
        /// `motcua registry-sim` serves with the same --seed and --province), so they
        /// verify; 0 invents applicants no registry knows.
        #[arg(long, default_value_t = 0)]
        world_citizens: u64,
    },
    /// Try motcua on one machine: starts an in-process Kafka broker and an embedded
    /// store, publishes generated submissions, runs intake, prints a summary.
    Demo(demo::DemoArgs),
    /// Serve the registry gateway API (population, land, business) from a synthetic,
    /// seeded world, with injectable faults — a stand-in for the national databases.
    RegistrySim(registry::SimArgs),
    /// Administer a PostgreSQL replica of the registries.
    Registry {
        #[command(subcommand)]
        command: registry::RegistryCommand,
    },
    /// Simulate the payment gateway: confirm bills from `payment.requested` after a
    /// delay, failing, duplicating and reordering some confirmations.
    GatewaySim {
        #[arg(long, default_value_t = 50)]
        min_delay_ms: u64,
        #[arg(long, default_value_t = 2_000)]
        max_delay_ms: u64,
        /// Share of bills whose first payment attempt fails.
        #[arg(long, default_value_t = 0.05)]
        failure_rate: f64,
        /// Share of confirmations sent twice.
        #[arg(long, default_value_t = 0.05)]
        duplicate_rate: f64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[command(flatten)]
        common: Common,
    },
    /// Simulate the back office: decide routed dossiers (some after a supplement
    /// request, some late) and publish `dossier.decided`.
    BackofficeSim {
        #[arg(long, default_value_t = 0.08)]
        supplement_rate: f64,
        #[arg(long, default_value_t = 0.03)]
        late_rate: f64,
        #[arg(long, default_value_t = 0.05)]
        refusal_rate: f64,
        #[command(flatten)]
        common: Common,
    },
    /// Make a new Ed25519 signing key for the result stage: the seed goes to FILE, the
    /// public key (to publish) to standard output.
    ResultKey {
        /// Where to write the secret seed (created with mode 0600).
        file: PathBuf,
    },
    /// List bills against their confirmations (reconciliation with the gateway).
    Reconcile {
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Debug, Subcommand)]
enum TopicsCommand {
    /// Create every topic of the flow (existing ones are left alone).
    Create {
        #[arg(long, default_value_t = 12)]
        partitions: i32,
        #[arg(long, default_value_t = 3)]
        replication: i32,
        #[command(flatten)]
        common: Common,
    },
    /// List the topics of the flow with their schema subjects and ids.
    List,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum StageName {
    /// Validate submissions, give them their official dossier code.
    Intake,
    /// Check dossiers against the population, land and business registries.
    Verify,
    /// Give paid dossiers their competent authority, desk and legal due time
    /// (routing tables reload on SIGHUP or when their files change).
    Route,
    /// Bill verified dossiers and settle gateway confirmations.
    Payment,
    /// Deliver signed results of decided dossiers to the applicants' e-wallets.
    Result,
    /// Project every event into PostgreSQL, serve the status API, warn of deadlines.
    Track,
}

#[derive(Debug, Args)]
struct Common {
    /// TOML configuration file.
    #[arg(long, short, env = "MOTCUA_CONFIG")]
    config: Option<PathBuf>,
    /// Kafka bootstrap servers (overrides kafka.brokers).
    #[arg(long)]
    brokers: Option<String>,
    /// Database URL (overrides database.url): postgres://… or sqlite://…
    #[arg(long)]
    database_url: Option<String>,
}

impl Common {
    fn load(&self) -> Result<Config> {
        let mut cfg = Config::load(self.config.as_deref())?;
        if let Some(b) = &self.brokers {
            cfg.kafka.brokers = b.clone();
        }
        if let Some(u) = &self.database_url {
            cfg.database.url = u.clone();
        }
        cfg.validate()?;
        Ok(cfg)
    }
}

fn init_logging(format: LogFormat, default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = match cli.command {
        // The demo dead-letters malformed input on purpose: its summary reports them.
        Command::Demo(_) => "error",
        Command::Generate { .. } | Command::Publish { .. } => "warn",
        _ => "info",
    };
    init_logging(cli.log_format, default_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(command: Command) -> Result<ExitCode> {
    match command {
        Command::Run { stage, common } => run_stage(stage, &common).await,
        Command::Topics {
            command:
                TopicsCommand::Create {
                    partitions,
                    replication,
                    common,
                },
        } => {
            let cfg = common.load()?;
            let created = cfg.kafka.create_topics(partitions, replication).await?;
            for t in motcua_schemas::Topic::ALL {
                let name = cfg.kafka.topic(t);
                let state = if created.contains(&name) { "created" } else { "exists" };
                println!("{name:<24} {state}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Topics {
            command: TopicsCommand::List,
        } => {
            let codec = Codec::embedded()?;
            println!("{:<20} {:<26} {:>7} {:>9}", "topic", "subject", "version", "schema id");
            for t in motcua_schemas::Topic::ALL {
                let v = codec.schemas().latest(t);
                println!("{:<20} {:<26} {:>7} {:>9}", t.name(), v.subject, v.version, v.id);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Publish { file, dry_run, common } => {
            let cfg = common.load()?;
            publish::publish_file(&cfg, &file, dry_run).await
        }
        Command::Generate {
            count,
            seed,
            province,
            defect_rate,
            world_citizens,
        } => {
            publish::generate(count, seed, &province, defect_rate, world_citizens)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo(args) => demo::run(args).await,
        Command::RegistrySim(args) => registry::simulate(args).await,
        Command::GatewaySim {
            min_delay_ms,
            max_delay_ms,
            failure_rate,
            duplicate_rate,
            seed,
            common,
        } => {
            if !(0.0..=1.0).contains(&failure_rate) || !(0.0..=1.0).contains(&duplicate_rate) {
                anyhow::bail!("--failure-rate and --duplicate-rate must be between 0 and 1");
            }
            let cfg = common.load()?;
            let sim = motcua_payment::gateway_sim::GatewaySimConfig {
                min_delay_ms,
                max_delay_ms,
                failure_rate,
                duplicate_rate,
                seed,
            };
            let stats = motcua_payment::gateway_sim::run(cfg.kafka.clone(), sim, Shutdown::on_signals()).await?;
            info!(?stats, "gateway simulator stopped");
            Ok(ExitCode::SUCCESS)
        }
        Command::BackofficeSim {
            supplement_rate,
            late_rate,
            refusal_rate,
            common,
        } => {
            for (name, v) in [
                ("supplement", supplement_rate),
                ("late", late_rate),
                ("refusal", refusal_rate),
            ] {
                if !(0.0..=1.0).contains(&v) {
                    anyhow::bail!("--{name}-rate {v} must be between 0 and 1");
                }
            }
            let cfg = common.load()?;
            let reference = Reference::embedded()?;
            let tables = motcua_routing::RoutingTables::load(&reference, &cfg.routing.files()?)?;
            let office = motcua_result::backoffice::BackOffice::new(
                tables,
                motcua_result::backoffice::BackOfficeConfig {
                    supplement_rate,
                    late_rate,
                    refusal_rate,
                },
            );
            motcua_runtime::run(
                Arc::new(office),
                Codec::embedded()?,
                cfg.runtime(),
                Shutdown::on_signals(),
            )
            .await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::ResultKey { file } => {
            use rand::RngCore;
            let mut seed = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut seed);
            let hex: String = seed.iter().map(|b| format!("{b:02x}")).collect();
            write_secret(&file, &hex).with_context(|| format!("cannot write {}", file.display()))?;
            let signer = motcua_result::Signer25519::from_hex_seed(&hex, "").map_err(anyhow::Error::msg)?;
            println!("{}", signer.public_key_hex());
            Ok(ExitCode::SUCCESS)
        }
        Command::Reconcile { common } => {
            let cfg = common.load()?;
            let store = motcua_store::Store::connect(&cfg.database.url).await?;
            let bills = store.bills().await?;
            println!(
                "{:<20} {:<38} {:>12} {:<8} {:<24}",
                "bill", "dossier", "amount VND", "status", "gateway transaction"
            );
            let (mut paid, mut pending, mut expired, mut collected) = (0, 0, 0, 0i64);
            for b in &bills {
                println!(
                    "{:<20} {:<38} {:>12} {:<8} {:<24}",
                    b.bill_reference,
                    b.dossier_id,
                    b.amount_vnd,
                    b.status,
                    b.gateway_tx.as_deref().unwrap_or("-")
                );
                match b.status.as_str() {
                    "paid" => {
                        paid += 1;
                        collected += b.amount_vnd;
                    }
                    "pending" => pending += 1,
                    _ => expired += 1,
                }
            }
            println!(
                "{} bills: {paid} paid ({collected} VND), {pending} pending, {expired} expired",
                bills.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Registry { command } => registry::admin(command).await,
    }
}

async fn run_stage(stage: StageName, common: &Common) -> Result<ExitCode> {
    // Signals first: a SIGTERM while still starting (connecting to the store, joining
    // the group) must end the worker cleanly, not kill it.
    let shutdown = Shutdown::on_signals();
    let cfg = common.load()?;
    if let Some(addr) = cfg.metrics_addr()? {
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .with_http_listener(addr)
            .install()
            .with_context(|| format!("cannot serve Prometheus metrics on {addr}"))?;
        info!(%addr, "Prometheus metrics at /metrics");
    }
    let reference = Arc::new(
        Reference::load(
            cfg.reference.units_file.as_deref(),
            cfg.reference.procedures_file.as_deref(),
        )
        .context("loading reference data")?,
    );
    let codec = Codec::embedded()?;
    let store = motcua_store::Store::connect(&cfg.database.url).await?;
    let summary = match stage {
        StageName::Intake => {
            let intake = Arc::new(motcua_intake::Intake::new(reference, store.clone()));
            motcua_runtime::run(intake, codec, cfg.runtime(), shutdown).await
        }
        StageName::Verify => {
            let runtime = cfg.runtime();
            let registries = registry::from_config(&cfg).await?;
            let caller = format!("verify/{}", runtime.instance_id);
            let verify = Arc::new(motcua_verify::Verify::new(
                registries,
                reference,
                store.clone(),
                codec.clone(),
                caller,
                cfg.verify.policy(),
            ));
            let mut retrier = motcua_verify::Retrier::new(
                verify.clone(),
                cfg.kafka.clone(),
                &format!("motcua-verify-retrier-{}", runtime.instance_id),
            )?;
            retrier.poll = std::time::Duration::from_millis(cfg.verify.retry_poll_ms);
            let (summary, retried) = tokio::join!(
                motcua_runtime::run(verify, codec, runtime, shutdown.clone()),
                retrier.run(shutdown)
            );
            info!(?retried, "retrier stopped");
            summary
        }
        StageName::Payment => {
            let fees = motcua_payment::FeeSchedule::embedded().map_err(anyhow::Error::msg)?;
            let payment = Arc::new(motcua_payment::Payment::new(store.clone(), codec.clone(), fees));
            let expiry = tokio::spawn(expire_bills(
                payment.clone(),
                cfg.kafka.clone(),
                codec.clone(),
                shutdown.clone(),
            ));
            let summary = motcua_runtime::run(payment, codec, cfg.runtime(), shutdown).await;
            expiry.abort();
            summary
        }
        StageName::Result => {
            let file = cfg.result.signing_key_file.as_ref().context(
                "result.signing_key_file is required: the result stage signs documents (make a key with `motcua result-key FILE`)",
            )?;
            let seed = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
            let signer = motcua_result::Signer25519::from_hex_seed(&seed, &cfg.result.signing_key_id)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            info!(public_key = %signer.public_key_hex(), key_id = %signer.key_id(), "signing results");
            motcua_runtime::run(
                Arc::new(motcua_result::ResultStage::new(signer)),
                codec,
                cfg.runtime(),
                shutdown,
            )
            .await
        }
        StageName::Track => {
            if !cfg.database.url.starts_with("postgres") {
                anyhow::bail!(
                    "the track stage needs PostgreSQL (its deadline warnings do): \
                     set database.url to postgres://… (SQLite serves only the embedded demo)"
                );
            }
            let track = Arc::new(motcua_track::Track::connect(&cfg.database.url).await?);
            let pool = track.postgres().context("the track stage needs PostgreSQL")?.clone();
            let api = if cfg.track.api_listen.is_empty() {
                None
            } else {
                let addr: std::net::SocketAddr = cfg
                    .track
                    .api_listen
                    .parse()
                    .with_context(|| format!("track.api_listen = '{}' is not an address", cfg.track.api_listen))?;
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot serve the status API on {addr}"))?;
                info!(%addr, "status API");
                let router = motcua_track::api::router(pool.clone());
                Some(tokio::spawn(async move {
                    if let Err(e) = axum::serve(listener, router).await {
                        error!(error = %e, "status API stopped");
                    }
                }))
            };
            let calendar = motcua_routing::RoutingTables::load(&reference, &cfg.routing.files()?)?
                .calendar()
                .clone();
            let producer: Arc<rdkafka::producer::FutureProducer> =
                Arc::new(cfg.kafka.producer_config("motcua-track-warnings").create()?);
            let (kafka, warn_codec) = (cfg.kafka.clone(), codec.clone());
            let warn_cfg = motcua_track::deadline::WarningConfig::new(cfg.track.warn_within_working_hours);
            let warn_shutdown = shutdown.clone();
            let warnings = tokio::spawn(async move {
                let publish = move |w: Vec<motcua_schemas::DossierStatusChanged>| {
                    let (producer, kafka, codec) = (producer.clone(), kafka.clone(), warn_codec.clone());
                    async move {
                        let events: Vec<motcua_schemas::AnyEvent> = w.into_iter().map(Into::into).collect();
                        motcua_runtime::publish::deliver(&producer, &kafka, &codec, &events)
                            .await
                            .map_err(|e| motcua_runtime::error_chain(&e))
                    }
                };
                motcua_track::deadline::run_warnings(pool, warn_cfg, &calendar, publish, warn_shutdown).await
            });
            let summary = motcua_runtime::run(track, codec, cfg.runtime(), shutdown).await;
            if let Some(api) = api {
                api.abort();
            }
            match warnings.await {
                Ok(Ok(n)) => info!(warnings = n, "deadline warnings stopped"),
                Ok(Err(e)) => error!(error = %motcua_runtime::error_chain(&e), "deadline warnings failed"),
                Err(e) => error!(error = %e, "deadline warnings task"),
            }
            summary
        }
        StageName::Route => {
            let route = Arc::new(motcua_route::Route::new(reference, cfg.routing.files()?, store.clone()).await?);
            let watcher = tokio::spawn(watch_routing_files(route.clone(), cfg.routing.reload_check_s));
            let summary = motcua_runtime::run(route, codec, cfg.runtime(), shutdown).await;
            watcher.abort();
            summary
        }
    };
    store.close().await;
    let summary = summary?;
    info!(
        consumed = summary.consumed,
        processed = summary.processed,
        dead_lettered = summary.dead_lettered,
        "stopped cleanly"
    );
    Ok(ExitCode::SUCCESS)
}

/// Reloads the routing tables on SIGHUP, and when a configured file's modification time
/// changes. A file that does not load is reported and the current tables stay.
async fn watch_routing_files(route: Arc<motcua_route::Route>, check_every_s: u64) {
    let files = route.files().clone();
    let paths: Vec<PathBuf> = [files.departments, files.desks, files.holidays]
        .into_iter()
        .flatten()
        .collect();
    let stamp = |paths: &[PathBuf]| -> Vec<Option<std::time::SystemTime>> {
        paths
            .iter()
            .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
            .collect()
    };
    let mut last = stamp(&paths);
    #[cfg(unix)]
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let period = std::time::Duration::from_secs(check_every_s.max(1));
    loop {
        #[cfg(unix)]
        let hangup = async {
            match hup.as_mut() {
                Some(h) => {
                    h.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let hangup = std::future::pending::<()>();
        let by_signal = tokio::select! {
            _ = hangup => true,
            _ = tokio::time::sleep(period) => false,
        };
        let now = stamp(&paths);
        let changed = check_every_s > 0 && now != last;
        if !(by_signal || changed) {
            continue;
        }
        last = now;
        match route.reload().await {
            Ok(generation) => info!(generation, by_signal, "routing tables reloaded"),
            Err(e) => {
                error!(error = %motcua_runtime::error_chain(&e), "routing tables not reloaded; keeping the current ones")
            }
        }
    }
}

/// Every minute: expire unpaid bills past their validity and publish their status.
async fn expire_bills(
    payment: Arc<motcua_payment::Payment>,
    kafka: motcua_kafka::KafkaConfig,
    codec: Codec,
    mut shutdown: Shutdown,
) {
    let producer: rdkafka::producer::FutureProducer = match kafka.producer_config("motcua-payment-expiry").create() {
        Ok(p) => p,
        Err(e) => {
            error!(error = %e, "bill expiry disabled: cannot create a producer");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tokio::time::sleep(std::time::Duration::from_secs(60)) => {}
        }
        let due = match payment.expiring(motcua_reference::civil::now_ms()).await {
            Ok(due) => due,
            Err(e) => {
                error!(error = %motcua_runtime::error_chain(&e), "reading expiring bills failed; next round retries");
                continue;
            }
        };
        // Announce first, then mark: a failure in between announces again (same event ids).
        for (reference, event) in due {
            if let Err(e) = motcua_runtime::publish::deliver(&producer, &kafka, &codec, &[event]).await {
                error!(error = %motcua_runtime::error_chain(&e), "publishing a bill expiry failed; next round retries");
                break;
            }
            if let Err(e) = payment.mark_expired(&reference).await {
                error!(error = %motcua_runtime::error_chain(&e), "marking a bill expired failed; next round retries");
                break;
            }
            metrics::counter!("motcua_payment_expired_total").increment(1);
        }
    }
}

fn write_secret(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options.open(path)?;
    f.write_all(text.as_bytes())?;
    f.write_all(b"\n")
}
