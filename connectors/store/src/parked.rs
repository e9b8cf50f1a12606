//! Work parked until an outside system answers (the verify stage's registry retries).

use sqlx::Row;

use crate::{Result, Store};

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
}

impl Store {
    /// Parks a dossier (idempotent: a dossier parked already keeps its first park time).
    pub async fn park(
        &self,
        dossier_id: &str,
        payload: &[u8],
        now_ms: i64,
        next_attempt_ms: i64,
        error: &str,
    ) -> Result<()> {
        let sql = "INSERT INTO verify_parked (dossier_id, payload, parked_at_ms, next_attempt_ms, last_error)
                   VALUES ($1, $2, $3, $4, $5) ON CONFLICT (dossier_id) DO NOTHING";
        both!(self, |pool| {
            sqlx::query(sql)
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
    pub async fn claim_due(&self, now_ms: i64, lease_ms: i64, limit: i64) -> Result<Vec<Parked>> {
        // PostgreSQL: replicas skip each other's rows. SQLite has one connection, one
        // writer: the UPDATE … RETURNING is already exclusive.
        let lock = match self {
            Store::Postgres(_) => "FOR UPDATE SKIP LOCKED",
            Store::Sqlite(_) => "",
        };
        let sql = format!(
            "UPDATE verify_parked SET next_attempt_ms = $2, attempts = attempts + 1
             WHERE dossier_id IN (
                 SELECT dossier_id FROM verify_parked WHERE next_attempt_ms <= $1
                 ORDER BY next_attempt_ms LIMIT $3 {lock})
             RETURNING dossier_id, payload, parked_at_ms, attempts, last_error, decision"
        );
        both!(self, |pool| Ok(sqlx::query(&sql)
            .bind(now_ms)
            .bind(now_ms + lease_ms)
            .bind(limit)
            .fetch_all(pool)
            .await?
            .into_iter()
            .map(|r| Parked {
                dossier_id: r.get(0),
                payload: r.get(1),
                parked_at_ms: r.get(2),
                attempts: r.get(3),
                last_error: r.get(4),
                decision: r.get(5),
            })
            .collect()))
    }

    /// Schedules the next attempt of a parked dossier.
    pub async fn reschedule(&self, dossier_id: &str, next_attempt_ms: i64, error: &str) -> Result<()> {
        let sql = "UPDATE verify_parked SET next_attempt_ms = $2, last_error = $3 WHERE dossier_id = $1";
        both!(self, |pool| {
            sqlx::query(sql)
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
    pub async fn decide(&self, dossier_id: &str, decision: &[u8]) -> Result<Vec<u8>> {
        both!(self, |pool| {
            sqlx::query("UPDATE verify_parked SET decision = $2 WHERE dossier_id = $1 AND decision IS NULL")
                .bind(dossier_id)
                .bind(decision)
                .execute(pool)
                .await?;
            let stored: Option<Vec<u8>> =
                sqlx::query_scalar("SELECT decision FROM verify_parked WHERE dossier_id = $1")
                    .bind(dossier_id)
                    .fetch_optional(pool)
                    .await?
                    .flatten();
            Ok(stored.unwrap_or_else(|| decision.to_vec()))
        })
    }

    /// Removes a dossier whose outcome has been delivered.
    pub async fn unpark(&self, dossier_id: &str) -> Result<()> {
        both!(self, |pool| {
            sqlx::query("DELETE FROM verify_parked WHERE dossier_id = $1")
                .bind(dossier_id)
                .execute(pool)
                .await?;
            Ok(())
        })
    }

    pub async fn parked_count(&self) -> Result<i64> {
        both!(self, |pool| Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM verify_parked"
        )
        .fetch_one(pool)
        .await?))
    }
}
