//! `motcua demo`: a whole province's one-stop centers on one machine, nothing to install.
//!
//! Every stage runs in this process as its own consumer group (intake, verify, payment,
//! route, back office, result, track) over the in-process broker and embedded SQLite, or
//! over a real cluster and PostgreSQL; the outside world is simulated (registries over
//! HTTP with faults, payment gateway, back-office officers). A portal publishes generated
//! submissions; an observer follows every topic; the run ends when every dossier reached
//! a terminal state and every group's lag is zero, and writes a report checked against
//! the database.

mod html;
mod observe;
mod progress;
mod report;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use motcua_kafka::{EmbeddedBroker, KafkaConfig};
use motcua_reference::Reference;
use motcua_registries::any::AnyRegistries;
use motcua_registries::http::HttpRegistries;
use motcua_runtime::{Input, RunSummary, Shutdown};
use motcua_schemas::{Codec, Topic};
use motcua_simulators::gateway::{self as gateway_sim, GatewaySimConfig};
use motcua_simulators::portal::{Defect, Generator};
use motcua_simulators::registries::{self as sim, Faults};
use motcua_simulators::world::World;
use motcua_store::Store;
use rand::{Rng, SeedableRng};

use motcua_reference::civil::now_ms;
use motcua_simulators::publisher::Publisher;
use motcua_wiring::{Config, Launch, STAGES};
use observe::Observed;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// How many submissions the portals publish (ignored with --soak).
    #[arg(long, default_value_t = 20_000)]
    dossiers: u64,
    /// Seed of the generated dossiers and of every simulator.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// 2-digit code of the province whose centers receive (22 = Quảng Ninh).
    #[arg(long, default_value = "22")]
    province: String,
    /// Submissions per second the portals publish; 0 = as fast as the broker takes them.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Keep publishing (at --rate, 200/s if unset) until Ctrl-C or --duration-secs, then
    /// drain and report.
    #[arg(long)]
    soak: bool,
    /// With --soak: stop publishing after this many seconds.
    #[arg(long)]
    duration_secs: Option<u64>,
    /// Share of submissions with a defect (missing paper, bad citizen ID, unknown or
    /// abolished procedure, unknown center).
    #[arg(long, default_value_t = 0.04)]
    defect_rate: f64,
    /// Share of messages that are not Avro at all (a portal publishing JSON by mistake);
    /// they must end in the dead-letter topic.
    #[arg(long, default_value_t = 0.005)]
    malformed_rate: f64,
    /// Share of registry requests answered 503.
    #[arg(long, default_value_t = 0.02)]
    registry_error_rate: f64,
    /// Median registry latency in ms (the 99th percentile is 5 times it).
    #[arg(long, default_value_t = 2)]
    registry_latency_ms: u64,
    /// Share of requests the citizens' e-wallet gateway answers 503, and of filed
    /// documents whose acknowledgement it loses (answered 503 after filing).
    #[arg(long, default_value_t = 0.02)]
    wallet_error_rate: f64,
    /// Share of requests the National Public Service Portal answers 503, and of filed
    /// status changes whose acknowledgement it loses.
    #[arg(long, default_value_t = 0.02)]
    portal_error_rate: f64,
    /// Share of bills whose first payment attempt fails at the gateway.
    #[arg(long, default_value_t = 0.05)]
    gateway_failure_rate: f64,
    /// Share of payment confirmations the gateway sends twice.
    #[arg(long, default_value_t = 0.05)]
    gateway_duplicate_rate: f64,
    /// Share of dossiers the simulated officers decide after the legal deadline.
    #[arg(long, default_value_t = 0.03)]
    late_rate: f64,
    /// Share of supplement requests the citizens answer (some days later, simulated);
    /// the others are never answered and their dossiers stopped after the wait.
    #[arg(long, default_value_t = 0.7)]
    supplement_answer_rate: f64,
    /// Share of received dossiers their citizens withdraw.
    #[arg(long, default_value_t = 0.01)]
    withdraw_rate: f64,
    /// Partitions per topic.
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    /// Use this Kafka cluster instead of the in-process broker (topics get a fresh
    /// `demo-<time>.` prefix).
    #[arg(long)]
    brokers: Option<String>,
    /// With --brokers: the run's topic prefix instead of a fresh `demo-<time>.` (topics
    /// that exist already are used as they are; a load harness reads them afterwards).
    #[arg(long, requires = "brokers")]
    topic_prefix: Option<String>,
    /// Register the schemas in this Confluent-compatible Schema Registry and write its
    /// ids (every stage, simulator and the portal), as a deployment with one does.
    #[arg(long)]
    schema_registry: Option<String>,
    /// Use this database (postgres://… or sqlite:…) instead of embedded SQLite files in a
    /// temporary directory.
    #[arg(long)]
    database_url: Option<String>,
    /// Where to write the HTML report; the same figures go to a .json file next to it.
    #[arg(long, default_value = "motcua-demo-report.html")]
    report: PathBuf,
    /// Progress display: `auto` (live on a terminal, plain lines otherwise), `live`,
    /// `plain` or `off`.
    #[arg(long, default_value = "auto")]
    progress: progress::Mode,
    /// Address of the status API served during the run (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    api_listen: String,
    /// After the report, keep serving the status API until Ctrl-C.
    #[arg(long)]
    keep_serving: bool,
    /// Give up waiting for the pipeline to drain after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout_secs: u64,
}

fn check_share(name: &str, v: f64) -> Result<()> {
    if !(0.0..=1.0).contains(&v) || v.is_nan() {
        bail!("--{name} must be a share between 0 and 1 (got {v})");
    }
    Ok(())
}

impl DemoArgs {
    fn validate(&self) -> Result<()> {
        for (name, v) in [
            ("defect-rate", self.defect_rate),
            ("malformed-rate", self.malformed_rate),
            ("registry-error-rate", self.registry_error_rate),
            ("wallet-error-rate", self.wallet_error_rate),
            ("portal-error-rate", self.portal_error_rate),
            ("gateway-failure-rate", self.gateway_failure_rate),
            ("gateway-duplicate-rate", self.gateway_duplicate_rate),
            ("late-rate", self.late_rate),
            ("supplement-answer-rate", self.supplement_answer_rate),
            ("withdraw-rate", self.withdraw_rate),
        ] {
            check_share(name, v)?;
        }
        if self.registry_error_rate > 0.5 {
            bail!("--registry-error-rate above 0.5 leaves most dossiers escalated; use at most 0.5");
        }
        if !self.soak && self.dossiers == 0 {
            bail!("--dossiers must be at least 1");
        }
        if self.duration_secs.is_some() && !self.soak {
            bail!("--duration-secs needs --soak");
        }
        if !(1..=64).contains(&self.partitions) {
            bail!("--partitions must be from 1 to 64");
        }
        Ok(())
    }
}

/// The consumer groups of the run with the topics they read, in pipeline order: the
/// stage table's stages, and the simulated back office (it decides what route routed,
/// before result delivers it).
fn groups() -> Vec<(&'static str, Vec<Topic>)> {
    let mut groups: Vec<(&'static str, Vec<Topic>)> = STAGES.iter().map(|s| (s.name, (s.inputs)())).collect();
    let at = groups
        .iter()
        .position(|(name, _)| *name == motcua_schemas::component::RESULT)
        .unwrap_or(groups.len());
    groups.insert(
        at,
        (
            motcua_simulators::backoffice::STAGE,
            <motcua_schemas::DossierRouted as Input>::topics(),
        ),
    );
    groups.push((
        motcua_simulators::citizens::STAGE,
        <motcua_schemas::DossierStatusChanged as Input>::topics(),
    ));
    groups
}

/// How much faster than the wall clock the demo's intake judges unanswered supplement
/// requests: the events carry simulated days (answers come days later, decisions weeks),
/// so for 3,000 submissions a wait of 15 working days (about three weeks) ends some twelve
/// seconds after it began.
const WAIT_CLOCK_FACTOR: i64 = 150_000;
const WAIT_CLOCK_BASE_DOSSIERS: u64 = 3_000;

/// The wait clock's factor for a run of `dossiers`: slower for bigger runs, whose stages
/// (the citizens' answers among them) lag further behind the portals' burst — at the
/// fixed factor a 20,000-dossier run judged most waits over before the answers, sent days
/// later in simulated time, were even read.
fn wait_clock_factor(dossiers: u64) -> i64 {
    let scale = i64::try_from(dossiers.max(WAIT_CLOCK_BASE_DOSSIERS) / WAIT_CLOCK_BASE_DOSSIERS).unwrap_or(i64::MAX);
    (WAIT_CLOCK_FACTOR / scale.max(1)).max(1)
}

/// The stores the report reads (the stages open their own).
struct Stores {
    intake: Store,
    payment: Store,
}

/// What the portals published.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub(crate) struct Published {
    pub(crate) total: u64,
    pub(crate) valid: u64,
    pub(crate) defective: u64,
    pub(crate) malformed: u64,
}

impl Published {
    /// Submissions that are dossiers (everything but the malformed messages).
    pub(crate) fn dossiers(&self) -> u64 {
        self.valid + self.defective
    }
}

pub async fn run(args: DemoArgs) -> Result<ExitCode> {
    args.validate()?;
    let started = Instant::now();
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
    let units = reference.units.units_of(&province.code).count();
    let world = World::for_province(&reference.units, &province.code, args.seed, 200_000)
        .context("building the synthetic registry world")?;

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
        kafka.topic_prefix = args
            .topic_prefix
            .clone()
            .unwrap_or_else(|| format!("demo-{}.", now_ms()));
    }
    kafka.validate()?;
    match &embedded {
        Some(e) => e.create_topics(&kafka, args.partitions)?,
        None => {
            kafka
                .create_topics(args.partitions, 1)
                .await
                .with_context(|| format!("creating the demo's topics on {brokers}"))?;
        }
    }

    let tmp = tempfile::tempdir().context("creating a temporary directory")?;
    // With SQLite, the stages share one file for the store, as they share one database in
    // production: a dossier's life crosses stages (verify records a supplement wait that
    // intake answers; a withdrawal closes the dossier for route and result and cancels
    // payment's bill). Writers take turns (WAL, busy timeout). The projection, the
    // busiest writer, has a file of its own.
    let url_of = |stage: &str| match &args.database_url {
        Some(url) => url.clone(),
        None => {
            let file = if stage == motcua_schemas::component::TRACK {
                "track.db"
            } else {
                "store.db"
            };
            format!("sqlite://{}", tmp.path().join(file).display())
        }
    };
    let stores = Stores {
        intake: Store::connect(&url_of(motcua_schemas::component::INTAKE)).await?,
        payment: Store::connect(&url_of(motcua_schemas::component::PAYMENT)).await?,
    };
    let store_url = match &args.database_url {
        Some(url) => motcua_store::redact(url),
        None => format!("{}/store.db and track.db", tmp.path().display()),
    };
    let track_url = url_of(motcua_schemas::component::TRACK);
    let track = motcua_track::Track::connect(&track_url)
        .await
        .with_context(|| format!("opening the track projection at {}", motcua_store::redact(&track_url)))?;

    // A database used before keeps its rows: the checks compare this run's share of it.
    let before = report::Baseline {
        projection: track.summary().await.context("counting the projection")?,
        codes: stores.intake.count_codes().await?,
        bills: report::BillCounts::of(&stores.payment.bills().await?),
    };

    let settings = report::Settings {
        province_code: province.code.clone(),
        province_name: province.name.clone(),
        units,
        seed: args.seed,
        partitions: args.partitions,
        broker: if embedded.is_some() {
            format!("in-process librdkafka mock cluster ({brokers})")
        } else {
            format!("{brokers}, topics {}*", kafka.topic_prefix)
        },
        topic_prefix: kafka.topic_prefix.clone(),
        store: format!("{} ({store_url})", stores.intake.backend()),
        registry_error_rate: args.registry_error_rate,
        registry_latency_ms: args.registry_latency_ms,
        gateway_failure_rate: args.gateway_failure_rate,
        gateway_duplicate_rate: args.gateway_duplicate_rate,
        defect_rate: args.defect_rate,
        malformed_rate: args.malformed_rate,
        late_rate: args.late_rate,
        soak: args.soak,
        rate: args.rate,
    };
    println!(
        "motcua demo — {} (province {}, {} receiving centers), {}, seed {}",
        province.name,
        province.code,
        units,
        if args.soak {
            "soak".to_owned()
        } else {
            format!("{} submissions", args.dossiers)
        },
        args.seed
    );
    println!(
        "  broker   {}, {} partitions per topic",
        settings.broker, args.partitions
    );
    println!("  store    {}", settings.store);
    let reused = before.projection.dossiers > 0 || before.codes > 0;
    if reused {
        println!(
            "  note     the database already holds {} dossiers: this run's dossiers get fresh ids, \
             and the checks count only this run's rows",
            before.projection.dossiers.max(before.codes)
        );
    }
    let id_salt = reused.then(|| now_ms() as u64);

    // The outside world: registries over HTTP with faults switched on.
    let faults = Faults {
        latency_ms: args.registry_latency_ms,
        latency_p99_ms: args.registry_latency_ms * 5,
        error_rate: args.registry_error_rate,
        ..Faults::default()
    };
    let (registry_url, registry_task) = sim::spawn(world.clone(), faults)
        .await
        .context("starting the registry simulator")?;
    // The outward systems: citizens' e-wallets and the national portal, with faults on.
    let outward_faults = |rate: f64| Faults {
        error_rate: rate,
        latency_ms: 1,
        latency_p99_ms: 5,
        ..Default::default()
    };
    let (wallet_url, wallet_task) = motcua_simulators::wallet::spawn(
        motcua_simulators::wallet::WalletFaults {
            common: outward_faults(args.wallet_error_rate),
            lost_ack_rate: args.wallet_error_rate / 2.0,
            // The demo's applicants hold their results only.
            capacity: 1_000,
            ..Default::default()
        },
        args.seed,
    )
    .await
    .context("starting the e-wallet simulator")?;
    let (portal_url, portal_task) = motcua_simulators::national_portal::spawn(
        motcua_simulators::national_portal::PortalFaults {
            common: outward_faults(args.portal_error_rate),
            lost_ack_rate: args.portal_error_rate / 2.0,
        },
        args.seed,
    )
    .await
    .context("starting the national portal simulator")?;
    println!("  outside  e-wallets {wallet_url}, national portal {portal_url}");
    // The result stage signs with a key made for this run.
    let key_file = tmp.path().join("result-signing-key.hex");
    let public_key = motcua_wiring::keys::new_result_key(&key_file)?;
    let jwks_file = tmp.path().join("jwks.json");
    motcua_wiring::keys::publish_result_key(&key_file, &jwks_file, DEMO_SIGNING_KEY_ID, None, None)?;
    println!(
        "  keys     result signing key {} (public {public_key}; JWK Set {}, served at /.well-known/jwks.json)",
        key_file.display(),
        jwks_file.display()
    );

    // Every stage as its own consumer group, wired exactly as `motcua run <stage>` wires
    // it, from a configuration that points at this run's broker, stores and simulators.
    let stage_config = |name: &str| -> Result<Config> {
        let mut c = Config {
            kafka: kafka.clone(),
            ..Config::default()
        };
        c.database.url = url_of(name);
        c.metrics.listen = String::new();
        c.runtime.instance_id = Some(format!("demo-{name}"));
        c.registries.http.base_url = registry_url.clone();
        // Registry outages last seconds here, not hours: retry and escalate sooner.
        c.verify.first_retry_ms = 300;
        c.verify.max_retry_ms = 3_000;
        c.verify.escalate_after_s = 20;
        c.verify.retry_poll_ms = 200;
        c.result.signing_key_file = Some(key_file.clone());
        c.result.signing_key_id = DEMO_SIGNING_KEY_ID.to_owned();
        c.result.jwks_file = Some(jwks_file.clone());
        c.result.wallet.base_url = wallet_url.clone();
        // Wallet outages last seconds here too.
        c.result.first_retry_ms = 300;
        c.result.max_retry_ms = 3_000;
        c.result.escalate_after_s = 20;
        c.result.retry_poll_ms = 200;
        c.portal.http.base_url = portal_url.clone();
        // The demo serves the status API itself, so that it outlives the stages.
        c.track.api_listen = String::new();
        // The projection has its own file; track's warnings are owed in the stages' store.
        c.track.store_url = Some(url_of(motcua_schemas::component::INTAKE));
        c.schema_registry.url = args.schema_registry.clone();
        // Unanswered supplement requests are looked at every second (on the demo's
        // faster clock, see WAIT_CLOCK_FACTOR).
        c.intake.supplement_check_s = 1;
        if name == motcua_schemas::component::TRACK {
            // The projection takes every event of every dossier: larger batches, fewer
            // transactions.
            c.runtime.max_batch = 2_000;
            c.runtime.linger_ms = 50;
        }
        c.validate()?;
        Ok(c)
    };
    let (stop, shutdown) = Shutdown::channel();
    // One codec for every writer of the run: the registry's ids when one is given.
    let codec = match &args.schema_registry {
        None => Codec::embedded()?,
        Some(url) => {
            let c = stage_config(motcua_schemas::component::INTAKE)?;
            let codec = motcua_wiring::schemas::codec(&c, &shutdown)
                .await?
                .context("stopped while waiting for the schema registry")?;
            println!("  schemas  registry {url}: ids {}", registry_ids(&codec));
            codec
        }
    };
    let observed = Arc::new(Mutex::new(Observed::starting_at(now_ms(), !args.soak)));
    // Starts when the portals start publishing (stage start-up takes seconds of wall
    // clock, which must not count as weeks).
    let wait_clock_origin = Arc::new(std::sync::atomic::AtomicI64::new(0));
    let wait_clock = motcua_intake::WaitClock::Accelerated {
        origin_ms: wait_clock_origin.clone(),
        factor: wait_clock_factor(args.dossiers),
    };
    // The observer stops after the stages (its own signal), once it has read all they wrote.
    let (observer_stop, observer_shutdown) = Shutdown::channel();
    let observer = observe::start(&kafka, codec.clone(), observed.clone(), observer_shutdown).await?;

    let mut assigned: Vec<Arc<std::sync::atomic::AtomicUsize>> = Vec::new();
    let mut stages: Vec<(&'static str, tokio::task::JoinHandle<Result<RunSummary>>)> = Vec::new();
    let mut client_side = None;
    for spec in &STAGES {
        let cfg = stage_config(spec.name)?;
        let mut launch = Launch::new(spec, cfg, reference.clone(), codec.clone(), shutdown.clone());
        launch.wait_clock = wait_clock.clone();
        if spec.name == motcua_schemas::component::VERIFY {
            // Built as the stage would build it; the report reads the client's figures.
            let registries = motcua_wiring::registries::from_config(&launch.config).await?;
            if let AnyRegistries::Http(h) = &registries {
                client_side = Some(h.clone());
            }
            launch.registries = Some(registries);
        }
        assigned.push(launch.runtime.assigned.clone());
        stages.push((spec.name, tokio::spawn((spec.launch)(launch))));
    }
    // The officers of the back office: a simulator, run as a stage.
    // Outside the pipeline: bad messages are the owning stages' to dead-letter.
    let mut backoffice_rt = stage_config(motcua_simulators::backoffice::STAGE)?.runtime();
    backoffice_rt.dead_letters_for = Some(Vec::new());
    assigned.push(backoffice_rt.assigned.clone());
    let office = motcua_simulators::backoffice::BackOffice::new(motcua_simulators::backoffice::BackOfficeConfig {
        late_rate: args.late_rate,
        ..Default::default()
    });
    let office_run = motcua_runtime::run(Arc::new(office), codec.clone(), backoffice_rt, shutdown.clone());
    stages.push((
        motcua_simulators::backoffice::STAGE,
        tokio::spawn(async move { Ok(office_run.await?) }),
    ));
    // The citizens: they answer most supplement requests days later (simulated), some
    // never, and a few withdraw — through the portal's topics, as a stage.
    let mut citizens_rt = stage_config(motcua_simulators::citizens::STAGE)?.runtime();
    citizens_rt.dead_letters_for = Some(Vec::new());
    assigned.push(citizens_rt.assigned.clone());
    let memory = motcua_simulators::citizens::Memory::default();
    let citizens = motcua_simulators::citizens::Citizens::new(
        reference.clone(),
        motcua_simulators::citizens::CitizensConfig {
            answer_rate: args.supplement_answer_rate,
            withdraw_rate: args.withdraw_rate,
            memory: memory.clone(),
            ..Default::default()
        },
    );
    let citizens_run = motcua_runtime::run(Arc::new(citizens), codec.clone(), citizens_rt, shutdown.clone());
    stages.push((
        motcua_simulators::citizens::STAGE,
        tokio::spawn(async move { Ok(citizens_run.await?) }),
    ));
    let gateway = GatewaySimConfig {
        min_delay_ms: 20,
        max_delay_ms: 800,
        failure_rate: args.gateway_failure_rate,
        duplicate_rate: args.gateway_duplicate_rate,
        seed: args.seed,
    };
    let gateway_task = tokio::spawn(gateway_sim::run(
        kafka.clone(),
        codec.clone(),
        gateway,
        shutdown.clone(),
    ));

    // The status API over the projection, while the run lasts (and after, with
    // --keep-serving).
    let listener = tokio::net::TcpListener::bind(&args.api_listen)
        .await
        .with_context(|| format!("cannot serve the status API on {}", args.api_listen))?;
    let api_addr = listener.local_addr()?;
    // Operators' endpoints need a key: one province key for this run, kept next to the
    // stores (the file holds the key itself; the key file the API reads, only its digest).
    let api_key_file = tmp.path().join("operator-api-key");
    let api_keys_file = tmp.path().join("api-keys.toml");
    let api_key = motcua_wiring::keys::new_api_key(
        &api_keys_file,
        "demo-province",
        motcua_wiring::keys::ApiRole::Province,
        None,
    )?;
    motcua_wiring::keys::write_secret(&api_key_file, &api_key)
        .with_context(|| format!("writing {}", api_key_file.display()))?;
    println!(
        "  keys     operator API key {} (curl -H \"Authorization: Bearer $(cat {})\" http://{api_addr}/stats)",
        api_key_file.display(),
        api_key_file.display()
    );
    println!(
        "  status   http://{api_addr}/dossiers/<code>, /stats, /units/<code>/load (operators), \
         POST /lookup (citizens: code + receipt token), /openapi.json"
    );
    println!(
        "  console  http://{api_addr}/console/ — live load, lag, dead letters, parked and at-risk dossiers, \
         bottlenecks, forecast (sign in with the operator API key above)"
    );
    let mut track_config = motcua_wiring::config::TrackConfig {
        api_keys_file: Some(api_keys_file),
        jwks_file: Some(jwks_file.clone()),
        ..Default::default()
    };
    // The demo's own checks and a person at a browser share one address.
    track_config.api_public_requests_per_minute = 600;
    track_config.api_public_burst = 100;
    let api_db = track
        .reader(&track_url, track_config.reader_options())
        .await
        .context("opening the status API's database pool")?;
    // The console shows the pipeline too: every group's lag, dead letters, and the
    // dossiers parked in the stages' store.
    let lag = Arc::new(motcua_wiring::operations::LagReader::new(&kafka, &groups())?);
    let mut api_options = track_config.api_options()?;
    api_options.steps = Some(Arc::new(motcua_routing::RoutingTables::embedded(&reference)?));
    api_options.operations = Some(Arc::new(motcua_wiring::operations::PipelineOperations::new(
        kafka.clone(),
        codec.clone(),
        lag.clone(),
        // Its own pool: the run's stores are closed when it ends, the API may serve on.
        Store::connect(&url_of(motcua_schemas::component::VERIFY)).await?,
    )));
    let router = motcua_track::api::router(api_db, api_options, Arc::new(now_ms));
    let limits = track_config.serve_limits();
    let api_task = tokio::spawn(async move { motcua_track::api::serve(listener, router, limits).await });

    let published = Arc::new(Mutex::new(Published::default()));
    // Every group joined first: the figures then measure the pipeline, not start-up.
    let join_deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let joined = assigned
            .iter()
            .all(|n| n.load(std::sync::atomic::Ordering::Relaxed) > 0);
        if joined {
            break;
        }
        if Instant::now() > join_deadline {
            println!("  (not every stage was assigned its partitions within 60 s: publishing anyway)");
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "  groups   every stage joined its group after {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let progress = progress::Progress::new(args.progress, groups().iter().map(|(s, _)| *s).collect());
    let (progress_stop, progress_shutdown) = Shutdown::channel();
    let progress_task = tokio::spawn(progress::run(
        progress,
        observed.clone(),
        published.clone(),
        lag.clone(),
        progress_shutdown,
    ));

    // The portals.
    observed.lock().expect("observer state").start_ms = now_ms();
    wait_clock_origin.store(now_ms(), std::sync::atomic::Ordering::Relaxed);
    let publish_started = Instant::now();
    let interrupted = publish(
        &args,
        &reference,
        &province.code,
        &world,
        id_salt,
        &kafka,
        &codec,
        &published,
        &memory,
    )
    .await?;
    let publish_secs = publish_started.elapsed().as_secs_f64();
    let published_now = *published.lock().expect("published");

    // Drain: every dossier in a terminal state, every dead letter in, every group caught up.
    let deadline = Instant::now() + Duration::from_secs(args.timeout_secs);
    let mut drained = false;
    let mut final_lag = Vec::new();
    while Instant::now() < deadline {
        if let Some((name, _)) = stages.iter().find(|(_, t)| t.is_finished()) {
            println!("  the {name} stage stopped early; see its error below");
            break;
        }
        let (ended, dead) = {
            let o = observed.lock().expect("observer state");
            (o.ended(), o.dead_lettered())
        };
        if ended >= published_now.dossiers() && dead >= published_now.malformed {
            // (dead letters also include citizens' refused requests)
            let l = lag.clone();
            final_lag = tokio::task::spawn_blocking(move || l.read()).await?;
            if final_lag.iter().all(|(_, g)| g.lag == 0) {
                drained = true;
                break;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = tokio::signal::ctrl_c() => {
                println!("  interrupted while draining: reporting what finished");
                break;
            }
        }
    }
    let wall_secs = started.elapsed().as_secs_f64();
    let _ = progress_stop.send(true);
    let _ = progress_task.await;

    let _ = stop.send(true);
    let mut summaries = Vec::new();
    let mut failed = Vec::new();
    for (name, task) in stages {
        match task.await {
            Ok(Ok(s)) => summaries.push((name, s)),
            Ok(Err(e)) => failed.push(format!("{name}: {e:#}")),
            Err(e) => failed.push(format!("{name}: {e}")),
        }
    }
    let gateway_stats = gateway_task.await.ok().and_then(|r| r.ok());
    let _ = observer_stop.send(true);
    match observer.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => failed.push(format!("observer: {e:#}")),
        Err(e) => failed.push(format!("observer: {e}")),
    }
    let registry = registry_figures(&registry_url, client_side.as_ref()).await;
    registry_task.abort();
    let outward = report::OutwardFigures {
        wallet: simulator_stats(&wallet_url).await,
        portal: simulator_stats(&portal_url).await,
    };
    let portal_filed: std::collections::BTreeMap<String, i64> = async {
        reqwest::get(format!("{portal_url}/admin/filed"))
            .await
            .ok()?
            .json()
            .await
            .ok()
    }
    .await
    .unwrap_or_default();
    wallet_task.abort();
    portal_task.abort();

    let projection = track.summary().await.context("counting the projection")?;
    let codes = stores.intake.count_codes().await?;
    let bills = stores.payment.bills().await?;
    let mut observed = std::mem::take(&mut *observed.lock().expect("observer state"));
    observed.add_portal_sync(&portal_filed);
    let sample_lookup = observed.sample_lookup.clone();
    // The status API's figures by definition, to set beside the fold over the topics.
    let projection_statistics = match observed.ledger {
        Some(_) => Some(
            motcua_track::stats::figures(
                track.db(),
                &motcua_track::stats::StatsFilter {
                    as_of: report::STATISTICS_AS_OF,
                    ..Default::default()
                },
            )
            .await
            .context("the projection's statistics")?
            .report,
        ),
        None => None,
    };
    // Time per step against the budgets, from the projection, on the routing calendar.
    let step_times = motcua_track::steps::summary(track.db(), &motcua_routing::RoutingTables::embedded(&reference)?)
        .await
        .context("time per step")?;
    let sample_history = match &observed.clock.sample_paused_code {
        Some(code) => history(&format!("http://{api_addr}"), &api_key, code).await,
        None => Vec::new(),
    };
    let report = report::build(report::Inputs {
        settings,
        reference: &reference,
        published: published_now,
        publish_secs,
        wall_secs,
        drained,
        interrupted,
        observed,
        summaries,
        lag: final_lag,
        projection,
        codes,
        bills: report::BillCounts::of(&bills),
        before,
        registry,
        outward,
        projection_statistics,
        sample_history,
        step_times,
        gateway: gateway_stats.map(|g| {
            use std::sync::atomic::Ordering::Relaxed;
            (
                g.bills.load(Relaxed),
                g.failures.load(Relaxed),
                g.duplicates.load(Relaxed),
            )
        }),
    });
    for s in [&stores.intake, &stores.payment] {
        s.close().await;
    }

    report.print_terminal();
    let json_path = args.report.with_extension("json");
    std::fs::write(&args.report, html::render(&report))
        .with_context(|| format!("writing the report to {}", args.report.display()))?;
    std::fs::write(&json_path, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("writing {}", json_path.display()))?;
    println!(
        "  report   {} (figures also in {})",
        args.report.display(),
        json_path.display()
    );
    for f in &failed {
        println!("  STAGE FAILED  {f}");
    }
    if args.keep_serving {
        let mut lines = format!(
            "  status   still at http://{api_addr}/ (e.g. /stats, /dossiers/{}); Ctrl-C to quit\n",
            report.sample_code.as_deref().unwrap_or("<code>")
        );
        if let Some((code, token)) = &sample_lookup {
            lines.push_str(&format!(
                "  console  http://{api_addr}/console/ — a citizen's lookup to try: code {code}, token {token}\n"
            ));
        }
        // In one write, and whoever reads may stop reading now: a closed standard output
        // does not end the serving.
        use std::io::Write as _;
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(lines.as_bytes()).and_then(|()| stdout.flush());
        drop(stdout);
        let _ = tokio::signal::ctrl_c().await;
    }
    api_task.abort();
    // Dropped now, with the lag reader it holds: before the broker goes away.
    let _ = api_task.await;
    track.close().await;
    Ok(if report.ok() && failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// A dossier's history as the status API tells it to an operator (empty if it cannot).
async fn history(base: &str, key: &str, code: &str) -> Vec<report::HistoryLine> {
    let answer = async {
        reqwest::Client::new()
            .get(format!("{base}/dossiers/{code}"))
            .bearer_auth(key)
            .send()
            .await?
            .error_for_status()?
            .json::<serde_json::Value>()
            .await
    };
    let Ok(d) = answer.await else { return Vec::new() };
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    d["history"]
        .as_array()
        .map(|h| {
            h.iter()
                .map(|e| report::HistoryLine {
                    at: text(&e["occurred_at"]),
                    event: text(&e["event"]),
                    stage: text(&e["stage"]),
                    status: e["status"].as_str().map(str::to_owned),
                    reasons: e["reasons"]
                        .as_array()
                        .map(|r| r.iter().map(|x| text(&x["code"])).collect::<Vec<_>>().join(", "))
                        .unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Publishes the submissions; returns whether Ctrl-C cut it short.
#[allow(clippy::too_many_arguments)]
async fn publish(
    args: &DemoArgs,
    reference: &Reference,
    province: &str,
    world: &World,
    id_salt: Option<u64>,
    kafka: &KafkaConfig,
    codec: &Codec,
    published: &Mutex<Published>,
    memory: &motcua_simulators::citizens::Memory,
) -> Result<bool> {
    let mut publisher = Publisher::new(kafka, codec.clone())?;
    let mut g = Generator::new(reference, province, args.seed)
        .context("generator")?
        .with_world(world);
    if let Some(salt) = id_salt {
        g = g.with_id_salt(salt);
    }
    let mut rng = rand::rngs::SmallRng::seed_from_u64(args.seed ^ 0xdead_beef);
    let rate = match (args.rate, args.soak) {
        (0, true) => 200,
        (r, _) => r,
    };
    let until = args.duration_secs.map(|s| Instant::now() + Duration::from_secs(s));
    let started = Instant::now();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut i: u64 = 0;
    loop {
        if !args.soak && i >= args.dossiers {
            break;
        }
        if until.is_some_and(|u| Instant::now() >= u) {
            break;
        }
        // Pace in steps of 20 messages (sleeping per message would cap the rate at the
        // timer's resolution).
        if rate > 0 && i % 20 == 0 {
            let due = started + Duration::from_secs_f64(i as f64 / rate as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = &mut ctrl_c => {
                        publisher.flush().await?;
                        return Ok(true);
                    }
                }
            }
        }
        if i % 1000 == 999 && futures_poll_ready(&mut ctrl_c).await {
            publisher.flush().await?;
            return Ok(true);
        }
        let at = now_ms();
        let kind = if rng.gen_bool(args.malformed_rate) {
            let junk = format!("{{\"dossier_id\": \"junk-{i}\", \"note\": \"JSON where Avro belongs\"}}");
            publisher
                .send_raw(
                    &kafka.topic(Topic::Submitted),
                    format!("junk-{i}").as_bytes(),
                    junk.as_bytes(),
                    None,
                )
                .await?;
            2
        } else if rng.gen_bool(args.defect_rate) {
            let d = Defect::ALL[rng.gen_range(0..Defect::ALL.len())];
            let s = g.defective(at, d);
            if let (Defect::BirthDateTypo, Some(typed)) = (d, s.dossier.applicant.date_of_birth) {
                // The citizen knows the right date when the registry disagrees.
                memory
                    .lock()
                    .expect("citizens' memory")
                    .insert(s.dossier.dossier_id.clone(), typed - 1);
            }
            publisher.send(&s).await?;
            1
        } else {
            publisher.send(&g.valid(at)).await?;
            0
        };
        let mut p = published.lock().expect("published");
        p.total += 1;
        match kind {
            0 => p.valid += 1,
            1 => p.defective += 1,
            _ => p.malformed += 1,
        }
        drop(p);
        i += 1;
    }
    publisher.flush().await?;
    Ok(false)
}

/// Whether a pinned future is ready now, without waiting for it.
async fn futures_poll_ready<F: std::future::Future + Unpin>(f: &mut F) -> bool {
    tokio::select! {
        biased;
        _ = f => true,
        _ = std::future::ready(()) => false,
    }
}

/// What the registries saw (the simulator's own counts) and what verify's client did.
async fn registry_figures(url: &str, client: Option<&HttpRegistries>) -> report::RegistryFigures {
    let served: Option<serde_json::Value> =
        async { reqwest::get(format!("{url}/admin/stats")).await.ok()?.json().await.ok() }.await;
    let count = |k: &str| {
        served
            .as_ref()
            .and_then(|v| v.get(k))
            .and_then(|v| v.as_u64())
            .unwrap_or(0)
    };
    let sum = |f: fn(&motcua_registries::http::EndpointStats) -> u64| -> u64 {
        client.map_or(0, |c| c.stats().iter().map(|(_, s)| f(s)).sum())
    };
    report::RegistryFigures {
        answered: count("ok") + count("not_found"),
        faults_injected: count("faulted"),
        lookups: sum(|s| s.requests),
        cache_hits: sum(|s| s.cache_hits),
        breaker_rejections: sum(|s| s.breaker_rejections),
    }
}

/// A simulator's own counts (`/admin/stats`), by name; empty when it does not answer.
async fn simulator_stats(url: &str) -> std::collections::BTreeMap<String, u64> {
    let served: Option<std::collections::BTreeMap<String, u64>> =
        async { reqwest::get(format!("{url}/admin/stats")).await.ok()?.json().await.ok() }.await;
    served.unwrap_or_default()
}

/// The key id the demo's result stage signs with.
const DEMO_SIGNING_KEY_ID: &str = "demo-result-key";

/// `topic=id` for every topic, as the report prints them.
fn registry_ids(codec: &Codec) -> String {
    Topic::ALL
        .iter()
        .map(|t| format!("{}={}", t.name(), codec.schemas().latest(*t).id))
        .collect::<Vec<_>>()
        .join(" ")
}
