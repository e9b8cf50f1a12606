//! The verify stage's metrics and the log lines that go with them, in one place. A
//! dossier's outcome is counted where it is final: at the end of a successful batch (so
//! a retried batch does not count twice), or by the retrier once the outcome is
//! delivered and the parked row removed. Labels: outcome only, never an id.

use metrics::Unit;

pub const VERIFY_DOSSIERS_TOTAL: &str = "motcua_verify_dossiers_total";
pub const VERIFY_PARKED_TOTAL: &str = "motcua_verify_parked_total";
pub const VERIFY_PARKED_UNREADABLE_TOTAL: &str = "motcua_verify_parked_unreadable_total";

/// Registers every verify metric with its unit and description.
pub fn describe() {
    metrics::describe_counter!(
        VERIFY_DOSSIERS_TOTAL,
        Unit::Count,
        "Dossiers decided, by outcome (verified, supplement_requested, escalated; ended: withdrawn or stopped before verification)"
    );
    metrics::describe_counter!(
        VERIFY_PARKED_TOTAL,
        Unit::Count,
        "Dossiers parked because a registry was unavailable (retried later)"
    );
    metrics::describe_counter!(
        VERIFY_PARKED_UNREADABLE_TOTAL,
        Unit::Count,
        "Rounds that found a parked dossier whose payload no longer decodes (left parked for a person)"
    );
}

/// What became of one dossier; [`Decided::emit`] logs and counts it.
#[derive(Debug)]
pub(crate) enum Decided {
    Verified,
    SupplementRequested,
    /// Handed to an officer.
    Escalated,
    /// Withdrawn or stopped before it was verified: passed on to nobody.
    Ended,
    /// Parked for the retrier.
    Parked {
        dossier_id: String,
        why: String,
    },
}

impl Decided {
    /// What an event the stage emitted says became of its dossier.
    pub(crate) fn of_event(e: &motcua_schemas::AnyEvent) -> Option<Self> {
        use motcua_schemas::{AnyEvent, DossierStatus};
        match e {
            AnyEvent::Verified(_) => Some(Decided::Verified),
            AnyEvent::Status(s) if s.status == DossierStatus::SupplementRequested => Some(Decided::SupplementRequested),
            AnyEvent::Status(s) if s.status == DossierStatus::Processing => Some(Decided::Escalated),
            _ => None,
        }
    }

    pub(crate) fn emit(&self) {
        let outcome = match self {
            Decided::Verified => "verified",
            Decided::SupplementRequested => "supplement_requested",
            Decided::Escalated => "escalated",
            Decided::Ended => "ended",
            Decided::Parked { dossier_id, why } => {
                metrics::counter!(VERIFY_PARKED_TOTAL).increment(1);
                tracing::debug!(%dossier_id, %why, "registry unavailable; parked");
                return;
            }
        };
        metrics::counter!(VERIFY_DOSSIERS_TOTAL, "outcome" => outcome).increment(1);
    }
}

/// A parked dossier whose stored payload no longer decodes: left parked for a person.
pub(crate) fn unreadable_parked(dossier_id: &str, error: &str) {
    metrics::counter!(VERIFY_PARKED_UNREADABLE_TOTAL).increment(1);
    tracing::error!(
        dossier_id,
        error,
        "a parked dossier's payload does not decode: left parked, a person must look"
    );
}
