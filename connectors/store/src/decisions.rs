//! The first decision a stage took for an input. A stage that decides from something that
//! can change (a registry's answer, the clock) records what it will announce before it
//! acts; whoever handles the same input again (a redelivery, a re-sent message, the
//! stage's timer, another replica) announces the recorded decision instead of deciding
//! again, so one event id never carries two contents.

use std::collections::HashMap;

use sqlx::Row;

use crate::{Result, Store};

/// A decision a stage offers to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision<'a> {
    /// The id of the event decided on.
    pub input_id: &'a str,
    pub dossier_id: &'a str,
    /// The framed events it announces.
    pub events: Vec<u8>,
    pub decided_at_ms: i64,
}

impl Store {
    /// Records each decision unless its input has one already, in one transaction, and
    /// returns the recorded decision of each: the first one wins.
    pub async fn decide_first(&self, stage: &str, decisions: &[Decision<'_>]) -> Result<Vec<Vec<u8>>> {
        if decisions.is_empty() {
            return Ok(Vec::new());
        }
        let insert = "INSERT INTO stage_decisions (stage, input_id, dossier_id, decision, decided_at_ms)
                      VALUES ($1, $2, $3, $4, $5) ON CONFLICT (stage, input_id) DO NOTHING";
        let recorded = "SELECT decision FROM stage_decisions WHERE stage = $1 AND input_id = $2";
        both!(self, |pool| {
            let mut tx = pool.begin().await?;
            let mut out = Vec::with_capacity(decisions.len());
            for d in decisions {
                sqlx::query(insert)
                    .bind(stage)
                    .bind(d.input_id)
                    .bind(d.dossier_id)
                    .bind(&d.events)
                    .bind(d.decided_at_ms)
                    .execute(&mut *tx)
                    .await?;
                let events: Vec<u8> = sqlx::query_scalar(recorded)
                    .bind(stage)
                    .bind(d.input_id)
                    .fetch_one(&mut *tx)
                    .await?;
                out.push(events);
            }
            tx.commit().await?;
            Ok(out)
        })
    }

    /// The decisions recorded for these inputs, by input id.
    pub async fn decisions(&self, stage: &str, input_ids: &[&str]) -> Result<HashMap<String, Vec<u8>>> {
        if input_ids.is_empty() {
            return Ok(HashMap::new());
        }
        match self {
            Store::Postgres(p) => Ok(sqlx::query(
                "SELECT input_id, decision FROM stage_decisions WHERE stage = $1 AND input_id = ANY($2)",
            )
            .bind(stage)
            .bind(input_ids)
            .fetch_all(p)
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()),
            Store::Sqlite(p) => {
                let mut out = HashMap::new();
                for chunk in input_ids.chunks(crate::rows_per_statement(1) - 1) {
                    let sql = format!(
                        "SELECT input_id, decision FROM stage_decisions WHERE stage = ? AND input_id IN ({})",
                        crate::sqlite_values(chunk.len(), 1)
                    );
                    let mut q = sqlx::query(&sql).persistent(false).bind(stage);
                    for id in chunk {
                        q = q.bind(*id);
                    }
                    out.extend(q.fetch_all(p).await?.iter().map(|r| (r.get(0), r.get(1))));
                }
                Ok(out)
            }
        }
    }
}
