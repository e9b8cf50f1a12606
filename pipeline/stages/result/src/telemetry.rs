//! The result stage's metrics, in one place. Labels: timeliness only, never an id.

use metrics::Unit;
use motcua_schemas::Timeliness;

pub const RESULT_DOSSIERS_TOTAL: &str = "motcua_result_dossiers_total";

/// Registers every result metric with its unit and description.
pub fn describe() {
    metrics::describe_counter!(
        RESULT_DOSSIERS_TOTAL,
        Unit::Count,
        "Results returned to the applicant, by timeliness against the due time (early, on_time, late)"
    );
    metrics::describe_counter!(
        RESULT_DECISIONS_AFTER_END_TOTAL,
        Unit::Count,
        "Decisions not delivered because the dossier was withdrawn or stopped before them"
    );
}

/// A dossier's result was returned; counted by the stage once its batch is done.
pub(crate) fn dossier_completed(timeliness: Timeliness) {
    let label = match timeliness {
        Timeliness::Early => "early",
        Timeliness::OnTime => "on_time",
        Timeliness::Late => "late",
    };
    metrics::counter!(RESULT_DOSSIERS_TOTAL, "timeliness" => label).increment(1);
}

pub const RESULT_DECISIONS_AFTER_END_TOTAL: &str = "motcua_result_decisions_after_end_total";

/// A decision for a dossier withdrawn or stopped before it: not delivered.
pub(crate) fn decision_after_end() {
    metrics::counter!(RESULT_DECISIONS_AFTER_END_TOTAL).increment(1);
    tracing::info!("decision for a dossier withdrawn or stopped before it: not delivered");
}
