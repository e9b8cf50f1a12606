//! The audit log of registry lookups: who asked what, when, for which dossier.

use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::mpsc;

/// One lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub at_ms: i64,
    pub caller: String,
    pub dossier_id: String,
    pub registry: &'static str,
    pub subject: String,
    /// found, not_found, refused, unavailable
    pub outcome: &'static str,
    pub cached: bool,
    pub attempts: u32,
    pub latency_ms: u32,
}

/// Where audit records go.
pub trait AuditSink: Send + Sync + std::fmt::Debug {
    fn record(&self, record: AuditRecord);
}

/// Writes audit records to the `registry_audit` table in batches, off the lookup path.
/// Records are queued in memory until written (at most `flush_every`); `flush` waits for
/// everything queued so far (call it before acknowledging the work that caused them).
#[derive(Debug, Clone)]
pub struct PgAuditLog {
    tx: mpsc::UnboundedSender<Command>,
}

#[derive(Debug)]
enum Command {
    Record(AuditRecord),
    Flush(tokio::sync::oneshot::Sender<()>),
}

impl PgAuditLog {
    /// Starts the writer task. The table comes with the registry migrations
    /// ([`crate::sql::SqlRegistries::from_pool`] or [`PgAuditLog::migrate`]).
    pub fn start(pool: PgPool, flush_every: Duration) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<Command>();
        tokio::spawn(async move {
            let mut buf: Vec<AuditRecord> = Vec::new();
            let mut waiting: Vec<tokio::sync::oneshot::Sender<()>> = Vec::new();
            let mut tick = tokio::time::interval(flush_every);
            loop {
                tokio::select! {
                    cmd = rx.recv() => match cmd {
                        Some(Command::Record(r)) => {
                            buf.push(r);
                            if buf.len() < 5_000 { continue; }
                        }
                        Some(Command::Flush(done)) => waiting.push(done),
                        None => {
                            write(&pool, &mut buf).await;
                            return;
                        }
                    },
                    _ = tick.tick() => {}
                }
                write(&pool, &mut buf).await;
                for w in waiting.drain(..) {
                    let _ = w.send(());
                }
            }
        });
        Self { tx }
    }

    pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
        let mut migrator = sqlx::migrate!("./migrations");
        migrator.set_ignore_missing(true);
        migrator.run(pool).await
    }

    /// Waits until every record queued before this call is written.
    pub async fn flush(&self) {
        let (done, wait) = tokio::sync::oneshot::channel();
        if self.tx.send(Command::Flush(done)).is_ok() {
            let _ = wait.await;
        }
    }
}

async fn write(pool: &PgPool, buf: &mut Vec<AuditRecord>) {
    if buf.is_empty() {
        return;
    }
    let at: Vec<f64> = buf.iter().map(|r| r.at_ms as f64 / 1000.0).collect();
    let caller: Vec<&str> = buf.iter().map(|r| r.caller.as_str()).collect();
    let dossier: Vec<&str> = buf.iter().map(|r| r.dossier_id.as_str()).collect();
    let registry: Vec<&str> = buf.iter().map(|r| r.registry).collect();
    let subject: Vec<&str> = buf.iter().map(|r| r.subject.as_str()).collect();
    let outcome: Vec<&str> = buf.iter().map(|r| r.outcome).collect();
    let cached: Vec<bool> = buf.iter().map(|r| r.cached).collect();
    let attempts: Vec<i32> = buf.iter().map(|r| r.attempts as i32).collect();
    let latency: Vec<i32> = buf.iter().map(|r| r.latency_ms.min(i32::MAX as u32) as i32).collect();
    let result = sqlx::query(
        "INSERT INTO registry_audit (at, caller, dossier_id, registry, subject, outcome, cached, attempts, latency_ms)
         SELECT to_timestamp(a), c, d, r, s, o, k, n, l
         FROM UNNEST($1::float8[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bool[], $8::int[], $9::int[])
              AS t(a, c, d, r, s, o, k, n, l)",
    )
    .bind(&at)
    .bind(&caller)
    .bind(&dossier)
    .bind(&registry)
    .bind(&subject)
    .bind(&outcome)
    .bind(&cached)
    .bind(&attempts)
    .bind(&latency)
    .execute(pool)
    .await;
    match result {
        Ok(_) => buf.clear(),
        // Keep the records and try again with the next batch; a database outage must not
        // lose the audit trail while the worker keeps retrying its own work.
        Err(e) => {
            crate::telemetry::audit_write_failed(&e, buf.len());
        }
    }
}

impl AuditSink for PgAuditLog {
    fn record(&self, record: AuditRecord) {
        let _ = self.tx.send(Command::Record(record));
    }
}

/// Lookups as structured log events (target `motcua::audit`) with the subject masked:
/// the embedded demo's trail. Not a complete audit — logs travel to places personal data
/// must not; the complete audit is [`PgAuditLog`]'s table.
#[derive(Debug, Clone, Copy, Default)]
pub struct TracingAudit;

impl AuditSink for TracingAudit {
    fn record(&self, r: AuditRecord) {
        tracing::info!(
            target: "motcua::audit",
            at_ms = r.at_ms,
            caller = %r.caller,
            dossier_id = %r.dossier_id,
            registry = r.registry,
            // A log is not the audit: it shows the subject masked (the complete record
            // is the database's registry_audit table).
            subject = %motcua_security::access::mask_identifier(&r.subject),
            outcome = r.outcome,
            cached = r.cached,
            attempts = r.attempts,
            latency_ms = r.latency_ms,
            "registry lookup"
        );
    }
}
