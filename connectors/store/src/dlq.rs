//! The audit of dead-letter replays: one row per dead letter replayed (or parked), so
//! every replay says who, when, what and why, and a dead letter is replayed once.

use sqlx::Row;

use crate::{Result, Store};

/// One replay, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DlqReplay {
    pub dlq_partition: i32,
    pub dlq_offset: i64,
    pub origin_topic: String,
    pub origin_partition: i32,
    pub origin_offset: i64,
    pub reason_code: String,
    pub replay_count: i32,
    /// `replayed` or `parked`.
    pub outcome: String,
    pub replayed_by: String,
    pub why: String,
    pub replayed_at_ms: i64,
    pub new_partition: Option<i32>,
    pub new_offset: Option<i64>,
}

const COLUMNS: &str = "dlq_partition, dlq_offset, origin_topic, origin_partition, origin_offset, reason_code, \
                       replay_count, outcome, replayed_by, why, replayed_at_ms, new_partition, new_offset";

fn replay<R: Row>(r: &R) -> DlqReplay
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i32: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<i32>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<i64>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    DlqReplay {
        dlq_partition: r.get("dlq_partition"),
        dlq_offset: r.get("dlq_offset"),
        origin_topic: r.get("origin_topic"),
        origin_partition: r.get("origin_partition"),
        origin_offset: r.get("origin_offset"),
        reason_code: r.get("reason_code"),
        replay_count: r.get("replay_count"),
        outcome: r.get("outcome"),
        replayed_by: r.get("replayed_by"),
        why: r.get("why"),
        replayed_at_ms: r.get("replayed_at_ms"),
        new_partition: r.get("new_partition"),
        new_offset: r.get("new_offset"),
    }
}

impl Store {
    /// Records a replay (or a parking) before the message goes out. Returns the earlier
    /// record when this dead letter was replayed or parked before: nothing is recorded
    /// then, and the caller does not replay it again.
    pub async fn claim_dlq_replay(&self, r: &DlqReplay) -> Result<Option<DlqReplay>> {
        let insert = format!(
            "INSERT INTO dlq_replays ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, NULL, NULL)
             ON CONFLICT (dlq_partition, dlq_offset) DO NOTHING"
        );
        let select = format!("SELECT {COLUMNS} FROM dlq_replays WHERE dlq_partition = $1 AND dlq_offset = $2");
        both!(self, |pool| {
            let mut tx = pool.begin().await?;
            let done = sqlx::query(&insert)
                .bind(r.dlq_partition)
                .bind(r.dlq_offset)
                .bind(&r.origin_topic)
                .bind(r.origin_partition)
                .bind(r.origin_offset)
                .bind(&r.reason_code)
                .bind(r.replay_count)
                .bind(&r.outcome)
                .bind(&r.replayed_by)
                .bind(&r.why)
                .bind(r.replayed_at_ms)
                .execute(&mut *tx)
                .await?;
            let earlier = if done.rows_affected() == 1 {
                None
            } else {
                sqlx::query(&select)
                    .bind(r.dlq_partition)
                    .bind(r.dlq_offset)
                    .fetch_optional(&mut *tx)
                    .await?
                    .map(|row| replay(&row))
            };
            tx.commit().await?;
            Ok(earlier)
        })
    }

    /// Where the replayed message landed.
    pub async fn landed_dlq_replay(
        &self,
        dlq_partition: i32,
        dlq_offset: i64,
        partition: i32,
        offset: i64,
    ) -> Result<()> {
        let sql =
            "UPDATE dlq_replays SET new_partition = $3, new_offset = $4 WHERE dlq_partition = $1 AND dlq_offset = $2";
        both!(self, |pool| {
            sqlx::query(sql)
                .bind(dlq_partition)
                .bind(dlq_offset)
                .bind(partition)
                .bind(offset)
                .execute(pool)
                .await?;
            Ok(())
        })
    }

    /// Every recorded replay, newest first (at most `limit`).
    pub async fn dlq_replays(&self, limit: i64) -> Result<Vec<DlqReplay>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM dlq_replays ORDER BY replayed_at_ms DESC, dlq_partition, dlq_offset LIMIT $1"
        );
        both!(self, |pool| Ok(sqlx::query(&sql)
            .bind(limit)
            .fetch_all(pool)
            .await?
            .iter()
            .map(replay)
            .collect()))
    }
}
