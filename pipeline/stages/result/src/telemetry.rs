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
