//! The track stage's metrics, in one place. No labels: the projection's counts are
//! totals over every dossier (the gauges too: every track worker reports the province's
//! figure, so aggregate them with max, not sum).

use metrics::Unit;

use crate::Applied;

pub const TRACK_EVENTS_TOTAL: &str = "motcua_track_events_total";
pub const TRACK_DUPLICATE_EVENTS_TOTAL: &str = "motcua_track_duplicate_events_total";
pub const TRACK_DEADLINE_WARNINGS_TOTAL: &str = "motcua_track_deadline_warnings_total";
pub const TRACK_STEP_WARNINGS_TOTAL: &str = "motcua_track_step_warnings_total";
pub const TRACK_DOSSIERS_AT_RISK: &str = "motcua_track_dossiers_at_risk";
pub const TRACK_DOSSIERS_OVERDUE: &str = "motcua_track_dossiers_overdue";

/// Registers every track metric with its unit and description.
pub fn describe() {
    metrics::describe_counter!(
        TRACK_EVENTS_TOTAL,
        Unit::Count,
        "Dossier events written to the projection (redelivered ones included)"
    );
    metrics::describe_counter!(
        TRACK_DUPLICATE_EVENTS_TOTAL,
        Unit::Count,
        "Redelivered dossier events the projection already had"
    );
    metrics::describe_counter!(
        TRACK_DEADLINE_WARNINGS_TOTAL,
        Unit::Count,
        "Deadline warnings published on the status topic, by kind (soon: within the warning window; \
         passed: the due time has passed)"
    );
    metrics::describe_counter!(
        TRACK_STEP_WARNINGS_TOTAL,
        Unit::Count,
        "Step budget warnings published on the status topic"
    );
    metrics::describe_gauge!(
        TRACK_DOSSIERS_AT_RISK,
        Unit::Count,
        "Open dossiers whose clock runs with at most track.warn_within_working_hours working hours left before \
         their due time (not yet passed); measured every timer scan"
    );
    metrics::describe_gauge!(
        TRACK_DOSSIERS_OVERDUE,
        Unit::Count,
        "Open dossiers whose clock runs and whose due time has passed; measured every timer scan"
    );
}

/// A batch's events are in the projection (its transaction committed).
pub(crate) fn batch_applied(applied: &Applied) {
    let events = applied.events as u64;
    metrics::counter!(TRACK_EVENTS_TOTAL).increment(events);
    metrics::counter!(TRACK_DUPLICATE_EVENTS_TOTAL).increment(events.saturating_sub(applied.new_events));
}

/// Deadline warnings were published (durably: acknowledged on the status topic).
pub(crate) fn deadline_warnings_published(soon: u64, passed: u64) {
    metrics::counter!(TRACK_DEADLINE_WARNINGS_TOTAL, "kind" => "soon").increment(soon);
    metrics::counter!(TRACK_DEADLINE_WARNINGS_TOTAL, "kind" => "passed").increment(passed);
}

/// Step budget warnings were published (acknowledged on the status topic).
pub(crate) fn step_warnings_published(n: u64) {
    metrics::counter!(TRACK_STEP_WARNINGS_TOTAL).increment(n);
}

/// The dossiers close to or past their due time, as of the latest scan.
pub(crate) fn deadline_risk(risk: crate::DeadlineRisk) {
    metrics::gauge!(TRACK_DOSSIERS_AT_RISK).set(risk.at_risk as f64);
    metrics::gauge!(TRACK_DOSSIERS_OVERDUE).set(risk.overdue as f64);
}
