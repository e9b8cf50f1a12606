//! Whole-projection counts (the demo's report and its check against the stream). Plain
//! SQL both backends understand, except the JSON column's cast.

use std::collections::BTreeMap;

use sqlx::Row;

use crate::{ProjectionDb, Result, Track};

/// Counts over every dossier of the projection.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ProjectionSummary {
    pub dossiers: i64,
    pub history_events: i64,
    /// Current national status code → dossiers.
    pub by_status: BTreeMap<i32, i64>,
    /// Timeliness of completed dossiers (`early`, `on_time`, `late`) → dossiers.
    pub by_timeliness: BTreeMap<String, i64>,
    /// Decision (`approved`, `refused`) → dossiers.
    pub by_decision: BTreeMap<String, i64>,
    /// Channel (`online`, `counter`, …) → dossiers.
    pub by_channel: BTreeMap<String, i64>,
    /// Receiving unit → dossiers.
    pub by_receiving_unit: BTreeMap<String, i64>,
    /// `stage/status code/reason code` → history events carrying that reason.
    pub reasons: BTreeMap<String, i64>,
}

impl Track {
    /// Counts the whole projection (one consistent read per figure; run it when the
    /// stage is idle for figures that add up).
    pub async fn summary(&self) -> Result<ProjectionSummary> {
        let db = self.db();
        let mut s = ProjectionSummary {
            dossiers: on_db!(db, |p| sqlx::query_scalar("SELECT COUNT(*) FROM track_dossiers")
                .fetch_one(p)
                .await?),
            history_events: on_db!(db, |p| sqlx::query_scalar("SELECT COUNT(*) FROM track_history")
                .fetch_one(p)
                .await?),
            ..Default::default()
        };
        let grouped = |column: &str| {
            format!("SELECT {column}, COUNT(*) FROM track_dossiers WHERE {column} IS NOT NULL GROUP BY {column}")
        };
        let rows: Vec<(i32, i64)> = on_db!(db, |p| sqlx::query_as(&grouped("status_code")).fetch_all(p).await?);
        s.by_status = rows.into_iter().collect();
        for (column, into) in [
            ("timeliness", &mut s.by_timeliness),
            ("decision", &mut s.by_decision),
            ("channel", &mut s.by_channel),
            ("receiving_unit", &mut s.by_receiving_unit),
        ] {
            let rows: Vec<(String, i64)> = on_db!(db, |p| sqlx::query_as(&grouped(column)).fetch_all(p).await?);
            *into = rows.into_iter().collect();
        }
        let reasons_text = match db {
            ProjectionDb::Postgres(_) => "reasons::text",
            ProjectionDb::Sqlite(_) => "reasons",
        };
        let sql = format!(
            "SELECT stage, status_code, {reasons_text} AS reasons FROM track_history \
             WHERE {reasons_text} <> '[]'"
        );
        let rows: Vec<(String, Option<i32>, String)> = on_db!(db, |p| sqlx::query(&sql)
            .fetch_all(p)
            .await?
            .into_iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect());
        for (stage, status, text) in rows {
            let Ok(serde_json::Value::Array(items)) = serde_json::from_str::<serde_json::Value>(&text) else {
                continue;
            };
            for item in items {
                let code = item.get("code").and_then(|c| c.as_str()).unwrap_or("?");
                let key = format!("{stage}/{}/{code}", status.unwrap_or(0));
                *s.reasons.entry(key).or_default() += 1;
            }
        }
        Ok(s)
    }
}
