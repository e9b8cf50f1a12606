//! Where time is spent and deadlines are missed: the dossiers received in a period, by
//! step of the internal process, by procedure and by unit.
//!
//! Definitions (the console's *bottlenecks* and `GET /bottlenecks`):
//! - a step's **working hours** are those of [`crate::steps`] (the receiving center's
//!   calendar, waits for supplements excluded); *finished* steps are averaged, and the
//!   step a dossier is in now counts as *running*, over budget once its time so far is;
//! - **late**: decided after the legal due time (`timeliness = late`); **overdue**: still
//!   open and past the tracked due time now; **missed** = late + overdue;
//! - a dossier counts at its competent unit once routed, at its receiving center before.

use std::collections::HashMap;

use motcua_routing::Step;
use motcua_schemas::DossierStatus;
use serde::Serialize;

use crate::steps::{Boundaries, StepClock, BOUNDARY_COLUMNS};
use crate::{ProjectionDb, Result};

/// Which dossiers: received in `[from_ms, to_ms)`, at or assigned to `unit` if given.
#[derive(Debug, Clone)]
pub struct BottleneckFilter {
    pub from_ms: i64,
    pub to_ms: i64,
    pub unit: Option<String>,
    pub now_ms: i64,
    /// Procedures and units listed (the worst first).
    pub top: usize,
}

/// One step over the period's dossiers.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StepFigures {
    pub step: &'static str,
    pub finished: u64,
    pub average_working_hours: Option<f64>,
    pub finished_over_budget: u64,
    pub running: u64,
    pub running_over_budget: u64,
}

/// One procedure or unit over the period's dossiers.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct GroupFigures {
    pub code: String,
    pub received: u64,
    pub resolved: u64,
    pub late: u64,
    pub overdue: u64,
    pub missed: u64,
    /// Steps (finished or running) over their budget.
    pub steps_over_budget: u64,
    /// The step with the most working hours on average, and those hours.
    pub slowest_step: Option<&'static str>,
    pub slowest_step_hours: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Bottlenecks {
    pub dossiers: u64,
    pub steps: Vec<StepFigures>,
    pub procedures: Vec<GroupFigures>,
    pub units: Vec<GroupFigures>,
}

#[derive(sqlx::FromRow)]
struct Row {
    competent_unit: Option<String>,
    timeliness: Option<String>,
    status_code: Option<i32>,
    tracked_due: Option<i64>,
    #[sqlx(flatten)]
    b: Boundaries,
}

#[derive(Default)]
struct Acc {
    figures: GroupFigures,
    step_ms: [i64; 5],
    step_n: [u64; 5],
}

impl Acc {
    fn finish(mut self, code: String) -> GroupFigures {
        let slowest = Step::ALL
            .into_iter()
            .filter(|s| self.step_n[s.index()] > 0)
            .map(|s| {
                (
                    s,
                    self.step_ms[s.index()] as f64 / self.step_n[s.index()] as f64 / 3.6e6,
                )
            })
            .max_by(|a, b| a.1.total_cmp(&b.1));
        self.figures.code = code;
        self.figures.missed = self.figures.late + self.figures.overdue;
        self.figures.slowest_step = slowest.map(|(s, _)| s.as_str());
        self.figures.slowest_step_hours = slowest.map(|(_, h)| (h * 100.0).round() / 100.0);
        self.figures
    }
}

/// The figures over the filter's dossiers.
pub async fn bottlenecks(db: &ProjectionDb, clock: &dyn StepClock, f: &BottleneckFilter) -> Result<Bottlenecks> {
    let sql = format!(
        "SELECT competent_unit, timeliness, status_code, {tracked} AS tracked_due, {BOUNDARY_COLUMNS}
         FROM track_dossiers
         WHERE received_at >= $1 AND received_at < $2
           AND ($3 IS NULL OR receiving_unit = $3 OR competent_unit = $3)",
        tracked = crate::projection::TRACKED_DUE
    );
    let rows: Vec<Row> = on_db!(db, |p| sqlx::query_as(&sql)
        .bind(f.from_ms)
        .bind(f.to_ms)
        .bind(f.unit.as_deref())
        .fetch_all(p)
        .await?);
    let mut steps: Vec<StepFigures> = Step::ALL
        .into_iter()
        .map(|s| StepFigures {
            step: s.as_str(),
            ..StepFigures::default()
        })
        .collect();
    let mut step_ms = [0i64; 5];
    let mut procedures: HashMap<String, Acc> = HashMap::new();
    let mut units: HashMap<String, Acc> = HashMap::new();
    for r in &rows {
        let open = r
            .status_code
            .and_then(DossierStatus::from_code)
            .is_some_and(DossierStatus::is_open);
        let resolved = r.b.decided_at.is_some();
        let late = r.timeliness.as_deref() == Some("late");
        let overdue = open && r.tracked_due.is_some_and(|d| d < f.now_ms);
        let current = if open { r.b.current() } else { None };
        let times = r.b.times(open.then_some(f.now_ms), clock);
        let procedure = r.b.procedure_code.clone().unwrap_or_else(|| "UNKNOWN".to_owned());
        let unit = r
            .competent_unit
            .clone()
            .or_else(|| r.b.receiving_unit.clone())
            .unwrap_or_else(|| "UNKNOWN".to_owned());
        let mut over = 0u64;
        for t in &times {
            let Some(step) = Step::parse(t.step) else { continue };
            let i = step.index();
            let Some(w) = t.working_ms else { continue };
            let over_budget = t.over_budget == Some(true);
            over += u64::from(over_budget);
            if t.ended_at_ms.is_some() {
                steps[i].finished += 1;
                steps[i].finished_over_budget += u64::from(over_budget);
                step_ms[i] += w;
            } else if current == Some(step) {
                steps[i].running += 1;
                steps[i].running_over_budget += u64::from(over_budget);
            }
        }
        add(
            procedures.entry(procedure).or_default(),
            &times,
            resolved,
            late,
            overdue,
            over,
        );
        add(units.entry(unit).or_default(), &times, resolved, late, overdue, over);
    }
    for (s, ms) in steps.iter_mut().zip(step_ms) {
        s.average_working_hours =
            (s.finished > 0).then(|| (ms as f64 / s.finished as f64 / 3.6e6 * 100.0).round() / 100.0);
    }
    Ok(Bottlenecks {
        dossiers: rows.len() as u64,
        steps,
        procedures: worst(procedures, f.top),
        units: worst(units, f.top),
    })
}

fn add(acc: &mut Acc, times: &[crate::steps::StepTime], resolved: bool, late: bool, overdue: bool, over: u64) {
    let g = &mut acc.figures;
    g.received += 1;
    g.resolved += u64::from(resolved);
    g.late += u64::from(late);
    g.overdue += u64::from(overdue);
    g.steps_over_budget += over;
    for t in times {
        if let (Some(step), Some(w)) = (Step::parse(t.step), t.working_ms) {
            acc.step_ms[step.index()] += w;
            acc.step_n[step.index()] += 1;
        }
    }
}

/// The `top` groups that missed most deadlines, then had most steps over budget.
fn worst(groups: HashMap<String, Acc>, top: usize) -> Vec<GroupFigures> {
    let mut out: Vec<GroupFigures> = groups.into_iter().map(|(code, acc)| acc.finish(code)).collect();
    out.sort_by(|a, b| {
        (b.missed, b.steps_over_budget, b.received)
            .cmp(&(a.missed, a.steps_over_budget, a.received))
            .then_with(|| a.code.cmp(&b.code))
    });
    out.truncate(top);
    out
}
