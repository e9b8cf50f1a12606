//! The intake stage's metrics and the log lines that go with them, in one place. A
//! submission's outcome is counted once its batch succeeded (the codes are stored), so a
//! retried batch does not count twice. Labels: outcome and reason code, never an id.

use metrics::Unit;
use motcua_schemas::DossierStatus;

pub const INTAKE_DOSSIERS_TOTAL: &str = "motcua_intake_dossiers_total";
pub const INTAKE_REFUSAL_REASONS_TOTAL: &str = "motcua_intake_refusal_reasons_total";
pub const INTAKE_LIFECYCLE_TOTAL: &str = "motcua_intake_lifecycle_total";

/// Registers every intake metric with its unit and description.
pub fn describe() {
    metrics::describe_counter!(
        INTAKE_DOSSIERS_TOTAL,
        Unit::Count,
        "Submissions decided, by outcome (accepted, accepted_again, rejected, supplement_requested)"
    );
    metrics::describe_counter!(
        INTAKE_REFUSAL_REASONS_TOTAL,
        Unit::Count,
        "Reasons given for refused submissions, by reason code"
    );
    metrics::describe_counter!(
        INTAKE_LIFECYCLE_TOTAL,
        Unit::Count,
        "Supplements, back-office requests, withdrawals and stops handled, by outcome \
         (back_office_asked, resumed_intake, resumed_verify, resumed_backoffice, asked_again, \
         rejected_after_supplement, withdrawn, stopped, refused) and, for refusals, reason code"
    );
}

/// What intake did with a supplement, a withdrawal or an unanswered wait.
#[derive(Debug)]
pub(crate) enum Lifecycle {
    /// The back office asked for papers; the wait is recorded and announced.
    BackOfficeAsked,
    Resumed {
        step: &'static str,
    },
    AskedAgain,
    RejectedAfterSupplement,
    Withdrawn,
    Stopped,
    Refused {
        code: String,
    },
}

impl Lifecycle {
    pub(crate) fn emit(&self) {
        let (outcome, code) = match self {
            Lifecycle::Resumed { step } => (
                match *step {
                    "intake" => "resumed_intake",
                    "verify" => "resumed_verify",
                    "backoffice" => "resumed_backoffice",
                    _ => "resumed_other",
                },
                "",
            ),
            Lifecycle::BackOfficeAsked => ("back_office_asked", ""),
            Lifecycle::AskedAgain => ("asked_again", ""),
            Lifecycle::RejectedAfterSupplement => ("rejected_after_supplement", ""),
            Lifecycle::Withdrawn => ("withdrawn", ""),
            Lifecycle::Stopped => ("stopped", ""),
            Lifecycle::Refused { code } => ("refused", code.as_str()),
        };
        metrics::counter!(INTAKE_LIFECYCLE_TOTAL, "outcome" => outcome, "reason_code" => code.to_owned()).increment(1);
        tracing::debug!(outcome, reason_code = code, "supplement, withdrawal or stop");
    }
}

/// What intake decided for one submission: logged and counted by [`Decided::emit`] once
/// the batch is done.
#[derive(Debug)]
pub(crate) enum Decided {
    Accepted {
        dossier_id: String,
        dossier_code: String,
        /// False when a redelivered submission got back the code allocated before.
        newly_allocated: bool,
    },
    Refused {
        dossier_id: String,
        status: DossierStatus,
        reason_codes: Vec<String>,
    },
}

impl Decided {
    pub(crate) fn emit(&self) {
        match self {
            Decided::Accepted {
                dossier_id,
                dossier_code,
                newly_allocated,
            } => {
                let label = if *newly_allocated { "accepted" } else { "accepted_again" };
                metrics::counter!(INTAKE_DOSSIERS_TOTAL, "outcome" => label).increment(1);
                tracing::debug!(%dossier_id, %dossier_code, "accepted");
            }
            Decided::Refused {
                dossier_id,
                status,
                reason_codes,
            } => {
                let label = match status {
                    DossierStatus::SupplementRequested => "supplement_requested",
                    _ => "rejected",
                };
                metrics::counter!(INTAKE_DOSSIERS_TOTAL, "outcome" => label).increment(1);
                for code in reason_codes {
                    metrics::counter!(INTAKE_REFUSAL_REASONS_TOTAL, "reason_code" => code.clone()).increment(1);
                }
                tracing::debug!(%dossier_id, status = status.as_str(), reasons = reason_codes.len(), "refused");
            }
        }
    }
}
