//! Statistics by definition, from the projection: the figures of `docs/statistics.md`,
//! counted by one SQL query over `track_dossiers` whose every branch is one definition.
//! The answer is a [`motcua_stats::Report`], the very type the fold over the event log
//! gives, so the two are compared as they are (tests: live projection, a replay into an
//! empty projection, and the fold over the raw events agree).
//!
//! "As of T" leaves out every fact dated after T (a dossier received after T is not
//! received, one decided after T is still pending). The projection keeps each dossier's
//! latest assignment only, so a dossier re-routed after T is counted at its new unit.

use std::collections::BTreeMap;

use motcua_stats::{Backlog, Counts, Key, Report};
use sqlx::Row;

use crate::{ProjectionDb, Result};

/// Which figures: facts up to `as_of`, whose own time is in `[from, to)`, of a unit,
/// procedure or field.
#[derive(Debug, Clone, Default)]
pub struct StatsFilter {
    pub as_of: i64,
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub unit: Option<String>,
    pub procedure: Option<String>,
    pub field: Option<String>,
}

/// The report with what the operators' summary adds to it.
#[derive(Debug, Clone, PartialEq)]
pub struct Figures {
    pub report: Report,
    /// Sum over resolved dossiers of decision time − reception time.
    pub resolved_processing_ms: i64,
}

/// `YYYY-MM` (Việt Nam time, UTC+7 all year) of an epoch-ms column, in each dialect.
fn month_sql(db: &ProjectionDb, column: &str) -> String {
    match db {
        ProjectionDb::Postgres(_) => {
            format!("to_char(to_timestamp(({column} + 25200000) / CAST(1000 AS DOUBLE PRECISION)) AT TIME ZONE 'UTC', 'YYYY-MM')")
        }
        ProjectionDb::Sqlite(_) => format!("strftime('%Y-%m', ({column} + 25200000) / 1000, 'unixepoch')"),
    }
}

/// One definition per branch (docs/statistics.md); `$1` is `as_of`.
fn flows_sql(db: &ProjectionDb) -> String {
    // A dossier's end, in order of precedence: resolved, withdrawn, stopped.
    let decision = "COALESCE(decided_at, completed_at)";
    let resolved_by = format!("(completed_at IS NOT NULL AND {decision} <= $1)");
    let withdrawn_by = "(withdrawn_at IS NOT NULL AND withdrawn_at <= $1)";
    let with_unit = "COALESCE(competent_unit, receiving_unit, '')";
    let ident = "COALESCE(procedure_code, '') AS procedure_code, COALESCE(field, 'UNKNOWN') AS field";
    let m = |c: &str| month_sql(db, c);
    format!(
        "SELECT month, unit, procedure_code, field,
            {sums}
         FROM (
            SELECT {received_month} AS month, received_at AS at, COALESCE(receiving_unit, '') AS unit, {ident},
                1 AS received, CASE WHEN channel = 'online' THEN 1 ELSE 0 END AS online, 0 AS rejected,
                0 AS resolved, 0 AS early, 0 AS on_time, 0 AS late, 0 AS withdrawn, 0 AS stopped,
                0 AS paused, 0 AS paused_ms, 0 AS reappointed, 0 AS processing_ms
            FROM track_dossiers WHERE received_at <= $1
          UNION ALL
            SELECT {rejected_month}, rejected_at, COALESCE(receiving_unit, ''), {ident},
                0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
            FROM track_dossiers WHERE rejected_at <= $1 AND (received_at IS NULL OR received_at > $1)
          UNION ALL
            SELECT {decided_month}, {decision}, COALESCE(competent_unit, ''), {ident},
                0, 0, 0, 1,
                CASE WHEN timeliness = 'early' THEN 1 ELSE 0 END,
                CASE WHEN timeliness = 'on_time' THEN 1 ELSE 0 END,
                CASE WHEN timeliness = 'late' THEN 1 ELSE 0 END,
                0, 0,
                CASE WHEN paused_working_ms > 0 THEN 1 ELSE 0 END,
                CASE WHEN paused_working_ms > 0 THEN paused_working_ms ELSE 0 END,
                CASE WHEN reappointed_at <= $1 THEN 1 ELSE 0 END,
                CASE WHEN received_at IS NOT NULL THEN {decision} - received_at ELSE 0 END
            FROM track_dossiers WHERE {resolved_by}
          UNION ALL
            SELECT {withdrawn_month}, withdrawn_at, {with_unit}, {ident},
                0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0
            FROM track_dossiers WHERE {withdrawn_by} AND NOT {resolved_by}
          UNION ALL
            SELECT {stopped_month}, stopped_at, {with_unit}, {ident},
                0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0
            FROM track_dossiers WHERE stopped_at <= $1 AND NOT {resolved_by} AND NOT {withdrawn_by}
         ) f
         WHERE at >= $2 AND at < $3
           AND (CAST($4 AS TEXT) IS NULL OR unit = $4)
           AND (CAST($5 AS TEXT) IS NULL OR procedure_code = $5)
           AND (CAST($6 AS TEXT) IS NULL OR field = $6)
         GROUP BY month, unit, procedure_code, field",
        sums = [
            "received",
            "online",
            "rejected",
            "resolved",
            "early",
            "on_time",
            "late",
            "withdrawn",
            "stopped",
            "paused",
            "paused_ms",
            "reappointed",
            "processing_ms"
        ]
        .map(|c| format!("CAST(SUM({c}) AS BIGINT)"))
        .join(", "),
        received_month = m("received_at"),
        rejected_month = m("rejected_at"),
        decided_month = m(decision),
        withdrawn_month = m("withdrawn_at"),
        stopped_month = m("stopped_at"),
    )
}

/// Dossiers open at `$1`: received by then, not resolved, withdrawn or stopped by then.
fn backlog_sql() -> String {
    let decision = "COALESCE(decided_at, completed_at)";
    "SELECT COALESCE(competent_unit, receiving_unit, '') AS unit, COALESCE(procedure_code, '') AS procedure_code,
            COALESCE(field, 'UNKNOWN') AS field, COUNT(*),
            CAST(SUM(CASE WHEN due_at < $1 THEN 1 ELSE 0 END) AS BIGINT)
     FROM track_dossiers
     WHERE received_at <= $1
       AND NOT (completed_at IS NOT NULL AND DECISION <= $1)
       AND NOT (withdrawn_at IS NOT NULL AND withdrawn_at <= $1)
       AND NOT (stopped_at IS NOT NULL AND stopped_at <= $1)
     GROUP BY 1, 2, 3"
        .replace("DECISION", decision)
}

fn count(row: &sqlx::postgres::PgRow, i: usize) -> std::result::Result<i64, sqlx::Error> {
    row.try_get::<Option<i64>, _>(i).map(Option::unwrap_or_default)
}

fn count_lite(row: &sqlx::sqlite::SqliteRow, i: usize) -> std::result::Result<i64, sqlx::Error> {
    row.try_get::<Option<i64>, _>(i).map(Option::unwrap_or_default)
}

/// One grouped row: the key's four texts, then the sums.
type FlowRow = (Key, [i64; 13]);

/// The figures by definition, as of `f.as_of`.
pub async fn figures(db: &ProjectionDb, f: &StatsFilter) -> Result<Figures> {
    let flows = flows_sql(db);
    let backlog = backlog_sql();
    let from = f.from.unwrap_or(i64::MIN);
    let to = f.to.unwrap_or(i64::MAX);
    macro_rules! rows {
        ($pool:expr, $get:ident) => {{
            let flow_rows = sqlx::query(&flows)
                .bind(f.as_of)
                .bind(from)
                .bind(to)
                .bind(f.unit.as_deref())
                .bind(f.procedure.as_deref())
                .bind(f.field.as_deref())
                .fetch_all($pool)
                .await?;
            let mut flows: Vec<FlowRow> = Vec::with_capacity(flow_rows.len());
            for r in &flow_rows {
                let key = Key {
                    month: r.try_get(0)?,
                    unit_code: r.try_get(1)?,
                    procedure_code: r.try_get(2)?,
                    field: r.try_get(3)?,
                };
                let mut sums = [0i64; 13];
                for (i, s) in sums.iter_mut().enumerate() {
                    *s = $get(r, 4 + i)?;
                }
                flows.push((key, sums));
            }
            let open_rows = sqlx::query(&backlog).bind(f.as_of).fetch_all($pool).await?;
            let mut open: Vec<(String, String, String, i64, i64)> = Vec::with_capacity(open_rows.len());
            for r in &open_rows {
                open.push((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, $get(r, 3)?, $get(r, 4)?));
            }
            (flows, open)
        }};
    }
    let (flows, open) = match db {
        ProjectionDb::Postgres(p) => rows!(p, count),
        ProjectionDb::Sqlite(p) => rows!(p, count_lite),
    };
    let mut rows: BTreeMap<Key, Counts> = BTreeMap::new();
    let mut resolved_processing_ms = 0;
    for (key, s) in flows {
        let u = |v: i64| v.max(0) as u64;
        rows.insert(
            key,
            Counts {
                received: u(s[0]),
                received_online: u(s[1]),
                rejected_at_reception: u(s[2]),
                resolved: u(s[3]),
                resolved_early: u(s[4]),
                resolved_on_time: u(s[5]),
                resolved_late: u(s[6]),
                withdrawn: u(s[7]),
                stopped: u(s[8]),
                resolved_paused: u(s[9]),
                paused_working_ms: s[10],
                resolved_reappointed: u(s[11]),
            },
        );
        resolved_processing_ms += s[12];
    }
    let month = motcua_stats::month(f.as_of);
    let mut backlog: BTreeMap<Key, Backlog> = BTreeMap::new();
    for (unit, procedure, field, pending, overdue) in open {
        let keep = f.unit.as_ref().is_none_or(|u| *u == unit)
            && f.procedure.as_ref().is_none_or(|p| *p == procedure)
            && f.field.as_ref().is_none_or(|x| *x == field);
        if keep {
            backlog.insert(
                Key {
                    month: month.clone(),
                    unit_code: unit,
                    procedure_code: procedure,
                    field,
                },
                Backlog {
                    pending: pending.max(0) as u64,
                    overdue: overdue.max(0) as u64,
                },
            );
        }
    }
    Ok(Figures {
        report: Report {
            as_of: f.as_of,
            rows,
            backlog,
        },
        resolved_processing_ms,
    })
}
