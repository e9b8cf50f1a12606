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

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::future::{join_all, try_join_all};
use motcua_reference::civil::now_ms;
use motcua_reference::Reference;
use motcua_registries::{BusinessRegistry, LandRegistry, Lookup, PopulationRegistry};
use motcua_runtime::stored::{self, decide_first, recorded_decisions};
use motcua_runtime::{error_chain, Envelope, Outcome, Stage, StageError, Tick};
use motcua_schemas::{
    derived_event_id, AnyEvent, CheckOutcome, Codec, DossierAccepted, DossierStatus, DossierStatusChanged,
    DossierVerified, Reason, Registry,
};
use motcua_store::{Escalation, Lot, Store, WaitRequest};
use telemetry::Decided;

pub use assess::{assess, needed, Answers, Verdict};

pub const STAGE: &str = motcua_schemas::component::VERIFY;

/// The reason code of a dossier handed to an officer.
const ESCALATED: &str = "VERIFICATION_ESCALATED";

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
            code: ESCALATED.to_owned(),
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

    fn owed_statuses(&self) -> Option<&Store> {
        Some(&self.store)
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
        let inputs: Vec<&str> = batch.iter().map(|e| e.event.event_id.as_str()).collect();
        let mut recorded = recorded_decisions(&self.store, &self.codec, STAGE, &inputs).await?;
        let looked = join_all(batch.iter().map(|e| async {
            let ended = ended.contains(&e.event.dossier.dossier_id);
            match recorded.contains_key(&e.event.event_id) || ended {
                true => None,
                false => Some(self.look_up(&e.event).await),
            }
        }))
        .await;
        // Per input: nothing (ended), a decision to record, one recorded before, parked.
        let mut announced: Vec<Option<Vec<AnyEvent>>> = Vec::with_capacity(batch.len());
        let mut fresh = Vec::new();
        let mut fresh_at = Vec::new();
        let mut apart = Vec::new();
        for (i, (e, looked)) in batch.iter().zip(looked).enumerate() {
            // Stamped with the input's first delivery; what is recorded first is announced.
            let at = e.origin.timestamp_ms.unwrap_or(e.event.received_at);
            let events = match looked {
                _ if ended.contains(&e.event.dossier.dossier_id) => {
                    // Withdrawn (or stopped) before it was verified: it goes no further.
                    apart.push(Decided::Ended);
                    announced.push(Some(Vec::new()));
                    continue;
                }
                None => {
                    announced.push(recorded.remove(&e.event.event_id));
                    continue;
                }
                Some(Looked::Answers(a)) => self.verdict_events(&e.event, assess(&e.event, &a), at),
                Some(Looked::Escalate(why)) => self.escalation_events(&e.event, &why, at),
                Some(Looked::Later(why)) => {
                    self.park(&e.event, &why).await?;
                    apart.push(Decided::Parked {
                        dossier_id: e.event.dossier.dossier_id.clone(),
                        why,
                    });
                    announced.push(Some(Vec::new()));
                    continue;
                }
            };
            if events.is_empty() {
                announced.push(Some(events));
                continue;
            }
            fresh_at.push(i);
            fresh.push(stored::Decided {
                input_id: &e.event.event_id,
                dossier_id: &e.event.dossier.dossier_id,
                events,
                at_ms: at,
            });
            announced.push(None);
        }
        // Recorded before anything it leads to: a redelivery that finds another answer
        // announces (and acts on) this one.
        for (i, events) in fresh_at
            .into_iter()
            .zip(decide_first(&self.store, &self.codec, STAGE, &fresh).await?)
        {
            announced[i] = Some(events);
        }
        let mut out = Vec::with_capacity(batch.len());
        let mut effects = Effects::default();
        let announced: Vec<Vec<AnyEvent>> = announced.into_iter().map(Option::unwrap_or_default).collect();
        for (e, events) in batch.iter().zip(&announced) {
            effects.of(self, &e.event, events)?;
        }
        let withheld = effects.apply(&self.store).await?;
        let mut decided = Vec::new();
        for mut events in announced {
            events.retain(|e| !withheld.contains(e.event_id()));
            decided.extend(events.iter().filter_map(Decided::of_event));
            out.push(Outcome::Emit(events));
        }
        // Counted once every dossier of the batch is parked or decided: a retried batch
        // counts once.
        decided.iter().chain(&apart).for_each(Decided::emit);
        Ok(out)
    }
}

impl<R: Registries> Verify<R> {
    /// How often parked dossiers are looked for (the stage's timer; default 500 ms).
    pub fn with_retry_poll(mut self, poll: Duration) -> Self {
        self.retry.poll = poll;
        self
    }

    /// Parks a dossier no registry could answer for, for the timer to try again.
    async fn park(&self, accepted: &DossierAccepted, why: &str) -> Result<(), StageError> {
        let now = now_ms();
        let payload = self
            .codec
            .encode(accepted)
            .map_err(|err| StageError::Fatal(error_chain(&err)))?;
        let next = now + self.policy.first_delay.as_millis() as i64;
        self.store
            .park(Lot::Verify, &accepted.dossier.dossier_id, &payload, now, next, why)
            .await
            .map_err(store_error)
    }

    /// The timer's round: takes the parked dossiers that are due (leased, so two replicas
    /// do not take the same), asks the registries again, and returns the outcomes of the
    /// ones decided or escalated; those still unavailable are rescheduled here. A dossier
    /// decided before (by a redelivery, or a round that crashed before removing it) gets
    /// its recorded decision, without asking the registries. Rows are removed only in
    /// [`Stage::ticked`], once the events are acknowledged: a crash in between announces
    /// the recorded decision again.
    async fn retry_parked(&self, now: i64) -> Result<Tick, StageError> {
        let due = self
            .store
            .claim_due(Lot::Verify, now, self.retry.lease.as_millis() as i64, self.retry.batch)
            .await
            .map_err(store_error)?;
        let mut tick = Tick::default();
        // Withdrawn or stopped while parked: asked about no more, unparked once acknowledged.
        let ids: Vec<&str> = due.iter().map(|p| p.dossier_id.as_str()).collect();
        let ended = self.store.ended_among(&ids).await.map_err(store_error)?;
        let mut parked = Vec::new();
        for p in due {
            if ended.contains(&p.dossier_id) {
                Decided::Ended.emit();
                tick.done.push(p.dossier_id);
                continue;
            }
            // Parked by a newer worker, perhaps with a schema version this one has not
            // seen yet: fetched from the registry (if any) first.
            let _ = self.codec.learn_writers([p.payload.as_slice()]).await;
            // A parked payload is one this stage wrote: if it no longer decodes, a person
            // must look. It stays parked (claimed again after the lease, reported each
            // time) and holds back neither the rows claimed with it nor the worker.
            match self.codec.decode::<DossierAccepted>(&p.payload) {
                Ok(accepted) => parked.push((p, accepted)),
                Err(e) => telemetry::unreadable_parked(&p.dossier_id, &e.to_string()),
            }
        }
        let inputs: Vec<&str> = parked.iter().map(|(_, a)| a.event_id.as_str()).collect();
        let mut recorded = recorded_decisions(&self.store, &self.codec, STAGE, &inputs).await?;
        let looked = join_all(parked.iter().map(|(_, accepted)| async {
            match recorded.contains_key(&accepted.event_id) {
                true => None,
                false => Some(self.look_up(accepted).await),
            }
        }))
        .await;
        let mut announced = Vec::new();
        let mut fresh = Vec::new();
        for ((p, accepted), looked) in parked.iter().zip(looked) {
            let events = match looked {
                None => {
                    announced.push((p, accepted, recorded.remove(&accepted.event_id).unwrap_or_default()));
                    continue;
                }
                Some(Looked::Answers(a)) => self.verdict_events(accepted, assess(accepted, &a), now),
                Some(Looked::Escalate(why)) => self.escalation_events(accepted, &why, now),
                Some(Looked::Later(why)) if now - p.parked_at_ms >= self.policy.escalate_after.as_millis() as i64 => {
                    self.escalation_events(accepted, &why, now)
                }
                Some(Looked::Later(why)) => {
                    let next = now + self.policy.delay(p.attempts).as_millis() as i64;
                    self.store
                        .reschedule(Lot::Verify, &p.dossier_id, next, &why)
                        .await
                        .map_err(store_error)?;
                    continue;
                }
            };
            fresh.push((
                p,
                accepted,
                stored::Decided {
                    input_id: &accepted.event_id,
                    dossier_id: &accepted.dossier.dossier_id,
                    events,
                    at_ms: now,
                },
            ));
        }
        let offered: Vec<_> = fresh.iter().map(|(_, _, d)| d.clone()).collect();
        let recorded = decide_first(&self.store, &self.codec, STAGE, &offered).await?;
        announced.extend(
            fresh
                .into_iter()
                .zip(recorded)
                .map(|((p, a, _), events)| (p, a, events)),
        );
        let mut effects = Effects::default();
        for (p, accepted, events) in announced {
            effects.of(self, accepted, &events)?;
            tick.events.extend(events);
            tick.done.push(p.dossier_id.clone());
        }
        let withheld = effects.apply(&self.store).await?;
        tick.events.retain(|e| !withheld.contains(e.event_id()));
        Ok(tick)
    }
}

/// What the announced decisions of a batch commit the stage to: the supplement waits
/// their requests open (intake sends the dossier back here once the citizen answers) and
/// the escalations an officer finds. Derived from the recorded decision, never a fresh
/// one, and idempotent: a redelivery applies them again and changes nothing.
#[derive(Default)]
struct Effects {
    waits: Vec<WaitRequest>,
    /// With the id of the status announcing each.
    escalations: Vec<(String, Escalation)>,
}

impl Effects {
    fn of<R: Registries>(
        &mut self,
        verify: &Verify<R>,
        accepted: &DossierAccepted,
        events: &[AnyEvent],
    ) -> Result<(), StageError> {
        for e in events {
            let AnyEvent::Status(s) = e else { continue };
            if s.status == DossierStatus::SupplementRequested {
                self.waits.push(WaitRequest {
                    request_event_id: s.event_id.clone(),
                    dossier_id: accepted.dossier.dossier_id.clone(),
                    dossier_code: Some(accepted.dossier_code.clone()),
                    step: STAGE.to_owned(),
                    requested_at_ms: s.occurred_at,
                    payload: verify
                        .codec
                        .encode(accepted)
                        .map_err(|err| StageError::Fatal(error_chain(&err)))?,
                });
            }
            if let Some(r) = s.reasons.iter().find(|r| r.code == ESCALATED) {
                self.escalations.push((
                    s.event_id.clone(),
                    verify.escalation_record(accepted, &r.message, s.occurred_at)?,
                ));
            }
        }
        Ok(())
    }

    /// Recorded before the events go out: a supplement can only answer a known wait; an
    /// officer finds an escalated dossier in the store. A dossier withdrawn or stopped
    /// meanwhile gets neither, and its status is withheld (nothing is announced after a
    /// dossier's end): returns the ids of the events to withhold.
    async fn apply(self, store: &Store) -> Result<HashSet<String>, StageError> {
        let recorded = store.await_supplements(&self.waits).await.map_err(store_error)?;
        let mut withheld: HashSet<String> = self
            .waits
            .iter()
            .map(|w| w.request_event_id.clone())
            .filter(|id| !recorded.contains(id))
            .collect();
        let ids: Vec<&str> = self.escalations.iter().map(|(_, e)| e.dossier_id.as_str()).collect();
        let ended = store.ended_among(&ids).await.map_err(store_error)?;
        let (gone, escalated): (Vec<_>, Vec<_>) = self
            .escalations
            .into_iter()
            .partition(|(_, e)| ended.contains(&e.dossier_id));
        withheld.extend(gone.into_iter().map(|(id, _)| id));
        let escalated: Vec<Escalation> = escalated.into_iter().map(|(_, e)| e).collect();
        store.escalate(&escalated).await.map_err(store_error)?;
        Ok(withheld)
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
