//! The intake stage: checks a submission against the procedure catalog and the 2025
//! administrative units, gives it its official dossier code, and acknowledges it —
//! `dossier.accepted` plus a "received" status — or refuses it with machine-readable
//! reasons ("rejected at reception" or "supplement requested").

pub use motcua_reference::ids;
mod lifecycle;
pub mod telemetry;
mod validate;

use std::sync::Arc;

use motcua_reference::{civil, Reference};
use motcua_runtime::{Envelope, Input, Outcome, Stage, StageError, Tick};
use motcua_schemas::{
    derived_event_id, AnyEvent, Codec, DossierAccepted, DossierStatus, DossierStatusChanged, DossierSubmitted,
    DossierSupplementRequested, DossierSupplemented, DossierWithdrawn, Event, Reason, Topic,
};
use motcua_store::{CodeAllocation, CodeRequest, Store, WaitRequest};
use telemetry::Decided;

pub use lifecycle::{merge, refund_on_withdrawal, SupplementWait, WaitClock};
pub use validate::{validate, Admission, Refusal};

pub const STAGE: &str = motcua_schemas::component::INTAKE;

/// What intake reads: submissions, the portal's supplements and withdrawals of dossiers
/// it received, and the back office's requests for papers (one consumer group, so one
/// dossier's messages stay in order).
#[derive(Debug, Clone)]
pub enum IntakeInput {
    Submitted(Box<DossierSubmitted>),
    Supplemented(Box<DossierSupplemented>),
    Withdrawn(Box<DossierWithdrawn>),
    SupplementRequested(Box<DossierSupplementRequested>),
}

impl Input for IntakeInput {
    fn topics() -> Vec<Topic> {
        vec![
            Topic::Submitted,
            Topic::Supplemented,
            Topic::Withdrawn,
            Topic::SupplementRequested,
        ]
    }

    fn decode(codec: &Codec, topic: Topic, bytes: &[u8]) -> motcua_schemas::Result<Self> {
        Ok(match topic {
            Topic::Supplemented => IntakeInput::Supplemented(Box::new(codec.decode(bytes)?)),
            Topic::Withdrawn => IntakeInput::Withdrawn(Box::new(codec.decode(bytes)?)),
            Topic::SupplementRequested => IntakeInput::SupplementRequested(Box::new(codec.decode(bytes)?)),
            _ => IntakeInput::Submitted(Box::new(codec.decode(bytes)?)),
        })
    }

    fn key(&self) -> &str {
        match self {
            IntakeInput::Submitted(e) => Event::key(e.as_ref()),
            IntakeInput::Supplemented(e) => Event::key(e.as_ref()),
            IntakeInput::Withdrawn(e) => Event::key(e.as_ref()),
            IntakeInput::SupplementRequested(e) => Event::key(e.as_ref()),
        }
    }

    fn dossier_trace(&self) -> Option<std::borrow::Cow<'_, str>> {
        match self {
            IntakeInput::Submitted(e) => Event::dossier_trace(e.as_ref()),
            IntakeInput::Supplemented(e) => Event::dossier_trace(e.as_ref()),
            IntakeInput::Withdrawn(e) => Event::dossier_trace(e.as_ref()),
            IntakeInput::SupplementRequested(e) => Event::dossier_trace(e.as_ref()),
        }
    }

    fn check(&self, limits: &motcua_schemas::Limits) -> Result<(), motcua_schemas::Violation> {
        match self {
            IntakeInput::Submitted(e) => limits.check(e.as_ref()),
            IntakeInput::Supplemented(e) => limits.check(e.as_ref()),
            IntakeInput::Withdrawn(e) => limits.check(e.as_ref()),
            IntakeInput::SupplementRequested(e) => limits.check(e.as_ref()),
        }
    }
}

impl From<DossierSubmitted> for IntakeInput {
    fn from(s: DossierSubmitted) -> Self {
        IntakeInput::Submitted(Box::new(s))
    }
}

/// The intake stage.
#[derive(Debug, Clone)]
pub struct Intake {
    reference: Arc<Reference>,
    store: Store,
    /// Encodes and reads the dossiers stored with supplement waits.
    codec: Codec,
    /// When unanswered supplement requests end the dossier; `None`: never (tests).
    supplement_wait: Option<SupplementWait>,
    /// The embedded calendars, built on first need when no [`SupplementWait`] brings the
    /// configured ones (a back-office wait's pause counts on them).
    embedded_calendars: Arc<std::sync::OnceLock<Arc<motcua_routing::RoutingTables>>>,
    /// How often unanswered waits are looked for.
    pub stop_check: std::time::Duration,
}

impl Intake {
    pub fn new(reference: Arc<Reference>, store: Store, codec: Codec) -> Self {
        Self {
            reference,
            store,
            codec,
            supplement_wait: None,
            embedded_calendars: Arc::default(),
            stop_check: std::time::Duration::from_secs(60),
        }
    }

    /// Stops dossiers whose supplement does not come within `wait`'s working days.
    pub fn with_supplement_wait(mut self, wait: SupplementWait) -> Self {
        self.supplement_wait = Some(wait);
        self
    }

    /// Submissions: validated together, their codes allocated in one store call.
    async fn submissions(&self, batch: &[&DossierSubmitted]) -> Result<Vec<Outcome>, StageError> {
        let verdicts: Vec<Result<Admission, Refusal>> = batch.iter().map(|e| validate(&self.reference, e)).collect();
        let requests: Vec<CodeRequest> = batch
            .iter()
            .zip(&verdicts)
            .filter_map(|(e, v)| v.as_ref().ok().map(|a| code_request(e, a)))
            .collect();
        let mut allocations = self
            .store
            .allocate_codes(&requests)
            .await
            .map_err(|e| StageError::from(e).context("allocating dossier codes"))?
            .into_iter();
        let mut out = Vec::with_capacity(batch.len());
        let mut decided = Vec::with_capacity(batch.len());
        let mut waits = Vec::new();
        for (e, verdict) in batch.iter().zip(verdicts) {
            let dossier_id = e.dossier.dossier_id.clone();
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
                        out.push(Outcome::Emit(vec![duplicate_id_event(e, reasons)]));
                        continue;
                    }
                    decided.push(Decided::Accepted {
                        dossier_id,
                        dossier_code: allocation.dossier_code.clone(),
                        newly_allocated: allocation.newly_allocated,
                    });
                    accepted_events(e, admission, &allocation)
                }
                Err(refusal) => {
                    decided.push(Decided::Refused {
                        dossier_id,
                        status: refusal.status,
                        reason_codes: refusal.reasons.iter().map(|r| r.code.clone()).collect(),
                    });
                    let status = refusal_event(e, refusal);
                    if let AnyEvent::Status(st) = &status {
                        if st.status == DossierStatus::SupplementRequested {
                            waits.push(WaitRequest {
                                request_event_id: st.event_id.clone(),
                                dossier_id: st.dossier_id.clone(),
                                dossier_code: None,
                                step: STAGE.to_owned(),
                                requested_at_ms: st.occurred_at,
                                payload: self.encode(*e)?,
                            });
                        }
                    }
                    vec![status]
                }
            };
            out.push(Outcome::Emit(events));
        }
        // Recorded before the requests go out: a supplement can only answer a known wait.
        // (A dossier still at reception has no end a wait could follow.)
        self.store
            .await_supplements(&waits)
            .await
            .map_err(|e| StageError::from(e).context("recording supplement requests"))?;
        // Accepted whole: a wait reception opened for an earlier, incomplete submission of
        // the same dossier is answered by this one, and must never stop it.
        let accepted: Vec<&str> = decided
            .iter()
            .filter_map(|d| match d {
                Decided::Accepted { dossier_id, .. } => Some(dossier_id.as_str()),
                _ => None,
            })
            .collect();
        self.store
            .supersede_waits(&accepted)
            .await
            .map_err(|e| StageError::from(e).context("superseding answered waits"))?;
        // Counted here, where nothing can fail any more: a retried batch counts once.
        decided.iter().for_each(Decided::emit);
        Ok(out)
    }
}

impl Stage for Intake {
    type Input = IntakeInput;

    fn name(&self) -> &'static str {
        STAGE
    }

    fn owed_statuses(&self) -> Option<&Store> {
        Some(&self.store)
    }

    async fn handle_batch(&self, batch: &[Envelope<IntakeInput>]) -> Result<Vec<Outcome>, StageError> {
        // Submissions first, together (a dossier's supplement or withdrawal always comes
        // after its submission on the same partition), then the rest in order.
        let submitted: Vec<&DossierSubmitted> = batch
            .iter()
            .filter_map(|e| match &e.event {
                IntakeInput::Submitted(s) => Some(s.as_ref()),
                _ => None,
            })
            .collect();
        let mut submitted_out = self.submissions(&submitted).await?.into_iter();
        let mut out = Vec::with_capacity(batch.len());
        let mut lifecycle = Vec::new();
        for e in batch {
            let outcome = match &e.event {
                IntakeInput::Submitted(_) => submitted_out
                    .next()
                    .ok_or_else(|| StageError::Fatal("fewer outcomes than submissions".to_owned()))?,
                IntakeInput::Supplemented(s) => {
                    let (o, l) = self.supplement(s, &e.door).await?;
                    lifecycle.push(l);
                    o
                }
                IntakeInput::Withdrawn(w) => {
                    let (o, l) = self.withdraw(w).await?;
                    lifecycle.push(l);
                    o
                }
                IntakeInput::SupplementRequested(r) => {
                    let (o, l) = self.back_office_request(r).await?;
                    lifecycle.push(l);
                    o
                }
            };
            out.push(outcome);
        }
        lifecycle.iter().for_each(telemetry::Lifecycle::emit);
        Ok(out)
    }

    fn tick_interval(&self) -> Option<std::time::Duration> {
        self.supplement_wait.as_ref().map(|_| self.stop_check)
    }

    async fn tick(&self, now_ms: i64) -> Result<Tick, StageError> {
        self.stop_unanswered(now_ms).await
    }

    async fn ticked(&self, tick: &Tick) -> Result<(), StageError> {
        self.announce_stops(tick).await
    }
}

/// The reception time: when the applicant submitted (online submissions are received the
/// moment they are submitted; counter software stamps the counter time). Using the
/// submission's own time keeps redelivery deterministic.
fn code_request(s: &DossierSubmitted, a: &Admission) -> CodeRequest {
    code_request_at(s, a, s.dossier.submitted_at)
}

/// The code request of a dossier received at `received_at_ms` (a submission completed
/// by a supplement is received when the supplement came).
fn code_request_at(s: &DossierSubmitted, a: &Admission, received_at_ms: i64) -> CodeRequest {
    CodeRequest {
        dossier_id: s.dossier.dossier_id.clone(),
        agency_code: a.agency_code.clone(),
        day: civil::vn_yymmdd(received_at_ms),
        received_at_ms,
        content_digest: content_digest(&s.dossier),
        lookup_token: motcua_security::access::new_lookup_token(),
    }
}

/// SHA-256 of the dossier's content (its JSON form: fields in schema order, form fields
/// sorted), to tell a redelivered dossier from another one reusing its id.
fn content_digest(d: &motcua_schemas::Dossier) -> String {
    use sha2::Digest;
    let json = serde_json::to_vec(d).unwrap_or_default();
    hex::encode(sha2::Sha256::digest(&json))
}

/// The refusal of a submission whose dossier id another dossier already has. Its event
/// id is its own (kind `duplicate-id`): the other dossier's events stay untouched.
fn duplicate_id_event(s: &DossierSubmitted, reasons: Vec<Reason>) -> AnyEvent {
    let mut status = DossierStatusChanged::caused_by(
        s,
        STAGE,
        "duplicate-id",
        DossierStatus::RejectedAtReception,
        s.published_at,
    )
    .with_reasons(reasons);
    status.traceparent = Some(trace_of(s));
    status.into()
}

/// `dossier.accepted` and the "received" status. Everything in them derives from the
/// input and the stored allocation, so a redelivery emits identical events. Counts
/// nothing: the stage counts once its batch succeeded.
pub fn accepted_events(s: &DossierSubmitted, a: Admission, allocation: &CodeAllocation) -> Vec<AnyEvent> {
    let traceparent = Some(trace_of(s));
    let mut status =
        DossierStatusChanged::caused_by(s, STAGE, "status", DossierStatus::Received, allocation.received_at_ms)
            .with_code(Some(allocation.dossier_code.clone()));
    status.traceparent = traceparent.clone();
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
        traceparent,
    };
    vec![accepted.into(), status.into()]
}

/// The status event of a refused submission (counts nothing, like [`accepted_events`]).
pub fn refusal_event(s: &DossierSubmitted, r: Refusal) -> AnyEvent {
    let mut status =
        DossierStatusChanged::caused_by(s, STAGE, "status", r.status, s.published_at).with_reasons(r.reasons);
    status.traceparent = Some(trace_of(s));
    status.into()
}

/// The submission's trace context, or — a portal that sent none — the dossier's own
/// (`Event::dossier_trace`): every event of a dossier is in one trace.
fn trace_of(s: &DossierSubmitted) -> String {
    Event::dossier_trace(s)
        .map(std::borrow::Cow::into_owned)
        .unwrap_or_default()
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
