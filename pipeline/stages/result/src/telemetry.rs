//! The result stage's metrics, in one place. Labels: timeliness and delivery outcome
//! only, never an id.

use metrics::Unit;
use motcua_outward::Receipt;
use motcua_schemas::Timeliness;

pub const RESULT_DOSSIERS_TOTAL: &str = "motcua_result_dossiers_total";
pub const RESULT_DECISIONS_AFTER_END_TOTAL: &str = "motcua_result_decisions_after_end_total";
pub const RESULT_WALLET_DELIVERIES_TOTAL: &str = "motcua_result_wallet_deliveries_total";
pub const RESULT_PARKED_UNREADABLE_TOTAL: &str = "motcua_result_parked_unreadable_total";

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
    metrics::describe_counter!(
        RESULT_WALLET_DELIVERIES_TOTAL,
        Unit::Count,
        "Result deliveries to e-wallets, by outcome (delivered; duplicate_ack: the wallet had it after a lost \
         acknowledgement; parked: the wallet was unavailable; refused; after_parking: delivered by the retrier; \
         escalated: handed to an officer)"
    );
    metrics::describe_counter!(
        RESULT_PARKED_UNREADABLE_TOTAL,
        Unit::Count,
        "Rounds that found a parked result that no longer decodes or signs (left parked for a person)"
    );
}

/// A parked result that no longer decodes or signs: left parked for a person.
pub(crate) fn unreadable_parked(dossier_id: &str) {
    metrics::counter!(RESULT_PARKED_UNREADABLE_TOTAL).increment(1);
    tracing::error!(
        dossier_id,
        "a parked result no longer decodes or signs: left parked, a person must look"
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

/// A decision for a dossier withdrawn or stopped before it: not delivered.
pub(crate) fn decision_after_end() {
    metrics::counter!(RESULT_DECISIONS_AFTER_END_TOTAL).increment(1);
    tracing::info!("decision for a dossier withdrawn or stopped before it: not delivered");
}

/// What became of a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    Delivered,
    DuplicateAck,
    Parked,
    Refused,
    AfterParking,
    Escalated,
}

impl Delivery {
    pub(crate) fn of(receipt: &Receipt) -> Self {
        if receipt.duplicate {
            Delivery::DuplicateAck
        } else {
            Delivery::Delivered
        }
    }

    pub(crate) fn emit(self) {
        let outcome = match self {
            Delivery::Delivered => "delivered",
            Delivery::DuplicateAck => "duplicate_ack",
            Delivery::Parked => "parked",
            Delivery::Refused => "refused",
            Delivery::AfterParking => "after_parking",
            Delivery::Escalated => "escalated",
        };
        metrics::counter!(RESULT_WALLET_DELIVERIES_TOTAL, "outcome" => outcome).increment(1);
        match self {
            Delivery::Parked => tracing::warn!("wallet unavailable: result parked, delivered again later"),
            Delivery::Refused => tracing::warn!("wallet refused a result: an officer is told, delivery retried"),
            Delivery::Escalated => tracing::warn!("result undelivered past the escalation age: officer told"),
            _ => {}
        }
    }
}
