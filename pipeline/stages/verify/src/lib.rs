//! The verify stage: looks a dossier up in the national registries its procedure needs
//! (population, land, business), compares what the applicant claimed, fills in what the
//! registries know, and emits `dossier.verified` — or a "supplement requested" status
//! with reasons.
//!
//! A registry that is slow or down neither loses a dossier nor stalls the others: the
//! dossier is parked in the database (then its offset may be committed) and a
//! [`Retrier`] tries again with growing delays; past `escalate_after` it hands the
//! dossier to an officer with a status event. Every dossier ends verified, supplement
//! requested, or escalated.

mod assess;
pub mod normalize;
pub mod telemetry;

use std::sync::Arc;
use std::time::Duration;

use futures::future::{join_all, try_join_all};
use motcua_kafka::KafkaConfig;
use motcua_reference::civil::now_ms;
use motcua_reference::Reference;
use motcua_registries::{BusinessRegistry, LandRegistry, Lookup, PopulationRegistry};
use motcua_runtime::{error_chain, Envelope, Outcome, Shutdown, Stage, StageError};
use motcua_schemas::{
    derived_event_id, AnyEvent, Codec, DossierAccepted, DossierStatus, DossierStatusChanged, DossierVerified, Reason,
    Registry,
};
use motcua_store::Store;
use rdkafka::producer::FutureProducer;
use telemetry::Decided;

pub use assess::{assess, needed, Answers, Verdict};

pub const STAGE: &str = motcua_schemas::component::VERIFY;

/// Every registry the stage may ask.
pub trait Registries: PopulationRegistry + LandRegistry + BusinessRegistry + Clone + 'static {}
impl<T: PopulationRegistry + LandRegistry + BusinessRegistry + Clone + 'static> Registries for T {}

/// How parked dossiers are retried.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub first_delay: Duration,
    pub max_delay: Duration,
    /// After this long parked, the dossier is escalated to an officer.
    pub escalate_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            first_delay: Duration::from_secs(5),
            max_delay: Duration::from_secs(300),
            escalate_after: Duration::from_secs(4 * 3600),
        }
    }
}

impl RetryPolicy {
    fn delay(&self, attempts: i32) -> Duration {
        let factor = 1u32 << attempts.clamp(0, 16);
        (self.first_delay * factor).min(self.max_delay)
    }
}

/// The verify stage.
#[derive(Debug)]
pub struct Verify<R> {
    registries: R,
    reference: Arc<Reference>,
    store: Store,
    codec: Codec,
    caller: String,
    policy: RetryPolicy,
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
        }
    }

    fn checks_for(&self, accepted: &DossierAccepted) -> Vec<Registry> {
        self.reference
            .catalog
            .get(&accepted.procedure.code)
            .map(|p| p.registry_checks.clone())
            .unwrap_or_default()
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
                vec![status(accepted, DossierStatus::SupplementRequested, reasons, at)]
            }
        }
    }

    /// The status event handing a dossier to an officer for manual verification (counts
    /// nothing, like [`Verify::verdict_events`]).
    pub fn escalation_events(&self, accepted: &DossierAccepted, why: &str, at: i64) -> Vec<AnyEvent> {
        let reason = Reason {
            code: "VERIFICATION_ESCALATED".to_owned(),
            message: format!("Không tra cứu được cơ sở dữ liệu quốc gia ({why}); chuyển cán bộ xác minh thủ công"),
        };
        vec![status(accepted, DossierStatus::Processing, vec![reason], at)]
    }
}

fn status(accepted: &DossierAccepted, status: DossierStatus, reasons: Vec<Reason>, at: i64) -> AnyEvent {
    DossierStatusChanged::caused_by(accepted, STAGE, "status", status, at)
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

    async fn handle_batch(&self, batch: &[Envelope<DossierAccepted>]) -> Result<Vec<Outcome>, StageError> {
        let looked = join_all(batch.iter().map(|e| self.look_up(&e.event))).await;
        let mut out = Vec::with_capacity(batch.len());
        let mut decided = Vec::with_capacity(batch.len());
        for (e, looked) in batch.iter().zip(looked) {
            // Stamped with the input's time, so a redelivery re-emits identical events.
            let at = e.origin.timestamp_ms.unwrap_or(e.event.received_at);
            let events = match looked {
                Looked::Answers(a) => {
                    let verdict = assess(&e.event, &a);
                    decided.push(Decided::of(&verdict));
                    self.verdict_events(&e.event, verdict, at)
                }
                Looked::Escalate(why) => {
                    decided.push(Decided::Escalated);
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
                        .park(&e.event.dossier.dossier_id, &payload, now, next, &why)
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
        // Counted once every dossier of the batch is parked or decided: a retried batch
        // counts once.
        decided.iter().for_each(Decided::emit);
        Ok(out)
    }
}

/// What a retrier did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetrierSummary {
    pub decided: u64,
    pub escalated: u64,
    pub rescheduled: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("parked-dossier store")]
    Store(#[from] motcua_store::Error),
    #[error("Kafka")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("delivering events")]
    Deliver(#[from] motcua_runtime::Error),
    #[error("parked payload does not decode")]
    Decode(#[from] motcua_schemas::Error),
}

/// Retries parked dossiers: takes the due ones, asks the registries again, and delivers
/// the outcome (broker acknowledgement first, then the row is removed — a crash between
/// the two re-delivers the same event ids).
pub struct Retrier<R> {
    verify: Arc<Verify<R>>,
    producer: FutureProducer,
    kafka: KafkaConfig,
    pub poll: Duration,
    pub lease: Duration,
    pub batch: i64,
}

impl<R> std::fmt::Debug for Retrier<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Retrier").field("poll", &self.poll).finish()
    }
}

impl<R: Registries> Retrier<R> {
    pub fn new(verify: Arc<Verify<R>>, kafka: KafkaConfig, client_id: &str) -> Result<Self, Error> {
        let producer = kafka.producer_config(client_id).create()?;
        Ok(Self {
            verify,
            producer,
            kafka,
            poll: Duration::from_millis(500),
            lease: Duration::from_secs(120),
            batch: 100,
        })
    }

    /// Runs until `shutdown`; a failing store or broker is retried at the next poll.
    pub async fn run(self, mut shutdown: Shutdown) -> RetrierSummary {
        let mut summary = RetrierSummary::default();
        loop {
            tokio::select! {
                _ = shutdown.wait() => return summary,
                _ = tokio::time::sleep(self.poll) => {}
            }
            loop {
                match self.round(&mut summary).await {
                    Ok(0) => break,
                    Ok(_) if shutdown.is_triggered() => return summary,
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %error_chain(&e), "retrying parked dossiers failed; next poll tries again");
                        break;
                    }
                }
            }
        }
    }

    /// One round: returns how many parked dossiers it took.
    pub async fn round(&self, summary: &mut RetrierSummary) -> Result<usize, Error> {
        let v = &self.verify;
        let now = now_ms();
        let due = v
            .store
            .claim_due(now, self.lease.as_millis() as i64, self.batch)
            .await?;
        let taken = due.len();
        let results = join_all(due.into_iter().map(|p| async move {
            let accepted: DossierAccepted = v.codec.decode(&p.payload)?;
            let looked = v.look_up(&accepted).await;
            Ok::<_, Error>((p, accepted, looked))
        }))
        .await;
        for r in results {
            let (p, accepted, looked) = r?;
            let now = now_ms();
            let (events, decided) = match looked {
                Looked::Answers(a) => {
                    summary.decided += 1;
                    let verdict = assess(&accepted, &a);
                    let decided = Decided::of(&verdict);
                    (v.verdict_events(&accepted, verdict, now), decided)
                }
                Looked::Escalate(why) => {
                    summary.escalated += 1;
                    (v.escalation_events(&accepted, &why, now), Decided::Escalated)
                }
                Looked::Later(why) if now - p.parked_at_ms >= v.policy.escalate_after.as_millis() as i64 => {
                    summary.escalated += 1;
                    (v.escalation_events(&accepted, &why, now), Decided::Escalated)
                }
                Looked::Later(why) => {
                    summary.rescheduled += 1;
                    let next = now + v.policy.delay(p.attempts).as_millis() as i64;
                    v.store.reschedule(&p.dossier_id, next, &why).await?;
                    continue;
                }
            };
            self.deliver(&events).await?;
            v.store.unpark(&p.dossier_id).await?;
            // Final: delivered and no longer parked (a failure above decides it again).
            decided.emit();
        }
        Ok(taken)
    }

    async fn deliver(&self, events: &[AnyEvent]) -> Result<(), Error> {
        motcua_runtime::publish::deliver(&self.producer, &self.kafka, &self.verify.codec, events).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
