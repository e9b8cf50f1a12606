//! Work parked until an outside system answers: the verify stage's registry retries and
//! the result stage's e-wallet deliveries, one lot (table) each, one code path.

use sqlx::Row;

use crate::{Result, Store};

/// Whose parked work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lot {
    /// Dossiers verify could not check (a registry down).
    Verify,
    /// Results the e-wallet gateway has not acknowledged.
    Result,
}

impl Lot {
    pub const ALL: [Lot; 2] = [Lot::Verify, Lot::Result];

    fn table(self) -> &'static str {
        match self {
            Lot::Verify => "verify_parked",
            Lot::Result => "result_parked",
        }
    }

    /// The stage that parks here.
    pub fn stage(self) -> &'static str {
        match self {
            Lot::Verify => "verify",
            Lot::Result => "result",
        }
    }
}

/// A parked dossier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parked {
    pub dossier_id: String,
    pub payload: Vec<u8>,
    pub parked_at_ms: i64,
    pub attempts: i32,
    pub last_error: String,
    /// The outcome a retry already decided (its events, encoded by the stage), if any.
    pub decision: Option<Vec<u8>>,
    /// When it was handed to an officer while still parked (result deliveries).
    pub escalated_at_ms: Option<i64>,
    pub lot: Lot,
}

const PARKED_COLUMNS: &str = "dossier_id, payload, parked_at_ms, attempts, last_error, decision, escalated_at_ms";

fn parked_row<R: Row>(lot: Lot, r: &R) -> Parked
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i32: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Vec<u8>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<Vec<u8>>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<i64>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Parked {
        dossier_id: r.get("dossier_id"),
        payload: r.get("payload"),
        parked_at_ms: r.get("parked_at_ms"),
        attempts: r.get("attempts"),
        last_error: r.get("last_error"),
        decision: r.get("decision"),
        escalated_at_ms: r.get("escalated_at_ms"),
        lot,
    }
}

impl Store {
    /// Parks a dossier (idempotent: a dossier parked already keeps its first park time).
    pub async fn park(
        &self,
        lot: Lot,
        dossier_id: &str,
        payload: &[u8],
        now_ms: i64,
        next_attempt_ms: i64,
        error: &str,
    ) -> Result<()> {
        let sql = format!(
            "INSERT INTO {} (dossier_id, payload, parked_at_ms, next_attempt_ms, last_error)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (dossier_id) DO NOTHING",
            lot.table()
        );
        both!(self, |pool| {
            sqlx::query(&sql)
                .bind(dossier_id)
                .bind(payload)
                .bind(now_ms)
                .bind(next_attempt_ms)
                .bind(error)
                .execute(pool)
                .await?;
            Ok(())
        })
    }

    /// Claims up to `limit` parked dossiers due at `now_ms`: their next attempt moves to
    /// `now_ms + lease_ms`, so another replica does not take them meanwhile (and a
    /// crashed claimer's rows come back after the lease).
    pub async fn claim_due(&self, lot: Lot, now_ms: i64, lease_ms: i64, limit: i64) -> Result<Vec<Parked>> {
        // PostgreSQL: replicas skip each other's rows. SQLite has one connection, one
        // writer: the UPDATE … RETURNING is already exclusive.
        let lock = match self {
            Store::Postgres(_) => "FOR UPDATE SKIP LOCKED",
            Store::Sqlite(_) => "",
        };
        let table = lot.table();
        let sql = format!(
            "UPDATE {table} SET next_attempt_ms = $2, attempts = attempts + 1
             WHERE dossier_id IN (
                 SELECT dossier_id FROM {table} WHERE next_attempt_ms <= $1
                 ORDER BY next_attempt_ms LIMIT $3 {lock})
             RETURNING {PARKED_COLUMNS}"
        );
        both!(self, |pool| Ok(sqlx::query(&sql)
            .bind(now_ms)
            .bind(now_ms + lease_ms)
            .bind(limit)
            .fetch_all(pool)
            .await?
            .iter()
            .map(|r| parked_row(lot, r))
            .collect()))
    }

    /// Schedules the next attempt of a parked dossier.
    pub async fn reschedule(&self, lot: Lot, dossier_id: &str, next_attempt_ms: i64, error: &str) -> Result<()> {
        let sql = format!(
            "UPDATE {} SET next_attempt_ms = $2, last_error = $3 WHERE dossier_id = $1",
            lot.table()
        );
        both!(self, |pool| {
            sqlx::query(&sql)
                .bind(dossier_id)
                .bind(next_attempt_ms)
                .bind(error)
                .execute(pool)
                .await?;
            Ok(())
        })
    }

    /// Remembers the outcome decided for a parked dossier, once: a decision stored before
    /// stays (the stored one is returned), so a retry after a crash re-emits it as it was.
    pub async fn decide(&self, lot: Lot, dossier_id: &str, decision: &[u8]) -> Result<Vec<u8>> {
        let table = lot.table();
        let update = format!("UPDATE {table} SET decision = $2 WHERE dossier_id = $1 AND decision IS NULL");
        let select = format!("SELECT decision FROM {table} WHERE dossier_id = $1");
        both!(self, |pool| {
            sqlx::query(&update)
                .bind(dossier_id)
                .bind(decision)
                .execute(pool)
                .await?;
            let stored: Option<Vec<u8>> = sqlx::query_scalar(&select)
                .bind(dossier_id)
                .fetch_optional(pool)
                .await?
                .flatten();
            Ok(stored.unwrap_or_else(|| decision.to_vec()))
        })
    }

    /// Removes a dossier whose outcome has been delivered.
    pub async fn unpark(&self, lot: Lot, dossier_id: &str) -> Result<()> {
        let sql = format!("DELETE FROM {} WHERE dossier_id = $1", lot.table());
        both!(self, |pool| {
            sqlx::query(&sql).bind(dossier_id).execute(pool).await?;
            Ok(())
        })
    }

    pub async fn parked_count(&self, lot: Lot) -> Result<i64> {
        let sql = format!("SELECT COUNT(*) FROM {}", lot.table());
        both!(self, |pool| Ok(sqlx::query_scalar(&sql).fetch_one(pool).await?))
    }

    /// Marks a parked dossier handed to an officer; true when this call marked it (the
    /// escalation is announced once, whichever replica gets there first).
    pub async fn mark_escalated(&self, lot: Lot, dossier_id: &str, at_ms: i64) -> Result<bool> {
        let sql = format!(
            "UPDATE {} SET escalated_at_ms = $2 WHERE dossier_id = $1 AND escalated_at_ms IS NULL",
            lot.table()
        );
        both!(self, |pool| Ok(sqlx::query(&sql)
            .bind(dossier_id)
            .bind(at_ms)
            .execute(pool)
            .await?
            .rows_affected()
            == 1))
    }
}

/// A dossier handed to an officer for manual verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Escalation {
    pub dossier_id: String,
    pub dossier_code: String,
    /// The dossier.accepted message.
    pub payload: Vec<u8>,
    pub escalated_at_ms: i64,
    pub reason: String,
    pub verified_by: Option<String>,
    pub verified_at_ms: Option<i64>,
    pub note: Option<String>,
}

const ESCALATION_COLUMNS: &str =
    "dossier_id, dossier_code, payload, escalated_at_ms, reason, verified_by, verified_at_ms, note";

fn escalation<R: Row>(r: &R) -> Escalation
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<String>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<i64>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Vec<u8>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Escalation {
        dossier_id: r.get("dossier_id"),
        dossier_code: r.get("dossier_code"),
        payload: r.get("payload"),
        escalated_at_ms: r.get("escalated_at_ms"),
        reason: r.get("reason"),
        verified_by: r.get("verified_by"),
        verified_at_ms: r.get("verified_at_ms"),
        note: r.get("note"),
    }
}

impl Store {
    /// Parked dossiers of every lot, oldest first (operators): at most `limit`.
    pub async fn parked(&self, limit: i64) -> Result<Vec<Parked>> {
        let mut all = Vec::new();
        for lot in Lot::ALL {
            let sql = format!(
                "SELECT {PARKED_COLUMNS} FROM {} ORDER BY parked_at_ms LIMIT $1",
                lot.table()
            );
            let rows: Vec<Parked> = both!(self, |pool| sqlx::query(&sql)
                .bind(limit)
                .fetch_all(pool)
                .await?
                .iter()
                .map(|r| parked_row(lot, r))
                .collect());
            all.extend(rows);
        }
        all.sort_by_key(|p| p.parked_at_ms);
        all.truncate(usize::try_from(limit).unwrap_or(0));
        Ok(all)
    }

    /// Parked dossiers of every lot.
    pub async fn parked_total(&self) -> Result<i64> {
        let mut total = 0;
        for lot in Lot::ALL {
            total += self.parked_count(lot).await?;
        }
        Ok(total)
    }

    /// Records escalations (a dossier escalated before keeps its first record).
    pub async fn escalate(&self, rows: &[Escalation]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let sql = "INSERT INTO verify_escalated (dossier_id, dossier_code, payload, escalated_at_ms, reason)
                   VALUES ($1, $2, $3, $4, $5) ON CONFLICT (dossier_id) DO NOTHING";
        both!(self, |pool| {
            let mut tx = pool.begin().await?;
            for e in rows {
                sqlx::query(sql)
                    .bind(&e.dossier_id)
                    .bind(&e.dossier_code)
                    .bind(&e.payload)
                    .bind(e.escalated_at_ms)
                    .bind(&e.reason)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// Escalated dossiers no officer verified yet, oldest first: at most `limit`.
    pub async fn escalated(&self, limit: i64) -> Result<Vec<Escalation>> {
        let sql = format!(
            "SELECT {ESCALATION_COLUMNS} FROM verify_escalated WHERE verified_by IS NULL
             ORDER BY escalated_at_ms LIMIT $1"
        );
        both!(self, |pool| Ok(sqlx::query(&sql)
            .bind(limit)
            .fetch_all(pool)
            .await?
            .iter()
            .map(escalation)
            .collect()))
    }

    /// The escalation of the dossier with this code, verified or not.
    pub async fn escalation(&self, dossier_code: &str) -> Result<Option<Escalation>> {
        let sql = format!("SELECT {ESCALATION_COLUMNS} FROM verify_escalated WHERE dossier_code = $1");
        both!(self, |pool| Ok(sqlx::query(&sql)
            .bind(dossier_code)
            .fetch_optional(pool)
            .await?
            .map(|r| escalation(&r))))
    }

    /// Records the officer who verified an escalated dossier by hand; returns the
    /// escalation as stored (another officer's record when one came first).
    pub async fn verified_by_hand(&self, dossier_id: &str, by: &str, note: &str, at_ms: i64) -> Result<Escalation> {
        let update = "UPDATE verify_escalated SET verified_by = $2, verified_at_ms = $3, note = $4
                      WHERE dossier_id = $1 AND verified_by IS NULL";
        let select = format!("SELECT {ESCALATION_COLUMNS} FROM verify_escalated WHERE dossier_id = $1");
        both!(self, |pool| {
            let mut tx = pool.begin().await?;
            sqlx::query(update)
                .bind(dossier_id)
                .bind(by)
                .bind(at_ms)
                .bind(note)
                .execute(&mut *tx)
                .await?;
            let row = sqlx::query(&select).bind(dossier_id).fetch_one(&mut *tx).await?;
            tx.commit().await?;
            Ok(escalation(&row))
        })
    }
}
