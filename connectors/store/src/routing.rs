//! Routing assignments: the route stage's idempotent effect, and the desk loads.

use sqlx::Row;

use crate::{Result, Store};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub dossier_id: String,
    pub authority_code: String,
    pub desk_code: String,
    pub transferred: bool,
    pub due_at_ms: i64,
    pub routed_at_ms: i64,
    /// Which calendar data computed `due_at_ms` (`sha256:<hex>`); `None` for rows
    /// stored before it was recorded.
    pub calendar_version: Option<String>,
    /// The clock's pauses `due_at_ms` was moved by, as JSON (the route stage's form).
    pub clock_pauses: String,
    /// The routed message (framed) sent with this assignment, stored with it for the back
    /// office's supplement requests ([`Store::routed_of`]); `assign` does not read it back
    /// (`None` in what it returns).
    pub routed: Option<Vec<u8>>,
}

impl Store {
    /// Records assignments; a dossier assigned before keeps its first assignment, which
    /// is what comes back (in request order).
    /// Stores assignments (a dossier routed before keeps its first one) and returns, in
    /// order, the stored assignment of each dossier and whether it is new (inserted now):
    /// only new ones add to a desk's load.
    pub async fn assign(&self, rows: &[Assignment]) -> Result<Vec<(Assignment, bool)>> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let mut inserted = std::collections::HashSet::new();
        let mut stored = Vec::with_capacity(rows.len());
        // A few statements per batch (one transaction): multi-row inserts whose RETURNING
        // names the rows that are new, then the stored rows read back.
        both!(self, |pool| {
            let mut tx = pool.begin().await?;
            for chunk in rows.chunks(crate::rows_per_statement(9)) {
                let sql = format!(
                    "INSERT INTO routing_assignments (dossier_id, authority_code, desk_code, transferred, due_at_ms, routed_at_ms, calendar_version, clock_pauses, routed_payload)
                     VALUES {} ON CONFLICT (dossier_id) DO NOTHING RETURNING dossier_id",
                    self.values(chunk.len(), 9)
                );
                // Not kept prepared: its text changes with the batch's size.
                let mut q = sqlx::query_scalar::<_, String>(&sql).persistent(false);
                for a in chunk {
                    q = q
                        .bind(&a.dossier_id)
                        .bind(&a.authority_code)
                        .bind(&a.desk_code)
                        .bind(a.transferred)
                        .bind(a.due_at_ms)
                        .bind(a.routed_at_ms)
                        .bind(&a.calendar_version)
                        .bind(&a.clock_pauses)
                        .bind(&a.routed);
                }
                inserted.extend(q.fetch_all(&mut *tx).await?);
                let sql = format!(
                    "SELECT dossier_id, authority_code, desk_code, transferred, due_at_ms, routed_at_ms, calendar_version, clock_pauses
                     FROM routing_assignments WHERE dossier_id IN ({})",
                    self.values(chunk.len(), 1)
                );
                let mut q = sqlx::query(&sql).persistent(false);
                for a in chunk {
                    q = q.bind(&a.dossier_id);
                }
                stored.extend(q.fetch_all(&mut *tx).await?.iter().map(row));
            }
            tx.commit().await?;
            Ok::<(), crate::Error>(())
        })?;
        // A dossier twice in the batch: its first request is the one stored new.
        let mut first = std::collections::HashSet::new();
        Ok(in_order(rows, stored)
            .into_iter()
            .map(|a| {
                let new = inserted.contains(&a.dossier_id) && first.insert(a.dossier_id.clone());
                (a, new)
            })
            .collect())
    }

    /// The routed message of an open dossier (as first sent, or as last sent back after a
    /// supplement): `None` for a dossier never routed, closed, or routed before it was
    /// kept.
    pub async fn routed_of(&self, dossier_id: &str) -> Result<Option<Vec<u8>>> {
        let sql = "SELECT routed_payload FROM routing_assignments WHERE dossier_id = $1 AND closed = FALSE";
        both!(self, |pool| Ok(sqlx::query(sql)
            .bind(dossier_id)
            .fetch_optional(pool)
            .await?
            .and_then(|r| r.get::<Option<Vec<u8>>, _>(0))))
    }

    /// The routed message a supplement sent the dossier back to the back office with (a
    /// later request of the back office resumes from it).
    pub async fn resend_routed(&self, dossier_id: &str, routed: &[u8]) -> Result<()> {
        let sql = "UPDATE routing_assignments SET routed_payload = $2 WHERE dossier_id = $1 AND closed = FALSE";
        both!(self, |pool| {
            sqlx::query(sql).bind(dossier_id).bind(routed).execute(pool).await?;
            Ok(())
        })
    }

    /// Open assignments per (authority, desk).
    pub async fn desk_loads(&self) -> Result<Vec<(String, String, i64)>> {
        let sql =
            "SELECT authority_code, desk_code, COUNT(*) FROM routing_assignments WHERE closed = FALSE GROUP BY 1, 2";
        both!(self, |pool| Ok(sqlx::query(sql)
            .fetch_all(pool)
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect()))
    }
}

fn row<R: Row>(r: &R) -> Assignment
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> bool: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<String>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Assignment {
        dossier_id: r.get("dossier_id"),
        authority_code: r.get("authority_code"),
        desk_code: r.get("desk_code"),
        transferred: r.get("transferred"),
        due_at_ms: r.get("due_at_ms"),
        routed_at_ms: r.get("routed_at_ms"),
        calendar_version: r.get("calendar_version"),
        clock_pauses: r.get("clock_pauses"),
        routed: None,
    }
}

fn in_order(requested: &[Assignment], stored: Vec<Assignment>) -> Vec<Assignment> {
    let by_id: std::collections::HashMap<String, Assignment> =
        stored.into_iter().map(|a| (a.dossier_id.clone(), a)).collect();
    requested
        .iter()
        .map(|a| by_id.get(&a.dossier_id).cloned().unwrap_or_else(|| a.clone()))
        .collect()
}
