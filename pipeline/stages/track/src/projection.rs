//! From events to projection rows, and the batched write.
//!
//! Each event becomes one history row and one *patch* of its dossier's row. Patches are
//! merged with a rule that is the same in Rust (several events of one dossier in a batch)
//! and in SQL (the patch against the stored row), and that does not depend on the order
//! in which events arrive:
//!
//! - identity facts (dossier code, procedure, receiving unit, channel, decision, completion
//!   time, timeliness) never change once known: the first non-null value stays;
//! - `submitted_at` / `received_at`: the earliest;
//! - competent unit and due time: from the assignment with the latest time (routing, a
//!   re-routing, a due time extended after a supplement pause); an older one only fills
//!   what is still unknown;
//! - the current status: the one with the greatest [`status_key`] — first the *phase*
//!   (open 1, 2, 4, 5, 6 < closed 3, 9 < withdrawn or stopped 7, 8 (a decision sent by a
//!   back office that had not heard of the withdrawal does not undo it) < result
//!   returned 10: a dossier never goes
//!   back from closed to open, whatever the clocks of the stages say), then the time it
//!   occurred, then a fixed precedence of the codes for events of the same millisecond.
//!   A late older event therefore never overwrites a newer status. Status events the
//!   track stage produces itself (deadline warnings) are history only.

use std::collections::{HashMap, HashSet};

use motcua_schemas::{AnyEvent, Channel, Decision, Dossier, DossierStatus, Timeliness, Topic};
use sqlx::{PgPool, SqlitePool};

use crate::Result;

/// The stage name of the track stage (consumer group `motcua-track`, `stage` of warnings).
pub const STAGE: &str = motcua_schemas::component::TRACK;

/// One event's contribution: a history row and a patch of its dossier.
#[derive(Debug, Clone)]
pub(crate) struct Change {
    pub(crate) event_id: String,
    pub(crate) event: &'static str,
    pub(crate) stage: String,
    pub(crate) reasons: String,
    pub(crate) occurred_at: i64,
    pub(crate) status_code: Option<i32>,
    /// What a status event announced besides its status (`None` for other events).
    pub(crate) announced: Option<Announced>,
    pub(crate) patch: Patch,
}

/// A status event's procedure, unit and due time, as it announced them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Announced {
    pub(crate) procedure_code: Option<String>,
    pub(crate) unit_code: Option<String>,
    pub(crate) due_at: Option<i64>,
}

/// Declares the dossier row's columns once, each with its merge rule: the `Patch`
/// struct (a partial row), its Rust merge and the SQL upsert's `MERGE` table all come
/// from this one list, so the two merges cannot drift apart.
macro_rules! dossier_columns {
    ($($column:ident: $ty:ty => $rule:ident),* $(,)?) => {
        /// A partial dossier row (see the module documentation for the merge rule).
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        pub(crate) struct Patch {
            pub(crate) dossier_id: String,
            $(pub(crate) $column: Option<$ty>,)*
        }

        /// Every column but the key, in the order of the UNNEST columns, with its merge
        /// rule and its PostgreSQL array type.
        const MERGE: &[(&str, Rule, &str)] = &[$((stringify!($column), Rule::$rule, <$ty as PgArray>::ARRAY)),*];

        impl Patch {
            /// Merges `new` into `self` exactly as the SQL upsert merges EXCLUDED into the
            /// row (every rule sees the values from before the merge, as SQL SETs do).
            pub(crate) fn merge(&mut self, new: Patch) {
                let before = Before::of(self, &new);
                $(Rule::$rule.apply(&mut self.$column, new.$column, &before);)*
            }

            /// Binds one row's values, key first, in the order of [`MERGE`] (SQLite).
            fn bind_row<'q>(
                &'q self,
                q: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>,
            ) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>> {
                q.bind(&self.dossier_id)$(.bind(&self.$column))*
            }

            /// Binds every row's values as one array per column, key first (PostgreSQL
            /// UNNEST).
            fn bind_columns<'q>(
                patches: &[Patch],
                q: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
            ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
                q.bind(patches.iter().map(|p| p.dossier_id.clone()).collect::<Vec<_>>())
                    $(.bind(patches.iter().map(|p| p.$column.clone()).collect::<Vec<_>>()))*
            }
        }
    };
}

/// The PostgreSQL array type a column's values travel in.
trait PgArray {
    const ARRAY: &'static str;
}

impl PgArray for String {
    const ARRAY: &'static str = "text[]";
}

impl PgArray for &'static str {
    const ARRAY: &'static str = "text[]";
}

impl PgArray for i64 {
    const ARRAY: &'static str = "int8[]";
}

impl PgArray for i32 {
    const ARRAY: &'static str = "int4[]";
}

dossier_columns! {
    dossier_code: String => First,
    procedure_code: String => First,
    receiving_unit: String => First,
    channel: &'static str => First,
    submitted_at: i64 => Least,
    received_at: i64 => Least,
    assign_at: i64 => Greatest,
    routed_at: i64 => Greatest,
    competent_unit: String => LatestAssignment,
    due_at: i64 => LatestAssignment,
    decided_at: i64 => First,
    decision: &'static str => First,
    completed_at: i64 => First,
    timeliness: &'static str => First,
    status_code: i32 => GreatestStatus,
    status_at: i64 => GreatestStatus,
    status_key: i64 => Greatest,
    last_event_at: i64 => Greatest,
    lookup_digest: String => First,
    paused_working_ms: i64 => LatestRouting,
    calendar_version: String => LatestRouting,
    appointment_due_at: i64 => Greatest,
    // The statistics' facts (docs/statistics.md): the procedure's field, when the
    // dossier was refused at the door, withdrawn, stopped, and first given a new
    // appointment — each the earliest, whatever order the events come in.
    field: &'static str => First,
    rejected_at: i64 => Least,
    withdrawn_at: i64 => Least,
    stopped_at: i64 => Least,
    reappointed_at: i64 => Least,
    // The step boundaries (step budgets): verification ends with the last verification
    // (a dossier verified again after a supplement), appraisal when the back office says.
    verified_at: i64 => Greatest,
    appraised_at: i64 => First,
    clock_pauses: String => LatestRouting,
}

/// The due time a dossier is tracked against: a new appointment's date once one was
/// given (never earlier than the legal due time), else the legal due time.
pub(crate) const TRACKED_DUE: &str = "CASE WHEN appointment_due_at > due_at THEN appointment_due_at ELSE due_at END";

/// What the rules compare, taken before any column changes.
struct Before {
    /// The patch's assignment is at least as recent as the row's.
    newer_assignment: bool,
    /// The patch's routing is at least as recent as the row's.
    newer_routing: bool,
    /// The patch's status outranks the row's.
    newer_status: bool,
}

impl Before {
    fn of(row: &Patch, new: &Patch) -> Self {
        Self {
            newer_assignment: at_least_as_recent(new.assign_at, row.assign_at),
            newer_routing: at_least_as_recent(new.routed_at, row.routed_at),
            newer_status: new.status_key.is_some() && new.status_key > row.status_key,
        }
    }
}

/// Whether a patch's time of an assignment (or routing) is at least as recent as the
/// row's: a patch without one is not.
fn at_least_as_recent(new: Option<i64>, row: Option<i64>) -> bool {
    match (new, row) {
        (Some(n), Some(c)) => n >= c,
        (Some(_), None) => true,
        (None, _) => false,
    }
}

impl Patch {
    /// The facts every dossier-carrying event repeats: identity, procedure, where and how
    /// it was received.
    fn dossier_facts(&mut self, d: &Dossier) {
        self.dossier_id = d.dossier_id.clone();
        self.procedure_code = Some(d.procedure_code.clone());
        self.receiving_unit = Some(d.receiving_unit_code.clone());
        self.channel = Some(channel(d.channel));
    }
}

/// The precedence key of a status reached at `at` (see the module documentation): the
/// status's phase in bits 50.., time in bits 4..50, its same-millisecond precedence in
/// bits 0..4 (phase and precedence come from the status table in the schemas).
pub fn status_key(code: i32, at: i64) -> i64 {
    let (phase, rank) =
        DossierStatus::from_code(code).map_or((0, 0), |s| (s.phase() as i64, i64::from(s.precedence())));
    let at = at.clamp(0, (1 << 46) - 1);
    (phase << 50) | (at << 4) | rank
}

/// The national codes of the statuses `keep` selects, as an SQL list (`1, 2, 4`): queries
/// name statuses through the status table, never as literals of their own.
pub(crate) fn sql_codes(keep: impl Fn(DossierStatus) -> bool) -> String {
    DossierStatus::ALL
        .into_iter()
        .filter(|s| keep(*s))
        .map(|s| s.code().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn reasons_json(reasons: &[motcua_schemas::Reason]) -> String {
    let v: Vec<serde_json::Value> = reasons
        .iter()
        .map(|r| serde_json::json!({"code": r.code, "message": r.message}))
        .collect();
    serde_json::Value::Array(v).to_string()
}

fn channel(c: Channel) -> &'static str {
    c.as_str()
}

pub(crate) fn timeliness_str(t: Timeliness) -> &'static str {
    match t {
        Timeliness::Early => "early",
        Timeliness::OnTime => "on_time",
        Timeliness::Late => "late",
    }
}

fn decision_str(d: Decision) -> &'static str {
    match d {
        Decision::Approved => "approved",
        Decision::Refused => "refused",
    }
}

/// What an event tells about its dossier; `None` for events that carry no dossier id
/// (`payment.confirmed` is keyed by bill reference) and dead letters.
pub(crate) fn change_of(event: &AnyEvent) -> Option<Change> {
    let topic: Topic = event.topic();
    // The component that wrote the event: one table for every topic (in the schemas).
    let producer = |t: Topic| t.producer().unwrap_or_default().to_owned();
    let mut p = Patch::default();
    let mut history_status = None;
    let (stage, reasons, occurred_at, status): (String, String, i64, Option<DossierStatus>) = match event {
        AnyEvent::Submitted(e) => {
            let d = &e.dossier;
            p.dossier_facts(d);
            p.submitted_at = Some(d.submitted_at);
            (
                producer(topic),
                "[]".into(),
                d.submitted_at,
                Some(DossierStatus::Registered),
            )
        }
        AnyEvent::Accepted(e) => {
            p.dossier_facts(&e.dossier);
            p.dossier_code = Some(e.dossier_code.clone());
            p.submitted_at = Some(e.dossier.submitted_at);
            p.received_at = Some(e.received_at);
            p.field = Some(e.procedure.field.as_str());
            (
                producer(topic),
                "[]".into(),
                e.received_at,
                Some(DossierStatus::Received),
            )
        }
        AnyEvent::Verified(e) => {
            p.dossier_facts(&e.dossier);
            p.dossier_code = Some(e.dossier_code.clone());
            p.received_at = Some(e.received_at);
            p.verified_at = Some(e.verified_at);
            (producer(topic), "[]".into(), e.verified_at, None)
        }
        AnyEvent::PaymentRequested(e) => {
            p.dossier_id = e.dossier_id.clone();
            p.dossier_code = Some(e.dossier_code.clone());
            (
                producer(topic),
                "[]".into(),
                e.issued_at,
                Some(DossierStatus::FinancialObligationRequested),
            )
        }
        AnyEvent::Paid(e) => {
            p.dossier_facts(&e.dossier);
            p.dossier_code = Some(e.dossier_code.clone());
            p.received_at = Some(e.received_at);
            (producer(topic), "[]".into(), e.paid_at, None)
        }
        AnyEvent::Routed(e) => {
            let by = if e.is_return() {
                motcua_schemas::component::INTAKE.to_owned()
            } else {
                producer(topic)
            };
            p.dossier_facts(&e.dossier);
            p.dossier_code = Some(e.dossier_code.clone());
            p.received_at = Some(e.received_at);
            p.field = Some(e.procedure.field.as_str());
            p.assign_at = Some(e.routed_at);
            p.routed_at = Some(e.routed_at);
            p.competent_unit = Some(e.competent_unit_code.clone());
            p.due_at = Some(e.due_at);
            p.paused_working_ms = Some(e.clock_pauses.iter().map(|x| x.paused_working_ms).sum());
            // The periods, so each step excludes the part of a wait that overlaps it.
            let periods: Vec<[i64; 2]> = e.clock_pauses.iter().map(|x| [x.from_at, x.to_at]).collect();
            p.clock_pauses = serde_json::to_string(&periods).ok();
            p.calendar_version = e.calendar_version.clone();
            (by, "[]".into(), e.routed_at, Some(DossierStatus::Processing))
        }
        AnyEvent::Decided(e) => {
            p.dossier_id = e.dossier_id.clone();
            p.dossier_code = Some(e.dossier_code.clone());
            p.procedure_code = Some(e.procedure_code.clone());
            p.received_at = Some(e.received_at);
            p.assign_at = Some(e.decided_at);
            p.competent_unit = Some(e.competent_unit_code.clone());
            p.due_at = Some(e.due_at);
            p.decided_at = Some(e.decided_at);
            p.appraised_at = e.appraised_at;
            p.decision = Some(decision_str(e.decision));
            (
                producer(topic),
                reasons_json(&e.reasons),
                e.decided_at,
                Some(DossierStatus::Completed),
            )
        }
        AnyEvent::Completed(e) => {
            p.dossier_id = e.dossier_id.clone();
            p.dossier_code = Some(e.dossier_code.clone());
            p.procedure_code = Some(e.procedure_code.clone());
            p.received_at = Some(e.received_at);
            p.assign_at = Some(e.delivered_at);
            p.competent_unit = Some(e.competent_unit_code.clone());
            p.due_at = Some(e.due_at);
            p.decision = Some(decision_str(e.decision));
            p.completed_at = Some(e.delivered_at);
            p.timeliness = Some(timeliness_str(e.timeliness));
            (
                producer(topic),
                "[]".into(),
                e.delivered_at,
                Some(DossierStatus::ResultReturned),
            )
        }
        AnyEvent::Status(e) => {
            p.dossier_id = e.dossier_id.clone();
            p.dossier_code = e.dossier_code.clone();
            p.procedure_code = e.procedure_code.clone();
            // Only the token's digest is kept (see the status API's citizen lookup).
            p.lookup_digest = e
                .lookup_token
                .as_deref()
                .and_then(motcua_security::access::lookup_token_digest);
            if e.due_at.is_some() {
                // A status carrying a due time (routing, resumption after a supplement)
                // is an assignment; its unit is then the competent one.
                p.assign_at = Some(e.occurred_at);
                p.due_at = e.due_at;
                p.competent_unit = e.unit_code.clone();
            }
            // Deadline warnings (produced by this stage) are history only: the history
            // keeps the status they were about, the current status does not move.
            match e.status {
                DossierStatus::RejectedAtReception => p.rejected_at = Some(e.occurred_at),
                DossierStatus::Withdrawn => p.withdrawn_at = Some(e.occurred_at),
                DossierStatus::ProcessingStopped => p.stopped_at = Some(e.occurred_at),
                _ => {}
            }
            if e.stage == STAGE {
                history_status = Some(e.status);
                (e.stage.clone(), reasons_json(&e.reasons), e.occurred_at, None)
            } else {
                (e.stage.clone(), reasons_json(&e.reasons), e.occurred_at, Some(e.status))
            }
        }
        // The portal's requests are history: intake's status events say whether they
        // were honoured (a refused one is dead-lettered and changes nothing).
        AnyEvent::Supplemented(e) => {
            p.dossier_id = e.dossier_id.clone();
            (producer(topic), "[]".into(), e.supplemented_at, None)
        }
        AnyEvent::Withdrawn(e) => {
            p.dossier_id = e.dossier_id.clone();
            (producer(topic), "[]".into(), e.withdrawn_at, None)
        }
        AnyEvent::Reappointed(e) => {
            p.dossier_id = e.dossier_id.clone();
            p.dossier_code = Some(e.dossier_code.clone());
            p.appointment_due_at = Some(e.new_due_at);
            p.reappointed_at = Some(e.issued_at);
            let reason = motcua_schemas::Reason {
                code: e.reason_code.clone(),
                message: format!(
                    "Xin lỗi và hẹn lại ngày trả kết quả (phiếu {}); vẫn tính là trễ hạn",
                    e.apology_reference
                ),
            };
            (producer(topic), reasons_json(&[reason]), e.issued_at, None)
        }
        // A back office's request is in the history through the status intake announces
        // it with (a request intake refused changes nothing, and makes no dossier row).
        AnyEvent::PaymentConfirmed(_) | AnyEvent::DeadLetter(_) | AnyEvent::SupplementRequested(_) => return None,
    };
    if p.dossier_id.is_empty() {
        return None;
    }
    if let Some(code) = status.map(DossierStatus::code) {
        p.status_code = Some(code);
        p.status_at = Some(occurred_at);
        p.status_key = Some(status_key(code, occurred_at));
    }
    p.last_event_at = Some(occurred_at);
    let announced = match event {
        AnyEvent::Status(e) => Some(Announced {
            procedure_code: e.procedure_code.clone(),
            unit_code: e.unit_code.clone(),
            due_at: e.due_at,
        }),
        _ => None,
    };
    Some(Change {
        event_id: event.event_id().to_owned(),
        event: topic.name(),
        stage,
        reasons,
        occurred_at,
        status_code: status.or(history_status).map(DossierStatus::code),
        announced,
        patch: p,
    })
}

const INSERT_HISTORY: &str = "
INSERT INTO track_history (event_id, dossier_id, event, status_code, stage, reasons, occurred_at,
                           procedure_code, unit_code, due_at)
SELECT e, d, k, s, st, r::jsonb, o, pc, u, due
FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int4[], $5::text[], $6::text[], $7::int8[],
            $8::text[], $9::text[], $10::int8[])
     AS t(e, d, k, s, st, r, o, pc, u, due)
ON CONFLICT (event_id) DO NOTHING
RETURNING event_id";

/// How a column of the stored row (`d`) and of the merged patch (`EXCLUDED`) combine.
#[derive(Clone, Copy)]
enum Rule {
    /// The first non-null value stays.
    First,
    /// The smaller, ignoring nulls.
    Least,
    /// The greater, ignoring nulls.
    Greatest,
    /// From the assignment with the latest `assign_at`; an older one only fills nulls.
    LatestAssignment,
    /// From the routing with the latest `routed_at`; an older one only fills nulls.
    LatestRouting,
    /// From the status with the greatest `status_key`.
    GreatestStatus,
}

impl Rule {
    /// The rule in Rust, for several events of one dossier in a batch.
    fn apply<T: Ord>(self, column: &mut Option<T>, new: Option<T>, before: &Before) {
        match self {
            Rule::First => {
                if column.is_none() {
                    *column = new;
                }
            }
            Rule::Least => {
                if new.is_some() && (column.is_none() || new < *column) {
                    *column = new;
                }
            }
            Rule::Greatest => {
                if new > *column {
                    *column = new;
                }
            }
            Rule::LatestAssignment | Rule::LatestRouting => {
                let newer_first = match self {
                    Rule::LatestRouting => before.newer_routing,
                    _ => before.newer_assignment,
                };
                let (newer, older) = if newer_first {
                    (new, column.take())
                } else {
                    (column.take(), new)
                };
                *column = newer.or(older);
            }
            Rule::GreatestStatus => {
                if before.newer_status {
                    *column = new;
                }
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Dialect {
    Postgres,
    Sqlite,
}

/// The SQL merge expression of a column. (SET expressions all see the stored row's old
/// values.) SQLite's two-argument `min`/`max` return NULL when either side is, unlike
/// PostgreSQL's `LEAST`/`GREATEST`, hence the COALESCEs.
fn merge_expr(column: &str, rule: Rule, dialect: Dialect) -> String {
    let c = column;
    match (rule, dialect) {
        (Rule::First, _) => format!("COALESCE(d.{c}, EXCLUDED.{c})"),
        (Rule::Least, Dialect::Postgres) => format!("LEAST(d.{c}, EXCLUDED.{c})"),
        (Rule::Greatest, Dialect::Postgres) => format!("GREATEST(d.{c}, EXCLUDED.{c})"),
        (Rule::Least, Dialect::Sqlite) => {
            format!("min(COALESCE(d.{c}, EXCLUDED.{c}), COALESCE(EXCLUDED.{c}, d.{c}))")
        }
        (Rule::Greatest, Dialect::Sqlite) => {
            format!("max(COALESCE(d.{c}, EXCLUDED.{c}), COALESCE(EXCLUDED.{c}, d.{c}))")
        }
        (Rule::LatestAssignment, _) => latest_by("assign_at", c),
        (Rule::LatestRouting, _) => latest_by("routed_at", c),
        (Rule::GreatestStatus, _) => {
            format!("CASE WHEN EXCLUDED.status_key > COALESCE(d.status_key, -1) THEN EXCLUDED.{c} ELSE d.{c} END")
        }
    }
}

/// `c` from the row whose `by` is the latest; the other only fills nulls.
fn latest_by(by: &str, c: &str) -> String {
    format!(
        "CASE WHEN EXCLUDED.{by} >= COALESCE(d.{by}, EXCLUDED.{by}) \
         THEN COALESCE(EXCLUDED.{c}, d.{c}) ELSE COALESCE(d.{c}, EXCLUDED.{c}) END"
    )
}

/// The upsert's `ON CONFLICT` clause: every column merged, and rows the patch would not
/// change left alone (no new row version, no index maintenance) — most events of a
/// dossier's life only confirm what the row already says.
fn on_conflict(dialect: Dialect) -> String {
    // last_event_at alone does not justify rewriting the row.
    let compared: Vec<&(&str, Rule, &str)> = MERGE.iter().filter(|(c, _, _)| *c != "last_event_at").collect();
    let distinct = match dialect {
        Dialect::Postgres => "IS DISTINCT FROM",
        Dialect::Sqlite => "IS NOT",
    };
    format!(
        "ON CONFLICT (dossier_id) DO UPDATE SET {sets} WHERE ({new}) {distinct} ({old})",
        sets = MERGE
            .iter()
            .map(|(c, r, _)| format!("{c} = {}", merge_expr(c, *r, dialect)))
            .collect::<Vec<_>>()
            .join(", "),
        new = compared
            .iter()
            .map(|(c, r, _)| merge_expr(c, *r, dialect))
            .collect::<Vec<_>>()
            .join(", "),
        old = compared
            .iter()
            .map(|(c, _, _)| format!("d.{c}"))
            .collect::<Vec<_>>()
            .join(", "),
    )
}

fn columns() -> String {
    MERGE.iter().map(|(c, _, _)| *c).collect::<Vec<_>>().join(", ")
}

static UPSERT_DOSSIERS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let arrays: Vec<String> = std::iter::once("text[]")
        .chain(MERGE.iter().map(|(_, _, array)| *array))
        .enumerate()
        .map(|(i, array)| format!("${}::{array}", i + 1))
        .collect();
    format!(
        "INSERT INTO track_dossiers AS d (dossier_id, {cols}) SELECT * FROM UNNEST({arrays}) {conflict}",
        cols = columns(),
        arrays = arrays.join(", "),
        conflict = on_conflict(Dialect::Postgres),
    )
});

/// SQLite has no arrays: multi-row VALUES statements of up to this many rows (a fixed
/// bound keeps the number of distinct statements, hence of prepared ones, small).
const SQLITE_ROWS: usize = 64;

fn insert_history_sqlite(rows: usize) -> String {
    format!(
        "INSERT INTO track_history (event_id, dossier_id, event, status_code, stage, reasons, occurred_at, \
         procedure_code, unit_code, due_at) VALUES {} ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
        motcua_store::sqlite_values(rows, 10)
    )
}

fn upsert_dossiers_sqlite(rows: usize) -> String {
    format!(
        "INSERT INTO track_dossiers AS d (dossier_id, {cols}) VALUES {values} {conflict}",
        cols = columns(),
        values = motcua_store::sqlite_values(rows, MERGE.len() + 1),
        conflict = on_conflict(Dialect::Sqlite),
    )
}

/// What one write did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    /// Events that carried a dossier (history rows offered).
    pub events: usize,
    /// History rows actually inserted (redelivered events are not).
    pub new_events: u64,
    /// Dossiers touched by new events (rows inserted or merged).
    pub dossiers: usize,
}

/// One patch per dossier from the changes whose events are new, in dossier id order (so
/// concurrent writers lock rows in the same order).
fn merged_patches(changes: Vec<Change>, inserted: &HashSet<String>) -> Vec<Patch> {
    let mut patches: HashMap<String, Patch> = HashMap::with_capacity(inserted.len());
    let mut taken: HashSet<String> = HashSet::with_capacity(inserted.len());
    for c in changes {
        // The history keeps the first copy of an event id in the batch; so does the
        // dossier (a second copy with other content must not be merged in).
        if !inserted.contains(&c.event_id) || !taken.insert(c.event_id.clone()) {
            continue;
        }
        match patches.get_mut(&c.patch.dossier_id) {
            Some(p) => p.merge(c.patch),
            None => {
                patches.insert(c.patch.dossier_id.clone(), c.patch);
            }
        }
    }
    let mut patches: Vec<Patch> = patches.into_values().collect();
    patches.sort_unstable_by(|a, b| a.dossier_id.cmp(&b.dossier_id));
    patches
}

/// Writes a batch of events in one transaction: one UNNEST insert of the history, one
/// UNNEST upsert of the dossiers (one merged patch per dossier).
pub(crate) async fn apply(pool: &PgPool, events: &[&AnyEvent]) -> Result<Applied> {
    let changes: Vec<Change> = events.iter().filter_map(|e| change_of(e)).collect();
    if changes.is_empty() {
        return Ok(Applied::default());
    }
    let total = changes.len();
    let n = changes.len();
    let mut ids = Vec::with_capacity(n);
    let mut dossier_ids = Vec::with_capacity(n);
    let mut kinds = Vec::with_capacity(n);
    let mut statuses = Vec::with_capacity(n);
    let mut stages = Vec::with_capacity(n);
    let mut reasons = Vec::with_capacity(n);
    let mut times = Vec::with_capacity(n);
    let mut procedures = Vec::with_capacity(n);
    let mut units = Vec::with_capacity(n);
    let mut dues = Vec::with_capacity(n);
    for c in &changes {
        ids.push(c.event_id.as_str());
        dossier_ids.push(c.patch.dossier_id.as_str());
        kinds.push(c.event);
        statuses.push(c.status_code);
        stages.push(c.stage.as_str());
        reasons.push(c.reasons.as_str());
        times.push(c.occurred_at);
        let a = c.announced.as_ref();
        procedures.push(a.and_then(|a| a.procedure_code.as_deref()));
        units.push(a.and_then(|a| a.unit_code.as_deref()));
        dues.push(a.and_then(|a| a.due_at));
    }

    let mut tx = pool.begin().await?;
    // Only events seen for the first time change the dossiers: the history row and the
    // dossier merge commit together, so a known event id means its patch is applied.
    let inserted: Vec<String> = sqlx::query_scalar(INSERT_HISTORY)
        .bind(&ids)
        .bind(&dossier_ids)
        .bind(&kinds)
        .bind(&statuses)
        .bind(&stages)
        .bind(&reasons)
        .bind(&times)
        .bind(&procedures)
        .bind(&units)
        .bind(&dues)
        .fetch_all(&mut *tx)
        .await?;
    let new_events = inserted.len() as u64;
    let inserted: HashSet<String> = inserted.into_iter().collect();
    let patches = merged_patches(changes, &inserted);
    let dossiers = patches.len();
    if !patches.is_empty() {
        upsert(&mut tx, &patches).await?;
    }
    tx.commit().await?;
    Ok(Applied {
        events: total,
        new_events,
        dossiers,
    })
}

/// The same write on SQLite (the embedded demo): multi-row statements inside one
/// transaction, same idempotence and merge rule.
pub(crate) async fn apply_sqlite(pool: &SqlitePool, events: &[&AnyEvent]) -> Result<Applied> {
    let changes: Vec<Change> = events.iter().filter_map(|e| change_of(e)).collect();
    if changes.is_empty() {
        return Ok(Applied::default());
    }
    let total = changes.len();
    let mut tx = pool.begin().await?;
    let mut inserted = HashSet::with_capacity(total);
    for chunk in changes.chunks(SQLITE_ROWS) {
        let sql = insert_history_sqlite(chunk.len());
        let mut q = sqlx::query_scalar::<_, String>(&sql);
        for c in chunk {
            q = q
                .bind(&c.event_id)
                .bind(&c.patch.dossier_id)
                .bind(c.event)
                .bind(c.status_code)
                .bind(&c.stage)
                .bind(&c.reasons)
                .bind(c.occurred_at)
                .bind(c.announced.as_ref().and_then(|a| a.procedure_code.as_deref()))
                .bind(c.announced.as_ref().and_then(|a| a.unit_code.as_deref()))
                .bind(c.announced.as_ref().and_then(|a| a.due_at));
        }
        inserted.extend(q.fetch_all(&mut *tx).await?);
    }
    let new_events = inserted.len() as u64;
    let patches = merged_patches(changes, &inserted);
    for chunk in patches.chunks(SQLITE_ROWS) {
        let sql = upsert_dossiers_sqlite(chunk.len());
        let mut q = sqlx::query(&sql);
        for p in chunk {
            q = p.bind_row(q);
        }
        q.execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(Applied {
        events: total,
        new_events,
        dossiers: patches.len(),
    })
}

async fn upsert(tx: &mut sqlx::PgConnection, patches: &[Patch]) -> Result<()> {
    Patch::bind_columns(patches, sqlx::query(UPSERT_DOSSIERS.as_str()))
        .execute(&mut *tx)
        .await?;
    Ok(())
}
