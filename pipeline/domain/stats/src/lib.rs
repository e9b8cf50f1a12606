//! Statistics by definition: the figures a province reports, computed as a fold over
//! the event log. Each definition is written down in `docs/statistics.md` and here, next
//! to the code that applies it; the fold is idempotent (an event seen twice counts once)
//! and independent of the order events are read in, so a replay of the topics gives the
//! same figures as the live run.
//!
//! Definitions (times are Việt Nam local time; a month is a calendar month):
//! - **received** in a month: dossiers whose reception time (`dossier.accepted`
//!   `received_at`) falls in it, at the receiving unit; **online** when submitted online.
//!   A dossier resumed after a supplement keeps its one reception.
//! - **rejected at reception**: dossiers refused at the door (status 3) and never
//!   received, at the receiving unit, in the month of the refusal.
//! - **resolved** in a month: dossiers with a returned result (`dossier.completed`)
//!   whose decision time (`dossier.decided` `decided_at`; the delivery time when the
//!   decision is not in the log) falls in it, at the unit that decided. A dossier handed
//!   to another unit is counted once, where it was decided.
//! - **early / on time / late**: the result stage's classification of a resolved
//!   dossier against its legal due time — the due time after every pause of the legal
//!   clock (supplements) was given back, so pauses are excluded.
//! - **withdrawn** (status 7) and **stopped** (status 8): in the month they happened, at
//!   the unit the dossier was with (its competent unit once routed, else the receiving one).
//! - **paused**: resolved dossiers whose clock was paused, and the working time paused.
//! - **reappointed**: resolved dossiers whose authority apologised and gave a new date;
//!   they are still classified against the legal due time (late stays late).
//! - **pending as of T**: received by T and not resolved, withdrawn, stopped by T, at the
//!   unit it is with; **overdue** when its due time is before T.
//!
//! Facts after the report's `as_of` are left out, so a report "as of" a past instant is
//! the one that would have been produced then.

pub mod forecast;

use std::collections::{BTreeMap, HashMap, HashSet};

use motcua_reference::civil;
use motcua_schemas::{AnyEvent, Channel, DossierStatus, ProcedureField, Timeliness};
use serde::Serialize;

/// What is known about one dossier.
#[derive(Debug, Default, Clone)]
struct Facts {
    procedure_code: Option<String>,
    field: Option<ProcedureField>,
    receiving_unit: Option<String>,
    online: bool,
    received_at: Option<i64>,
    /// Refused at the door: when, and where.
    rejected: Option<(i64, Option<String>)>,
    /// The latest routing: when, to whom, due when, working time paused.
    routed: Option<Routed>,
    completed: Option<Completed>,
    withdrawn_at: Option<i64>,
    stopped_at: Option<i64>,
    /// When the authority first apologised and gave a new date.
    reappointed_at: Option<i64>,
}

#[derive(Debug, Clone)]
struct Routed {
    at: i64,
    unit: String,
    due_at: i64,
    paused_ms: i64,
}

#[derive(Debug, Clone)]
struct Completed {
    decision_event_id: String,
    delivered_at: i64,
    unit: String,
    timeliness: Timeliness,
}

/// The event log folded into facts per dossier.
#[derive(Debug, Default, Clone)]
pub struct Ledger {
    seen: HashSet<String>,
    dossiers: HashMap<String, Facts>,
    /// Decision times by decision event id (a completion names its decision).
    decided_at: HashMap<String, i64>,
}

/// One group's counts.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub received: u64,
    pub received_online: u64,
    pub rejected_at_reception: u64,
    pub resolved: u64,
    pub resolved_early: u64,
    pub resolved_on_time: u64,
    pub resolved_late: u64,
    pub withdrawn: u64,
    pub stopped: u64,
    pub resolved_paused: u64,
    pub paused_working_ms: i64,
    /// Resolved dossiers given a new appointment (still early / on time / late by the
    /// legal due time: an apology does not make a late dossier on time).
    pub resolved_reappointed: u64,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.received += o.received;
        self.received_online += o.received_online;
        self.rejected_at_reception += o.rejected_at_reception;
        self.resolved += o.resolved;
        self.resolved_early += o.resolved_early;
        self.resolved_on_time += o.resolved_on_time;
        self.resolved_late += o.resolved_late;
        self.withdrawn += o.withdrawn;
        self.stopped += o.stopped;
        self.resolved_paused += o.resolved_paused;
        self.paused_working_ms += o.paused_working_ms;
        self.resolved_reappointed += o.resolved_reappointed;
    }

    /// Resolved early or on time, of all resolved; `None` when nothing was resolved.
    pub fn on_time_rate(&self) -> Option<f64> {
        (self.resolved > 0).then(|| (self.resolved_early + self.resolved_on_time) as f64 / self.resolved as f64)
    }

    /// Received online, of all received.
    pub fn online_rate(&self) -> Option<f64> {
        (self.received > 0).then(|| self.received_online as f64 / self.received as f64)
    }
}

/// The grouping of every flow figure: month, unit, procedure and its field.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Key {
    /// `YYYY-MM`, Việt Nam time.
    pub month: String,
    pub unit_code: String,
    pub procedure_code: String,
    /// The procedure's field (`LAND`, …), `UNKNOWN` for a dossier refused before its
    /// procedure was known.
    pub field: String,
}

/// Dossiers open at `as_of`, by unit, procedure and field.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Backlog {
    pub pending: u64,
    pub overdue: u64,
}

/// The figures as of an instant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub as_of: i64,
    pub rows: BTreeMap<Key, Counts>,
    /// Keyed like the rows, with the month of `as_of`.
    pub backlog: BTreeMap<Key, Backlog>,
}

/// The month (`YYYY-MM`, Việt Nam time) an instant falls in.
pub fn month(at_ms: i64) -> String {
    let (y, m, _) = civil::civil_from_days(civil::vn_day(at_ms));
    format!("{y:04}-{m:02}")
}

fn field_name(f: Option<ProcedureField>) -> String {
    f.map_or("UNKNOWN", ProcedureField::as_str).to_owned()
}

impl Ledger {
    pub fn new() -> Self {
        Self::default()
    }

    /// Folds one event in; an event id seen before changes nothing.
    pub fn apply(&mut self, event: &AnyEvent) {
        if !self.seen.insert(event.event_id().to_owned()) {
            return;
        }
        match event {
            // The portal's submission: what a dossier never received is known by (its
            // procedure and the center it was brought to).
            AnyEvent::Submitted(e) => {
                let f = self.dossiers.entry(e.dossier.dossier_id.clone()).or_default();
                f.procedure_code.get_or_insert_with(|| e.dossier.procedure_code.clone());
                f.receiving_unit
                    .get_or_insert_with(|| e.dossier.receiving_unit_code.clone());
            }
            AnyEvent::Accepted(a) => {
                let f = self.dossiers.entry(a.dossier.dossier_id.clone()).or_default();
                f.procedure_code.get_or_insert_with(|| a.procedure.code.clone());
                f.field = Some(a.procedure.field);
                f.receiving_unit
                    .get_or_insert_with(|| a.dossier.receiving_unit_code.clone());
                f.online = a.dossier.channel == Channel::Online;
                // One reception per dossier; a resumed dossier carries the same time.
                f.received_at = Some(f.received_at.map_or(a.received_at, |r| r.min(a.received_at)));
            }
            AnyEvent::Routed(r) => {
                let f = self.dossiers.entry(r.dossier.dossier_id.clone()).or_default();
                let newer = f.routed.as_ref().is_none_or(|x| r.routed_at >= x.at);
                if newer {
                    f.routed = Some(Routed {
                        at: r.routed_at,
                        unit: r.competent_unit_code.clone(),
                        due_at: r.due_at,
                        paused_ms: r.clock_pauses.iter().map(|p| p.paused_working_ms).sum(),
                    });
                }
                f.procedure_code.get_or_insert_with(|| r.procedure.code.clone());
                f.field.get_or_insert(r.procedure.field);
            }
            AnyEvent::Decided(d) => {
                self.decided_at.insert(d.event_id.clone(), d.decided_at);
            }
            AnyEvent::Completed(c) => {
                let f = self.dossiers.entry(c.dossier_id.clone()).or_default();
                f.completed.get_or_insert(Completed {
                    decision_event_id: c.causation_id.clone(),
                    delivered_at: c.delivered_at,
                    unit: c.competent_unit_code.clone(),
                    timeliness: c.timeliness,
                });
                f.procedure_code.get_or_insert_with(|| c.procedure_code.clone());
            }
            AnyEvent::Reappointed(r) => {
                let f = self.dossiers.entry(r.dossier_id.clone()).or_default();
                f.reappointed_at = Some(f.reappointed_at.map_or(r.issued_at, |t| t.min(r.issued_at)));
            }
            AnyEvent::Status(s) => {
                let f = self.dossiers.entry(s.dossier_id.clone()).or_default();
                let first = |slot: &mut Option<i64>| *slot = Some(slot.map_or(s.occurred_at, |t| t.min(s.occurred_at)));
                match s.status {
                    DossierStatus::RejectedAtReception => {
                        if f.rejected.as_ref().is_none_or(|(t, _)| s.occurred_at < *t) {
                            f.rejected = Some((s.occurred_at, s.unit_code.clone()));
                        }
                        if let Some(p) = &s.procedure_code {
                            f.procedure_code.get_or_insert_with(|| p.clone());
                        }
                    }
                    DossierStatus::Withdrawn => first(&mut f.withdrawn_at),
                    DossierStatus::ProcessingStopped => first(&mut f.stopped_at),
                    _ => {}
                }
            }
            _ => {}
        }
    }

    /// Dossiers known (any event seen).
    pub fn dossiers(&self) -> usize {
        self.dossiers.len()
    }

    /// The figures as of `as_of` (facts after it are left out).
    pub fn report(&self, as_of: i64) -> Report {
        let mut rows: BTreeMap<Key, Counts> = BTreeMap::new();
        let mut backlog: BTreeMap<Key, Backlog> = BTreeMap::new();
        for f in self.dossiers.values() {
            let procedure = f.procedure_code.clone().unwrap_or_default();
            let field = field_name(f.field);
            let key = |at: i64, unit: &str| Key {
                month: month(at),
                unit_code: unit.to_owned(),
                procedure_code: procedure.clone(),
                field: field.clone(),
            };
            let receiving = f.receiving_unit.clone().unwrap_or_default();
            let received = f.received_at.filter(|t| *t <= as_of);
            if let Some(t) = received {
                let c = rows.entry(key(t, &receiving)).or_default();
                c.received += 1;
                c.received_online += u64::from(f.online);
            } else if let Some((t, unit)) = f.rejected.as_ref().filter(|(t, _)| *t <= as_of) {
                let unit = unit.clone().unwrap_or_else(|| receiving.clone());
                rows.entry(key(*t, &unit)).or_default().rejected_at_reception += 1;
            }
            let routed = f.routed.as_ref().filter(|r| r.at <= as_of);
            let with_unit = routed.map_or(receiving.as_str(), |r| r.unit.as_str());
            let resolved = f.completed.as_ref().and_then(|c| {
                let at = self
                    .decided_at
                    .get(&c.decision_event_id)
                    .copied()
                    .unwrap_or(c.delivered_at);
                (at <= as_of).then_some((at, c))
            });
            // The first end wins (the store lets one of them happen; the log agrees).
            let withdrawn = f.withdrawn_at.filter(|t| *t <= as_of);
            let stopped = f.stopped_at.filter(|t| *t <= as_of);
            if let Some((at, c)) = resolved {
                let counts = rows.entry(key(at, &c.unit)).or_default();
                counts.resolved += 1;
                match c.timeliness {
                    Timeliness::Early => counts.resolved_early += 1,
                    Timeliness::OnTime => counts.resolved_on_time += 1,
                    Timeliness::Late => counts.resolved_late += 1,
                }
                counts.resolved_reappointed += u64::from(f.reappointed_at.is_some_and(|t| t <= as_of));
                let paused = f.routed.as_ref().map_or(0, |r| r.paused_ms);
                if paused > 0 {
                    counts.resolved_paused += 1;
                    counts.paused_working_ms += paused;
                }
            } else if let Some(t) = withdrawn {
                rows.entry(key(t, with_unit)).or_default().withdrawn += 1;
            } else if let Some(t) = stopped {
                rows.entry(key(t, with_unit)).or_default().stopped += 1;
            } else if received.is_some() {
                let b = backlog.entry(key(as_of, with_unit)).or_default();
                b.pending += 1;
                if routed.is_some_and(|r| r.due_at < as_of) {
                    b.overdue += 1;
                }
            }
        }
        Report { as_of, rows, backlog }
    }
}

impl Report {
    /// Every row added up.
    pub fn totals(&self) -> Counts {
        let mut t = Counts::default();
        self.rows.values().for_each(|c| t.add(c));
        t
    }

    /// The rows summed by a coarser key (e.g. by unit only: `|k| k.unit_code.clone()`).
    pub fn by<K: Ord>(&self, f: impl Fn(&Key) -> K) -> BTreeMap<K, Counts> {
        let mut out: BTreeMap<K, Counts> = BTreeMap::new();
        for (k, c) in &self.rows {
            out.entry(f(k)).or_default().add(c);
        }
        out
    }

    /// The periodic report as CSV: one line per month, unit, procedure and field, with
    /// the counts and the on-time and online rates (empty when undefined).
    pub fn to_csv(&self) -> String {
        let mut out = String::from(
            "month,unit_code,procedure_code,field,received,received_online,rejected_at_reception,resolved,\
             resolved_early,resolved_on_time,resolved_late,on_time_rate,online_rate,withdrawn,stopped,\
             resolved_paused,paused_working_hours,resolved_reappointed\n",
        );
        let rate = |r: Option<f64>| r.map(|v| format!("{v:.4}")).unwrap_or_default();
        for (k, c) in &self.rows {
            out.push_str(&format!(
                "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{:.2},{}\n",
                k.month,
                k.unit_code,
                k.procedure_code,
                k.field,
                c.received,
                c.received_online,
                c.rejected_at_reception,
                c.resolved,
                c.resolved_early,
                c.resolved_on_time,
                c.resolved_late,
                rate(c.on_time_rate()),
                rate(c.online_rate()),
                c.withdrawn,
                c.stopped,
                c.resolved_paused,
                c.paused_working_ms as f64 / 3_600_000.0,
                c.resolved_reappointed
            ));
        }
        out
    }

    /// The periodic report as JSON: `as_of`, `totals` and the same rows as the CSV, plus
    /// the backlog as of `as_of`.
    pub fn to_json(&self) -> serde_json::Value {
        let rows: Vec<serde_json::Value> = self
            .rows
            .iter()
            .map(|(k, c)| {
                serde_json::json!({
                    "month": k.month, "unit_code": k.unit_code, "procedure_code": k.procedure_code,
                    "field": k.field, "counts": c, "on_time_rate": c.on_time_rate(), "online_rate": c.online_rate(),
                })
            })
            .collect();
        let backlog: Vec<serde_json::Value> = self
            .backlog
            .iter()
            .map(|(k, b)| {
                serde_json::json!({
                    "unit_code": k.unit_code, "procedure_code": k.procedure_code, "field": k.field,
                    "pending": b.pending, "overdue": b.overdue,
                })
            })
            .collect();
        let totals = self.totals();
        serde_json::json!({
            "format": "motcua-statistics/1",
            "as_of": self.as_of,
            "totals": totals,
            "on_time_rate": totals.on_time_rate(),
            "online_rate": totals.online_rate(),
            "rows": rows,
            "backlog": backlog,
        })
    }
}

#[cfg(test)]
mod tests;
