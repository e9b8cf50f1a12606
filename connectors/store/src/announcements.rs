//! Statuses owed: what keeps two stages' statuses of one dossier in the order of their
//! effects on `dossier.status`.
//!
//! The store orders effects (one closure per dossier, under the dossier's lock), but two
//! stages' messages reach the topic in their producers' order. Without more, a stage
//! that read "open" and decided a status could produce it after another stage closed the
//! dossier and produced its end. So a stage records the statuses it is about to produce
//! as owed, under the dossier's lock, and learns which of their dossiers ended first (it
//! leaves those statuses out); once the broker acknowledged them they are no longer owed.
//! A stage that ends a dossier does so only when nothing of it is owed elsewhere, and
//! otherwise tries again shortly ([`crate::Error::AnnouncementsOwed`]).

use std::collections::HashSet;

use sqlx::Row;

use crate::{Error, Result, Store};

/// How long an owed status holds a dossier's end back. A worker killed between recording
/// and producing leaves its row until it (or its successor) produces the status again; a
/// stage down longer than this must not hold every end of its dossiers back with it.
pub const OWED_HOLD_MS: i64 = 30_000;

/// A status a stage is about to produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owed<'a> {
    pub event_id: &'a str,
    pub dossier_id: &'a str,
}

impl Store {
    /// Records `owed` as owed by `stage` from now on, except those of dossiers that
    /// were withdrawn or stopped first, or decided when `decided_ends` (every stage but
    /// the one that returns the result): returns those dossiers (their statuses must not
    /// follow the end). Takes each dossier's lock, shared: any number of stages may owe
    /// statuses of one dossier at once, and a closure (which takes it exclusively) either
    /// came first and is seen here, or comes after and sees these rows.
    pub async fn owe(&self, stage: &str, owed: &[Owed<'_>], decided_ends: bool) -> Result<HashSet<String>> {
        if owed.is_empty() {
            return Ok(HashSet::new());
        }
        let now_ms = now_ms();
        let mut dossiers: Vec<&str> = owed.iter().map(|o| o.dossier_id).collect();
        dossiers.sort_unstable();
        dossiers.dedup();
        let insert = "INSERT INTO announcements_owed (event_id, dossier_id, stage, owed_since_ms)
                      VALUES ($1, $2, $3, $4) ON CONFLICT (event_id) DO NOTHING";
        macro_rules! owe {
            ($tx:ident, $ended:expr) => {{
                let ended: HashSet<String> = $ended;
                for o in owed.iter().filter(|o| !ended.contains(o.dossier_id)) {
                    sqlx::query(insert)
                        .bind(o.event_id)
                        .bind(o.dossier_id)
                        .bind(stage)
                        .bind(now_ms)
                        .execute(&mut *$tx)
                        .await?;
                }
                $tx.commit().await?;
                Ok(ended)
            }};
        }
        match self {
            Store::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                // In one statement, in the same (sorted) order as every other lock taker.
                sqlx::query(
                    "SELECT pg_advisory_xact_lock_shared(hashtextextended(id, 0))
                     FROM unnest($1::text[]) WITH ORDINALITY AS t(id, n) ORDER BY n",
                )
                .bind(&dossiers)
                .execute(&mut *tx)
                .await?;
                let ended = sqlx::query(
                    "SELECT dossier_id FROM dossier_closures WHERE dossier_id = ANY($1) AND (kind <> 'decided' OR $2)",
                )
                .bind(&dossiers)
                .bind(decided_ends)
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect();
                owe!(tx, ended)
            }
            Store::Sqlite(pool) => {
                // One writer: BEGIN IMMEDIATE orders this against every closure.
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                let mut ended = HashSet::new();
                for id in &dossiers {
                    let closed: Option<String> = sqlx::query_scalar(
                        "SELECT dossier_id FROM dossier_closures WHERE dossier_id = $1 AND (kind <> 'decided' OR $2)",
                    )
                    .bind(*id)
                    .bind(decided_ends)
                    .fetch_optional(&mut *tx)
                    .await?;
                    ended.extend(closed);
                }
                owe!(tx, ended)
            }
        }
    }

    /// These statuses were acknowledged: no longer owed.
    pub async fn announced(&self, event_ids: &[String]) -> Result<()> {
        if event_ids.is_empty() {
            return Ok(());
        }
        match self {
            Store::Postgres(p) => {
                sqlx::query("DELETE FROM announcements_owed WHERE event_id = ANY($1)")
                    .bind(event_ids)
                    .execute(p)
                    .await?;
            }
            Store::Sqlite(p) => {
                for chunk in event_ids.chunks(crate::rows_per_statement(1)) {
                    let sql = format!(
                        "DELETE FROM announcements_owed WHERE event_id IN ({})",
                        crate::sqlite_values(chunk.len(), 1)
                    );
                    let mut q = sqlx::query(&sql).persistent(false);
                    for id in chunk {
                        q = q.bind(id);
                    }
                    q.execute(p).await?;
                }
            }
        }
        Ok(())
    }
}

/// The wall clock, in ms: only how long an owed status holds an end back depends on it,
/// never what anyone announces.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The ones of `dossier_ids` some stage still owes a status of (recorded within
/// [`OWED_HOLD_MS`]). Read inside a closing transaction, after the dossiers'
/// lock: no status of theirs can become owed before it commits.
macro_rules! owed_among {
    ($tx:expr, $dossier_ids:expr) => {{
        let since = $crate::announcements::now_ms() - $crate::announcements::OWED_HOLD_MS;
        let mut owed = std::collections::HashSet::new();
        for id in $dossier_ids {
            let row: Option<String> = sqlx::query_scalar(
                "SELECT dossier_id FROM announcements_owed WHERE dossier_id = $1 AND owed_since_ms > $2 LIMIT 1",
            )
            .bind(id)
            .bind(since)
            .fetch_optional(&mut *$tx)
            .await?;
            owed.extend(row);
        }
        owed
    }};
}
pub(crate) use owed_among;

impl Error {
    /// A dossier could not end yet: another stage still owes one of its statuses.
    pub(crate) fn owed(dossier_id: &str) -> Self {
        Error::AnnouncementsOwed {
            dossier_id: dossier_id.to_owned(),
        }
    }
}
