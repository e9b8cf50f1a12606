//! The intake stage: checks a submission against the procedure catalog and the 2025
//! administrative units, gives it its official dossier code, and acknowledges it —
//! `dossier.accepted` plus a "received" status — or refuses it with machine-readable
//! reasons ("rejected at reception" or "supplement requested").

pub use motcua_reference::ids;
pub mod telemetry;
mod validate;

use std::sync::Arc;

use motcua_reference::{civil, Reference};
use motcua_runtime::{Envelope, Outcome, Stage, StageError};
use motcua_schemas::{
    derived_event_id, AnyEvent, DossierAccepted, DossierStatus, DossierStatusChanged, DossierSubmitted, Reason,
};
use motcua_store::{CodeAllocation, CodeRequest, Store};
use telemetry::Decided;

pub use validate::{validate, Admission, Refusal};

pub const STAGE: &str = motcua_schemas::component::INTAKE;

/// The intake stage.
#[derive(Debug, Clone)]
pub struct Intake {
    reference: Arc<Reference>,
    store: Store,
}

impl Intake {
    pub fn new(reference: Arc<Reference>, store: Store) -> Self {
        Self { reference, store }
    }
}

impl Stage for Intake {
    type Input = DossierSubmitted;

    fn name(&self) -> &'static str {
        STAGE
    }

    async fn handle_batch(&self, batch: &[Envelope<DossierSubmitted>]) -> Result<Vec<Outcome>, StageError> {
        let verdicts: Vec<Result<Admission, Refusal>> =
            batch.iter().map(|e| validate(&self.reference, &e.event)).collect();
        let requests: Vec<CodeRequest> = batch
            .iter()
            .zip(&verdicts)
            .filter_map(|(e, v)| v.as_ref().ok().map(|a| code_request(&e.event, a)))
            .collect();
        let mut allocations = self
            .store
            .allocate_codes(&requests)
            .await
            .map_err(|e| StageError::from(e).context("allocating dossier codes"))?
            .into_iter();
        let mut out = Vec::with_capacity(batch.len());
        let mut decided = Vec::with_capacity(batch.len());
        for (e, verdict) in batch.iter().zip(verdicts) {
            let dossier_id = e.event.dossier.dossier_id.clone();
            let events = match verdict {
                Ok(admission) => {
                    let allocation = allocations
                        .next()
                        .ok_or_else(|| StageError::Fatal("store returned fewer codes than requested".to_owned()))?;
                    if allocation.conflicting {
                        let reasons = vec![Reason {
                            code: "DUPLICATE_DOSSIER_ID".to_owned(),
                            message: "Mã định danh hồ sơ (dossier id) đã được dùng cho một hồ sơ khác; \
                                      cổng phải cấp mã mới cho hồ sơ này"
                                .to_owned(),
                        }];
                        decided.push(Decided::Refused {
                            dossier_id,
                            status: DossierStatus::RejectedAtReception,
                            reason_codes: vec!["DUPLICATE_DOSSIER_ID".to_owned()],
                        });
                        out.push(Outcome::Emit(vec![duplicate_id_event(&e.event, reasons)]));
                        continue;
                    }
                    decided.push(Decided::Accepted {
                        dossier_id,
                        dossier_code: allocation.dossier_code.clone(),
                        newly_allocated: allocation.newly_allocated,
                    });
                    accepted_events(&e.event, admission, &allocation)
                }
                Err(refusal) => {
                    decided.push(Decided::Refused {
                        dossier_id,
                        status: refusal.status,
                        reason_codes: refusal.reasons.iter().map(|r| r.code.clone()).collect(),
                    });
                    vec![refusal_event(&e.event, refusal)]
                }
            };
            out.push(Outcome::Emit(events));
        }
        // Counted here, where nothing can fail any more: a retried batch counts once.
        decided.iter().for_each(Decided::emit);
        Ok(out)
    }
}

/// The reception time: when the applicant submitted (online submissions are received the
/// moment they are submitted; counter software stamps the counter time). Using the
/// submission's own time keeps redelivery deterministic.
fn code_request(s: &DossierSubmitted, a: &Admission) -> CodeRequest {
    CodeRequest {
        dossier_id: s.dossier.dossier_id.clone(),
        agency_code: a.agency_code.clone(),
        day: civil::vn_yymmdd(s.dossier.submitted_at),
        received_at_ms: s.dossier.submitted_at,
        content_digest: content_digest(&s.dossier),
        lookup_token: motcua_security::access::new_lookup_token(),
    }
}

/// SHA-256 of the dossier's content (its JSON form: fields in schema order, form fields
/// sorted), to tell a redelivered dossier from another one reusing its id.
fn content_digest(d: &motcua_schemas::Dossier) -> String {
    use sha2::Digest;
    let json = serde_json::to_vec(d).unwrap_or_default();
    sha2::Sha256::digest(&json).iter().map(|b| format!("{b:02x}")).collect()
}

/// The refusal of a submission whose dossier id another dossier already has. Its event
/// id is its own (kind `duplicate-id`): the other dossier's events stay untouched.
fn duplicate_id_event(s: &DossierSubmitted, reasons: Vec<Reason>) -> AnyEvent {
    DossierStatusChanged::caused_by(
        s,
        STAGE,
        "duplicate-id",
        DossierStatus::RejectedAtReception,
        s.published_at,
    )
    .with_reasons(reasons)
    .into()
}

/// `dossier.accepted` and the "received" status. Everything in them derives from the
/// input and the stored allocation, so a redelivery emits identical events. Counts
/// nothing: the stage counts once its batch succeeded.
pub fn accepted_events(s: &DossierSubmitted, a: Admission, allocation: &CodeAllocation) -> Vec<AnyEvent> {
    let mut status =
        DossierStatusChanged::caused_by(s, STAGE, "status", DossierStatus::Received, allocation.received_at_ms)
            .with_code(Some(allocation.dossier_code.clone()));
    if let Some(token) = &allocation.lookup_token {
        status = status.with_lookup_token(token.clone());
    }
    let accepted = DossierAccepted {
        event_id: derived_event_id(&s.event_id, STAGE, "accepted"),
        causation_id: s.event_id.clone(),
        dossier_code: allocation.dossier_code.clone(),
        receiving_agency_code: a.agency_code,
        received_at: allocation.received_at_ms,
        procedure: a.procedure,
        dossier: s.dossier.clone(),
        traceparent: s.traceparent.clone(),
    };
    vec![accepted.into(), status.into()]
}

/// The status event of a refused submission (counts nothing, like [`accepted_events`]).
pub fn refusal_event(s: &DossierSubmitted, r: Refusal) -> AnyEvent {
    DossierStatusChanged::caused_by(s, STAGE, "status", r.status, s.published_at)
        .with_reasons(r.reasons)
        .into()
}

/// Reason codes the intake stage emits, for documentation and dashboards.
pub const REASON_CODES: &[(&str, &str)] = &[
    (
        "UNKNOWN_PROCEDURE",
        "rejected: the procedure code is not in the catalog",
    ),
    ("PROCEDURE_INACTIVE", "rejected: the procedure has been abolished"),
    (
        "UNKNOWN_RECEIVING_UNIT",
        "rejected: the receiving center code is not a 2025 unit or provincial center",
    ),
    (
        "NOT_RECEIVABLE_AT_UNIT",
        "rejected: this center may not receive this procedure for this jurisdiction",
    ),
    (
        "MISSING_CITIZEN_ID",
        "rejected: a citizen applicant without a citizen ID",
    ),
    (
        "INVALID_CITIZEN_ID",
        "rejected: the citizen ID is not a valid 12-digit ID, or contradicts the date of birth",
    ),
    ("INVALID_TAX_CODE", "rejected: a tax code fails its check digit"),
    (
        "UNKNOWN_UNIT",
        "rejected: a residence or parcel unit code is not a 2025 unit",
    ),
    ("INVALID_SUBMITTED_AT", "rejected: the submission time is implausible"),
    (
        "MISSING_JURISDICTION",
        "supplement: no residence / head-office unit or land parcel to decide the competent unit",
    ),
    (
        "MISSING_DOCUMENT",
        "supplement: a document the procedure requires is missing",
    ),
    (
        "INVALID_DOCUMENT",
        "supplement: a document has no URI or an invalid SHA-256",
    ),
];

/// Turns a refusal's reasons into a compact "CODE, CODE" string (logs, summaries).
pub fn reason_codes(reasons: &[Reason]) -> String {
    reasons.iter().map(|r| r.code.as_str()).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests;
