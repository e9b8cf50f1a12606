//! The track stage: consumes every dossier topic and maintains a PostgreSQL projection of
//! each dossier (current national status 1–10, dossier and procedure codes, receiving and
//! competent units, channel, reception, due and completion times, timeliness, and the full
//! history of its events), serves it over HTTP ([`api`]) and produces deadline warnings
//! ([`deadline`]).
//!
//! The projection runs on PostgreSQL (production: batched `UNNEST` writes) or on SQLite
//! (the embedded demo: the same tables, merge rule, guarantees, status API and deadline
//! warnings, written with multi-row statements).
//!
//! Guarantees:
//! - a batch is written in one transaction (one `UNNEST` insert into the history, one
//!   `UNNEST` upsert of the dossiers) and [`Track::handle_batch`] returns only after the
//!   commit, so the runtime commits the offsets only after the batch is durable;
//! - idempotent by event id: history rows are keyed by event id (`ON CONFLICT DO NOTHING`),
//!   and the dossier merge is idempotent, so a redelivered batch changes nothing;
//! - safe against out-of-order delivery: the merge rule (see [`projection`]) does not
//!   depend on delivery order, and a late older event never overwrites a newer status;
//! - overdue is derived from the due time at read time, never stored.

// The OpenAPI document is one large `json!` literal.
#![recursion_limit = "256"]

/// The same statements on whichever database holds the projection (the SQL is written
/// once, in the dialect both understand); `$db` is a `&ProjectionDb`.
macro_rules! on_db {
    ($db:expr, |$pool:ident| $body:expr) => {
        match $db {
            $crate::ProjectionDb::Postgres($pool) => $body,
            $crate::ProjectionDb::Sqlite($pool) => $body,
        }
    };
}

pub mod access;
pub mod api;
pub mod bottlenecks;
mod console;
pub mod deadline;
pub mod ops;
pub mod portal;
pub mod projection;
mod serve;
pub mod stats;
pub mod steps;
pub mod summary;
pub mod telemetry;
mod time;

use motcua_runtime::{error_chain, AllTopics, Envelope, Outcome, Stage, StageError, Tick};
use motcua_schemas::AnyEvent;
use std::str::FromStr;
use std::sync::Arc;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

pub use deadline::{deadline_risk, mark_warned, pending_warnings, DeadlineRisk, WallClock, WarningConfig, WorkingTime};
pub use projection::{status_key, Applied, STAGE};
pub use time::{format_local, parse_instant};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("projection database")]
    Database(#[from] sqlx::Error),
    #[error("projection migrations")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("the projection's database URL must be postgres://… or sqlite:…")]
    UnsupportedUrl,
}

impl Error {
    /// Whether retrying later can help (the store's classification of database errors).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Database(e) if motcua_store::classify(e) == motcua_store::Class::Retryable)
    }
}

/// Database errors mean to the runtime what the store's classifier says they mean.
impl From<Error> for StageError {
    fn from(e: Error) -> Self {
        match e {
            Error::Database(e) => StageError::from(motcua_store::Error::Database(e)),
            other => StageError::Fatal(error_chain(&other)),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Milliseconds since the epoch, now.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Applies the projection's migrations (versions 2001..; other components' migrations
/// in the same database are left alone).
pub async fn migrate(pool: &PgPool) -> Result<()> {
    let mut migrator = sqlx::migrate!("./migrations/postgres");
    migrator.set_ignore_missing(true);
    migrator.run(pool).await?;
    Ok(())
}

/// The same on SQLite.
pub async fn migrate_sqlite(pool: &SqlitePool) -> Result<()> {
    let mut migrator = sqlx::migrate!("./migrations/sqlite");
    migrator.set_ignore_missing(true);
    motcua_store::run_sqlite_migrations(&migrator, pool).await?;
    Ok(())
}

/// Where the projection lives.
#[derive(Debug, Clone)]
pub enum ProjectionDb {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

impl From<&PgPool> for ProjectionDb {
    fn from(pool: &PgPool) -> Self {
        ProjectionDb::Postgres(pool.clone())
    }
}

impl From<&SqlitePool> for ProjectionDb {
    fn from(pool: &SqlitePool) -> Self {
        ProjectionDb::Sqlite(pool.clone())
    }
}

impl From<PgPool> for ProjectionDb {
    fn from(pool: PgPool) -> Self {
        ProjectionDb::Postgres(pool)
    }
}

impl From<&ProjectionDb> for ProjectionDb {
    fn from(db: &ProjectionDb) -> Self {
        db.clone()
    }
}

/// The status API's database pool (see [`Track::reader`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReaderOptions {
    pub connections: u32,
    pub statement_timeout: std::time::Duration,
}

impl Default for ReaderOptions {
    fn default() -> Self {
        Self {
            connections: 4,
            statement_timeout: std::time::Duration::from_secs(2),
        }
    }
}

/// The track stage.
#[derive(Clone, Debug)]
pub struct Track {
    db: ProjectionDb,
    /// Deadline warnings, the stage's timer work (off unless [`Track::with_warnings`]).
    warnings: Option<(WarningConfig, Arc<dyn WorkingTime>)>,
    /// Step budget warnings, scanned with the deadline warnings.
    step_warnings: Option<steps::StepWarnings>,
    /// Where its warnings are recorded as owed until acknowledged (the pipeline's store).
    owed: Option<motcua_store::Store>,
}

impl std::fmt::Debug for dyn WorkingTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WorkingTime")
    }
}

impl Track {
    /// Connects to PostgreSQL (`postgres://…`) or SQLite (`sqlite:…`, created if missing)
    /// and applies the migrations.
    pub async fn connect(url: &str) -> Result<Self> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let opts: PgConnectOptions = url.parse()?;
            let pool = PgPoolOptions::new()
                .max_connections(8)
                .acquire_timeout(std::time::Duration::from_secs(10))
                .connect_with(opts)
                .await?;
            migrate(&pool).await?;
            Ok(Self::new(pool))
        } else if url.starts_with("sqlite:") {
            let opts = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(std::time::Duration::from_secs(10))
                // Two statement kinds × every chunk size up to 64 rows stay prepared.
                .statement_cache_capacity(256);
            // SQLite has one writer: one connection queues transactions instead of failing.
            let pool = SqlitePoolOptions::new().max_connections(1).connect_with(opts).await?;
            migrate_sqlite(&pool).await?;
            Ok(Self {
                db: ProjectionDb::Sqlite(pool),
                warnings: None,
                step_warnings: None,
                owed: None,
            })
        } else {
            Err(Error::UnsupportedUrl)
        }
    }

    /// A pool of its own for the status API, so a flood of requests cannot take the
    /// connections the projection writes with: read-only, `options.connections` wide, and
    /// on PostgreSQL every statement cancelled after `options.statement_timeout`. On an
    /// in-memory SQLite database (nothing to open twice) the projection's pool is shared.
    pub async fn reader(&self, url: &str, options: ReaderOptions) -> Result<ProjectionDb> {
        let wait = options.statement_timeout.max(std::time::Duration::from_millis(100));
        match &self.db {
            ProjectionDb::Postgres(_) => {
                let opts: PgConnectOptions = url
                    .parse::<PgConnectOptions>()?
                    .application_name("motcua-status-api")
                    .options([
                        ("statement_timeout", options.statement_timeout.as_millis().to_string()),
                        ("default_transaction_read_only", "on".to_owned()),
                    ]);
                let pool = PgPoolOptions::new()
                    .max_connections(options.connections.max(1))
                    .acquire_timeout(wait)
                    .connect_with(opts)
                    .await?;
                Ok(ProjectionDb::Postgres(pool))
            }
            ProjectionDb::Sqlite(own) if url.contains(":memory:") || url.contains("mode=memory") => {
                Ok(ProjectionDb::Sqlite(own.clone()))
            }
            ProjectionDb::Sqlite(_) => {
                let opts = SqliteConnectOptions::from_str(url)?.read_only(true).busy_timeout(wait);
                let pool = SqlitePoolOptions::new()
                    .max_connections(options.connections.max(1))
                    .acquire_timeout(wait)
                    .connect_with(opts)
                    .await?;
                Ok(ProjectionDb::Sqlite(pool))
            }
        }
    }

    /// Over an existing PostgreSQL pool whose database was migrated with [`migrate`].
    pub fn new(pool: PgPool) -> Self {
        Self {
            db: ProjectionDb::Postgres(pool),
            warnings: None,
            step_warnings: None,
            owed: None,
        }
    }

    /// Warns of deadlines: every `config.interval`, open dossiers close to their due time
    /// by `clock` (the routing calendar in production) get a warning status event.
    pub fn with_warnings(mut self, config: WarningConfig, clock: Arc<dyn WorkingTime>) -> Self {
        self.warnings = Some((config, clock));
        self
    }

    /// Warns of step budgets about to run out (scanned on the deadline warnings' timer,
    /// so [`Track::with_warnings`] must be on too).
    pub fn with_step_warnings(mut self, warnings: steps::StepWarnings) -> Self {
        self.step_warnings = Some(warnings);
        self
    }

    /// Records its warnings as owed in the pipeline's store until acknowledged, and
    /// leaves out those of dossiers that ended or were decided first
    /// ([`motcua_runtime::Stage::owed_statuses`]): a warning computed just before the
    /// projection read an end must not follow it.
    pub fn with_owed_statuses(mut self, store: motcua_store::Store) -> Self {
        self.owed = Some(store);
        self
    }

    pub fn db(&self) -> &ProjectionDb {
        &self.db
    }

    /// The PostgreSQL pool (deadline warnings need PostgreSQL).
    pub fn postgres(&self) -> Option<&PgPool> {
        match &self.db {
            ProjectionDb::Postgres(p) => Some(p),
            ProjectionDb::Sqlite(_) => None,
        }
    }

    pub async fn close(&self) {
        match &self.db {
            ProjectionDb::Postgres(p) => p.close().await,
            ProjectionDb::Sqlite(p) => p.close().await,
        }
    }

    /// One round trip to the projection's database (readiness probes).
    pub async fn ping(&self) -> Result<()> {
        match &self.db {
            ProjectionDb::Postgres(p) => sqlx::query("SELECT 1").execute(p).await.map(|_| ())?,
            ProjectionDb::Sqlite(p) => sqlx::query("SELECT 1").execute(p).await.map(|_| ())?,
        }
        Ok(())
    }

    /// Whether no event has been projected yet (a replay fills an empty projection).
    pub async fn is_empty(&self) -> Result<bool> {
        const ANY: &str = "SELECT EXISTS (SELECT 1 FROM track_history)";
        let any: bool = match &self.db {
            ProjectionDb::Postgres(p) => sqlx::query_scalar(ANY).fetch_one(p).await?,
            ProjectionDb::Sqlite(p) => sqlx::query_scalar(ANY).fetch_one(p).await?,
        };
        Ok(!any)
    }

    /// Writes events into the projection in one transaction (what a batch does).
    pub async fn apply(&self, events: &[&AnyEvent]) -> Result<Applied> {
        match &self.db {
            ProjectionDb::Postgres(p) => projection::apply(p, events).await,
            ProjectionDb::Sqlite(p) => projection::apply_sqlite(p, events).await,
        }
    }

    /// The row-at-a-time baseline: one transaction per event (benchmarks only).
    pub async fn apply_each(&self, events: &[&AnyEvent]) -> Result<Applied> {
        let mut out = Applied::default();
        for e in events {
            let a = self.apply(std::slice::from_ref(e)).await?;
            out.events += a.events;
            out.new_events += a.new_events;
            out.dossiers += a.dossiers;
        }
        Ok(out)
    }
}

impl Stage for Track {
    type Input = AllTopics;

    fn name(&self) -> &'static str {
        STAGE
    }

    fn owed_statuses(&self) -> Option<&motcua_store::Store> {
        self.owed.as_ref()
    }

    fn tick_interval(&self) -> Option<std::time::Duration> {
        self.warnings.as_ref().map(|(c, _)| c.interval)
    }

    /// Deadline warnings due now; remembered as warned once acknowledged.
    async fn tick(&self, now_ms: i64) -> Result<Tick, StageError> {
        let Some((config, clock)) = &self.warnings else {
            return Ok(Tick::default());
        };
        let mut warnings = pending_warnings(&self.db, now_ms, config, clock.as_ref()).await?;
        telemetry::deadline_risk(deadline_risk(&self.db, now_ms, config, clock.as_ref()).await?);
        if let Some(step) = &self.step_warnings {
            warnings.extend(steps::pending_step_warnings(&self.db, now_ms, step).await?);
        }
        // Announced as first computed (a crash before they were marked computes them again).
        let warnings = deadline::first_warnings(&self.db, warnings).await?;
        Ok(Tick {
            events: warnings.into_iter().map(AnyEvent::from).collect(),
            done: Vec::new(),
        })
    }

    async fn ticked(&self, tick: &Tick) -> Result<(), StageError> {
        let warnings: Vec<motcua_schemas::DossierStatusChanged> = tick
            .events
            .iter()
            .filter_map(|e| match e {
                AnyEvent::Status(s) => Some(s.clone()),
                _ => None,
            })
            .collect();
        let (step, deadline): (Vec<_>, Vec<_>) = warnings.into_iter().partition(|w| steps::warned_step(w).is_some());
        mark_warned(&self.db, &deadline).await?;
        steps::mark_step_warned(&self.db, &step).await?;
        let passed = deadline
            .iter()
            .filter(|w| w.reasons.iter().any(|r| r.code == deadline::DEADLINE_PASSED))
            .count() as u64;
        telemetry::deadline_warnings_published(deadline.len() as u64 - passed, passed);
        telemetry::step_warnings_published(step.len() as u64);
        Ok(())
    }

    async fn handle_batch(&self, batch: &[Envelope<AllTopics>]) -> Result<Vec<Outcome>, StageError> {
        let events: Vec<&AnyEvent> = batch.iter().map(|e| &e.event.0).collect();
        let applied = self
            .apply(&events)
            .await
            .map_err(|e| StageError::from(e).context("writing the projection"))?;
        telemetry::batch_applied(&applied);
        Ok(vec![Outcome::Emit(Vec::new()); batch.len()])
    }
}
