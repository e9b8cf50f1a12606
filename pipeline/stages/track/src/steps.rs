//! Time per step of a dossier's internal process against the step budgets of its
//! procedure (`procedure-steps.csv` in the routing data), and the warnings before a step's
//! budget runs out.
//!
//! The projection keeps each step's boundaries (columns merged order-independently); the
//! working time between them is computed when asked, on the calendar, so it is the same
//! whatever order the events came in. Steps and their boundaries:
//!
//! | step | from | to |
//! |---|---|---|
//! | reception | submitted | received |
//! | verification | received | verified |
//! | appraisal | verified | appraisal ended (`dossier.decided` v2), else the decision |
//! | approval | appraisal ended | decided |
//! | result | decided | result delivered |
//!
//! Working time is counted on the calendar of the center that received the dossier. A
//! step's working time excludes the part of any pause of the legal clock (a wait for the
//! citizen's supplement) that overlaps it.

use std::sync::Arc;

use motcua_routing::Step;
use motcua_schemas::{derived_event_id, DossierStatus, DossierStatusChanged, Reason};
use serde::Serialize;

use crate::projection::STAGE;
use crate::{ProjectionDb, Result};

/// Working time and a dossier's step budgets, on the calendar of the center that
/// received it: the routing tables in production.
pub trait StepClock: Send + Sync {
    /// Working ms from `from_ms` to `to_ms` at `center`; `None` outside the calendar.
    fn working_ms_between(&self, center: &str, from_ms: i64, to_ms: i64) -> Option<i64>;
    /// The budgets of the five steps in working ms; `None` for a procedure the catalog
    /// does not know.
    fn budgets(&self, procedure_code: &str, center: &str, received_at_ms: i64) -> Option<[i64; 5]>;
}

impl StepClock for motcua_routing::RoutingTables {
    fn working_ms_between(&self, center: &str, from_ms: i64, to_ms: i64) -> Option<i64> {
        self.calendar_of_center(center).working_ms_between(from_ms, to_ms).ok()
    }

    fn budgets(&self, procedure_code: &str, center: &str, received_at_ms: i64) -> Option<[i64; 5]> {
        self.step_budgets(procedure_code, center, received_at_ms).ok()
    }
}

impl std::fmt::Debug for dyn StepClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StepClock")
    }
}

/// The boundaries the projection keeps for one dossier.
#[derive(Debug, Clone, Default, sqlx::FromRow)]
pub struct Boundaries {
    pub procedure_code: Option<String>,
    /// The center that received the dossier: its calendar counts.
    pub receiving_unit: Option<String>,
    pub submitted_at: Option<i64>,
    pub received_at: Option<i64>,
    pub verified_at: Option<i64>,
    pub appraised_at: Option<i64>,
    pub decided_at: Option<i64>,
    pub completed_at: Option<i64>,
    /// The legal clock's pauses, JSON `[[from, to], …]` (ms).
    pub clock_pauses: Option<String>,
}

/// The columns of [`Boundaries`], for queries.
pub(crate) const BOUNDARY_COLUMNS: &str =
    "procedure_code, receiving_unit, submitted_at, received_at, verified_at, appraised_at,
    decided_at, completed_at, clock_pauses";

/// One step of one dossier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepTime {
    pub step: &'static str,
    pub started_at_ms: Option<i64>,
    pub ended_at_ms: Option<i64>,
    /// Working time spent (until now for the running step), waits excluded.
    pub working_ms: Option<i64>,
    pub budget_ms: Option<i64>,
    pub over_budget: Option<bool>,
}

impl Boundaries {
    /// Start and end of a step (`None`: not reached, or not reported).
    pub fn span(&self, step: Step) -> (Option<i64>, Option<i64>) {
        match step {
            Step::Reception => (self.submitted_at, self.received_at),
            Step::Verification => (self.received_at, self.verified_at),
            Step::Appraisal => (self.verified_at, self.appraised_at.or(self.decided_at)),
            Step::Approval => (self.appraised_at, self.appraised_at.and(self.decided_at)),
            Step::Result => (self.decided_at, self.completed_at),
        }
    }

    fn center(&self) -> &str {
        self.receiving_unit.as_deref().unwrap_or_default()
    }

    /// The budgets of this dossier's steps, if its procedure is known.
    pub fn budgets(&self, clock: &dyn StepClock) -> Option<[i64; 5]> {
        let (procedure, received) = self.procedure_code.as_deref().zip(self.received_at)?;
        clock.budgets(procedure, self.center(), received)
    }

    /// The clock's pause periods, read once per question about the dossier.
    fn pauses(&self) -> Vec<[i64; 2]> {
        self.clock_pauses
            .as_deref()
            .and_then(|j| serde_json::from_str(j).ok())
            .unwrap_or_default()
    }

    /// Working time of the pauses within `[from, to)`.
    fn paused_ms(&self, pauses: &[[i64; 2]], from: i64, to: i64, clock: &dyn StepClock) -> i64 {
        pauses
            .iter()
            .map(|[a, b]| (*a.max(&from), *b.min(&to)))
            .filter(|(a, b)| a < b)
            .filter_map(|(a, b)| clock.working_ms_between(self.center(), a, b))
            .sum()
    }

    /// The step under way: started, not ended, and every later step not started.
    pub fn current(&self) -> Option<Step> {
        let started = Step::ALL.into_iter().rev().find(|s| self.span(*s).0.is_some())?;
        match self.span(started) {
            (Some(_), None) => Some(started),
            _ => None,
        }
    }

    /// Working time spent in a step: to its end, or to `now_ms` while it runs (`None`
    /// for a dossier that is no longer open: an unended step did not run to now).
    pub fn working_ms(&self, step: Step, now_ms: Option<i64>, clock: &dyn StepClock) -> Option<i64> {
        self.working_ms_with(&self.pauses(), step, now_ms, clock)
    }

    fn working_ms_with(
        &self,
        pauses: &[[i64; 2]],
        step: Step,
        now_ms: Option<i64>,
        clock: &dyn StepClock,
    ) -> Option<i64> {
        let (Some(from), end) = self.span(step) else {
            return None;
        };
        let to = end.or(now_ms)?;
        let worked = clock.working_ms_between(self.center(), from, to)?;
        Some((worked - self.paused_ms(pauses, from, to, clock)).max(0))
    }

    /// Every step with its time and budget (`now_ms`: see [`Boundaries::working_ms`]).
    pub fn times(&self, now_ms: Option<i64>, clock: &dyn StepClock) -> Vec<StepTime> {
        let budgets = self.budgets(clock);
        let pauses = self.pauses();
        Step::ALL
            .into_iter()
            .map(|step| {
                let (started_at_ms, ended_at_ms) = self.span(step);
                let working_ms = self.working_ms_with(&pauses, step, now_ms, clock);
                let budget_ms = budgets.map(|b| b[step.index()]);
                StepTime {
                    step: step.as_str(),
                    started_at_ms,
                    ended_at_ms,
                    working_ms,
                    budget_ms,
                    over_budget: working_ms.zip(budget_ms).map(|(w, b)| w > b),
                }
            })
            .collect()
    }
}

/// Step budget warnings: how much of a step's budget may be used before the warning.
#[derive(Clone, Debug)]
pub struct StepWarnings {
    /// 0 < share ≤ 1: warn once this share of the budget is spent (0.8 = a fifth left).
    pub share: f64,
    pub clock: Arc<dyn StepClock>,
    /// Most warnings per scan.
    pub limit: i64,
}

/// Reason codes of step warnings (the deadline's are DEADLINE_SOON / DEADLINE_PASSED).
pub const STEP_BUDGET_SOON: &str = "STEP_BUDGET_SOON";
pub const STEP_BUDGET_PASSED: &str = "STEP_BUDGET_PASSED";

#[derive(Debug, sqlx::FromRow)]
struct Candidate {
    dossier_id: String,
    dossier_code: Option<String>,
    unit: Option<String>,
    due_at: Option<i64>,
    status_code: i32,
    step_warned: Option<String>,
    #[sqlx(flatten)]
    boundaries: Boundaries,
}

/// The step warnings due at `now_ms`: open dossiers whose clock runs, in a step of which
/// at least `share` of the budget is spent, not yet warned for that step. Read only: call
/// [`mark_step_warned`] once they are published.
pub async fn pending_step_warnings(
    db: impl Into<ProjectionDb>,
    now_ms: i64,
    warnings: &StepWarnings,
) -> Result<Vec<DossierStatusChanged>> {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "SELECT dossier_id, dossier_code, COALESCE(competent_unit, receiving_unit) AS unit, due_at,
                status_code, step_warned, {BOUNDARY_COLUMNS}
             FROM track_dossiers
             WHERE status_code IN ({running}) AND received_at IS NOT NULL
             ORDER BY received_at, dossier_id
             LIMIT $1",
            running = crate::projection::sql_codes(|s| s.is_open() && s != DossierStatus::SupplementRequested)
        )
    });
    let rows: Vec<Candidate> = on_db!(&db.into(), |p| sqlx::query_as(SQL.as_str())
        .bind(warnings.limit)
        .fetch_all(p)
        .await?);
    let clock = warnings.clock.as_ref();
    let mut out = Vec::new();
    for c in rows {
        let b = &c.boundaries;
        let Some(step) = b.current() else { continue };
        if c.step_warned.as_deref() == Some(step.as_str()) {
            continue;
        }
        let (Some(spent), Some(budgets)) = (b.working_ms(step, Some(now_ms), clock), b.budgets(clock)) else {
            continue;
        };
        let budget = budgets[step.index()];
        if (spent as f64) < warnings.share * budget as f64 {
            continue;
        }
        let Some(status) = DossierStatus::from_code(c.status_code) else {
            continue;
        };
        let hours = |ms: i64| ms as f64 / 3.6e6;
        let reason = if spent > budget {
            Reason {
                code: STEP_BUDGET_PASSED.into(),
                message: format!(
                    "{}: {:.1} working hours spent, the budget is {:.1}",
                    step.as_str(),
                    hours(spent),
                    hours(budget)
                ),
            }
        } else {
            Reason {
                code: STEP_BUDGET_SOON.into(),
                message: format!(
                    "{}: {:.1} of its {:.1} working hours left",
                    step.as_str(),
                    hours(budget - spent),
                    hours(budget)
                ),
            }
        };
        let event_id = derived_event_id(&format!("{}@{}", c.dossier_id, step.as_str()), STAGE, "step-warning");
        out.push(
            DossierStatusChanged::new(event_id, STAGE, &c.dossier_id, status, now_ms)
                .with_code(c.dossier_code)
                .with_procedure(b.procedure_code.clone())
                .with_reasons(vec![reason])
                .with_assignment(c.unit, c.due_at),
        );
    }
    Ok(out)
}

/// The step a warning was about, from its message (`<step>: …`).
pub fn warned_step(w: &DossierStatusChanged) -> Option<Step> {
    let r = w
        .reasons
        .iter()
        .find(|r| r.code == STEP_BUDGET_SOON || r.code == STEP_BUDGET_PASSED)?;
    Step::parse(r.message.split(':').next()?)
}

/// Remembers the step each warning was published for.
pub async fn mark_step_warned(db: impl Into<ProjectionDb>, warnings: &[DossierStatusChanged]) -> Result<()> {
    let db = db.into();
    for w in warnings {
        let Some(step) = warned_step(w) else { continue };
        on_db!(&db, |p| sqlx::query(
            "UPDATE track_dossiers SET step_warned = $1 WHERE dossier_id = $2"
        )
        .bind(step.as_str())
        .bind(&w.dossier_id)
        .execute(p)
        .await
        .map(|_| ())?);
    }
    Ok(())
}

/// Time per step over finished steps, by field: what the demo's report shows.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StepSummary {
    pub field: String,
    /// Per step ([`Step::ALL`] order): finished steps, their working ms in total, and how
    /// many went over budget.
    pub finished: [u64; 5],
    pub working_ms: [i64; 5],
    pub over_budget: [u64; 5],
}

impl StepSummary {
    pub fn average_hours(&self, step: Step) -> Option<f64> {
        let n = self.finished[step.index()];
        (n > 0).then(|| self.working_ms[step.index()] as f64 / n as f64 / 3.6e6)
    }
}

/// Time per finished step, by field, over the whole projection.
pub async fn summary(db: impl Into<ProjectionDb>, clock: &dyn StepClock) -> Result<Vec<StepSummary>> {
    #[derive(sqlx::FromRow)]
    struct Row {
        field: Option<String>,
        #[sqlx(flatten)]
        boundaries: Boundaries,
    }
    let sql = format!("SELECT field, {BOUNDARY_COLUMNS} FROM track_dossiers WHERE received_at IS NOT NULL");
    let rows: Vec<Row> = on_db!(&db.into(), |p| sqlx::query_as(&sql).fetch_all(p).await?);
    let mut by_field: std::collections::BTreeMap<String, StepSummary> = std::collections::BTreeMap::new();
    for r in rows {
        let field = r.field.unwrap_or_else(|| "UNKNOWN".to_owned());
        let s = by_field.entry(field.clone()).or_insert_with(|| StepSummary {
            field,
            ..StepSummary::default()
        });
        for t in r.boundaries.times(None, clock) {
            let (Some(_), Some(w)) = (t.ended_at_ms, t.working_ms) else {
                continue;
            };
            let Some(step) = Step::parse(t.step) else { continue };
            s.finished[step.index()] += 1;
            s.working_ms[step.index()] += w;
            s.over_budget[step.index()] += u64::from(t.over_budget == Some(true));
        }
    }
    Ok(by_field.into_values().collect())
}
