//! The stage itself: issue, deliver to the wallet, announce once acknowledged; park what
//! the wallet could not take and deliver it again from the stage's timer.

use std::time::Duration;

use futures::future::join_all;
use motcua_outward::{Receipt, WalletGateway};
use motcua_reference::civil::now_ms;
use motcua_resilience::ParkPolicy;
use motcua_runtime::stored::{self, decide_first, decode_events, encode_events, event_frames};
use motcua_runtime::{error_chain, Envelope, Outcome, Stage, StageError, Tick};
use motcua_schemas::{AnyEvent, Codec, DossierDecided, DossierStatus, DossierStatusChanged, Reason};
use motcua_store::{ClosureKind, Lot, Store, WalletDeliveryRecord};

use crate::{telemetry, timeliness, Issued, Issuer, RecordError, Signer25519, STAGE};

/// How undelivered results are retried, and how the timer takes them.
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    pub policy: ParkPolicy,
    /// How often parked deliveries are looked for.
    pub poll: Duration,
    /// A claimed delivery is not claimed again before this (another replica's round).
    pub lease: Duration,
    /// Most parked deliveries per round.
    pub batch: i64,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        Self {
            policy: ParkPolicy::default(),
            poll: Duration::from_millis(500),
            lease: Duration::from_secs(120),
            batch: 100,
        }
    }
}

/// The result stage (see the crate's documentation).
#[derive(Debug)]
pub struct ResultStage<W> {
    issuer: Issuer,
    wallet: W,
    /// Where each dossier's end is recorded once (a decision for a dossier withdrawn or
    /// stopped first is not delivered), undelivered results are parked, deliveries audited.
    store: Store,
    codec: Codec,
    /// Stage and replica, recorded with every delivery.
    caller: String,
    settings: DeliverySettings,
}

/// What became of one delivery attempt.
enum Delivered {
    Acknowledged(Receipt),
    /// The wallet cannot take it now: park, try again later.
    Later(String),
    /// The wallet refused it: an officer must look (it is still tried now and then).
    Refused(String),
}

impl<W: WalletGateway> ResultStage<W> {
    pub fn new(signer: Signer25519, wallet: W, store: Store, codec: Codec, caller: String) -> Self {
        Self {
            issuer: Issuer::new(signer),
            wallet,
            store,
            codec,
            caller,
            settings: DeliverySettings::default(),
        }
    }

    pub fn with_settings(mut self, settings: DeliverySettings) -> Self {
        self.settings = settings;
        self
    }

    pub fn issuer(&self) -> &Issuer {
        &self.issuer
    }

    async fn deliver(&self, issued: &Issued) -> Delivered {
        match self.wallet.deliver(&issued.delivery()).await {
            Ok(receipt) => Delivered::Acknowledged(receipt),
            Err(e) if e.is_retryable() => Delivered::Later(e.to_string()),
            Err(e) => Delivered::Refused(e.to_string()),
        }
    }

    fn audit(&self, issued: &Issued, receipt: &Receipt, at: i64) -> WalletDeliveryRecord {
        let c = &issued.completed;
        WalletDeliveryRecord {
            idempotency_key: issued.idempotency_key(),
            dossier_id: c.dossier_id.clone(),
            dossier_code: c.dossier_code.clone(),
            document_ref: c.result_document.reference.clone(),
            document_sha256: c.result_document.sha256.clone(),
            receipt_id: receipt.receipt_id.clone(),
            delivered_by: self.caller.clone(),
            delivered_at_ms: at,
            duplicate_ack: receipt.duplicate,
        }
    }

    /// The status telling officers the result could not be delivered (the dossier stays
    /// decided, status 9, with the reason; the timer keeps trying).
    fn escalation(d: &DossierDecided, why: &str, at: i64) -> AnyEvent {
        let reason = Reason {
            code: "RESULT_DELIVERY_ESCALATED".to_owned(),
            message: format!(
                "Không chuyển được kết quả vào ví điện tử của người nộp ({why}); cán bộ trả kết quả theo cách khác"
            ),
        };
        DossierStatusChanged::caused_by(d, STAGE, "delivery-escalated", DossierStatus::Completed, at)
            .with_reasons(vec![reason])
            .into()
    }

    /// The escalation of `d`, recorded the first time it is decided: announced again (a
    /// redelivery while the wallet still refuses, a round repeated after a crash) it is
    /// that first one, whatever the wallet says or the clock reads by then.
    async fn escalate(&self, d: &DossierDecided, why: &str, at: i64) -> Result<Vec<AnyEvent>, StageError> {
        let event = Self::escalation(d, why, at);
        let key = event.event_id().to_owned();
        let decided = stored::Decided {
            input_id: &key,
            dossier_id: &d.dossier_id,
            events: vec![event],
            at_ms: at,
        };
        let recorded = decide_first(&self.store, &self.codec, STAGE, &[decided]).await?;
        Ok(recorded.into_iter().flatten().collect())
    }

    fn encode(&self, d: &DossierDecided) -> Result<Vec<u8>, StageError> {
        self.codec.encode(d).map_err(|err| StageError::Fatal(error_chain(&err)))
    }
}

fn store_error(e: motcua_store::Error) -> StageError {
    StageError::from(e).context("recording result deliveries")
}

fn unsignable(err: &RecordError) -> Outcome {
    Outcome::DeadLetter {
        reason_code: "UNSIGNABLE_RESULT".to_owned(),
        reason: err.to_string(),
    }
}

/// `tick.done` entries: a delivery to unpark, or an escalation to mark.
const DONE_DELIVERED: &str = "delivered:";
const DONE_ESCALATED: &str = "escalated:";

impl<W: WalletGateway> Stage for ResultStage<W> {
    type Input = DossierDecided;

    fn name(&self) -> &'static str {
        STAGE
    }

    fn owed_statuses(&self) -> Option<&Store> {
        Some(&self.store)
    }

    fn speaks_after_decision(&self) -> bool {
        true
    }

    fn tick_interval(&self) -> Option<Duration> {
        Some(self.settings.poll)
    }

    async fn tick(&self, now: i64) -> Result<Tick, StageError> {
        self.retry_parked(now).await
    }

    async fn ticked(&self, tick: &Tick) -> Result<(), StageError> {
        for done in &tick.done {
            if let Some(id) = done.strip_prefix(DONE_DELIVERED) {
                self.store.unpark(Lot::Result, id).await.map_err(store_error)?;
            } else if let Some(id) = done.strip_prefix(DONE_ESCALATED) {
                self.store
                    .mark_escalated(Lot::Result, id, now_ms())
                    .await
                    .map_err(store_error)?;
            }
        }
        Ok(())
    }

    async fn handle_batch(&self, batch: &[Envelope<DossierDecided>]) -> Result<Vec<Outcome>, StageError> {
        // The decision ends the dossier unless a withdrawal or a stop came first (one row
        // per dossier decides the race); a redelivered decision finds its own row.
        let mut ended_first = Vec::with_capacity(batch.len());
        for e in batch {
            let closure = self
                .store
                .close_dossier(
                    &e.event.dossier_id,
                    ClosureKind::Decided,
                    &e.event.event_id,
                    e.event.decided_at,
                )
                .await
                .map_err(|err| StageError::from(err).context("recording the decision"))?;
            ended_first.push(closure.kind != ClosureKind::Decided);
        }
        // Signed at the decision's time: the same decision, however often it is sent
        // again (a redelivery, a back office re-sending it), issues the same record, which
        // the wallet recognises by its idempotency key.
        let issued: Vec<Option<Result<Issued, RecordError>>> = batch
            .iter()
            .zip(&ended_first)
            .map(|(e, ended)| (!ended).then(|| self.issuer.issue(&e.event, e.event.decided_at)))
            .collect();
        let delivered = join_all(issued.iter().map(|i| async move {
            match i {
                Some(Ok(issued)) => Some(self.deliver(issued).await),
                _ => None,
            }
        }))
        .await;

        let mut out = Vec::with_capacity(batch.len());
        // Acknowledged deliveries, announced once their audit says when the document was
        // first acknowledged (the same time however often the decision comes).
        let mut audits = Vec::new();
        let mut acknowledged: Vec<(usize, Issued)> = Vec::new();
        let mut counted = Vec::new();
        for ((e, issued), delivered) in batch.iter().zip(issued).zip(delivered) {
            let (issued, delivered) = match (issued, delivered) {
                (None, _) => {
                    telemetry::decision_after_end();
                    out.push(Outcome::Emit(Vec::new()));
                    continue;
                }
                (Some(Err(err)), _) => {
                    out.push(unsignable(&err));
                    continue;
                }
                (Some(Ok(issued)), Some(d)) => (issued, d),
                (Some(Ok(_)), None) => unreachable!("every issued result is delivered"),
            };
            // Audited at the input's time; announced at the first acknowledgement's.
            let arrived_at = e
                .origin
                .timestamp_ms
                .unwrap_or(e.event.decided_at)
                .max(e.event.decided_at);
            match delivered {
                Delivered::Acknowledged(receipt) => {
                    audits.push(self.audit(&issued, &receipt, arrived_at));
                    counted.push((telemetry::Delivery::of(&receipt), Some(e)));
                    acknowledged.push((out.len(), issued));
                    out.push(Outcome::Emit(Vec::new()));
                }
                Delivered::Later(why) => {
                    self.park(e, arrived_at, &why).await?;
                    counted.push((telemetry::Delivery::Parked, None));
                    out.push(Outcome::Emit(Vec::new()));
                }
                Delivered::Refused(why) => {
                    // Announced at once (the same event id on a redelivery); kept parked,
                    // so the delivery goes through if the wallet comes to accept it.
                    self.park(e, arrived_at, &why).await?;
                    self.store
                        .mark_escalated(Lot::Result, &e.event.dossier_id, now_ms())
                        .await
                        .map_err(store_error)?;
                    counted.push((telemetry::Delivery::Refused, None));
                    out.push(Outcome::Emit(self.escalate(&e.event, &why, arrived_at).await?));
                }
            }
        }
        // The audit is durable before the announcements go out.
        let firsts = self
            .store
            .record_wallet_deliveries(&audits)
            .await
            .map_err(store_error)?;
        for ((slot, issued), (first_at, first_receipt)) in acknowledged.into_iter().zip(firsts) {
            out[slot] = Outcome::Emit(issued.delivered(&first_receipt, first_at));
        }
        for (delivery, e) in counted {
            delivery.emit();
            if let Some(e) = e {
                telemetry::dossier_completed(timeliness(e.event.decided_at, e.event.due_at));
            }
        }
        Ok(out)
    }
}

impl<W: WalletGateway> ResultStage<W> {
    /// Parks an undelivered result since the decision arrived (the escalation age counts
    /// from then; a redelivery keeps the first park).
    async fn park(&self, e: &Envelope<DossierDecided>, arrived_at: i64, why: &str) -> Result<(), StageError> {
        let next = now_ms() + self.settings.policy.first_delay.as_millis() as i64;
        self.store
            .park(
                Lot::Result,
                &e.event.dossier_id,
                &self.encode(&e.event)?,
                arrived_at,
                next,
                why,
            )
            .await
            .map_err(store_error)
    }

    /// The timer's round: takes the parked results that are due (leased, so two replicas
    /// do not take the same) and delivers them again. A delivered one's events are stored
    /// with the row before they are produced, and the row is removed in
    /// [`Stage::ticked`] once they are acknowledged: a crash in between re-emits them
    /// byte for byte.
    async fn retry_parked(&self, now: i64) -> Result<Tick, StageError> {
        let s = &self.settings;
        let due = self
            .store
            .claim_due(Lot::Result, now, s.lease.as_millis() as i64, s.batch)
            .await
            .map_err(store_error)?;
        let mut tick = Tick::default();
        let (decided, undelivered): (Vec<_>, Vec<_>) = due.into_iter().partition(|p| p.decision.is_some());
        for p in decided {
            let stored = p.decision.as_deref().unwrap_or_default();
            let _ = self.codec.learn_writers(event_frames(stored)).await;
            tick.events.extend(decode_events(&self.codec, stored).map_err(|e| {
                StageError::Fatal(format!(
                    "the stored delivery of dossier {} does not decode: {e}",
                    p.dossier_id
                ))
            })?);
            tick.done.push(format!("{DONE_DELIVERED}{}", p.dossier_id));
        }
        let attempts = join_all(undelivered.into_iter().map(|p| async move {
            let _ = self.codec.learn_writers([p.payload.as_slice()]).await;
            let decided: Option<DossierDecided> = self.codec.decode(&p.payload).ok();
            let issued = decided.as_ref().map(|d| self.issuer.issue(d, d.decided_at));
            let delivered = match &issued {
                Some(Ok(i)) => Some(self.deliver(i).await),
                _ => None,
            };
            (p, decided, issued, delivered)
        }))
        .await;
        for (p, decided, issued, delivered) in attempts {
            let (Some(d), Some(Ok(issued)), Some(delivered)) = (decided, issued, delivered) else {
                // A parked payload is one this stage wrote and signed before: if it no
                // longer decodes or signs, a person must look. It stays parked (claimed
                // again after the lease, reported each time) and holds back neither the
                // rows claimed with it nor the worker.
                telemetry::unreadable_parked(&p.dossier_id);
                continue;
            };
            match delivered {
                Delivered::Acknowledged(receipt) => {
                    let (first_at, first_receipt) = self
                        .store
                        .record_wallet_deliveries(&[self.audit(&issued, &receipt, now)])
                        .await
                        .map_err(store_error)?
                        .pop()
                        .unwrap_or((now, receipt.receipt_id));
                    let events = issued.clone().delivered(&first_receipt, first_at);
                    let stored = self
                        .store
                        .decide(Lot::Result, &p.dossier_id, &encode_events(&self.codec, &events)?)
                        .await
                        .map_err(store_error)?;
                    tick.events.extend(
                        decode_events(&self.codec, &stored)
                            .map_err(|e| StageError::Fatal(format!("a stored delivery does not decode: {e}")))?,
                    );
                    tick.done.push(format!("{DONE_DELIVERED}{}", p.dossier_id));
                    telemetry::Delivery::AfterParking.emit();
                    telemetry::dossier_completed(timeliness(d.decided_at, d.due_at));
                }
                Delivered::Later(why) | Delivered::Refused(why) => {
                    let next = now + s.policy.delay(p.attempts).as_millis() as i64;
                    self.store
                        .reschedule(Lot::Result, &p.dossier_id, next, &why)
                        .await
                        .map_err(store_error)?;
                    let overdue = now - p.parked_at_ms >= s.policy.escalate_after.as_millis() as i64;
                    if p.escalated_at_ms.is_none() && overdue {
                        tick.events.extend(self.escalate(&d, &why, now).await?);
                        tick.done.push(format!("{DONE_ESCALATED}{}", p.dossier_id));
                        telemetry::Delivery::Escalated.emit();
                    }
                }
            }
        }
        Ok(tick)
    }
}
