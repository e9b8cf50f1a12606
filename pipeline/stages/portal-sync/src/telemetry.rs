//! The portal-sync stage's metrics. Labels: outcome only, never a dossier.

use metrics::Unit;

pub const PORTAL_CHANGES_TOTAL: &str = "motcua_portal_changes_total";
pub const PORTAL_SYNC_LAG_SECONDS: &str = "motcua_portal_sync_lag_seconds";
pub const PORTAL_SYNC_HELD_TOTAL: &str = "motcua_portal_sync_held_total";
pub const PORTAL_RECONCILED_TOTAL: &str = "motcua_portal_reconciled_total";

pub fn describe() {
    metrics::describe_counter!(
        PORTAL_CHANGES_TOTAL,
        Unit::Count,
        "Status changes for the national portal, by outcome (filed; duplicate_ack: the portal had it after a lost \
         acknowledgement; kept_first: the same change id came again with other details, the portal keeps the first; \
         refused: dead-lettered; not_for_portal: no dossier code yet)"
    );
    metrics::describe_histogram!(
        PORTAL_SYNC_LAG_SECONDS,
        Unit::Seconds,
        "From a status change to the portal's acknowledgement of it"
    );
    metrics::describe_counter!(
        PORTAL_SYNC_HELD_TOTAL,
        Unit::Count,
        "Batches held because the portal was unavailable (retried in order)"
    );
    metrics::describe_counter!(
        PORTAL_RECONCILED_TOTAL,
        Unit::Count,
        "Changes re-sent by a reconciliation, by what the portal lacked (missing_record, missing_change)"
    );
}

pub(crate) enum Change {
    Filed { duplicate: bool, lag_ms: i64 },
    NotForThePortal,
    KeptFirst,
    Refused,
}

impl Change {
    pub(crate) fn emit(self) {
        let outcome = match self {
            Change::Filed { duplicate, lag_ms } => {
                metrics::histogram!(PORTAL_SYNC_LAG_SECONDS).record(lag_ms.max(0) as f64 / 1_000.0);
                if duplicate {
                    "duplicate_ack"
                } else {
                    "filed"
                }
            }
            Change::NotForThePortal => "not_for_portal",
            Change::KeptFirst => {
                tracing::warn!(
                    "the portal holds this change id with other details (the same change announced twice); it keeps the first"
                );
                "kept_first"
            }
            Change::Refused => {
                tracing::warn!("the national portal refused a status change: dead-lettered");
                "refused"
            }
        };
        metrics::counter!(PORTAL_CHANGES_TOTAL, "outcome" => outcome).increment(1);
    }
}

pub(crate) fn held() {
    metrics::counter!(PORTAL_SYNC_HELD_TOTAL).increment(1);
}

pub(crate) fn reconciled(what: &'static str) {
    metrics::counter!(PORTAL_RECONCILED_TOTAL, "what" => what).increment(1);
}
