//! The verify stage: looks a dossier up in the national registries its procedure needs
//! (population, land, business), compares what the applicant claimed, fills in what the
//! registries know, and emits `dossier.verified` — or a "supplement requested" status
//! with reasons.
//!
//! A registry that is slow or down neither loses a dossier nor stalls the others: the
//! dossier is parked in the database (then its offset may be committed) and the stage's
//! timer ([`Stage::tick`], run by the runtime) tries again with growing delays; past `escalate_after` it hands the
//! dossier to an officer with a status event. Every dossier ends verified, supplement
//! requested, or escalated.

mod assess;
pub mod normalize;
pub mod telemetry;

use std::sync::Arc;
use std::time::Duration;

use futures::future::{join_all, try_join_all};
use motcua_reference::civil::now_ms;
use motcua_reference::Reference;
use motcua_registries::{BusinessRegistry, LandRegistry, Lookup, PopulationRegistry};
use motcua_runtime::stored::{decode_events, encode_events, event_frames};
use motcua_runtime::{error_chain, Envelope, Outcome, Stage, StageError, Tick};
use motcua_schemas::{
    derived_event_id, AnyEvent, CheckOutcome, Codec, DossierAccepted, DossierStatus, DossierStatusChanged,
    DossierVerified, Reason, Registry,
};
use motcua_store::{Escalation, Lot, Store, WaitRequest};
use telemetry::Decided;

pub use assess::{assess, needed, Answers, Verdict};

pub const STAGE: &str = motcua_schemas::component::VERIFY;

/// Every registry the stage may ask.
pub trait Registries: PopulationRegistry + LandRegistry + BusinessRegistry + Clone + 'static {}
impl<T: PopulationRegistry + LandRegistry + BusinessRegistry + Clone + 'static> Registries for T {}

/// How parked dossiers are retried (the policy every parking stage uses).
pub type RetryPolicy = motcua_resilience::ParkPolicy;

/// The verify stage.
#[derive(Debug)]
pub struct Verify<R> {
    registries: R,
    reference: Arc<Reference>,
    store: Store,
    codec: Codec,
    caller: String,
    policy: RetryPolicy,
    retry: RetrySettings,
}

enum Looked {
    Answers(Answers),
    /// Try later: the registry is unavailable.
    Later(String),
    /// Asking again will not help: an officer must verify by hand.
    Escalate(String),
}

impl<R: Registries> Verify<R> {
    pub fn new(
        registries: R,
        reference: Arc<Reference>,
        store: Store,
        codec: Codec,
        caller: String,
        policy: RetryPolicy,
    ) -> Self {
        Self {
            registries,
            reference,
            store,
            codec,
            caller,
            policy,
            retry: RetrySettings::default(),
        }
    }

    fn checks_for(&self, accepted: &DossierAccepted) -> Vec<Registry> {
        registry_checks(&self.reference, accepted)
    }

    async fn look_up(&self, accepted: &DossierAccepted) -> Looked {
        let (citizen, parcels, taxes) = needed(accepted, &self.checks_for(accepted));
        let lookup = Lookup {
            caller: &self.caller,
            dossier_id: &accepted.dossier.dossier_id,
        };
        let reg = &self.registries;
        let citizen_f = async {
            match &citizen {
                Some(id) => Ok(Some((id.clone(), reg.citizen(&lookup, id).await?))),
                None => Ok(None),
            }
        };
        let parcels_f = try_join_all(parcels.iter().map(|p| {
            let lookup = &lookup;
            async move {
                Ok::<_, motcua_registries::Error>((
                    p.clone(),
                    reg.parcel(lookup, &p.unit_code, p.map_sheet, p.parcel_number).await?,
                ))
            }
        }));
        let taxes_f = try_join_all(taxes.iter().map(|t| {
            let lookup = &lookup;
            async move { Ok::<_, motcua_registries::Error>((t.clone(), reg.business(lookup, t).await?)) }
        }));
        match futures::try_join!(citizen_f, parcels_f, taxes_f) {
            Ok((citizen, parcels, businesses)) => Looked::Answers(Answers {
                citizen,
                parcels,
                businesses,
            }),
            Err(e) if e.is_retryable() => Looked::Later(error_chain(&e)),
            Err(e) => Looked::Escalate(error_chain(&e)),
        }
    }

    /// The events of a decided dossier, stamped `at`. Counts nothing: the caller counts
    /// once the outcome is final ([`Decided`]).
    pub fn verdict_events(&self, accepted: &DossierAccepted, verdict: Verdict, at: i64) -> Vec<AnyEvent> {
        match verdict {
            Verdict::Verified { dossier, checks } => {
                vec![DossierVerified {
                    event_id: derived_event_id(&accepted.event_id, STAGE, "verified"),
                    causation_id: accepted.event_id.clone(),
                    dossier_code: accepted.dossier_code.clone(),
                    received_at: accepted.received_at,
                    procedure: accepted.procedure.clone(),
                    dossier: *dossier,
                    checks,
                    verified_at: at,
                    traceparent: accepted.traceparent.clone(),
                }
                .into()]
            }
            Verdict::Supplement { reasons, .. } => {
                vec![status(
                    accepted,
                    "supplement",
                    DossierStatus::SupplementRequested,
                    reasons,
                    at,
                )]
            }
        }
    }

    /// The record of an escalation, kept until an officer verifies the dossier by hand.
    fn escalation_record(&self, accepted: &DossierAccepted, why: &str, at: i64) -> Result<Escalation, StageError> {
        Ok(Escalation {
            dossier_id: accepted.dossier.dossier_id.clone(),
            dossier_code: accepted.dossier_code.clone(),
            payload: self
                .codec
                .encode(accepted)
                .map_err(|err| StageError::Fatal(error_chain(&err)))?,
            escalated_at_ms: at,
            reason: why.to_owned(),
            verified_by: None,
            verified_at_ms: None,
            note: None,
        })
    }

    /// The status event handing a dossier to an officer for manual verification (counts
    /// nothing, like [`Verify::verdict_events`]).
    pub fn escalation_events(&self, accepted: &DossierAccepted, why: &str, at: i64) -> Vec<AnyEvent> {
        let reason = Reason {
            code: "VERIFICATION_ESCALATED".to_owned(),
            message: format!("Không tra cứu được cơ sở dữ liệu quốc gia ({why}); chuyển cán bộ xác minh thủ công"),
        };
        vec![status(
            accepted,
            "escalated",
            DossierStatus::Processing,
            vec![reason],
            at,
        )]
    }
}

/// An officer's manual verification of an escalated dossier (`motcua dossiers
/// verify`): the dossier goes on as verified, each lookup its procedure needs marked
/// SKIPPED with detail VERIFIED_MANUALLY (no registry answered; the officer, time and
/// note are in the store's escalation record).
pub fn manual_verification(reference: &Reference, accepted: &DossierAccepted, at: i64) -> DossierVerified {
    let (citizen, parcels, taxes) = needed(accepted, &registry_checks(reference, accepted));
    let manual = || Some("VERIFIED_MANUALLY".to_owned());
    let mut checks = Vec::new();
    if let Some(id) = &citizen {
        checks.push(assess::check(Registry::Population, id, CheckOutcome::Skipped, manual()));
    }
    for p in &parcels {
        checks.push(assess::check(
            Registry::Land,
            &assess::parcel_subject(p),
            CheckOutcome::Skipped,
            manual(),
        ));
    }
    for t in &taxes {
        checks.push(assess::check(Registry::Business, t, CheckOutcome::Skipped, manual()));
    }
    DossierVerified {
        event_id: derived_event_id(&accepted.event_id, STAGE, "verified-by-hand"),
        causation_id: accepted.event_id.clone(),
        dossier_code: accepted.dossier_code.clone(),
        received_at: accepted.received_at,
        procedure: accepted.procedure.clone(),
        dossier: accepted.dossier.clone(),
        checks,
        verified_at: at,
        traceparent: accepted.traceparent.clone(),
    }
}

/// The registries a dossier's procedure consults.
fn registry_checks(reference: &Reference, accepted: &DossierAccepted) -> Vec<Registry> {
    reference
        .catalog
        .get(&accepted.procedure.code)
        .map(|p| p.registry_checks.clone())
        .unwrap_or_default()
}

/// A status event of `kind`: a supplement request and an escalation of the same dossier
/// (one after a redelivery, the other from the retrier) are different events with
/// different ids, so neither is taken for a duplicate of the other.
fn status(accepted: &DossierAccepted, kind: &str, status: DossierStatus, reasons: Vec<Reason>, at: i64) -> AnyEvent {
    DossierStatusChanged::caused_by(accepted, STAGE, kind, status, at)
        .with_reasons(reasons)
        .into()
}

fn store_error(e: motcua_store::Error) -> StageError {
    StageError::from(e).context("parking dossiers")
}

impl<R: Registries> Stage for Verify<R> {
    type Input = DossierAccepted;

    fn name(&self) -> &'static str {
        STAGE
    }

    fn tick_interval(&self) -> Option<Duration> {
        Some(self.retry.poll)
    }

    async fn tick(&self, now_ms: i64) -> Result<Tick, StageError> {
        self.retry_parked(now_ms).await
    }

    async fn ticked(&self, tick: &Tick) -> Result<(), StageError> {
        for dossier_id in &tick.done {
            self.store.unpark(Lot::Verify, dossier_id).await.map_err(store_error)?;
        }
        // Final: delivered and no longer parked (a failure above decides them again).
        tick.events.iter().filter_map(Decided::of_event).for_each(|d| d.emit());
        Ok(())
    }

    async fn handle_batch(&self, batch: &[Envelope<DossierAccepted>]) -> Result<Vec<Outcome>, StageError> {
        let ids: Vec<&str> = batch.iter().map(|e| e.event.dossier.dossier_id.as_str()).collect();
        let ended = self.store.ended_among(&ids).await.map_err(store_error)?;
        let looked = join_all(batch.iter().map(|e| async {
            if ended.contains(&e.event.dossier.dossier_id) {
                None
            } else {
                Some(self.look_up(&e.event).await)
            }
        }))
        .await;
        let mut out = Vec::with_capacity(batch.len());
        let mut decided = Vec::with_capacity(batch.len());
        let mut waits = Vec::new();
        let mut escalations = Vec::new();
        for (e, looked) in batch.iter().zip(looked) {
            let Some(looked) = looked else {
                // Withdrawn (or stopped) before it was verified: it goes no further.
                decided.push(Decided::Ended);
                out.push(Outcome::Emit(Vec::new()));
                continue;
            };
            // Stamped with the input's time, so a redelivery re-emits identical events.
            let at = e.origin.timestamp_ms.unwrap_or(e.event.received_at);
            let events = match looked {
                Looked::Answers(a) => {
                    let verdict = assess(&e.event, &a);
                    decided.push(Decided::of(&verdict));
                    let events = self.verdict_events(&e.event, verdict, at);
                    waits.extend(self.waits_for(&e.event, &events)?);
                    events
                }
                Looked::Escalate(why) => {
                    decided.push(Decided::Escalated);
                    escalations.push(self.escalation_record(&e.event, &why, at)?);
                    self.escalation_events(&e.event, &why, at)
                }
                Looked::Later(why) => {
                    let now = now_ms();
                    let payload = self
                        .codec
                        .encode(&e.event)
                        .map_err(|err| StageError::Fatal(error_chain(&err)))?;
                    let next = now + self.policy.first_delay.as_millis() as i64;
                    self.store
                        .park(Lot::Verify, &e.event.dossier.dossier_id, &payload, now, next, &why)
                        .await
                        .map_err(store_error)?;
                    decided.push(Decided::Parked {
                        dossier_id: e.event.dossier.dossier_id.clone(),
                        why,
                    });
                    Vec::new()
                }
            };
            out.push(Outcome::Emit(events));
        }
        // Recorded before the requests go out: a supplement can only answer a known wait;
        // an officer finds an escalated dossier in the store.
        self.store.await_supplements(&waits).await.map_err(store_error)?;
        self.store.escalate(&escalations).await.map_err(store_error)?;
        // Counted once every dossier of the batch is parked or decided: a retried batch
        // counts once.
        decided.iter().for_each(Decided::emit);
        Ok(out)
    }
}

impl<R: Registries> Verify<R> {
    /// The supplement waits `events` open: one per "supplement requested" status, with
    /// the dossier as accepted, which intake sends back here once the citizen answers.
    fn waits_for(&self, accepted: &DossierAccepted, events: &[AnyEvent]) -> Result<Vec<WaitRequest>, StageError> {
        let mut waits = Vec::new();
        for e in events {
            if let AnyEvent::Status(s) = e {
                if s.status == DossierStatus::SupplementRequested {
                    waits.push(WaitRequest {
                        request_event_id: s.event_id.clone(),
                        dossier_id: accepted.dossier.dossier_id.clone(),
                        dossier_code: Some(accepted.dossier_code.clone()),
                        step: STAGE.to_owned(),
                        requested_at_ms: s.occurred_at,
                        payload: self
                            .codec
                            .encode(accepted)
                            .map_err(|err| StageError::Fatal(error_chain(&err)))?,
                    });
                }
            }
        }
        Ok(waits)
    }

    /// How often parked dossiers are looked for (the stage's timer; default 500 ms).
    pub fn with_retry_poll(mut self, poll: Duration) -> Self {
        self.retry.poll = poll;
        self
    }

    /// The timer's round: takes the parked dossiers that are due (leased, so two replicas
    /// do not take the same), asks the registries again, and returns the outcomes of the
    /// ones decided or escalated; those still unavailable are rescheduled here. Their rows
    /// are removed only in [`Stage::ticked`], once the events are acknowledged: a crash in
    /// between decides them again.
    async fn retry_parked(&self, now: i64) -> Result<Tick, StageError> {
        let due = self
            .store
            .claim_due(Lot::Verify, now, self.retry.lease.as_millis() as i64, self.retry.batch)
            .await
            .map_err(store_error)?;
        // Decided before (a crash came between producing and removing the row): the same
        // events again, byte for byte, without asking the registries.
        let (decided, undecided): (Vec<_>, Vec<_>) = due.into_iter().partition(|p| p.decision.is_some());
        let mut tick = Tick::default();
        for p in decided {
            let stored = p.decision.as_deref().unwrap_or_default();
            // Stored by a newer worker, perhaps with versions this one has not seen.
            let _ = self.codec.learn_writers(event_frames(stored)).await;
            tick.events.extend(decode_events(&self.codec, stored).map_err(|e| {
                StageError::Fatal(format!(
                    "the stored decision of dossier {} does not decode: {e}",
                    p.dossier_id
                ))
            })?);
            tick.done.push(p.dossier_id);
        }
        // Withdrawn or stopped while parked: asked about no more, unparked once acknowledged.
        let ids: Vec<&str> = undecided.iter().map(|p| p.dossier_id.as_str()).collect();
        let ended = self.store.ended_among(&ids).await.map_err(store_error)?;
        let (gone, undecided): (Vec<_>, Vec<_>) = undecided.into_iter().partition(|p| ended.contains(&p.dossier_id));
        for p in gone {
            Decided::Ended.emit();
            tick.done.push(p.dossier_id);
        }
        let looked = join_all(undecided.into_iter().map(|p| async move {
            // Parked by a newer worker, perhaps with a schema version this one has not
            // seen yet: fetched from the registry (if any) first.
            let _ = self.codec.learn_writers([p.payload.as_slice()]).await;
            let accepted: Result<DossierAccepted, _> = self.codec.decode(&p.payload);
            let looked = match &accepted {
                Ok(a) => Some(self.look_up(a).await),
                Err(_) => None,
            };
            (p, accepted, looked)
        }))
        .await;
        for (p, accepted, looked) in looked {
            let (Ok(accepted), Some(looked)) = (accepted, looked) else {
                // A parked payload is one this stage wrote: if it no longer decodes, a
                // person must look (it stays parked and is reported each round).
                return Err(StageError::Fatal(format!(
                    "the parked payload of dossier {} does not decode",
                    p.dossier_id
                )));
            };
            let events = match looked {
                Looked::Answers(a) => self.verdict_events(&accepted, assess(&accepted, &a), now),
                Looked::Escalate(why) => {
                    let record = self.escalation_record(&accepted, &why, now)?;
                    self.store.escalate(&[record]).await.map_err(store_error)?;
                    self.escalation_events(&accepted, &why, now)
                }
                Looked::Later(why) if now - p.parked_at_ms >= self.policy.escalate_after.as_millis() as i64 => {
                    let record = self.escalation_record(&accepted, &why, now)?;
                    self.store.escalate(&[record]).await.map_err(store_error)?;
                    self.escalation_events(&accepted, &why, now)
                }
                Looked::Later(why) => {
                    let next = now + self.policy.delay(p.attempts).as_millis() as i64;
                    self.store
                        .reschedule(Lot::Verify, &p.dossier_id, next, &why)
                        .await
                        .map_err(store_error)?;
                    continue;
                }
            };
            self.store
                .await_supplements(&self.waits_for(&accepted, &events)?)
                .await
                .map_err(store_error)?;
            // Stored before it is produced; what is stored is what goes out.
            let decision = encode_events(&self.codec, &events)?;
            let stored = self
                .store
                .decide(Lot::Verify, &p.dossier_id, &decision)
                .await
                .map_err(store_error)?;
            let events = decode_events(&self.codec, &stored)
                .map_err(|e| StageError::Fatal(format!("a stored decision does not decode: {e}")))?;
            tick.events.extend(events);
            tick.done.push(p.dossier_id);
        }
        Ok(tick)
    }
}

/// How the stage's timer takes parked dossiers.
#[derive(Debug, Clone)]
struct RetrySettings {
    poll: Duration,
    /// A claimed dossier is not claimed again before this (another replica's round).
    lease: Duration,
    /// Most parked dossiers per round.
    batch: i64,
}

impl Default for RetrySettings {
    fn default() -> Self {
        Self {
            poll: Duration::from_millis(500),
            lease: Duration::from_secs(120),
            batch: 100,
        }
    }
}

#[cfg(test)]
mod tests;
