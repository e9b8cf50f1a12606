//! The payment stage. A verified dossier gets a bill (fee + charge, exemptions applied)
//! with a unique reference: `payment.requested` and the "financial obligation requested"
//! status; a dossier that owes nothing is `dossier.paid` at once. Gateway confirmations
//! (`payment.confirmed`, which gateways send twice, late, or out of order) are matched by
//! reference; the first successful full payment settles the bill and emits `dossier.paid`
//! — once: a duplicate of the same transaction re-emits the identical event (same id), a
//! second transaction is reported for refund and emits nothing. Pending bills live in the
//! database; an expired one stops its dossier, announced from the store (the stage's timer).

mod fees;
pub mod telemetry;

use motcua_runtime::{error_chain, Envelope, Input, Outcome, Stage, StageError, Tick};
use motcua_schemas::{
    derived_event_id, AnyEvent, Codec, DossierPaid, DossierStatus, DossierStatusChanged, DossierVerified, Event,
    PaymentConfirmed, PaymentOutcome, PaymentRequested, Reason, Topic,
};
use motcua_store::{Bill, ClosureKind, Confirmation, Settlement, Store};
use telemetry::Counted;

pub use fees::{Fee, FeeSchedule};

pub const STAGE: &str = motcua_schemas::component::PAYMENT;

/// The payment stage reads verified dossiers and gateway confirmations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentInput {
    Verified(Box<DossierVerified>),
    Confirmed(PaymentConfirmed),
}

impl Input for PaymentInput {
    fn topics() -> Vec<Topic> {
        vec![Topic::Verified, Topic::PaymentConfirmed]
    }

    fn decode(codec: &Codec, topic: Topic, bytes: &[u8]) -> motcua_schemas::Result<Self> {
        Ok(match topic {
            Topic::PaymentConfirmed => PaymentInput::Confirmed(codec.decode(bytes)?),
            _ => PaymentInput::Verified(Box::new(codec.decode(bytes)?)),
        })
    }

    fn key(&self) -> &str {
        match self {
            PaymentInput::Verified(v) => Event::key(v.as_ref()),
            PaymentInput::Confirmed(c) => Event::key(c),
        }
    }

    fn dossier_trace(&self) -> Option<std::borrow::Cow<'_, str>> {
        match self {
            PaymentInput::Verified(v) => Event::dossier_trace(v.as_ref()),
            PaymentInput::Confirmed(c) => Event::dossier_trace(c),
        }
    }

    fn check(&self, limits: &motcua_schemas::Limits) -> Result<(), motcua_schemas::Violation> {
        match self {
            PaymentInput::Verified(v) => limits.check(v.as_ref()),
            PaymentInput::Confirmed(c) => limits.check(c),
        }
    }
}

/// A bill's reference: derived from the dossier id, so a redelivered dossier gets the
/// same bill; short enough for a payment slip.
pub fn bill_reference(dossier_id: &str) -> String {
    let id = derived_event_id(dossier_id, STAGE, "bill");
    format!("HD{}", id.replace('-', "")[..16].to_uppercase())
}

#[derive(Debug)]
pub struct Payment {
    store: Store,
    codec: Codec,
    fees: FeeSchedule,
    /// How long a bill may be paid.
    pub validity_ms: i64,
    /// How often unpaid bills past their validity are looked for (the stage's timer).
    pub expiry_check: std::time::Duration,
}

impl Payment {
    pub fn new(store: Store, codec: Codec, fees: FeeSchedule) -> Self {
        Self {
            store,
            codec,
            fees,
            validity_ms: 72 * 3_600_000,
            expiry_check: std::time::Duration::from_secs(60),
        }
    }

    /// The bill a verified dossier needs, with the fee it comes from (`None`: its
    /// procedure is free).
    fn bill_for(&self, v: &DossierVerified, at: i64) -> Result<Option<(Bill, Fee)>, StageError> {
        let fee = self.fees.fee(&v.procedure, v);
        if fee.total() == 0 {
            return Ok(None);
        }
        let payload = self.codec.encode(v).map_err(|e| StageError::Refused {
            reason_code: "ENCODE_FAILED".to_owned(),
            reason: error_chain(&e),
        })?;
        let bill = Bill {
            bill_reference: bill_reference(&v.dossier.dossier_id),
            dossier_id: v.dossier.dossier_id.clone(),
            amount_vnd: fee.total(),
            status: "pending".into(),
            issued_at_ms: at,
            expires_at_ms: at + self.validity_ms,
            paid_at_ms: None,
            gateway_tx: None,
            failures: 0,
            verified_payload: payload,
        };
        Ok(Some((bill, fee)))
    }

    /// The events of a verified dossier once its bill (if it needs one) is stored; what
    /// it comes to goes into `counted`, counted once the whole batch succeeded.
    async fn on_verified(
        &self,
        v: &DossierVerified,
        at: i64,
        billed: Option<(Bill, Fee)>,
        counted: &mut Vec<Counted>,
    ) -> Result<Vec<AnyEvent>, StageError> {
        let Some((bill, fee)) = billed else {
            counted.push(Counted::Free);
            return Ok(vec![paid(v, None, 0, at)]);
        };
        if bill.status == "paid" {
            // Verified again after its bill was paid (a replay of the topic, or the same
            // dossier resubmitted): the payment stands; re-emit its identical event
            // rather than asking the citizen to pay twice.
            // Stored by a newer worker, perhaps with a version this one has not seen.
            let _ = self.codec.learn_writers([bill.verified_payload.as_slice()]).await;
            let original: DossierVerified = self
                .codec
                .decode(&bill.verified_payload)
                .map_err(|e| StageError::Fatal(error_chain(&e)))?;
            let at = bill.paid_at_ms.unwrap_or(at);
            return Ok(vec![paid(&original, Some(&bill), bill.amount_vnd, at)]);
        }
        counted.push(Counted::Billed);
        let requested = PaymentRequested {
            event_id: derived_event_id(&v.event_id, STAGE, "requested"),
            causation_id: v.event_id.clone(),
            dossier_id: v.dossier.dossier_id.clone(),
            dossier_code: v.dossier_code.clone(),
            bill_reference: bill.bill_reference.clone(),
            fee_vnd: fee.fee_vnd,
            charge_vnd: fee.charge_vnd,
            amount_vnd: bill.amount_vnd,
            payer_name: v.dossier.applicant.full_name.clone(),
            description: format!("Lệ phí, phí hồ sơ {} ({})", v.dossier_code, v.procedure.name),
            issued_at: bill.issued_at_ms,
            expires_at: bill.expires_at_ms,
            traceparent: v.traceparent.clone(),
        };
        let status = status_event(
            &v.event_id,
            "status",
            v,
            DossierStatus::FinancialObligationRequested,
            Vec::new(),
            bill.issued_at_ms,
        );
        Ok(vec![requested.into(), status])
    }

    /// Like [`Payment::on_verified`], what it comes to goes into `counted`.
    /// `settlement` is what the store made of the confirmation; `ended`, the batch's
    /// dossiers nobody works on any more.
    fn on_confirmed(
        &self,
        c: &PaymentConfirmed,
        settlement: Settlement,
        ended: &std::collections::HashSet<String>,
        counted: &mut Vec<Counted>,
    ) -> Result<Outcome, StageError> {
        let verified = |b: &Bill| -> Result<DossierVerified, StageError> {
            self.codec
                .decode(&b.verified_payload)
                .map_err(|e| StageError::Fatal(error_chain(&e)))
        };
        Ok(match settlement {
            Settlement::Unknown => Outcome::DeadLetter {
                reason_code: "UNKNOWN_BILL".into(),
                reason: format!("no bill has reference {}", c.bill_reference),
            },
            Settlement::Paid(b) if ended.contains(&b.dossier_id) => {
                counted.push(Counted::PaidAfterEnd {
                    bill_reference: b.bill_reference,
                    tx: c.gateway_transaction_id.clone(),
                });
                Outcome::Emit(Vec::new())
            }
            Settlement::Paid(b) => {
                let v = verified(&b)?;
                let at = b.paid_at_ms.unwrap_or(c.confirmed_at);
                Outcome::Emit(vec![paid(&v, Some(&b), b.amount_vnd, at)])
            }
            Settlement::AlreadyPaid(b) => {
                counted.push(Counted::DuplicatePayment {
                    bill_reference: b.bill_reference,
                    tx: c.gateway_transaction_id.clone(),
                });
                Outcome::Emit(Vec::new())
            }
            Settlement::Failed(b) if ended.contains(&b.dossier_id) => {
                counted.push(Counted::PaymentFailed);
                Outcome::Emit(Vec::new())
            }
            Settlement::Failed(b) => {
                counted.push(Counted::PaymentFailed);
                let v = verified(&b)?;
                let reason = Reason {
                    code: "PAYMENT_FAILED".into(),
                    message: c
                        .failure_reason
                        .clone()
                        .unwrap_or_else(|| format!("số tiền {} nhỏ hơn {}", c.amount_vnd, b.amount_vnd)),
                };
                Outcome::Emit(vec![status_event(
                    &c.event_id,
                    "payment-failed",
                    &v,
                    DossierStatus::FinancialObligationRequested,
                    vec![reason],
                    c.confirmed_at,
                )])
            }
        })
    }

    /// Bill expiry, recorded before it is announced: pending bills past their validity
    /// are expired in the store (a payment settled first wins), then each expiry not yet
    /// announced closes its dossier and gets its status event, stamped with the bill's
    /// expiry. A dossier that ended first (withdrawn) gets nothing. Returns the bills and
    /// their events (none for those that ended first); [`Stage::ticked`] marks them.
    async fn expiries(&self, now_ms: i64) -> Result<Vec<(String, Option<AnyEvent>)>, StageError> {
        self.store.expire_due_bills(now_ms).await.map_err(store_error)?;
        let mut out = Vec::new();
        for b in self.store.unannounced_expiries(1_000).await.map_err(store_error)? {
            let _ = self.codec.learn_writers([b.verified_payload.as_slice()]).await;
            let v: DossierVerified = self
                .codec
                .decode(&b.verified_payload)
                .map_err(|e| StageError::Fatal(format!("the stored bill {} does not decode: {e}", b.bill_reference)))?;
            let reason = Reason {
                code: "BILL_EXPIRED".into(),
                message: format!("Hóa đơn {} đã hết hạn thanh toán", b.bill_reference),
            };
            let stop = DossierStatusChanged::about(
                &v,
                &b.bill_reference,
                STAGE,
                "expired",
                DossierStatus::ProcessingStopped,
                b.expires_at_ms,
            )
            .with_reasons(vec![reason]);
            let closure = match self
                .store
                .close_dossier(&b.dossier_id, ClosureKind::Stopped, &stop.event_id, b.expires_at_ms)
                .await
            {
                Ok(closure) => closure,
                // Another stage still owes a status of the dossier: stopped at a later round.
                Err(motcua_store::Error::AnnouncementsOwed { .. }) => continue,
                Err(e) => return Err(store_error(e)),
            };
            let ours = closure.event_id == stop.event_id;
            out.push((b.bill_reference, ours.then(|| stop.into())));
        }
        Ok(out)
    }
}

fn store_error(e: motcua_store::Error) -> StageError {
    StageError::from(e).context("bills")
}

fn paid(v: &DossierVerified, bill: Option<&Bill>, amount: i64, at: i64) -> AnyEvent {
    DossierPaid {
        event_id: derived_event_id(&v.event_id, STAGE, "paid"),
        causation_id: v.event_id.clone(),
        dossier_code: v.dossier_code.clone(),
        received_at: v.received_at,
        procedure: v.procedure.clone(),
        dossier: v.dossier.clone(),
        bill_reference: bill.map(|b| b.bill_reference.clone()),
        amount_vnd: amount,
        paid_at: at,
        traceparent: v.traceparent.clone(),
    }
    .into()
}

fn status_event(
    cause: &str,
    kind: &str,
    v: &DossierVerified,
    status: DossierStatus,
    reasons: Vec<Reason>,
    at: i64,
) -> AnyEvent {
    DossierStatusChanged::about(v, cause, STAGE, kind, status, at)
        .with_reasons(reasons)
        .into()
}

impl Stage for Payment {
    type Input = PaymentInput;

    fn name(&self) -> &'static str {
        STAGE
    }

    fn owed_statuses(&self) -> Option<&Store> {
        Some(&self.store)
    }

    fn tick_interval(&self) -> Option<std::time::Duration> {
        Some(self.expiry_check)
    }

    /// Bill expiry ([`Payment::expiries`]); each expiry marked announced once its event
    /// is acknowledged ([`Stage::ticked`]).
    async fn tick(&self, now_ms: i64) -> Result<Tick, StageError> {
        let mut tick = Tick::default();
        for (reference, event) in self.expiries(now_ms).await? {
            tick.done.push(reference);
            tick.events.extend(event);
        }
        Ok(tick)
    }

    async fn ticked(&self, tick: &Tick) -> Result<(), StageError> {
        for reference in &tick.done {
            self.store.expiry_announced(reference).await.map_err(store_error)?;
        }
        tick.done.iter().for_each(|_| telemetry::bill_expired());
        Ok(())
    }

    async fn handle_batch(&self, batch: &[Envelope<PaymentInput>]) -> Result<Vec<Outcome>, StageError> {
        // The batch's verified dossiers first, together: which ended, then their bills in
        // one transaction (a confirmation later in the batch finds its bill).
        let verified: Vec<(&DossierVerified, i64)> = batch
            .iter()
            .filter_map(|e| match &e.event {
                // Stamped with the verification, not the message: verify announcing the
                // dossier again (a new message, a later broker time) gets the same answer.
                PaymentInput::Verified(v) => Some((v.as_ref(), v.verified_at)),
                PaymentInput::Confirmed(_) => None,
            })
            .collect();
        let ids: Vec<&str> = verified.iter().map(|(v, _)| v.dossier.dossier_id.as_str()).collect();
        let ended = self.store.ended_among(&ids).await.map_err(store_error)?;
        let mut wanted = Vec::new();
        let mut fees = Vec::new();
        let mut bill_index = Vec::with_capacity(verified.len());
        for (v, at) in &verified {
            bill_index.push(match ended.contains(&v.dossier.dossier_id) {
                true => None,
                false => self.bill_for(v, *at)?.map(|(bill, fee)| {
                    wanted.push(bill);
                    fees.push(fee);
                    wanted.len() - 1
                }),
            });
        }
        // A dossier that ended after it was read above gets no bill: the store checks
        // again under the lock its end takes.
        let stored = self.store.issue_bills(&wanted).await.map_err(store_error)?;
        let mut ended = ended;
        ended.extend(
            wanted
                .iter()
                .zip(&stored)
                .filter(|(_, s)| s.is_none())
                .map(|(w, _)| w.dossier_id.clone()),
        );
        let mut billed: Vec<Option<(Bill, Fee)>> = stored
            .into_iter()
            .zip(fees)
            .map(|(bill, fee)| bill.map(|b| (b, fee)))
            .collect();
        let mut verified_in_order = verified.iter().zip(bill_index);
        // Then the confirmations, settled together in one transaction, in batch order.
        let confirmations: Vec<&PaymentConfirmed> = batch
            .iter()
            .filter_map(|e| match &e.event {
                PaymentInput::Confirmed(c) => Some(c),
                PaymentInput::Verified(_) => None,
            })
            .collect();
        let settlements = self
            .store
            .settle_all(
                &confirmations
                    .iter()
                    .map(|c| Confirmation {
                        bill_reference: &c.bill_reference,
                        succeeded: c.outcome == PaymentOutcome::Succeeded,
                        amount_vnd: c.amount_vnd,
                        gateway_tx: &c.gateway_transaction_id,
                        at_ms: c.confirmed_at,
                    })
                    .collect::<Vec<_>>(),
            )
            .await
            .map_err(store_error)?;
        // A payment or a failed attempt on a dossier that ended (the withdrawal cancelled
        // its bill and said so) announces nothing after the end.
        let settled_ids: Vec<&str> = settlements
            .iter()
            .filter_map(|s| match s {
                Settlement::Paid(b) | Settlement::Failed(b) => Some(b.dossier_id.as_str()),
                _ => None,
            })
            .collect();
        let ended_after_settling = self.store.ended_among(&settled_ids).await.map_err(store_error)?;
        // Read again, last: a dossier withdrawn while its bill was stored (the withdrawal
        // cancelled the bill and said so) gets no request announced after its end.
        ended.extend(self.store.ended_among(&ids).await.map_err(store_error)?);
        let mut settled = settlements.into_iter();

        let mut out = Vec::with_capacity(batch.len());
        let mut counted = Vec::new();
        for e in batch {
            out.push(match &e.event {
                PaymentInput::Verified(_) => {
                    let ((v, at), bill) = verified_in_order
                        .next()
                        .ok_or_else(|| StageError::Fatal("fewer verified dossiers than in the batch".to_owned()))?;
                    if ended.contains(&v.dossier.dossier_id) {
                        counted.push(Counted::Ended);
                        Outcome::Emit(Vec::new())
                    } else {
                        let billed = bill.and_then(|i| billed[i].take());
                        Outcome::Emit(self.on_verified(v, *at, billed, &mut counted).await?)
                    }
                }
                PaymentInput::Confirmed(c) => {
                    let settlement = settled
                        .next()
                        .ok_or_else(|| StageError::Fatal("fewer settlements than confirmations".to_owned()))?;
                    self.on_confirmed(c, settlement, &ended_after_settling, &mut counted)?
                }
            });
        }
        self.record_failures(batch, &mut out).await?;
        // Counted once every input of the batch is done: a retried batch counts once.
        counted.iter().for_each(Counted::emit);
        Ok(out)
    }
}

impl Payment {
    /// A failed attempt's status is recorded as first announced: the gateway re-sends a
    /// confirmation under its id with other details (another time, another reason), and
    /// the status derived from it must not change with them.
    async fn record_failures(&self, batch: &[Envelope<PaymentInput>], out: &mut [Outcome]) -> Result<(), StageError> {
        let mut slots = Vec::new();
        let mut fresh = Vec::new();
        for (i, (e, o)) in batch.iter().zip(out.iter()).enumerate() {
            let (PaymentInput::Confirmed(c), Outcome::Emit(events)) = (&e.event, o) else {
                continue;
            };
            let failed = events.iter().any(|ev| match ev {
                AnyEvent::Status(s) => s.reasons.iter().any(|r| r.code == "PAYMENT_FAILED"),
                _ => false,
            });
            if failed {
                slots.push(i);
                fresh.push(motcua_runtime::stored::Decided {
                    input_id: &c.event_id,
                    dossier_id: events[0].key(),
                    events: events.clone(),
                    at_ms: c.confirmed_at,
                });
            }
        }
        let recorded = motcua_runtime::stored::decide_first(&self.store, &self.codec, STAGE, &fresh).await?;
        for (i, events) in slots.into_iter().zip(recorded) {
            out[i] = Outcome::Emit(events);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
