//! Deadline warnings: open dossiers whose due time is within N working hours get one
//! warning status event per due time (a due time extended after a supplement pause is
//! warned again). The projection remembers the due time it warned for (`warned_due_at`),
//! and the warning's event id is derived from (dossier, due time), so a warning produced
//! twice (crash between publishing and remembering) is deduplicated downstream.

/// The reason code of a warning whose due time is near.
pub const DEADLINE_SOON: &str = "DEADLINE_SOON";
/// The reason code of a warning whose due time has passed.
pub const DEADLINE_PASSED: &str = "DEADLINE_PASSED";

use std::time::Duration;

use motcua_schemas::{derived_event_id, DossierStatusChanged, Reason};
use sqlx::{PgPool, SqlitePool};

use motcua_schemas::DossierStatus;

use crate::projection::STAGE;
use crate::{ProjectionDb, Result};

/// Working time between two instants on the calendar of the center that received a
/// dossier. The routing tables are the real one (each center's working hours, weekends,
/// holidays and make-up days from data); a [`motcua_routing::Calendar`] is one calendar
/// for every center; [`WallClock`] approximates it with wall-clock time.
pub trait WorkingTime: Send + Sync {
    /// Working ms from `from_ms` to `to_ms` (negative when `to_ms` is earlier) at
    /// `center` (its code; empty when unknown: the default calendar); `None` when the
    /// instants are outside the calendar's range.
    fn working_ms_between(&self, center: &str, from_ms: i64, to_ms: i64) -> Option<i64>;
}

impl WorkingTime for motcua_routing::Calendar {
    fn working_ms_between(&self, _center: &str, from_ms: i64, to_ms: i64) -> Option<i64> {
        motcua_routing::Calendar::working_ms_between(self, from_ms, to_ms).ok()
    }
}

impl WorkingTime for motcua_routing::RoutingTables {
    fn working_ms_between(&self, center: &str, from_ms: i64, to_ms: i64) -> Option<i64> {
        self.calendar_of_center(center).working_ms_between(from_ms, to_ms).ok()
    }
}

/// Every hour counts (an approximation: warns earlier than the calendar would over
/// nights, weekends and holidays).
#[derive(Debug, Clone, Copy, Default)]
pub struct WallClock;

impl WorkingTime for WallClock {
    fn working_ms_between(&self, _center: &str, from_ms: i64, to_ms: i64) -> Option<i64> {
        Some(to_ms - from_ms)
    }
}

/// Deadline warning settings.
#[derive(Debug, Clone)]
pub struct WarningConfig {
    /// Warn when at most this many working hours are left (or the due time passed).
    pub working_hours: u32,
    /// Candidates are preselected by wall-clock time: due within this much calendar time.
    /// Must cover `working_hours` of working time across weekends and holidays (Tết is
    /// the longest gap); the default allows 16 calendar days plus 3 days per 8 hours.
    pub lookahead: Duration,
    /// How often the track stage's timer scans.
    pub interval: Duration,
    /// Most warnings per scan.
    pub limit: i64,
}

impl WarningConfig {
    pub fn new(working_hours: u32) -> Self {
        let days = 16 + 3 * u64::from(working_hours.div_ceil(8));
        Self {
            working_hours,
            lookahead: Duration::from_secs(days * 86_400),
            interval: Duration::from_secs(60),
            limit: 10_000,
        }
    }
}

#[derive(Debug, sqlx::FromRow)]
struct Candidate {
    dossier_id: String,
    dossier_code: Option<String>,
    procedure_code: Option<String>,
    receiving_unit: Option<String>,
    unit: Option<String>,
    due_at: i64,
    status_code: i32,
}

/// The warnings due at `now_ms`: open dossiers (not waiting for a supplement: their clock
/// is paused) whose due time is at most `working_hours` of working time away, and that
/// were not yet warned for this due time. Read only: call [`mark_warned`] once the
/// warnings are published.
pub async fn pending_warnings(
    db: impl Into<ProjectionDb>,
    now_ms: i64,
    config: &WarningConfig,
    clock: &dyn WorkingTime,
) -> Result<Vec<DossierStatusChanged>> {
    let horizon_ms = i64::from(config.working_hours) * 3_600_000;
    let lookahead_ms = i64::try_from(config.lookahead.as_millis()).unwrap_or(i64::MAX / 2);
    // Open dossiers whose clock runs (not those waiting for a supplement: paused), against
    // the date they are tracked against (a new appointment's, once given).
    // `warned_due_at IS NULL OR <>` rather than IS DISTINCT FROM: both dialects read it.
    static CANDIDATES_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "SELECT dossier_id, dossier_code, procedure_code, receiving_unit,
                COALESCE(competent_unit, receiving_unit) AS unit, {tracked} AS due_at, status_code
         FROM track_dossiers
         WHERE status_code IN ({running}) AND due_at IS NOT NULL AND {tracked} <= $1
           AND (warned_due_at IS NULL OR warned_due_at <> {tracked})
         ORDER BY {tracked}, dossier_id
         LIMIT $2",
            tracked = crate::projection::TRACKED_DUE,
            running = crate::projection::sql_codes(|s| s.is_open() && s != DossierStatus::SupplementRequested)
        )
    });
    let rows: Vec<Candidate> = on_db!(&db.into(), |p| sqlx::query_as(CANDIDATES_SQL.as_str())
        .bind(now_ms.saturating_add(lookahead_ms))
        .bind(config.limit)
        .fetch_all(p)
        .await?);
    let mut out = Vec::new();
    for c in rows {
        // Out of the calendar's range: fall back to wall-clock time.
        let center = c.receiving_unit.as_deref().unwrap_or_default();
        let left = clock
            .working_ms_between(center, now_ms, c.due_at)
            .unwrap_or(c.due_at - now_ms);
        if left > horizon_ms {
            continue;
        }
        let Some(status) = DossierStatus::from_code(c.status_code) else {
            continue;
        };
        let reason = if left < 0 {
            Reason {
                code: DEADLINE_PASSED.into(),
                message: format!("the due time passed {:.1} working hours ago", -left as f64 / 3.6e6),
            }
        } else {
            Reason {
                code: DEADLINE_SOON.into(),
                message: format!("{:.1} working hours left before the due time", left as f64 / 3.6e6),
            }
        };
        let event_id = derived_event_id(&format!("{}@{}", c.dossier_id, c.due_at), STAGE, "deadline-warning");
        out.push(
            DossierStatusChanged::new(event_id, STAGE, &c.dossier_id, status, now_ms)
                .with_code(c.dossier_code)
                .with_procedure(c.procedure_code)
                .with_reasons(vec![reason])
                .with_assignment(c.unit, Some(c.due_at)),
        );
    }
    Ok(out)
}

/// Open dossiers whose clock runs, by how close they are to their tracked due time: at
/// risk (at most the warning window's working hours left, not yet passed) and overdue
/// (passed). The same definition as the warnings; what the `motcua_track_dossiers_at_risk`
/// and `motcua_track_dossiers_overdue` gauges report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeadlineRisk {
    pub at_risk: u64,
    pub overdue: u64,
}

pub async fn deadline_risk(
    db: impl Into<ProjectionDb>,
    now_ms: i64,
    config: &WarningConfig,
    clock: &dyn WorkingTime,
) -> Result<DeadlineRisk> {
    #[derive(sqlx::FromRow)]
    struct Row {
        receiving_unit: Option<String>,
        due_at: i64,
    }
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "SELECT receiving_unit, {tracked} AS due_at FROM track_dossiers
             WHERE status_code IN ({running}) AND due_at IS NOT NULL AND {tracked} <= $1",
            tracked = crate::projection::TRACKED_DUE,
            running = crate::projection::sql_codes(|s| s.is_open() && s != DossierStatus::SupplementRequested)
        )
    });
    let lookahead_ms = i64::try_from(config.lookahead.as_millis()).unwrap_or(i64::MAX / 2);
    let rows: Vec<Row> = on_db!(&db.into(), |p| sqlx::query_as(SQL.as_str())
        .bind(now_ms.saturating_add(lookahead_ms))
        .fetch_all(p)
        .await?);
    let horizon_ms = i64::from(config.working_hours) * 3_600_000;
    let mut risk = DeadlineRisk::default();
    for r in rows {
        if r.due_at < now_ms {
            risk.overdue += 1;
            continue;
        }
        let center = r.receiving_unit.as_deref().unwrap_or_default();
        let left = clock
            .working_ms_between(center, now_ms, r.due_at)
            .unwrap_or(r.due_at - now_ms);
        risk.at_risk += u64::from(left <= horizon_ms);
    }
    Ok(risk)
}

/// Remembers that these warnings were published (for the due time each was about).
pub async fn mark_warned(db: impl Into<ProjectionDb>, warnings: &[DossierStatusChanged]) -> Result<u64> {
    match db.into() {
        ProjectionDb::Postgres(pool) => mark_warned_postgres(&pool, warnings).await,
        ProjectionDb::Sqlite(pool) => mark_warned_sqlite(&pool, warnings).await,
    }
}

async fn mark_warned_postgres(pool: &PgPool, warnings: &[DossierStatusChanged]) -> Result<u64> {
    let ids: Vec<&str> = warnings.iter().map(|w| w.dossier_id.as_str()).collect();
    let due: Vec<Option<i64>> = warnings.iter().map(|w| w.due_at).collect();
    let done = sqlx::query(
        "UPDATE track_dossiers AS d SET warned_due_at = w.due
         FROM UNNEST($1::text[], $2::int8[]) AS w(id, due)
         WHERE d.dossier_id = w.id",
    )
    .bind(&ids)
    .bind(&due)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(done)
}

/// SQLite has no arrays: one statement per warning, in one transaction.
async fn mark_warned_sqlite(pool: &SqlitePool, warnings: &[DossierStatusChanged]) -> Result<u64> {
    let mut tx = pool.begin().await?;
    let mut done = 0;
    for w in warnings {
        done += sqlx::query("UPDATE track_dossiers SET warned_due_at = $1 WHERE dossier_id = $2")
            .bind(w.due_at)
            .bind(&w.dossier_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
    }
    tx.commit().await?;
    Ok(done)
}

/// Records each warning unless one with its id was recorded before, and returns the
/// recorded ones, in order: the first computed is what goes out, however often a crash
/// between producing and [`mark_warned`] makes the timer compute it again.
pub async fn first_warnings(
    db: impl Into<ProjectionDb>,
    warnings: Vec<DossierStatusChanged>,
) -> Result<Vec<DossierStatusChanged>> {
    if warnings.is_empty() {
        return Ok(warnings);
    }
    let db = db.into();
    let mut out = Vec::with_capacity(warnings.len());
    on_db!(&db, |p| {
        let mut tx = p.begin().await?;
        for w in warnings {
            let json = serde_json::to_string(&w).unwrap_or_default();
            sqlx::query(
                "INSERT INTO track_warnings (event_id, event) VALUES ($1, $2) ON CONFLICT (event_id) DO NOTHING",
            )
            .bind(&w.event_id)
            .bind(&json)
            .execute(&mut *tx)
            .await?;
            let recorded: String = sqlx::query_scalar("SELECT event FROM track_warnings WHERE event_id = $1")
                .bind(&w.event_id)
                .fetch_one(&mut *tx)
                .await?;
            // Written by this code; one that does not parse goes out as computed now.
            out.push(serde_json::from_str(&recorded).unwrap_or(w));
        }
        tx.commit().await?;
    });
    Ok(out)
}
