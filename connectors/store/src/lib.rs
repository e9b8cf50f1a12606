//! motcua's store: PostgreSQL in production, SQLite (embedded, no server) by default.
//! Both through sqlx; migrations live in `migrations/<backend>/` and run at start-up.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, Row, SqlitePool};

/// The same statements on either backend (they use only SQL both understand).
macro_rules! both {
    ($self:expr, |$pool:ident| $body:expr) => {
        match $self {
            Store::Postgres($pool) => $body,
            Store::Sqlite($pool) => $body,
        }
    };
}

mod announcements;
mod bills;
mod decisions;
mod deliveries;
mod dlq;
mod lifecycle;
mod parked;
mod routing;
pub use announcements::{Owed, OWED_HOLD_MS};
pub use bills::{Bill, Confirmation, Settlement};
pub use decisions::Decision;
pub use deliveries::WalletDeliveryRecord;
pub use dlq::DlqReplay;
pub use lifecycle::{Closure, ClosureKind, Pause, Wait, WaitRequest, WaitState};
pub use parked::{Escalation, Lot, Parked};
pub use routing::Assignment;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database URL '{0}' is not supported: use postgres://… or sqlite://…")]
    UnsupportedUrl(String),
    #[error("cannot connect to {url}")]
    Connect {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("database migrations failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error")]
    Database(#[from] sqlx::Error),
    /// A dossier cannot end yet: a status of it another stage decided is still owed
    /// (see [`Store::owe`]); ending it again shortly succeeds.
    #[error("dossier {dossier_id} cannot end yet: a status of it is still owed")]
    AnnouncementsOwed { dossier_id: String },
}

/// What a database error means for the work that caused it — the one classification of
/// database errors in the pipeline (the store, the projection and the runtime use it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Retrying the same operation later may succeed: connection trouble, a server
    /// shutting down or out of resources, serialization failures and deadlocks, unique
    /// races between replicas, SQLite busy/locked.
    Retryable,
    /// The data was refused (a data exception or a constraint violation, a value that
    /// cannot be encoded): caused by a message, not by the database; retrying cannot help,
    /// dead-lettering the message that carried it can.
    Message,
    /// Needs a person: configuration, permissions, a schema that does not match.
    Fatal,
}

/// Classifies a sqlx error (see [`Class`]).
pub fn classify(e: &sqlx::Error) -> Class {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => Class::Retryable,
        sqlx::Error::Encode(_) | sqlx::Error::Decode(_) | sqlx::Error::ColumnDecode { .. } => Class::Message,
        sqlx::Error::Database(db) => classify_code(db.code().as_deref().unwrap_or_default()),
        _ => Class::Fatal,
    }
}

/// Classifies a SQLSTATE (PostgreSQL) or a SQLite result code.
pub fn classify_code(code: &str) -> Class {
    // PostgreSQL: connection exceptions (08…), insufficient resources (53…), operator
    // intervention (57P…), serialization failures and deadlocks (40…), unique violations
    // from a replica racing on the same dossier (23505). SQLite: busy, locked (5, 6, 517).
    let retryable = code.starts_with("08")
        || code.starts_with("53")
        || code.starts_with("57P")
        || code.starts_with("40")
        || matches!(code, "23505" | "5" | "6" | "517");
    // PostgreSQL: data exceptions (22…: a NUL byte in text, a value out of range) and the
    // other integrity constraints (23…). SQLite: too big (18), constraint (19 and its
    // extended codes), datatype mismatch (20), range (25).
    let message = code.starts_with("22")
        || code.starts_with("23")
        || matches!(code, "18" | "19" | "20" | "25")
        || code.parse::<u32>().is_ok_and(|c| c & 0xff == 19);
    if retryable {
        Class::Retryable
    } else if message {
        Class::Message
    } else {
        Class::Fatal
    }
}

impl Error {
    /// What this error means for the work that caused it.
    pub fn class(&self) -> Class {
        match self {
            Error::UnsupportedUrl(_) | Error::Migrate(_) => Class::Fatal,
            Error::Connect { .. } | Error::AnnouncementsOwed { .. } => Class::Retryable,
            Error::Database(e) => classify(e),
        }
    }

    /// Whether retrying the same operation later may succeed.
    pub fn is_retryable(&self) -> bool {
        self.class() == Class::Retryable
    }

    /// The SQLSTATE or SQLite code of a database error, for reasons that must not quote
    /// the refused data.
    pub fn database_code(&self) -> Option<String> {
        match self {
            Error::Database(sqlx::Error::Database(db)) => db.code().map(|c| c.into_owned()),
            _ => None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod classify_tests {
    use super::*;

    #[test]
    fn database_errors_are_classified_once() {
        for c in ["08006", "53300", "57P01", "40001", "40P01", "23505", "5", "6", "517"] {
            assert_eq!(classify_code(c), Class::Retryable, "{c}");
        }
        // A NUL byte in text (22021), a number out of range (22003), not-null (23502),
        // check (23514); SQLite constraint (19, 2067 = unique extended, 1299 = not null).
        for c in ["22021", "22003", "23502", "23514", "19", "1299", "18", "20"] {
            assert_eq!(classify_code(c), Class::Message, "{c}");
        }
        // Undefined table, insufficient privilege, bad password, syntax error.
        for c in ["42P01", "42501", "28P01", "42601", "1"] {
            assert_eq!(classify_code(c), Class::Fatal, "{c}");
        }
        assert_eq!(classify(&sqlx::Error::PoolTimedOut), Class::Retryable);
        assert_eq!(classify(&sqlx::Error::RowNotFound), Class::Fatal);
    }
}

/// A request for an official dossier code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeRequest {
    pub dossier_id: String,
    pub agency_code: String,
    /// YYMMDD of the reception date (Asia/Ho_Chi_Minh).
    pub day: String,
    pub received_at_ms: i64,
    /// A digest of the dossier's content: the same dossier id with other content is a
    /// conflict, not a redelivery.
    pub content_digest: String,
    /// A fresh lookup token for the citizen, kept only if this request gets a new code.
    pub lookup_token: String,
}

/// The code a dossier has, allocated now or on an earlier delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeAllocation {
    pub dossier_id: String,
    pub dossier_code: String,
    pub received_at_ms: i64,
    /// False when the dossier already had its code (a redelivery or a duplicate submission).
    pub newly_allocated: bool,
    /// The dossier id already has a code for a dossier with other content: this request
    /// reuses the id and must be refused (`dossier_code` is the other dossier's).
    pub conflicting: bool,
    /// The citizen's lookup token stored with the code (`None` for codes allocated before
    /// tokens existed).
    pub lookup_token: Option<String>,
}

/// `<agency>-<YYMMDD>-<NNNN>`: at least four digits, more if an agency ever passes 9,999
/// dossiers in a day (the code must stay unique rather than wrap).
pub fn format_dossier_code(agency_code: &str, day: &str, seq: i64) -> String {
    format!("{agency_code}-{day}-{seq:04}")
}

#[derive(Debug, Clone)]
pub enum Store {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

impl Store {
    /// Connects and applies pending migrations.
    pub async fn connect(url: &str) -> Result<Self> {
        let connect_err = |source| Error::Connect {
            url: redact(url),
            source,
        };
        let store = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let opts = PgConnectOptions::from_str(url).map_err(connect_err)?;
            let pool = PgPoolOptions::new()
                .max_connections(8)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(opts)
                .await
                .map_err(connect_err)?;
            let mut migrator = sqlx::migrate!("./migrations/postgres");
            // The database may also hold other components' migrations (registry replica).
            migrator.set_ignore_missing(true);
            migrator.run(&pool).await?;
            Store::Postgres(pool)
        } else if url.starts_with("sqlite:") {
            let opts = SqliteConnectOptions::from_str(url)
                .map_err(connect_err)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10));
            // One connection: SQLite has a single writer, and a pool of one makes every
            // transaction wait its turn instead of failing with SQLITE_BUSY.
            // Replicas opening a fresh file together race to switch it to WAL, and SQLite
            // answers the losers SQLITE_BUSY at once, without waiting.
            let pool = retrying_sqlite_race(
                "opening the SQLite file",
                |e: &sqlx::Error| matches!(e, sqlx::Error::Database(d) if d.code().as_deref() == Some("5")),
                || SqlitePoolOptions::new().max_connections(1).connect_with(opts.clone()),
            )
            .await
            .map_err(connect_err)?;
            let mut migrator = sqlx::migrate!("./migrations/sqlite");
            // One file may hold the projection's migrations too (the default, one file).
            migrator.set_ignore_missing(true);
            run_sqlite_migrations(&migrator, &pool).await?;
            Store::Sqlite(pool)
        } else {
            return Err(Error::UnsupportedUrl(redact(url)));
        };
        tracing::info!(url = %redact(url), backend = store.backend(), "store ready");
        Ok(store)
    }

    pub fn backend(&self) -> &'static str {
        match self {
            Store::Postgres(_) => "postgres",
            Store::Sqlite(_) => "sqlite",
        }
    }

    /// Gives every request its official code, in one transaction. A dossier that already
    /// has a code keeps it (and its reception time): redelivery is idempotent. New codes
    /// take the next numbers of their agency's daily sequence, in request order.
    pub async fn allocate_codes(&self, requests: &[CodeRequest]) -> Result<Vec<CodeAllocation>> {
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        match self {
            Store::Postgres(pool) => allocate_pg(pool, requests).await,
            Store::Sqlite(pool) => allocate_sqlite(pool, requests).await,
        }
    }

    /// The code of a dossier, if it has one.
    pub async fn dossier_code(&self, dossier_id: &str) -> Result<Option<(String, i64)>> {
        let sql = "SELECT dossier_code, received_at_ms FROM dossier_codes WHERE dossier_id = $1";
        both!(self, |pool| Ok(sqlx::query(sql)
            .bind(dossier_id)
            .fetch_optional(pool)
            .await?
            .map(|r| (r.get(0), r.get(1)))))
    }

    /// Number of codes allocated (for reports and tests).
    pub async fn count_codes(&self) -> Result<i64> {
        both!(self, |pool| Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM dossier_codes"
        )
        .fetch_one(pool)
        .await?))
    }

    pub async fn close(&self) {
        match self {
            Store::Postgres(p) => p.close().await,
            Store::Sqlite(p) => p.close().await,
        }
    }

    /// One round trip to the database (readiness probes).
    pub async fn ping(&self) -> Result<()> {
        both!(self, |pool| {
            sqlx::query("SELECT 1").execute(pool).await?;
            Ok(())
        })
    }
}

/// Splits a batch into dossiers that already have a code and new ones, grouped by
/// (agency, day) in first-seen order, so each group takes one contiguous block of its
/// sequence with a single upsert.
struct Plan<'a> {
    groups: Vec<((&'a str, &'a str), Vec<usize>)>,
}

fn plan<'a>(requests: &'a [CodeRequest], existing: &HashMap<String, Existing>) -> (Plan<'a>, Vec<Option<usize>>) {
    let mut first_index: HashMap<&str, usize> = HashMap::new();
    // For each request: None = fresh, Some(i) = duplicate of request i within this batch.
    let mut duplicate_of = vec![None; requests.len()];
    let mut groups: Vec<((&str, &str), Vec<usize>)> = Vec::new();
    let mut group_index: HashMap<(&str, &str), usize> = HashMap::new();
    for (i, r) in requests.iter().enumerate() {
        if existing.contains_key(&r.dossier_id) {
            continue;
        }
        if let Some(&first) = first_index.get(r.dossier_id.as_str()) {
            duplicate_of[i] = Some(first);
            continue;
        }
        first_index.insert(&r.dossier_id, i);
        let key = (r.agency_code.as_str(), r.day.as_str());
        let g = *group_index.entry(key).or_insert_with(|| {
            groups.push((key, Vec::new()));
            groups.len() - 1
        });
        groups[g].1.push(i);
    }
    (Plan { groups }, duplicate_of)
}

/// A dossier's stored code: code, reception time, content digest and lookup token (if known).
type Existing = (String, i64, Option<String>, Option<String>);

fn assemble(
    requests: &[CodeRequest],
    existing: &HashMap<String, Existing>,
    fresh: &HashMap<usize, String>,
    duplicate_of: &[Option<usize>],
) -> Vec<CodeAllocation> {
    requests
        .iter()
        .enumerate()
        .map(|(i, r)| {
            if let Some((code, at, digest, token)) = existing.get(&r.dossier_id) {
                return CodeAllocation {
                    dossier_id: r.dossier_id.clone(),
                    dossier_code: code.clone(),
                    received_at_ms: *at,
                    newly_allocated: false,
                    conflicting: digest.as_ref().is_some_and(|d| *d != r.content_digest),
                    lookup_token: token.clone(),
                };
            }
            let (source, newly) = match duplicate_of[i] {
                Some(first) => (first, false),
                None => (i, true),
            };
            CodeAllocation {
                dossier_id: r.dossier_id.clone(),
                dossier_code: fresh[&source].clone(),
                received_at_ms: requests[source].received_at_ms,
                newly_allocated: newly,
                conflicting: requests[source].content_digest != r.content_digest,
                lookup_token: Some(requests[source].lookup_token.clone()),
            }
        })
        .collect()
}

async fn allocate_pg(pool: &PgPool, requests: &[CodeRequest]) -> Result<Vec<CodeAllocation>> {
    let mut tx = pool.begin().await?;
    let ids: Vec<&str> = requests.iter().map(|r| r.dossier_id.as_str()).collect();
    let existing: HashMap<String, Existing> = sqlx::query(
        "SELECT dossier_id, dossier_code, received_at_ms, content_digest, lookup_token FROM dossier_codes WHERE dossier_id = ANY($1)",
    )
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3), r.get(4))))
    .collect();
    let (plan, duplicate_of) = plan(requests, &existing);
    let mut fresh = HashMap::new();
    let (mut ins_id, mut ins_code, mut ins_agency, mut ins_day, mut ins_seq, mut ins_at, mut ins_digest) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    let mut ins_token: Vec<&str> = Vec::new();
    // Lock sequence rows in a fixed order so concurrent replicas cannot deadlock.
    let mut groups = plan.groups;
    groups.sort_by(|a, b| a.0.cmp(&b.0));
    for ((agency, day), members) in &groups {
        let last: i64 = sqlx::query_scalar(
            "INSERT INTO agency_day_sequences (agency_code, day, last_seq) VALUES ($1, $2, $3)
             ON CONFLICT (agency_code, day) DO UPDATE SET last_seq = agency_day_sequences.last_seq + EXCLUDED.last_seq
             RETURNING last_seq",
        )
        .bind(agency)
        .bind(day)
        .bind(members.len() as i64)
        .fetch_one(&mut *tx)
        .await?;
        let first = last - members.len() as i64 + 1;
        for (k, &i) in members.iter().enumerate() {
            let seq = first + k as i64;
            let code = format_dossier_code(agency, day, seq);
            ins_id.push(requests[i].dossier_id.as_str());
            ins_code.push(code.clone());
            ins_agency.push(*agency);
            ins_day.push(*day);
            ins_seq.push(seq);
            ins_at.push(requests[i].received_at_ms);
            ins_digest.push(requests[i].content_digest.as_str());
            ins_token.push(requests[i].lookup_token.as_str());
            fresh.insert(i, code);
        }
    }
    if !ins_id.is_empty() {
        sqlx::query(
            "INSERT INTO dossier_codes (dossier_id, dossier_code, agency_code, day, seq, received_at_ms, content_digest, lookup_token)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[], $7::text[], $8::text[])",
        )
        .bind(&ins_id)
        .bind(&ins_code)
        .bind(&ins_agency)
        .bind(&ins_day)
        .bind(&ins_seq)
        .bind(&ins_at)
        .bind(&ins_digest)
        .bind(&ins_token)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(assemble(requests, &existing, &fresh, &duplicate_of))
}

async fn allocate_sqlite(pool: &SqlitePool, requests: &[CodeRequest]) -> Result<Vec<CodeAllocation>> {
    // A few statements per batch, not two per dossier: each statement is a round trip to
    // sqlx's SQLite worker thread (a thread wake-up each way), which cost more than the
    // statements themselves.
    let mut tx = pool.begin().await?;
    let mut existing = HashMap::new();
    for chunk in requests.chunks(rows_per_statement(1)) {
        let sql = format!(
            "SELECT dossier_id, dossier_code, received_at_ms, content_digest, lookup_token FROM dossier_codes WHERE dossier_id IN ({})",
            sqlite_values(chunk.len(), 1)
        );
        // Not kept prepared: its text changes with the batch's size.
        let mut q = sqlx::query(&sql).persistent(false);
        for r in chunk {
            q = q.bind(&r.dossier_id);
        }
        for row in q.fetch_all(&mut *tx).await? {
            existing.insert(
                row.get::<String, _>(0),
                (row.get(1), row.get(2), row.get(3), row.get(4)),
            );
        }
    }
    let (plan, duplicate_of) = plan(requests, &existing);
    // Every agency-day counter of the batch moved in one statement; RETURNING gives each
    // its new last value (in no promised order: matched by key).
    let mut last: HashMap<(String, String), i64> = HashMap::new();
    for chunk in plan.groups.chunks(rows_per_statement(3)) {
        let sql = format!(
            "INSERT INTO agency_day_sequences (agency_code, day, last_seq) VALUES {}
             ON CONFLICT (agency_code, day) DO UPDATE SET last_seq = last_seq + excluded.last_seq
             RETURNING agency_code, day, last_seq",
            sqlite_values(chunk.len(), 3)
        );
        let mut q = sqlx::query(&sql).persistent(false);
        for ((agency, day), members) in chunk {
            q = q.bind(*agency).bind(*day).bind(members.len() as i64);
        }
        for row in q.fetch_all(&mut *tx).await? {
            last.insert((row.get(0), row.get(1)), row.get(2));
        }
    }
    let mut fresh = HashMap::new();
    let mut rows: Vec<(usize, &str, &str, i64)> = Vec::new();
    for ((agency, day), members) in &plan.groups {
        let last = *last
            .get(&((*agency).to_owned(), (*day).to_owned()))
            .ok_or_else(|| sqlx::Error::Protocol(format!("no sequence returned for {agency} {day}")))?;
        let first = last - members.len() as i64 + 1;
        for (k, &i) in members.iter().enumerate() {
            rows.push((i, agency, day, first + k as i64));
        }
    }
    for chunk in rows.chunks(rows_per_statement(8)) {
        let sql = format!(
            "INSERT INTO dossier_codes (dossier_id, dossier_code, agency_code, day, seq, received_at_ms, content_digest, lookup_token)
             VALUES {}",
            sqlite_values(chunk.len(), 8)
        );
        let mut q = sqlx::query(&sql).persistent(false);
        for &(i, agency, day, seq) in chunk {
            let code = format_dossier_code(agency, day, seq);
            let r = &requests[i];
            q = q
                .bind(&r.dossier_id)
                .bind(code.clone())
                .bind(agency)
                .bind(day)
                .bind(seq)
                .bind(r.received_at_ms)
                .bind(&r.content_digest)
                .bind(&r.lookup_token);
            fresh.insert(i, code);
        }
        q.execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(assemble(requests, &existing, &fresh, &duplicate_of))
}

impl Store {
    /// The placeholders of a multi-row statement in this database's dialect: SQLite's
    /// anonymous ones ([`sqlite_values`]), PostgreSQL's numbered `$1, $2, …`.
    pub(crate) fn values(&self, rows: usize, columns: usize) -> String {
        match self {
            Store::Sqlite(_) => sqlite_values(rows, columns),
            Store::Postgres(_) => {
                let group = |r: usize| {
                    let params: Vec<String> = (1..=columns).map(|c| format!("${}", r * columns + c)).collect();
                    params.join(", ")
                };
                (0..rows)
                    .map(|r| {
                        if columns > 1 {
                            format!("({})", group(r))
                        } else {
                            group(r)
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        }
    }
}

/// Parameters bound per multi-row statement: under SQLite's limit (32,766) and
/// PostgreSQL's (65,535), and small enough to keep statements (and their parsing) small.
const PARAMETERS_PER_STATEMENT: usize = 4_000;

/// How many rows of `columns` parameters one multi-row statement takes.
/// Takes the per-dossier lock of each dossier for the transaction (PostgreSQL), in one
/// order so that two transactions locking overlapping sets cannot deadlock. Billing,
/// opening a wait and closing a dossier take it, so none of them acts on a dossier another
/// has just ended. (SQLite has one writer: those transactions begin IMMEDIATE instead.)
pub(crate) async fn lock_dossiers<'a>(
    tx: &mut sqlx::PgConnection,
    dossier_ids: impl IntoIterator<Item = &'a str>,
) -> Result<()> {
    let mut ids: Vec<&str> = dossier_ids.into_iter().collect();
    ids.sort_unstable();
    ids.dedup();
    for id in ids {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(id)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

pub(crate) fn rows_per_statement(columns: usize) -> usize {
    (PARAMETERS_PER_STATEMENT / columns.max(1)).max(1)
}

/// The placeholders of a multi-row SQLite statement: `rows` groups of `columns` anonymous
/// parameters, `(?, ?), (?, ?)` (`?, ?` for one column, as in `IN (…)`), bound in order.
/// Anonymous, not numbered (`?1`): sqlx looks up each parameter's name when binding, and
/// SQLite finds a name by scanning the statement's list of them, so numbered parameters
/// cost quadratic time (30 % of intake's CPU on a 4,000-parameter statement).
pub fn sqlite_values(rows: usize, columns: usize) -> String {
    let group = if columns > 1 {
        format!("({})", vec!["?"; columns].join(", "))
    } else {
        "?".to_owned()
    };
    vec![group; rows].join(", ")
}

/// Runs `migrator` on a SQLite database several processes may open at once (replicas of
/// a stage starting together on one file). SQLite has no lock that spans the check for
/// applied migrations and applying them: two processes may both decide to apply the same
/// one, and the second fails ("table … already exists") once the first commits. Each
/// migration runs in its own transaction, so the failed one left nothing behind: reading
/// the applied ones again finds it done.
pub async fn run_sqlite_migrations(
    migrator: &sqlx::migrate::Migrator,
    pool: &SqlitePool,
) -> std::result::Result<(), sqlx::migrate::MigrateError> {
    retrying_sqlite_race("SQLite migrations", |_| true, || migrator.run(pool)).await
}

/// Runs `op` again, up to 5 times with a longer pause each time, while `racing` says its
/// error is a race with another process opening the same SQLite file.
async fn retrying_sqlite_race<T, E, Fut>(
    what: &str,
    racing: impl Fn(&E) -> bool,
    mut op: impl FnMut() -> Fut,
) -> std::result::Result<T, E>
where
    E: std::fmt::Display,
    Fut: std::future::Future<Output = std::result::Result<T, E>>,
{
    let mut attempt = 1;
    loop {
        match op().await {
            Err(e) if attempt < 5 && racing(&e) => {
                tracing::info!(attempt, error = %e, "{what} raced another process on the same file; trying again");
                tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
                attempt += 1;
            }
            r => return r,
        }
    }
}

/// Hides the password of a database URL in logs and errors.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}://{user}:***@{}", &url[..s], &url[at + 1..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests;

/// Test support: a fresh, empty PostgreSQL database per test on the server named by
/// `MOTCUA_TEST_DATABASE_URL` (the test script starts that server).
pub mod testing {
    use sqlx::Connection;

    /// Creates an empty database and returns its URL. Panics with instructions when no
    /// server is configured: PostgreSQL tests must run against a real server, not be
    /// skipped silently.
    pub async fn scratch_postgres_url() -> String {
        let server = std::env::var("MOTCUA_TEST_DATABASE_URL").unwrap_or_else(|_| {
            panic!(
                "MOTCUA_TEST_DATABASE_URL is not set: PostgreSQL tests need a real server. \
                 Run `tests/run.sh` (starts one) or point the variable at postgres://user@host/db"
            )
        });
        let name = format!("motcua_test_{}", uuid_like());
        let mut conn = sqlx::PgConnection::connect(&server)
            .await
            .unwrap_or_else(|e| panic!("cannot reach test PostgreSQL at {}: {e}", super::redact(&server)));
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("create database {name}: {e}"));
        let base = match server.rfind('/') {
            Some(i) if i > server.find("://").map_or(0, |s| s + 2) => &server[..i],
            _ => server.as_str(),
        };
        let (base, query) = match server.find('?') {
            Some(q) => (&base[..base.len().min(q)], &server[q..]),
            None => (base, ""),
        };
        format!("{base}/{name}{query}")
    }

    fn uuid_like() -> String {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        format!(
            "{}_{}_{}",
            std::process::id(),
            t % 1_000_000_000,
            N.fetch_add(1, Ordering::Relaxed)
        )
    }
}
