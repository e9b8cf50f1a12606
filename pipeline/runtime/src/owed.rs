//! Statuses owed (see [`motcua_store::Store::owe`]): what keeps two stages' statuses of
//! one dossier in the order of their effects on `dossier.status`.
//!
//! Before the runtime produces a batch's or a tick's statuses, those that leave their
//! dossier open are recorded as owed, and those of a dossier another stage withdrew or
//! stopped first are left out (they would follow its end). Once the broker acknowledged
//! one, it is no longer owed. A stage ending a dossier waits while a status of it is
//! owed, so every status decided before an end reaches the topic before it.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use motcua_schemas::AnyEvent;
use motcua_store::{Owed, Store};
use tracing::warn;

use crate::stage::StageError;

/// The open statuses among these outputs (event id, dossier id), except those of a
/// dossier the outputs themselves end (a status among them that is not open): those come
/// before its end.
pub(crate) fn owed_in(outputs: &[&mut Vec<AnyEvent>]) -> Vec<(String, String)> {
    let ending_here: HashSet<&str> = outputs
        .iter()
        .flat_map(|o| o.iter())
        .filter_map(|e| match e {
            AnyEvent::Status(s) if !s.status.is_open() => Some(s.dossier_id.as_str()),
            _ => None,
        })
        .collect();
    outputs
        .iter()
        .flat_map(|o| o.iter())
        .filter_map(|e| {
            let id = owed_id(e)?;
            (!ending_here.contains(e.key())).then(|| (id.to_owned(), e.key().to_owned()))
        })
        .collect()
}

/// Leaves out the open statuses of the dossiers that `ended` first.
pub(crate) fn withhold(stage: &'static str, outputs: &mut [&mut Vec<AnyEvent>], ended: &HashSet<String>) {
    if ended.is_empty() {
        return;
    }
    for events in outputs.iter_mut() {
        events.retain(|e| !(owed_id(e).is_some() && ended.contains(e.key())));
    }
    crate::telemetry::statuses_after_end_withheld(stage);
}

/// The statuses a worker owes, and those acknowledged since they were last settled.
pub(crate) struct OwedStatuses {
    store: Store,
    stage: &'static str,
    /// Whether a recorded decision ends the dossier for this stage (for every stage but
    /// the one that returns the result: [`crate::Stage::speaks_after_decision`]).
    decided_ends: bool,
    acknowledged: Mutex<Vec<String>>,
    wake: tokio::sync::Notify,
}

/// The id of a status that leaves its dossier open: owed from its decision until the
/// broker acknowledged it.
pub(crate) fn owed_id(e: &AnyEvent) -> Option<&str> {
    match e {
        AnyEvent::Status(s) if s.status.is_open() => Some(&s.event_id),
        _ => None,
    }
}

impl OwedStatuses {
    pub(crate) fn new(store: Store, stage: &'static str, decided_ends: bool) -> Arc<Self> {
        Arc::new(OwedStatuses {
            store,
            stage,
            decided_ends,
            acknowledged: Mutex::new(Vec::new()),
            wake: tokio::sync::Notify::new(),
        })
    }

    pub(crate) fn stage(&self) -> &'static str {
        self.stage
    }

    /// Leaves out of each output list the open statuses of dossiers withdrawn or stopped
    /// first, and records the others as owed (the three steps below, for a tick).
    pub(crate) async fn gate(&self, outputs: &mut [&mut Vec<AnyEvent>]) -> Result<(), StageError> {
        let owed = owed_in(outputs);
        let ended = self.record(&owed).await?;
        withhold(self.stage, outputs, &ended);
        Ok(())
    }

    /// Records these statuses (event id, dossier id) as owed; returns the dossiers that
    /// ended first (withdrawn or stopped; decided, for a stage that says nothing after a
    /// decision) (their statuses are not owed: they are left out).
    pub(crate) async fn record(&self, owed: &[(String, String)]) -> Result<HashSet<String>, StageError> {
        if owed.is_empty() {
            return Ok(HashSet::new());
        }
        let owed: Vec<Owed<'_>> = owed
            .iter()
            .map(|(event_id, dossier_id)| Owed { event_id, dossier_id })
            .collect();
        self.store
            .owe(self.stage, &owed, self.decided_ends)
            .await
            .map_err(|e| StageError::from(e).context("recording the statuses it will announce"))
    }

    /// The broker acknowledged this status (called from the producer's delivery thread).
    pub(crate) fn acknowledged(&self, event_id: &str) {
        self.acknowledged
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(event_id.to_owned());
        self.wake.notify_one();
    }

    /// Settles acknowledged statuses as they come, until the task is aborted. A failed
    /// round keeps them for the next (an owed row only holds ends back meanwhile).
    pub(crate) async fn settle_forever(self: Arc<Self>) {
        loop {
            self.wake.notified().await;
            // Gathers what else is acknowledged meanwhile: one statement, not one a status.
            tokio::time::sleep(Duration::from_millis(5)).await;
            if !self.settle().await {
                tokio::time::sleep(Duration::from_secs(1)).await;
                self.wake.notify_one();
            }
        }
    }

    /// Settles what was acknowledged so far; `false` if the store did not answer.
    pub(crate) async fn settle(&self) -> bool {
        let done = std::mem::take(&mut *self.acknowledged.lock().unwrap_or_else(|p| p.into_inner()));
        if done.is_empty() {
            return true;
        }
        match self.store.announced(&done).await {
            Ok(()) => true,
            Err(e) => {
                warn!(stage = self.stage, error = %e, "could not settle acknowledged statuses; retrying");
                self.acknowledged.lock().unwrap_or_else(|p| p.into_inner()).extend(done);
                false
            }
        }
    }
}
