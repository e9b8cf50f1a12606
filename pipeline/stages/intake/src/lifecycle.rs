//! What intake does off the straight line: a citizen's supplement resumes a dossier
//! waiting for papers at the step that asked (intake, verify, or the back office, whose
//! requests intake records and announces); a withdrawal ends a dossier before its
//! decision; a wait no supplement answers ends the dossier after the configured working
//! days. Refusals are dead letters with a reason code, never a changed status.

use motcua_routing::Calendar;
use motcua_runtime::stored::{self, decide_first, recorded_decisions};
use motcua_runtime::{Door, Outcome, StageError};
use motcua_schemas::{
    component::BACKOFFICE, derived_event_id, AnyEvent, Dossier, DossierAccepted, DossierRouted, DossierStatus,
    DossierStatusChanged, DossierSubmitted, DossierSupplementRequested, DossierSupplemented, DossierWithdrawn,
    LeadTimeUnit, Reason,
};
use motcua_store::{ClosureKind, Wait, WaitRequest, WaitState};

use crate::telemetry::Lifecycle;
use crate::{accepted_events, code_request_at, refusal_event, validate, STAGE};

/// A supplement or withdrawal time further after its publication than this is refused.
const MAX_CLOCK_SKEW_MS: i64 = 24 * 3_600_000;

/// How long a supplement may take, and the calendars that count it.
#[derive(Debug, Clone)]
pub struct SupplementWait {
    /// The routing tables: a wait counts on the calendar of the center that received the
    /// dossier (its own hours, or the default).
    pub calendars: std::sync::Arc<motcua_routing::RoutingTables>,
    /// Working days from the request after which an unanswered dossier is stopped.
    pub working_days: u32,
    /// Waits looked at per timer round.
    pub batch: i64,
    /// What "now" is when waits are checked.
    pub clock: WaitClock,
}

/// The clock unanswered waits are judged by: the wall clock, or (the demo, whose events
/// carry simulated times days apart) a clock that runs `factor` times faster from the
/// instant stored in `origin_ms` (0: not started, the wall clock's time).
#[derive(Debug, Clone, Default)]
pub enum WaitClock {
    #[default]
    Wall,
    Accelerated {
        origin_ms: std::sync::Arc<std::sync::atomic::AtomicI64>,
        factor: i64,
    },
}

impl WaitClock {
    /// The clock's time at wall-clock time `wall_ms`.
    pub fn at(&self, wall_ms: i64) -> i64 {
        match self {
            WaitClock::Wall => wall_ms,
            WaitClock::Accelerated { origin_ms, factor } => {
                let origin = origin_ms.load(std::sync::atomic::Ordering::Relaxed);
                if origin == 0 {
                    return wall_ms;
                }
                origin.saturating_add((wall_ms - origin).max(0).saturating_mul(*factor))
            }
        }
    }
}

impl SupplementWait {
    /// The embedded routing data, 15 working days.
    pub fn embedded() -> motcua_routing::Result<Self> {
        let reference = motcua_reference::Reference::embedded()
            .map_err(|e| motcua_routing::Error::Incomplete(format!("the embedded reference data: {e}")))?;
        Ok(Self {
            calendars: std::sync::Arc::new(motcua_routing::RoutingTables::embedded(&reference)?),
            working_days: 15,
            batch: 500,
            clock: WaitClock::Wall,
        })
    }

    /// When a wait requested at `requested_at_ms` of a dossier received at `center`
    /// ends unanswered.
    pub fn stop_at(&self, center: &str, requested_at_ms: i64) -> motcua_routing::Result<i64> {
        let lead = motcua_reference::LeadTime {
            value: self.working_days,
            unit: LeadTimeUnit::WorkingDays,
        };
        let calendar: &Calendar = self.calendars.calendar_of_center(center);
        Ok(calendar.deadline(requested_at_ms, lead)?.due_ms)
    }
}

pub(crate) fn refused(code: &str, reason: impl Into<String>) -> (Outcome, Lifecycle) {
    (
        Outcome::DeadLetter {
            reason_code: code.to_owned(),
            reason: reason.into(),
        },
        Lifecycle::Refused { code: code.to_owned() },
    )
}

fn store_error(e: motcua_store::Error) -> StageError {
    StageError::from(e).context("recording a supplement or withdrawal")
}

fn reason(code: &str, message: &str) -> Reason {
    Reason {
        code: code.to_owned(),
        message: message.to_owned(),
    }
}

/// The dossier with the supplement applied: a document replaces the one of its kind (or
/// is added), a named form field is overwritten, parcels are replaced when given, and
/// the applicant's residence, name and birth date are corrected when given.
pub fn merge(dossier: &Dossier, s: &DossierSupplemented) -> Dossier {
    let mut d = dossier.clone();
    for doc in &s.documents {
        match d.documents.iter_mut().find(|x| x.kind == doc.kind) {
            Some(x) => *x = doc.clone(),
            None => d.documents.push(doc.clone()),
        }
    }
    for (k, v) in &s.form_fields {
        d.form_fields.insert(k.clone(), v.clone());
    }
    if let Some(parcels) = &s.land_parcels {
        d.land_parcels = parcels.clone();
    }
    if let Some(unit) = &s.residence_unit_code {
        d.applicant.residence_unit_code = Some(unit.clone());
    }
    if let Some(name) = &s.full_name {
        d.applicant.full_name = name.clone();
    }
    if let Some(dob) = s.date_of_birth {
        d.applicant.date_of_birth = Some(dob);
    }
    d
}

impl crate::Intake {
    /// A citizen's supplement: resumes the dossier at the step that asked for it.
    pub(crate) async fn supplement(
        &self,
        s: &DossierSupplemented,
        door: &Door,
    ) -> Result<(Outcome, Lifecycle), StageError> {
        let Some(wait) = self
            .store
            .wait_for(&s.dossier_id, &s.event_id)
            .await
            .map_err(store_error)?
        else {
            let known = self
                .store
                .dossier_code(&s.dossier_id)
                .await
                .map_err(store_error)?
                .is_some();
            return Ok(if known {
                refused("SUPPLEMENT_NOT_AWAITED", "no supplement was requested for this dossier")
            } else {
                refused("SUPPLEMENT_UNKNOWN_DOSSIER", "no dossier has this id")
            });
        };
        let ours = wait.answer_event_id.as_deref() == Some(s.event_id.as_str());
        match wait.state {
            WaitState::Waiting => {}
            WaitState::Answered if ours => {}
            WaitState::Answered => {
                return Ok(refused(
                    "SUPPLEMENT_NOT_AWAITED",
                    "the dossier's supplement request was answered already",
                ))
            }
            WaitState::Superseded => {
                return Ok(refused(
                    "SUPPLEMENT_NOT_AWAITED",
                    "the dossier was submitted again after this request",
                ))
            }
            WaitState::Stopped | WaitState::Withdrawn => {
                return Ok(refused(
                    "SUPPLEMENT_DOSSIER_CLOSED",
                    "the dossier was withdrawn or stopped before this supplement",
                ))
            }
        }
        if s.dossier_code.is_some() && s.dossier_code != wait.request.dossier_code {
            return Ok(refused(
                "SUPPLEMENT_CODE_MISMATCH",
                "the dossier code is not the code of this dossier",
            ));
        }
        if s.supplemented_at < wait.request.requested_at_ms || s.supplemented_at > s.published_at + MAX_CLOCK_SKEW_MS {
            return Ok(refused(
                "SUPPLEMENT_INVALID_TIME",
                "supplemented_at is before the request or after the publication time",
            ));
        }
        if wait.state == WaitState::Waiting {
            if let Some(refusal) = self.outgrown(door, &wait, s)? {
                return Ok(refusal);
            }
        }
        match wait.request.step.as_str() {
            STAGE => self.resume_at_intake(s, &wait).await,
            BACKOFFICE => self.resume_at_back_office(s, &wait).await,
            _ => self.resume_after_intake(s, &wait).await,
        }
    }

    /// The back office asks for papers of a routed dossier. The back office is outside
    /// the pipeline and shares no store with it, so intake records the wait — with the
    /// routed message the dossier goes back with — before anyone sees the request: the
    /// status that tells the citizen (SUPPLEMENT_REQUESTED, by intake, caused by the
    /// request) goes out only once a supplement can answer it.
    pub(crate) async fn back_office_request(
        &self,
        r: &DossierSupplementRequested,
    ) -> Result<(Outcome, Lifecycle), StageError> {
        const KIND: &str = "supplement-requested";
        let request_event_id = derived_event_id(&r.event_id, STAGE, KIND);
        // A redelivered request finds its wait and announces it again, whatever came since.
        let recorded = self
            .store
            .waits_of(&r.dossier_id)
            .await
            .map_err(store_error)?
            .into_iter()
            .find(|w| w.request.request_event_id == request_event_id);
        let routed: DossierRouted = match recorded {
            Some(w) => self.decode_payload(&w)?,
            None => {
                if r.reasons.is_empty() {
                    return Ok(refused(
                        "SUPPLEMENT_REQUEST_NO_REASON",
                        "a request for papers must say what is missing (reasons is empty)",
                    ));
                }
                let Some(payload) = self.store.routed_of(&r.dossier_id).await.map_err(store_error)? else {
                    let closed = self.store.closure(&r.dossier_id).await.map_err(store_error)?.is_some();
                    return Ok(if closed {
                        refused(
                            "SUPPLEMENT_REQUEST_DOSSIER_CLOSED",
                            "the dossier was decided, withdrawn or stopped before this request",
                        )
                    } else {
                        refused(
                            "SUPPLEMENT_REQUEST_UNKNOWN_DOSSIER",
                            "no routed dossier has this id (or it was routed before its routed message was kept)",
                        )
                    });
                };
                let routed: DossierRouted = self
                    .codec
                    .decode(&payload)
                    .map_err(|e| StageError::Fatal(format!("a stored routed message cannot be read: {e}")))?;
                if routed.dossier_code != r.dossier_code {
                    return Ok(refused(
                        "SUPPLEMENT_REQUEST_CODE_MISMATCH",
                        "the dossier code is not the code of this dossier",
                    ));
                }
                if r.requested_at < routed.received_at {
                    return Ok(refused(
                        "SUPPLEMENT_REQUEST_INVALID_TIME",
                        "requested_at is before the dossier was received",
                    ));
                }
                let wait = WaitRequest {
                    request_event_id: request_event_id.clone(),
                    dossier_id: r.dossier_id.clone(),
                    dossier_code: Some(r.dossier_code.clone()),
                    step: BACKOFFICE.to_owned(),
                    requested_at_ms: r.requested_at,
                    payload,
                };
                let recorded = self
                    .store
                    .await_supplements(std::slice::from_ref(&wait))
                    .await
                    .map_err(store_error)?;
                if !recorded.contains(&wait.request_event_id) {
                    // Withdrawn or stopped since the request was checked above.
                    return Ok(refused(
                        "SUPPLEMENT_REQUEST_DOSSIER_CLOSED",
                        "the dossier was withdrawn or stopped before this request",
                    ));
                }
                routed
            }
        };
        let mut status = DossierStatusChanged::about(
            &routed,
            &r.event_id,
            STAGE,
            KIND,
            DossierStatus::SupplementRequested,
            r.requested_at,
        )
        .with_reasons(r.reasons.clone());
        status.traceparent = r.traceparent.clone().or(status.traceparent);
        Ok((Outcome::Emit(vec![status.into()]), Lifecycle::BackOfficeAsked))
    }

    /// The back office asked: the dossier goes back to it as a new `dossier.routed` —
    /// same code and reception, the papers merged in, one more pause of the legal clock
    /// and the due time moved by exactly its working time (on the receiving center's
    /// calendar, the one that computed the due time). Checked at the door first, and
    /// asked again when still incomplete (the pause so far kept).
    async fn resume_at_back_office(
        &self,
        s: &DossierSupplemented,
        wait: &Wait,
    ) -> Result<(Outcome, Lifecycle), StageError> {
        let routed: DossierRouted = self.decode_payload(wait)?;
        let calendars = self.calendars()?;
        let calendar = calendars.calendar_of_center(&routed.dossier.receiving_unit_code);
        let Ok((due_at, pause)) = calendar.pause(
            routed.due_at,
            BACKOFFICE,
            wait.request.requested_at_ms,
            s.supplemented_at,
        ) else {
            return Ok(refused(
                "SUPPLEMENT_INVALID_TIME",
                "the wait is outside the working calendar's years",
            ));
        };
        let mut clock_pauses = routed.clock_pauses.clone();
        clock_pauses.push(pause);
        let resent = DossierRouted {
            event_id: derived_event_id(&s.event_id, STAGE, "routed"),
            causation_id: s.event_id.clone(),
            dossier: merge(&routed.dossier, s),
            due_at,
            routed_at: s.supplemented_at,
            clock_pauses,
            traceparent: s.traceparent.clone().or(routed.traceparent.clone()),
            ..routed
        };
        let dossier = resent.dossier.clone();
        self.send_back(s, wait, resent, &s.event_id, dossier, BACKOFFICE).await
    }

    /// The calendars waits count on: the configured ones, else the embedded ones.
    fn calendars(&self) -> Result<std::sync::Arc<motcua_routing::RoutingTables>, StageError> {
        if let Some(w) = &self.supplement_wait {
            return Ok(w.calendars.clone());
        }
        if let Some(t) = self.embedded_calendars.get() {
            return Ok(t.clone());
        }
        let tables = motcua_routing::RoutingTables::embedded(&self.reference)
            .map_err(|e| StageError::Fatal(format!("the embedded routing tables: {e}")))?;
        Ok(self
            .embedded_calendars
            .get_or_init(|| std::sync::Arc::new(tables))
            .clone())
    }

    /// Intake asked (papers missing at reception): the completed submission is checked
    /// again and received when the supplement came — the legal clock starts only once a
    /// dossier is complete, so there is no pause to give back.
    async fn resume_at_intake(&self, s: &DossierSupplemented, wait: &Wait) -> Result<(Outcome, Lifecycle), StageError> {
        let asked: DossierSubmitted = self.decode_payload(wait)?;
        let resumed = DossierSubmitted {
            event_id: derived_event_id(&s.event_id, STAGE, "resubmitted"),
            dossier: merge(&asked.dossier, s),
            published_at: s.supplemented_at,
            traceparent: s.traceparent.clone().or(asked.traceparent),
        };
        match validate(&self.reference, &resumed) {
            Ok(admission) => {
                // The code first: a supplement refused here (its id taken by another
                // dossier meanwhile) leaves the wait open, so the dossier still ends.
                let request = code_request_at(&resumed, &admission, s.supplemented_at);
                let allocation = self
                    .store
                    .allocate_codes(std::slice::from_ref(&request))
                    .await
                    .map_err(store_error)?
                    .pop()
                    .ok_or_else(|| StageError::Fatal("store returned no code".to_owned()))?;
                if allocation.conflicting {
                    return Ok(refused(
                        "DUPLICATE_DOSSIER_ID",
                        "another dossier with this id was received meanwhile",
                    ));
                }
                if !self.answer(wait, s, None).await? {
                    return Ok(refused("SUPPLEMENT_NOT_AWAITED", "the wait ended meanwhile"));
                }
                Ok((
                    Outcome::Emit(accepted_events(&resumed, admission, &allocation)),
                    Lifecycle::Resumed { step: STAGE },
                ))
            }
            Err(refusal) => {
                let status = refusal_event(&resumed, refusal);
                let again = self.again(&status, wait, &self.encode(&resumed)?);
                if !self.answer(wait, s, again.as_ref()).await? {
                    return Ok(refused("SUPPLEMENT_NOT_AWAITED", "the wait ended meanwhile"));
                }
                let lifecycle = match again {
                    Some(_) => Lifecycle::AskedAgain,
                    None => Lifecycle::RejectedAfterSupplement,
                };
                Ok((Outcome::Emit(vec![status]), lifecycle))
            }
        }
    }

    /// A later step asked (verify: the registries disagree): the dossier goes back to it
    /// under the same code and reception time, with the papers merged in; it is checked
    /// at the door again first, and asked again when still incomplete.
    async fn resume_after_intake(
        &self,
        s: &DossierSupplemented,
        wait: &Wait,
    ) -> Result<(Outcome, Lifecycle), StageError> {
        let asked: DossierAccepted = self.decode_payload(wait)?;
        let accepted = DossierAccepted {
            event_id: derived_event_id(&s.event_id, STAGE, "resumed"),
            causation_id: s.event_id.clone(),
            dossier: merge(&asked.dossier, s),
            traceparent: s.traceparent.clone().or(asked.traceparent.clone()),
            ..asked
        };
        let step = if wait.request.step == motcua_schemas::component::VERIFY {
            motcua_schemas::component::VERIFY
        } else {
            "other"
        };
        let (cause, dossier) = (accepted.event_id.clone(), accepted.dossier.clone());
        self.send_back(s, wait, accepted, &cause, dossier, step).await
    }

    /// Sends a dossier back to the later step that asked for papers, as `resumed` (the
    /// message that step reads, papers merged in; its statuses are caused by `cause`):
    /// checked at the door first and asked again when still incomplete (same step, the
    /// next wait resuming from `resumed`); else the wait is answered and the dossier
    /// resumes with a PROCESSING / SUPPLEMENT_RECEIVED status.
    async fn send_back<E>(
        &self,
        s: &DossierSupplemented,
        wait: &Wait,
        resumed: E,
        cause: &str,
        dossier: Dossier,
        step: &'static str,
    ) -> Result<(Outcome, Lifecycle), StageError>
    where
        E: motcua_schemas::Event + motcua_schemas::StatusCause + Into<AnyEvent>,
    {
        let payload = self.encode(&resumed)?;
        let check = DossierSubmitted {
            event_id: resumed.event_id().to_owned(),
            dossier,
            published_at: s.supplemented_at,
            traceparent: None,
        };
        if let Err(refusal) = validate(&self.reference, &check) {
            let status: AnyEvent = DossierStatusChanged::about(
                &resumed,
                cause,
                STAGE,
                "supplement-again",
                DossierStatus::SupplementRequested,
                s.supplemented_at,
            )
            .with_reasons(refusal.reasons)
            .into();
            let again = self.again(&status, wait, &payload);
            if !self.answer(wait, s, again.as_ref()).await? {
                return Ok(refused("SUPPLEMENT_NOT_AWAITED", "the wait ended meanwhile"));
            }
            return Ok((Outcome::Emit(vec![status]), Lifecycle::AskedAgain));
        }
        if !self.answer(wait, s, None).await? {
            return Ok(refused("SUPPLEMENT_NOT_AWAITED", "the wait ended meanwhile"));
        }
        if step == BACKOFFICE {
            // A later request of the back office resumes from what it was sent last.
            self.store
                .resend_routed(&s.dossier_id, &payload)
                .await
                .map_err(store_error)?;
        }
        let status = DossierStatusChanged::about(
            &resumed,
            cause,
            STAGE,
            "resumed",
            DossierStatus::Processing,
            s.supplemented_at,
        )
        .with_reasons(vec![reason(
            "SUPPLEMENT_RECEIVED",
            "Đã nhận hồ sơ bổ sung; hồ sơ được xử lý tiếp, thời hạn cộng thêm thời gian chờ",
        )]);
        Ok((
            Outcome::Emit(vec![resumed.into(), status.into()]),
            Lifecycle::Resumed { step },
        ))
    }

    /// The next wait when `status` asks for a supplement again.
    fn again(&self, status: &AnyEvent, wait: &Wait, payload: &[u8]) -> Option<WaitRequest> {
        let AnyEvent::Status(st) = status else { return None };
        (st.status == DossierStatus::SupplementRequested).then(|| WaitRequest {
            request_event_id: st.event_id.clone(),
            dossier_id: st.dossier_id.clone(),
            dossier_code: wait.request.dossier_code.clone(),
            step: wait.request.step.clone(),
            requested_at_ms: st.occurred_at,
            payload: payload.to_vec(),
        })
    }

    async fn answer(
        &self,
        wait: &Wait,
        s: &DossierSupplemented,
        again: Option<&WaitRequest>,
    ) -> Result<bool, StageError> {
        self.store
            .answer_wait(&wait.request.request_event_id, &s.event_id, s.supplemented_at, again)
            .await
            .map_err(store_error)
    }

    /// The refusal of a supplement that would leave its dossier larger than a portal may
    /// send one (the door the supplement itself passed): checked before anything is
    /// recorded, so the wait stays open for a supplement that fits, or for its stop.
    /// Found only once the resumed dossier's outputs were framed, it would be dead-lettered
    /// with its wait answered and nothing announced: a dossier open for ever.
    fn outgrown(
        &self,
        door: &Door,
        wait: &Wait,
        s: &DossierSupplemented,
    ) -> Result<Option<(Outcome, Lifecycle)>, StageError> {
        let as_submitted = DossierSubmitted {
            event_id: s.event_id.clone(),
            dossier: merge(&self.waiting_dossier(wait)?, s),
            published_at: s.published_at,
            traceparent: s.traceparent.clone(),
        };
        let len = self.encode(&as_submitted)?.len();
        Ok(door.admits_from_outside(&as_submitted, len).err().map(|v| {
            refused(
                "SUPPLEMENT_TOO_LARGE",
                format!("the dossier with this supplement would not pass as a portal's submission: {v}"),
            )
        }))
    }

    /// The dossier as it waits, from the stored request.
    fn waiting_dossier(&self, wait: &Wait) -> Result<Dossier, StageError> {
        Ok(match wait.request.step.as_str() {
            STAGE => self.decode_payload::<DossierSubmitted>(wait)?.dossier,
            BACKOFFICE => self.decode_payload::<DossierRouted>(wait)?.dossier,
            _ => self.decode_payload::<DossierAccepted>(wait)?.dossier,
        })
    }

    /// The center that received the waiting dossier, from the stored request.
    fn receiving_center(&self, wait: &Wait) -> Option<String> {
        self.waiting_dossier(wait).ok().map(|d| d.receiving_unit_code)
    }

    fn decode_payload<E: motcua_schemas::Event>(&self, wait: &Wait) -> Result<E, StageError> {
        // Written by a stage of this pipeline; unreadable means a broken deployment.
        self.codec
            .decode(&wait.request.payload)
            .map_err(|e| StageError::Fatal(format!("a stored supplement wait cannot be read: {e}")))
    }

    pub(crate) fn encode<E: motcua_schemas::Event>(&self, e: &E) -> Result<Vec<u8>, StageError> {
        self.codec
            .encode(e)
            .map_err(|e| StageError::Fatal(format!("encoding a supplement wait: {e}")))
    }

    /// A withdrawal, honoured at any step before the decision: the dossier is closed
    /// (its wait ended, its desk freed), an unpaid bill is cancelled, and the status says
    /// what happens to a fee paid (refund due or not, by the procedure's field).
    pub(crate) async fn withdraw(&self, w: &DossierWithdrawn) -> Result<(Outcome, Lifecycle), StageError> {
        let code = self.store.dossier_code(&w.dossier_id).await.map_err(store_error)?;
        let waits = self.store.waits_of(&w.dossier_id).await.map_err(store_error)?;
        if code.is_none() && waits.is_empty() {
            return Ok(refused("WITHDRAWAL_UNKNOWN_DOSSIER", "no dossier has this id"));
        }
        let code = code.map(|(c, _)| c);
        if w.dossier_code.is_some() && w.dossier_code != code {
            return Ok(refused(
                "WITHDRAWAL_CODE_MISMATCH",
                "the dossier code is not the code of this dossier",
            ));
        }
        if w.withdrawn_at > w.published_at + MAX_CLOCK_SKEW_MS {
            return Ok(refused(
                "WITHDRAWAL_INVALID_TIME",
                "withdrawn_at is after the publication time",
            ));
        }
        let closure = self
            .store
            .close_dossier(&w.dossier_id, ClosureKind::Withdrawn, &w.event_id, w.withdrawn_at)
            .await
            .map_err(store_error)?;
        if closure.event_id != w.event_id {
            return Ok(match closure.kind {
                ClosureKind::Decided => refused(
                    "WITHDRAWAL_AFTER_DECISION",
                    "the dossier was decided before the withdrawal",
                ),
                _ => refused(
                    "WITHDRAWAL_DOSSIER_CLOSED",
                    "the dossier was withdrawn or stopped already",
                ),
            });
        }
        // Announced as first recorded: the fee's fate is read from the bill once (a bill
        // paid after the withdrawal must not change what a re-sent withdrawal says).
        let recorded = recorded_decisions(&self.store, &self.codec, STAGE, &[w.event_id.as_str()]).await?;
        if let Some(events) = recorded.into_values().next() {
            return Ok((Outcome::Emit(events), Lifecycle::Withdrawn));
        }
        let fee = match self.store.bill_of_dossier(&w.dossier_id).await.map_err(store_error)? {
            None => reason("NO_FEE_PAID", "Không có phí, lệ phí phải hoàn"),
            Some(b) if b.status == "paid" => {
                let verified: motcua_schemas::DossierVerified = self
                    .codec
                    .decode(&b.verified_payload)
                    .map_err(|e| StageError::Fatal(format!("a stored bill cannot be read: {e}")))?;
                if refund_on_withdrawal(verified.procedure.field) {
                    reason("FEE_REFUND_DUE", "Phí, lệ phí đã nộp được hoàn trả cho người nộp")
                } else {
                    reason(
                        "FEE_NOT_REFUNDABLE",
                        "Phí thẩm định đã nộp không được hoàn trả khi rút hồ sơ",
                    )
                }
            }
            Some(b) => {
                // Not paid: nobody may pay it any more.
                self.store.mark_expired(&b.bill_reference).await.map_err(store_error)?;
                reason("BILL_CANCELLED", "Hóa đơn chưa thanh toán đã được hủy")
            }
        };
        let mut reasons = vec![reason("WITHDRAWN_BY_APPLICANT", "Người nộp rút hồ sơ")];
        reasons.push(fee);
        let mut status = DossierStatusChanged::new(
            derived_event_id(&w.event_id, STAGE, "withdrawn"),
            STAGE,
            &w.dossier_id,
            DossierStatus::Withdrawn,
            w.withdrawn_at,
        )
        .with_code(code)
        .with_reasons(reasons);
        status.causation_id = Some(w.event_id.clone());
        status.traceparent = w.traceparent.clone();
        let decided = stored::Decided {
            input_id: &w.event_id,
            dossier_id: &w.dossier_id,
            events: vec![status.into()],
            at_ms: w.withdrawn_at,
        };
        let recorded = decide_first(&self.store, &self.codec, STAGE, &[decided]).await?;
        Ok((
            Outcome::Emit(recorded.into_iter().flatten().collect()),
            Lifecycle::Withdrawn,
        ))
    }

    /// Timer work: gives new waits their stop time, then stops the waits past it.
    pub(crate) async fn stop_unanswered(&self, wall_ms: i64) -> Result<motcua_runtime::Tick, StageError> {
        let Some(policy) = &self.supplement_wait else {
            return Ok(motcua_runtime::Tick::default());
        };
        let now_ms = policy.clock.at(wall_ms);
        for w in self.store.waits_without_stop(policy.batch).await.map_err(store_error)? {
            // A request beyond the calendar's last day cannot be counted: stop it then.
            let center = self.receiving_center(&w).unwrap_or_default();
            let stop_at = policy
                .stop_at(&center, w.request.requested_at_ms)
                .unwrap_or(w.request.requested_at_ms);
            self.store
                .set_stop_at(&w.request.request_event_id, stop_at)
                .await
                .map_err(store_error)?;
        }
        let stopped = self
            .store
            .stop_due_waits(now_ms, policy.batch, |r| stop_event_id(&r.request_event_id))
            .await
            .map_err(store_error)?;
        let mut tick = motcua_runtime::Tick::default();
        for w in stopped {
            let at = w.stop_at_ms.unwrap_or(now_ms);
            let mut status = DossierStatusChanged::new(
                stop_event_id(&w.request.request_event_id),
                STAGE,
                &w.request.dossier_id,
                DossierStatus::ProcessingStopped,
                at,
            )
            .with_code(w.request.dossier_code.clone())
            .with_reasons(vec![reason(
                "SUPPLEMENT_NOT_RECEIVED",
                "Quá thời hạn bổ sung hồ sơ mà người nộp chưa bổ sung; dừng xử lý hồ sơ",
            )]);
            status.causation_id = Some(w.request.request_event_id.clone());
            Lifecycle::Stopped.emit();
            tick.events.push(status.into());
            tick.done.push(w.request.request_event_id);
        }
        Ok(tick)
    }

    pub(crate) async fn announce_stops(&self, tick: &motcua_runtime::Tick) -> Result<(), StageError> {
        for id in &tick.done {
            self.store.announce_stop(id).await.map_err(store_error)?;
        }
        Ok(())
    }
}

fn stop_event_id(request_event_id: &str) -> String {
    derived_event_id(request_event_id, STAGE, "stopped")
}

/// The fee rule on withdrawal. Appraisal fees of land and construction procedures pay
/// for work the authority starts on receipt, so they are kept; other fees are refunded.
/// An assumption until the catalog carries the rule per procedure.
pub fn refund_on_withdrawal(field: motcua_schemas::ProcedureField) -> bool {
    !matches!(
        field,
        motcua_schemas::ProcedureField::Land | motcua_schemas::ProcedureField::Construction
    )
}
