//! `motcua`: run a stage worker, administer topics, publish dossiers, or try the whole
//! thing with `motcua demo`.

mod dlq_cmd;
mod dossiers_cmd;
mod export_cmd;
mod logging;
mod outward_sim;
mod portal_cmd;
mod portal_json;
mod publish;
mod registry;
mod schemas_cmd;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use motcua_reference::Reference;
use motcua_runtime::Shutdown;
use motcua_schemas::Codec;
use tracing::{error, info};

use motcua_wiring::{Config, Launch, STAGES};

/// mimalloc instead of the system allocator: a worker allocates and frees several small
/// buffers per message (decoded strings, envelopes, headers), and glibc's malloc/free were
/// about a quarter of intake's CPU samples (benches/README.md, the cost harness).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
        /// The stage (see the list below).
        #[arg(value_parser = stage_names())]
        stage: String,
        #[command(flatten)]
        common: Common,
    },
    /// The topics' schemas and the Schema Registry: register, check, list, dictionary.
    Schemas {
        #[command(subcommand)]
        command: schemas_cmd::SchemasCommand,
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
    /// Try motcua on one machine: a whole province's centers with every stage over an
    /// in-process Kafka broker and embedded stores, the outside world simulated; prints
    /// a summary and writes a report checked against the database.
    Demo(motcua_demo::DemoArgs),
    /// Write the events of a time range to Parquet files, partitioned by topic and UTC
    /// date (DIR/topic=<topic>/date=<YYYY-MM-DD>/), for DuckDB, pandas or Spark. Reads
    /// by Kafka timestamp, commits no offsets; re-exporting a range replaces its files.
    Export(export_cmd::ExportArgs),
    /// Dead letters: list them by reason, topic, stage, time and dossier, show one, replay
    /// the ones whose cause is fixed (with a loop guard and an audit record of each).
    Dlq {
        #[command(subcommand)]
        command: dlq_cmd::DlqCommand,
    },
    /// Dossiers waiting on a registry (parked) or on an officer (escalated), and an
    /// officer's manual verification of an escalated one.
    Dossiers {
        #[command(subcommand)]
        command: dossiers_cmd::DossiersCommand,
    },
    /// The National Public Service Portal: reconcile what it holds with the status
    /// projection.
    Portal {
        #[command(subcommand)]
        command: portal_cmd::PortalCommand,
    },
    /// Serve the citizens' e-wallet gateway API (result documents filed once per
    /// idempotency key), simulated, with injectable faults.
    WalletSim(outward_sim::OutwardSimArgs),
    /// Serve the National Public Service Portal's status API (changes filed once per
    /// change id), simulated, with injectable faults.
    PortalSim(outward_sim::OutwardSimArgs),
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
    /// Simulate the back office: decide routed dossiers (some late, half of those with a
    /// new appointment first) and publish `dossier.decided` (and `dossier.reappointed`);
    /// ask for papers of some (`dossier.supplement-requested`) and decide those once intake
    /// sends them back with the citizen's supplement.
    BackofficeSim {
        #[arg(long, default_value_t = 0.08)]
        supplement_rate: f64,
        #[arg(long, default_value_t = 0.03)]
        late_rate: f64,
        #[arg(long, default_value_t = 0.05)]
        refusal_rate: f64,
        /// Share of the late dossiers given a new appointment (apology and new date).
        #[arg(long, default_value_t = 0.5)]
        reappoint_rate: f64,
        #[command(flatten)]
        common: Common,
    },
    /// Simulate the citizens behind the portals: read `dossier.status`, bring the papers
    /// a step asked for (some days later, in simulated time) or never, and withdraw a few
    /// dossiers after reception, through `dossier.supplemented` and `dossier.withdrawn`.
    /// Each choice is drawn from the status's id: a redelivered status gets the same answer.
    CitizensSim {
        /// Share of supplement requests answered.
        #[arg(long, default_value_t = 0.7)]
        answer_rate: f64,
        /// Share of received dossiers withdrawn.
        #[arg(long, default_value_t = 0.01)]
        withdraw_rate: f64,
        #[command(flatten)]
        common: Common,
    },
    /// Make a new Ed25519 signing key for the result stage: the seed goes to FILE, the
    /// public key (to publish) to standard output.
    ///
    /// With `--jwks FILE --kid ID` the public key is also added to the issuer's JWK Set
    /// (served by the status API at /.well-known/jwks.json), valid from `--not-before`
    /// until `--expires` (seconds since the epoch): how a key is rotated in.
    ResultKey {
        /// Where to write the secret seed (created with mode 0600).
        file: PathBuf,
        /// The JWK Set to publish the public key in (created if missing).
        #[arg(long, requires = "kid")]
        jwks: Option<PathBuf>,
        /// The key id (result.signing_key_id), never reused.
        #[arg(long, requires = "jwks")]
        kid: Option<String>,
        #[arg(long, requires = "jwks")]
        not_before: Option<i64>,
        #[arg(long, requires = "jwks")]
        expires: Option<i64>,
    },
    /// End a published signing key's validity (rotation, or a compromised key): results
    /// it signed before stay verifiable, nothing it signs after is.
    ResultKeyExpire {
        /// The JWK Set.
        #[arg(long)]
        jwks: PathBuf,
        #[arg(long)]
        kid: String,
        /// Seconds since the epoch.
        #[arg(long)]
        at: i64,
    },
    /// Operators' API keys for the status API.
    ApiKey {
        #[command(subcommand)]
        command: ApiKeyCommand,
    },
    /// Rebuild the status projection from the event log: a track worker under a consumer
    /// group of its own reads every topic from the beginning into an empty database
    /// (`--database-url`), stops at the end of the log and reports events per second.
    ///
    /// Use it for a new projection database, after a migration that adds columns existing
    /// rows cannot fill, or to check the live projection; the live track group's offsets
    /// are not touched, nothing is published.
    Replay {
        /// The consumer group to read under (default `<prefix>motcua-track-replay-<unix ms>`;
        /// delete it afterwards with your Kafka tooling).
        #[arg(long)]
        group: Option<String>,
        /// Fill a projection that already holds events (they are skipped by id).
        #[arg(long)]
        allow_existing: bool,
        #[command(flatten)]
        common: Common,
    },
    /// List bills against their confirmations (reconciliation with the gateway).
    Reconcile {
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Debug, Subcommand)]
enum ApiKeyCommand {
    /// Make a key: its digest is appended to FILE (the worker's track.api_keys_file), the
    /// key itself goes to standard output, once — give it to the operator, it is not kept.
    Add {
        /// The key file (created with mode 0600 if missing).
        #[arg(long)]
        file: PathBuf,
        /// Names the key in logs and rate limits (letters, digits, '.', '_', '-').
        #[arg(long)]
        id: String,
        /// province: every unit; unit: one unit's dossiers and figures.
        #[arg(long, value_enum)]
        role: ApiRoleArg,
        /// The unit of a unit key (e.g. 06652).
        #[arg(long)]
        unit: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ApiRoleArg {
    Province,
    Unit,
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

/// The stage names of the stage table, each with its one-line description.
fn stage_names() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(
        STAGES
            .iter()
            .map(|s| clap::builder::PossibleValue::new(s.name).help(s.about)),
    )
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

    /// The configuration and the store it names (the operators' commands).
    async fn store(&self) -> Result<(Config, motcua_store::Store)> {
        let cfg = self.load()?;
        let store = open_store(&cfg).await?;
        Ok((cfg, store))
    }
}

/// Opens the store of `database.url`, naming it (credentials redacted) when it fails.
async fn open_store(cfg: &Config) -> Result<motcua_store::Store> {
    motcua_store::Store::connect(&cfg.database.url)
        .await
        .with_context(|| format!("opening the store at {}", motcua_store::redact(&cfg.database.url)))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = match cli.command {
        // The demo dead-letters malformed input on purpose: its summary reports them.
        Command::Demo(_) => "error",
        Command::Generate { .. } | Command::Publish { .. } => "warn",
        _ => "info",
    };
    let service = match &cli.command {
        Command::Run { stage, .. } => format!("motcua-{stage}"),
        _ => "motcua".to_owned(),
    };
    let _telemetry = match logging::init(cli.log_format, default_level, &service) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
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
        Command::Run { stage, common } => run_stage(&stage, &common).await,
        Command::Replay {
            group,
            allow_existing,
            common,
        } => replay(group, allow_existing, &common).await,
        Command::Schemas { command } => schemas_cmd::run(command).await,
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
        Command::Demo(args) => motcua_demo::run(args).await,
        Command::Export(args) => export_cmd::run(args).await,
        Command::Dlq { command } => dlq_cmd::run(command).await,
        Command::Dossiers { command } => dossiers_cmd::run(command).await,
        Command::Portal { command } => portal_cmd::run(command).await,
        Command::WalletSim(args) => outward_sim::wallet(args).await,
        Command::PortalSim(args) => outward_sim::portal(args).await,
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
            let sim = motcua_simulators::gateway::GatewaySimConfig {
                min_delay_ms,
                max_delay_ms,
                failure_rate,
                duplicate_rate,
                seed,
            };
            let shutdown = Shutdown::on_signals();
            let Some(codec) = motcua_wiring::schemas::codec(&cfg, &shutdown).await? else {
                return Ok(ExitCode::SUCCESS);
            };
            let stats = motcua_simulators::gateway::run(cfg.kafka.clone(), codec, sim, shutdown).await?;
            info!(?stats, "gateway simulator stopped");
            Ok(ExitCode::SUCCESS)
        }
        Command::BackofficeSim {
            supplement_rate,
            late_rate,
            refusal_rate,
            reappoint_rate,
            common,
        } => {
            for (name, v) in [
                ("supplement", supplement_rate),
                ("late", late_rate),
                ("refusal", refusal_rate),
                ("reappoint", reappoint_rate),
            ] {
                if !(0.0..=1.0).contains(&v) {
                    anyhow::bail!("--{name}-rate {v} must be between 0 and 1");
                }
            }
            let cfg = common.load()?;
            let office =
                motcua_simulators::backoffice::BackOffice::new(motcua_simulators::backoffice::BackOfficeConfig {
                    supplement_rate,
                    late_rate,
                    refusal_rate,
                    reappoint_rate,
                });
            let shutdown = Shutdown::on_signals();
            let Some(codec) = motcua_wiring::schemas::codec(&cfg, &shutdown).await? else {
                return Ok(ExitCode::SUCCESS);
            };
            motcua_runtime::run(Arc::new(office), codec, cfg.runtime(), shutdown).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::CitizensSim {
            answer_rate,
            withdraw_rate,
            common,
        } => {
            for (name, v) in [("answer", answer_rate), ("withdraw", withdraw_rate)] {
                if !(0.0..=1.0).contains(&v) {
                    anyhow::bail!("--{name}-rate {v} must be between 0 and 1");
                }
            }
            let cfg = common.load()?;
            let citizens = motcua_simulators::citizens::Citizens::new(
                Arc::new(Reference::embedded()?),
                motcua_simulators::citizens::CitizensConfig {
                    answer_rate,
                    withdraw_rate,
                    ..Default::default()
                },
            );
            let shutdown = Shutdown::on_signals();
            let Some(codec) = motcua_wiring::schemas::codec(&cfg, &shutdown).await? else {
                return Ok(ExitCode::SUCCESS);
            };
            motcua_runtime::run(Arc::new(citizens), codec, cfg.runtime(), shutdown).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::ResultKey {
            file,
            jwks,
            kid,
            not_before,
            expires,
        } => {
            // Checked before the secret is written, so a refusal leaves nothing behind.
            if let (Some(jwks), Some(kid)) = (&jwks, &kid) {
                if motcua_wiring::keys::read_jwks_to_extend(jwks)?.key(kid).is_some() {
                    anyhow::bail!("{} already has a key {kid:?}: key ids are never reused", jwks.display());
                }
            }
            println!("{}", motcua_wiring::keys::new_result_key(&file)?);
            if let (Some(jwks), Some(kid)) = (jwks, kid) {
                motcua_wiring::keys::publish_result_key(&file, &jwks, &kid, not_before, expires)?;
                eprintln!("published as {kid:?} in {}", jwks.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::ResultKeyExpire { jwks, kid, at } => {
            motcua_wiring::keys::expire_result_key(&jwks, &kid, at)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::ApiKey {
            command: ApiKeyCommand::Add { file, id, role, unit },
        } => {
            let role = match role {
                ApiRoleArg::Province => motcua_wiring::keys::ApiRole::Province,
                ApiRoleArg::Unit => motcua_wiring::keys::ApiRole::Unit,
            };
            println!(
                "{}",
                motcua_wiring::keys::new_api_key(&file, &id, role, unit.as_deref())?
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Reconcile { common } => {
            let (_, store) = common.store().await?;
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

async fn replay(group: Option<String>, allow_existing: bool, common: &Common) -> Result<ExitCode> {
    let shutdown = Shutdown::on_signals();
    let cfg = common.load()?;
    let mut options = motcua_wiring::replay::ReplayOptions::new(&cfg.kafka);
    if let Some(g) = group {
        options.group = g;
    }
    options.allow_existing = allow_existing;
    let Some(codec) = motcua_wiring::schemas::codec(&cfg, &shutdown).await? else {
        info!("stopped while waiting for the schema registry");
        return Ok(ExitCode::FAILURE);
    };
    let s = motcua_wiring::replay::replay(&cfg, codec, options, std::future::ready(()), shutdown).await?;
    println!(
        "replayed {} messages into {} in {:.1} s: {:.0} messages/s",
        s.messages,
        motcua_store::redact(&cfg.database.url),
        s.elapsed.as_secs_f64(),
        s.messages_per_second()
    );
    if let Some(cpu) = s.cpu_per_message() {
        println!(
            "CPU time of this process: {:.1} µs per message",
            cpu.as_secs_f64() * 1e6
        );
    }
    println!("consumer group {} (delete it when done)", s.group);
    Ok(ExitCode::SUCCESS)
}

async fn run_stage(name: &str, common: &Common) -> Result<ExitCode> {
    // Signals first: a SIGTERM while still starting (connecting to the store, joining
    // the group) must end the worker cleanly, not kill it.
    let shutdown = Shutdown::on_signals();
    let spec = motcua_wiring::stage(name).with_context(|| format!("no stage called '{name}'"))?;
    let cfg = common.load()?;
    // Probes answer from the start: alive at once, ready once the group is joined.
    let health = motcua_wiring::health::Health::new(Default::default(), shutdown.clone());
    if let Some(addr) = cfg.metrics_addr()? {
        motcua_wiring::health::serve(addr, health.clone()).await?;
    }
    let reference = Arc::new(
        Reference::load(
            cfg.reference.units_file.as_deref(),
            cfg.reference.procedures_file.as_deref(),
        )
        .context("loading reference data")?,
    );
    for work in spec.also {
        info!(stage = spec.name, "also runs {work}");
    }
    let Some(codec) = motcua_wiring::schemas::codec(&cfg, &shutdown).await? else {
        info!("stopped while waiting for the schema registry");
        return Ok(ExitCode::SUCCESS);
    };
    let summary = (spec.launch)(Launch::new(spec, cfg, reference, codec, shutdown).with_health(health)).await?;
    info!(
        consumed = summary.consumed,
        processed = summary.processed,
        dead_lettered = summary.dead_lettered,
        "stopped cleanly"
    );
    Ok(ExitCode::SUCCESS)
}
