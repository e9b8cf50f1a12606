//! The portal-sync stage: every status change of a dossier (`dossier.status`) is pushed to
//! the National Public Service Portal in its vocabulary — national status code 1–10,
//! dossier code, time, procedure, competent agency, due time — under the status event's
//! id, which the portal files once (a resend after a lost acknowledgement is absorbed).
//!
//! Order per dossier: status events are keyed by dossier, so one partition holds a
//! dossier's changes in order; within a batch a dossier's changes go one after the other,
//! dossiers side by side. While the portal is down the batch is held (the runtime retries
//! it with backoff, offsets do not move; `portal.outage_budget_s`, an hour by default,
//! before the worker exits for its supervisor): no change is lost, none overtakes
//! another. The pushes before the failure are sent again and absorbed as duplicates.
//!
//! Statuses of a submission without a code (refused at reception before it got one) are
//! not pushed: the portal knows dossiers by code. [`reconcile`] compares what the portal
//! holds with the projection and re-sends what it lacks.

mod reconcile;
pub mod telemetry;

use std::collections::HashMap;

use futures::future::join_all;
use motcua_outward::{NationalPortal, StatusChange};
use motcua_reference::civil::now_ms;
use motcua_runtime::{Envelope, Outcome, Stage, StageError};
use motcua_schemas::DossierStatusChanged;

pub use reconcile::{reconcile, Reconciled};

pub const STAGE: &str = motcua_schemas::component::PORTAL_SYNC;

/// The portal's view of a status event (`None`: it has no dossier code, or a status code
/// outside 1–10, and is not for the portal).
pub fn change_of(s: &DossierStatusChanged) -> Option<StatusChange> {
    let code = s.dossier_code.as_ref()?;
    let status = u8::try_from(s.status_code).ok().filter(|c| (1..=10).contains(c))?;
    Some(StatusChange {
        change_id: s.event_id.clone(),
        dossier_code: code.clone(),
        status,
        changed_at_ms: s.occurred_at,
        procedure_code: s.procedure_code.clone(),
        agency_code: s.unit_code.clone(),
        due_at_ms: s.due_at,
    })
}

/// The portal-sync stage.
#[derive(Debug)]
pub struct PortalSync<P> {
    portal: P,
}

impl<P: NationalPortal> PortalSync<P> {
    pub fn new(portal: P) -> Self {
        Self { portal }
    }
}

/// What became of one change.
enum Pushed {
    Filed {
        duplicate: bool,
        lag_ms: i64,
    },
    NotForThePortal,
    /// The portal had this change id with other details; it keeps the first.
    KeptFirst,
    Refused(String),
    /// Not sent: the portal failed on this one or an earlier change of its dossier.
    Held(String),
}

impl<P: NationalPortal> Stage for PortalSync<P> {
    type Input = DossierStatusChanged;

    fn name(&self) -> &'static str {
        STAGE
    }

    async fn handle_batch(&self, batch: &[Envelope<DossierStatusChanged>]) -> Result<Vec<Outcome>, StageError> {
        // Each dossier's changes in batch order.
        let mut by_dossier: HashMap<&str, Vec<usize>> = HashMap::new();
        let mut order = Vec::new();
        for (i, e) in batch.iter().enumerate() {
            let list = by_dossier.entry(e.event.dossier_id.as_str()).or_insert_with(|| {
                order.push(e.event.dossier_id.as_str());
                Vec::new()
            });
            list.push(i);
        }
        let pushed = join_all(order.iter().map(|id| {
            let indexes = &by_dossier[id];
            async move {
                let mut out = Vec::with_capacity(indexes.len());
                let mut held: Option<String> = None;
                for &i in indexes {
                    let Some(change) = change_of(&batch[i].event) else {
                        out.push((i, Pushed::NotForThePortal));
                        continue;
                    };
                    if let Some(why) = &held {
                        out.push((i, Pushed::Held(why.clone())));
                        continue;
                    }
                    let pushed = match self.portal.push(&change).await {
                        Ok(r) => Pushed::Filed {
                            duplicate: r.duplicate,
                            lag_ms: now_ms() - change.changed_at_ms,
                        },
                        // The same change, announced again with other details (a stage
                        // that stamped a re-sent input with its own arrival time): the
                        // portal keeps the first; the change is there once.
                        Err(motcua_outward::Error::Conflict { .. }) => Pushed::KeptFirst,
                        Err(e) if e.is_retryable() => {
                            let why = e.to_string();
                            held = Some(why.clone());
                            Pushed::Held(why)
                        }
                        Err(e) => Pushed::Refused(e.to_string()),
                    };
                    out.push((i, pushed));
                }
                out
            }
        }))
        .await;
        let mut outcomes: Vec<Option<Outcome>> = vec![None; batch.len()];
        let mut unavailable = None;
        let mut counted = Vec::with_capacity(batch.len());
        for (i, p) in pushed.into_iter().flatten() {
            outcomes[i] = Some(match p {
                Pushed::Filed { duplicate, lag_ms } => {
                    counted.push(telemetry::Change::Filed { duplicate, lag_ms });
                    Outcome::Emit(Vec::new())
                }
                Pushed::NotForThePortal => {
                    counted.push(telemetry::Change::NotForThePortal);
                    Outcome::Emit(Vec::new())
                }
                Pushed::KeptFirst => {
                    counted.push(telemetry::Change::KeptFirst);
                    Outcome::Emit(Vec::new())
                }
                Pushed::Refused(why) => {
                    counted.push(telemetry::Change::Refused);
                    Outcome::DeadLetter {
                        reason_code: "PORTAL_REFUSED".to_owned(),
                        reason: why,
                    }
                }
                Pushed::Held(why) => {
                    unavailable.get_or_insert(why);
                    Outcome::Emit(Vec::new())
                }
            });
        }
        if let Some(why) = unavailable {
            // The whole batch again after a backoff: what went through is absorbed as a
            // duplicate, what did not goes in order. Counted once it all went.
            telemetry::held();
            return Err(StageError::Retryable(format!("pushing status changes: {why}")));
        }
        counted.into_iter().for_each(telemetry::Change::emit);
        Ok(outcomes
            .into_iter()
            .map(|o| o.expect("one outcome per input"))
            .collect())
    }
}

#[cfg(test)]
mod tests;
