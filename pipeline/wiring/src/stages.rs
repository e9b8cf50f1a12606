//! The stage table: every stage of the pipeline, declared once — its name, what it is
//! for, the topics its group reads, its timer work and side services, and how a worker of
//! it is built from the configuration and run. `motcua run <stage>`, `motcua demo`, help
//! texts and anything else that needs the list of stages read [`STAGES`].
//!
//! Adding a stage: write its crate (a [`motcua_runtime::Stage`]), then add one entry here
//! with a `launch` function. Nothing else names it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use futures::future::BoxFuture;
use motcua_reference::Reference;
use motcua_registries::any::AnyRegistries;
use motcua_runtime::{error_chain, Input, RunSummary, RuntimeConfig, Shutdown};
use motcua_schemas::{Codec, Topic};
use motcua_store::Store;
use tracing::{error, info, warn};

use crate::config::Config;

/// One stage of the pipeline.
#[derive(Debug)]
pub struct StageSpec {
    /// The stage's name: consumer group `motcua-<name>`, metrics label, `stage` of its
    /// status events (the stage crate's `STAGE`).
    pub name: &'static str,
    /// What it does, in one line (`motcua run --help`).
    pub about: &'static str,
    /// The topics its consumer group reads.
    pub inputs: fn() -> Vec<Topic>,
    /// Work it does besides consuming: timers and side services (logged when a worker
    /// starts, so an operator sees what else the process does).
    pub also: &'static [&'static str],
    /// Builds the stage and its timers from `Launch::config`, runs them until the
    /// shutdown fires or a fatal error, and closes what it opened.
    pub launch: fn(Launch) -> BoxFuture<'static, Result<RunSummary>>,
}

/// Every stage, in pipeline order (portal-sync, which only mirrors statuses outward,
/// after track: the projection's group dead-letters bad status messages).
pub const STAGES: [StageSpec; 7] = [
    StageSpec {
        name: motcua_intake::STAGE,
        about: "Validate submissions, give them their official dossier code; record the back office's requests for papers, \
                resume supplemented dossiers, honour withdrawals",
        inputs: <motcua_intake::IntakeInput as Input>::topics,
        also: &["timer: stops dossiers whose supplement did not come within intake.supplement_wait_working_days"],
        launch: |l| Box::pin(intake(l)),
    },
    StageSpec {
        name: motcua_verify::STAGE,
        about: "Check dossiers against the population, land and business registries",
        inputs: <motcua_schemas::DossierAccepted as Input>::topics,
        also: &["retrier: asks again for dossiers parked while a registry was down, escalates old ones"],
        launch: |l| Box::pin(verify(l)),
    },
    StageSpec {
        name: motcua_payment::STAGE,
        about: "Bill verified dossiers and settle gateway confirmations",
        inputs: <motcua_payment::PaymentInput as Input>::topics,
        also: &["bill expiry: every minute, unpaid bills past their validity are announced and marked expired"],
        launch: |l| Box::pin(payment(l)),
    },
    StageSpec {
        name: motcua_route::STAGE,
        about: "Give paid dossiers their competent authority, desk and legal due time \
                (routing tables reload on SIGHUP or when their files change)",
        inputs: <motcua_schemas::DossierPaid as Input>::topics,
        also: &[
            "routing-table reload: on SIGHUP, and when a configured file changes",
            "timer: re-reads desk loads every minute (withdrawn, stopped and decided dossiers free their desk)",
        ],
        launch: |l| Box::pin(route(l)),
    },
    StageSpec {
        name: motcua_result::STAGE,
        about: "Deliver signed results of decided dossiers to the applicants' e-wallets",
        inputs: <motcua_schemas::DossierDecided as Input>::topics,
        also: &["retrier: delivers again results parked while the wallet gateway was down, escalates old ones"],
        launch: |l| Box::pin(result(l)),
    },
    StageSpec {
        name: motcua_track::STAGE,
        about: "Project every event into the database, serve the status API, warn of deadlines",
        inputs: <motcua_runtime::AllTopics as Input>::topics,
        also: &[
            "status API (track.api_listen)",
            "deadline warnings: every minute, open dossiers close to their due time",
        ],
        launch: |l| Box::pin(track(l)),
    },
    StageSpec {
        name: motcua_portal_sync::STAGE,
        about: "Push every status change to the National Public Service Portal, in order per dossier, once",
        inputs: <motcua_schemas::DossierStatusChanged as Input>::topics,
        also: &[],
        launch: |l| Box::pin(portal_sync(l)),
    },
];

/// The input topics whose bad messages `spec`'s group dead-letters: those no stage before
/// it in the table reads. Each bad message is then dead-lettered once, by the first
/// group that reads its topic (intake for `dossier.submitted`; track, which reads every
/// topic, only for the topics no other stage reads).
pub fn dead_letters_for(spec: &StageSpec) -> Vec<Topic> {
    let earlier: Vec<Topic> = STAGES
        .iter()
        .take_while(|s| s.name != spec.name)
        .flat_map(|s| (s.inputs)())
        .collect();
    (spec.inputs)().into_iter().filter(|t| !earlier.contains(t)).collect()
}

/// The stage called `name`.
pub fn stage(name: &str) -> Option<&'static StageSpec> {
    STAGES.iter().find(|s| s.name == name)
}

/// What a stage worker is started with. [`Launch::new`] derives everything from the
/// configuration; callers may adjust the runtime tuning or hand in shared pieces first.
#[derive(Debug)]
pub struct Launch {
    pub config: Config,
    /// Runtime tuning (from `config.runtime`); its `assigned` counter tells the caller
    /// when the worker owns partitions.
    pub runtime: RuntimeConfig,
    pub reference: Arc<Reference>,
    pub codec: Codec,
    pub shutdown: Shutdown,
    /// The registries the verify stage asks; built from `config.registries` when `None`
    /// (a caller that wants the client's statistics builds it with
    /// [`crate::registries::from_config`] and keeps a clone).
    pub registries: Option<AnyRegistries>,
    /// The clock intake judges unanswered supplement waits by (the wall clock; the demo,
    /// whose events carry simulated days, runs a faster one).
    pub wait_clock: motcua_intake::WaitClock,
    /// What `/readyz` checks: the runtime marks the group joined, the stage's database is
    /// registered when it opens.
    pub health: crate::health::Health,
}

impl Launch {
    pub fn new(spec: &StageSpec, config: Config, reference: Arc<Reference>, codec: Codec, shutdown: Shutdown) -> Self {
        let mut runtime = config.runtime();
        runtime.dead_letters_for = Some(dead_letters_for(spec));
        let health = crate::health::Health::new(runtime.joined.clone(), shutdown.clone());
        runtime.brokers_down = health.brokers_down();
        Self {
            health,
            config,
            runtime,
            reference,
            codec,
            shutdown,
            registries: None,
            wait_clock: motcua_intake::WaitClock::Wall,
        }
    }

    /// Reports readiness to `health` (a server started before the launch, so probes
    /// answer while the worker still waits for its dependencies).
    pub fn with_health(mut self, health: crate::health::Health) -> Self {
        self.runtime.joined = health.joined();
        self.runtime.brokers_down = health.brokers_down();
        self.health = health;
        self
    }

    /// Opens the stage's store; `/readyz` probes it from then on.
    async fn store(&self) -> Result<Store> {
        let store = Store::connect(&self.config.database.url).await.with_context(|| {
            format!(
                "opening the store at {}",
                motcua_store::redact(&self.config.database.url)
            )
        })?;
        self.health.watch_store(store.clone());
        Ok(store)
    }
}

async fn intake(l: Launch) -> Result<RunSummary> {
    let store = l.store().await?;
    let tables = motcua_routing::RoutingTables::load(&l.reference, &l.config.routing.files()?)
        .context("loading the calendar for supplement waits")?;
    let wait = motcua_intake::SupplementWait {
        calendars: Arc::new(tables),
        working_days: l.config.intake.supplement_wait_working_days,
        batch: 500,
        clock: l.wait_clock.clone(),
    };
    let mut stage = motcua_intake::Intake::new(l.reference, store.clone(), l.codec.clone()).with_supplement_wait(wait);
    stage.stop_check = Duration::from_secs(l.config.intake.supplement_check_s);
    let stage = Arc::new(stage);
    let summary = motcua_runtime::run(stage, l.codec, l.runtime, l.shutdown).await;
    store.close().await;
    Ok(summary?)
}

async fn verify(l: Launch) -> Result<RunSummary> {
    let store = l.store().await?;
    let registries = match l.registries {
        Some(r) => r,
        None => crate::registries::from_config(&l.config).await?,
    };
    let caller = format!("verify/{}", l.runtime.instance_id);
    let verify = motcua_verify::Verify::new(
        registries,
        l.reference,
        store.clone(),
        l.codec.clone(),
        caller,
        l.config.verify.policy(),
    )
    .with_retry_poll(Duration::from_millis(l.config.verify.retry_poll_ms));
    let summary = motcua_runtime::run(Arc::new(verify), l.codec, l.runtime, l.shutdown).await;
    store.close().await;
    Ok(summary?)
}

async fn payment(l: Launch) -> Result<RunSummary> {
    let store = l.store().await?;
    let fees = motcua_payment::FeeSchedule::embedded().map_err(anyhow::Error::msg)?;
    let payment = motcua_payment::Payment::new(store.clone(), l.codec.clone(), fees);
    let summary = motcua_runtime::run(Arc::new(payment), l.codec, l.runtime, l.shutdown).await;
    store.close().await;
    Ok(summary?)
}

async fn route(l: Launch) -> Result<RunSummary> {
    let store = l.store().await?;
    let route = Arc::new(
        motcua_route::Route::new(l.reference, l.config.routing.files()?, store.clone(), l.codec.clone()).await?,
    );
    let watcher = tokio::spawn(watch_routing_files(route.clone(), l.config.routing.reload_check_s));
    let summary = motcua_runtime::run(route, l.codec, l.runtime, l.shutdown).await;
    watcher.abort();
    store.close().await;
    Ok(summary?)
}

async fn result(l: Launch) -> Result<RunSummary> {
    let file = l.config.result.signing_key_file.as_ref().context(
        "result.signing_key_file is required: the result stage signs documents (make a key with `motcua result-key FILE`)",
    )?;
    let seed = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let signer = motcua_result::Signer25519::from_hex_seed(&seed, &l.config.result.signing_key_id)
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    match &l.config.result.jwks_file {
        Some(jwks) => {
            let set = crate::keys::read_jwks(jwks).context("result.jwks_file")?;
            let published = set.key(signer.key_id()).with_context(|| {
                format!(
                    "result.signing_key_id {:?} is not in {}: publish it first (motcua result-key --jwks)",
                    signer.key_id(),
                    jwks.display()
                )
            })?;
            if published.verifying_key().ok() != Some(signer.public_key()) {
                anyhow::bail!(
                    "key {:?} in {} is another key than result.signing_key_file's",
                    signer.key_id(),
                    jwks.display()
                );
            }
            let now_s = motcua_reference::civil::now_ms() / 1_000;
            if !published.valid_at(now_s) {
                anyhow::bail!(
                    "key {:?} is not valid now according to {} (nbf {:?}, exp {:?})",
                    signer.key_id(),
                    jwks.display(),
                    published.nbf,
                    published.exp
                );
            }
        }
        None => warn!("result.jwks_file is not set: nothing checks that the signing key is published"),
    }
    info!(public_key = %signer.public_key_hex(), key_id = %signer.key_id(), "signing results");
    let wallet = motcua_outward::http::HttpWallet::new("result.wallet", l.config.result.wallet.clone())
        .context("the e-wallet gateway (result.wallet)")?;
    let store = l.store().await?;
    let caller = format!("{}/{}", motcua_result::STAGE, l.runtime.instance_id);
    let stage = motcua_result::ResultStage::new(signer, wallet, store.clone(), l.codec.clone(), caller)
        .with_settings(l.config.result.delivery());
    let summary = motcua_runtime::run(Arc::new(stage), l.codec, l.runtime, l.shutdown).await;
    store.close().await;
    Ok(summary?)
}

async fn portal_sync(mut l: Launch) -> Result<RunSummary> {
    let portal = motcua_outward::http::HttpPortal::new("portal.http", l.config.portal.http.clone())
        .context("the national portal (portal.http)")?;
    hold_batches_through(&mut l.runtime, Duration::from_secs(l.config.portal.outage_budget_s));
    l.health.without_database();
    let stage = Arc::new(motcua_portal_sync::PortalSync::new(portal));
    Ok(motcua_runtime::run(stage, l.codec, l.runtime, l.shutdown).await?)
}

/// The pipeline's store, where track's warnings are owed: `track.store_url` when the
/// projection has a database of its own, else the one database.
async fn track_store(l: &Launch) -> Result<Store> {
    match &l.config.track.store_url {
        None => l.store().await,
        Some(url) => {
            let store = Store::connect(url)
                .await
                .with_context(|| format!("opening the pipeline's store at {}", motcua_store::redact(url)))?;
            l.health.watch_store(store.clone());
            Ok(store)
        }
    }
}

async fn track(l: Launch) -> Result<RunSummary> {
    let cfg = &l.config;
    let track = motcua_track::Track::connect(&cfg.database.url)
        .await
        .with_context(|| format!("opening the projection at {}", motcua_store::redact(&cfg.database.url)))?;
    let probed = track.clone();
    l.health.watch_database(Arc::new(move || {
        let t = probed.clone();
        Box::pin(async move { t.ping().await.map_err(|e| error_chain(&e)) })
    }));
    // Deadline and step warnings count working time on the routing calendar; the API
    // shows time per step against the budgets.
    let tables = Arc::new(motcua_routing::RoutingTables::load(
        &l.reference,
        &cfg.routing.files()?,
    )?);
    let api = if cfg.track.api_listen.is_empty() {
        None
    } else {
        let addr: std::net::SocketAddr = cfg
            .track
            .api_listen
            .parse()
            .with_context(|| format!("track.api_listen = '{}' is not an address", cfg.track.api_listen))?;
        let mut options = cfg.track.api_options()?;
        options.steps = Some(tables.clone());
        // The console's view of the pipeline: every stage's lag, dead letters, and the
        // dossiers parked in the pipeline's store (the same database in production).
        let lag = Arc::new(crate::operations::LagReader::of_stages(&cfg.kafka)?);
        options.operations = Some(Arc::new(crate::operations::PipelineOperations::new(
            cfg.kafka.clone(),
            l.codec.clone(),
            lag,
            l.store().await?,
        )));
        if options.keys.is_empty() {
            warn!(
                "track.api_keys_file is not set: operator endpoints answer 401 (make a key with `motcua api-key add`)"
            );
        }
        let reader = track
            .reader(&cfg.database.url, cfg.track.reader_options())
            .await
            .context("opening the status API's database pool")?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot serve the status API on {addr}"))?;
        info!(%addr, operator_keys = options.keys.len(), "status API");
        let router = motcua_track::api::router(reader, options, motcua_track::api::system_clock());
        let limits = cfg.track.serve_limits();
        Some(tokio::spawn(async move {
            if let Err(e) = motcua_track::api::serve(listener, router, limits).await {
                error!(error = %e, "status API stopped");
            }
        }))
    };
    let warnings = motcua_track::deadline::WarningConfig::new(cfg.track.warn_within_working_hours);
    let step_warnings = motcua_track::steps::StepWarnings {
        share: cfg.track.step_warn_share,
        clock: tables.clone(),
        // Every open dossier is looked at (its current step is judged in Rust): a
        // province has tens of thousands open at most.
        limit: 100_000,
    };
    let stage = track
        .clone()
        .with_warnings(warnings, tables.clone())
        .with_step_warnings(step_warnings)
        .with_owed_statuses(track_store(&l).await?);
    let summary = motcua_runtime::run(Arc::new(stage), l.codec, l.runtime, l.shutdown).await;
    if let Some(api) = api {
        api.abort();
    }
    track.close().await;
    Ok(summary?)
}

/// A worker that holds its batch while an outside system is down (portal-sync): the
/// runtime retries it for `budget` before the worker exits for its supervisor (nothing is
/// committed meanwhile, nothing lost). Meanwhile the consumer is not polled: it must not
/// be taken for a stuck member and leave its group, so its poll interval covers the hold
/// (unless set explicitly).
fn hold_batches_through(runtime: &mut RuntimeConfig, budget: Duration) {
    runtime.retry_budget = runtime.retry_budget.max(budget);
    let poll_interval = (runtime.retry_budget + Duration::from_secs(300)).as_millis();
    runtime
        .kafka
        .consumer
        .entry("max.poll.interval.ms".to_owned())
        // librdkafka's ceiling is a day.
        .or_insert_with(|| poll_interval.min(86_400_000).to_string());
}

/// Reloads the routing tables on SIGHUP, and when a configured file's modification time
/// changes. A file that does not load is reported and the current tables stay.
async fn watch_routing_files(route: Arc<motcua_route::Route>, check_every_s: u64) {
    let files = route.files().clone();
    let paths: Vec<PathBuf> = [
        files.departments,
        files.desks,
        files.holidays,
        files.steps,
        files.unit_hours,
    ]
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
    let period = Duration::from_secs(check_every_s.max(1));
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
                error!(error = %error_chain(&e), "routing tables not reloaded; keeping the current ones")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_are_the_stage_crates_names() {
        let mut names: Vec<&str> = STAGES.iter().map(|s| s.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), STAGES.len());
        assert_eq!(stage("route").map(|s| s.name), Some(motcua_route::STAGE));
        assert!(stage("routing").is_none());
    }

    #[test]
    fn each_topic_s_bad_messages_are_dead_lettered_by_exactly_one_group() {
        for t in Topic::ALL.into_iter().filter(|t| *t != Topic::DeadLetter) {
            let owners: Vec<&str> = STAGES
                .iter()
                .filter(|s| dead_letters_for(s).contains(&t))
                .map(|s| s.name)
                .collect();
            assert_eq!(owners.len(), 1, "{t}: {owners:?}");
        }
        let intake = stage(motcua_intake::STAGE).expect("intake");
        assert_eq!(
            dead_letters_for(intake),
            vec![
                Topic::Submitted,
                Topic::Supplemented,
                Topic::Withdrawn,
                Topic::SupplementRequested
            ]
        );
        let track = stage(motcua_track::STAGE).expect("track");
        // Those no other stage reads (the gateway and the back office are outside).
        assert_eq!(
            dead_letters_for(track),
            vec![
                Topic::PaymentRequested,
                Topic::Routed,
                Topic::Completed,
                Topic::Status,
                Topic::Reappointed
            ]
        );
    }

    #[test]
    fn a_worker_holding_batches_through_an_outage_stays_in_its_group_as_long() {
        let mut r = RuntimeConfig::new(motcua_kafka::KafkaConfig::default());
        hold_batches_through(&mut r, Duration::from_secs(3_600));
        assert_eq!(r.retry_budget, Duration::from_secs(3_600));
        assert_eq!(r.kafka.consumer["max.poll.interval.ms"], "3900000");
        let mut day = RuntimeConfig::new(motcua_kafka::KafkaConfig::default());
        hold_batches_through(&mut day, Duration::from_secs(86_400));
        assert_eq!(
            day.kafka.consumer["max.poll.interval.ms"], "86400000",
            "librdkafka's ceiling"
        );
        // An operator's own setting stays; a shorter budget does not shorten the runtime's.
        let mut own = RuntimeConfig::new(motcua_kafka::KafkaConfig::default());
        own.kafka
            .consumer
            .insert("max.poll.interval.ms".into(), "600000".into());
        hold_batches_through(&mut own, Duration::from_secs(1));
        assert_eq!(own.kafka.consumer["max.poll.interval.ms"], "600000");
        assert_eq!(own.retry_budget, Duration::from_secs(120));
    }

    #[test]
    fn every_topic_of_the_flow_but_dead_letters_is_read_by_some_stage() {
        for t in Topic::ALL {
            let readers: Vec<&str> = STAGES
                .iter()
                .filter(|s| (s.inputs)().contains(&t))
                .map(|s| s.name)
                .collect();
            match t {
                Topic::DeadLetter => assert!(readers.is_empty(), "{t} is read by {readers:?}"),
                // Every event reaches the projection.
                _ => assert!(readers.contains(&motcua_track::STAGE), "{t} is not projected"),
            }
        }
    }
}
