//! The route stage: for each paid dossier, the competent authority (the commune-level unit
//! of its jurisdiction or the responsible provincial department), the least-loaded desk
//! serving its field there, and its legal due time on the working-day calendar. Emits
//! `dossier.routed` and the "processing" status.
//!
//! The routing tables (units, departments, desks, calendar) can be reloaded while the
//! stage runs ([`Route::reload`]: on SIGHUP or a file change); decisions in flight finish
//! on the tables they started with, the next batch uses the new ones.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use motcua_reference::Reference;
use motcua_routing::{AuthorityId, DeskId, RouteQuery, RoutingFiles, RoutingTables};
use motcua_runtime::stored::{self, decide_first, recorded_decisions};
use motcua_runtime::{error_chain, Envelope, Outcome, Stage, StageError};
use motcua_schemas::{
    derived_event_id, AnyEvent, ApplicantKind, ClockPause, DossierPaid, DossierRouted, DossierStatus,
    DossierStatusChanged, Reason,
};
use motcua_store::{Assignment, ClosureKind, Pause, Store};
use telemetry::Decided;

pub mod telemetry;

pub const STAGE: &str = motcua_schemas::component::ROUTE;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("routing tables")]
    Tables(#[from] motcua_routing::Error),
    #[error("reference data")]
    Reference(#[from] motcua_reference::Error),
    #[error("store")]
    Store(#[from] motcua_store::Error),
}

/// One generation of routing tables, with the desk loads counted against them.
#[derive(Debug)]
struct Snapshot {
    tables: RoutingTables,
    loads: Mutex<Vec<u32>>,
    generation: u64,
}

impl Snapshot {
    /// `open`: open assignments per (authority code, desk code), from the store — desk
    /// ids change between generations, codes do not.
    fn new(tables: RoutingTables, open: &[(String, String, i64)], generation: u64) -> Self {
        let loads = loads_of(&tables, open);
        Self {
            loads: Mutex::new(loads),
            tables,
            generation,
        }
    }
}

/// Desk loads from the store's open assignments per (authority code, desk code).
fn loads_of(tables: &RoutingTables, open: &[(String, String, i64)]) -> Vec<u32> {
    let mut desk_by_code: HashMap<(&str, &str), DeskId> = HashMap::new();
    for (i, authority) in tables.authorities().iter().enumerate() {
        for desk in tables.desks_of(AuthorityId::new(i as u32)) {
            if let Some(info) = tables.desk(desk) {
                desk_by_code.insert((authority.code.as_str(), info.code), desk);
            }
        }
    }
    let mut loads = vec![0u32; tables.desk_count()];
    for (authority, desk, count) in open {
        if let Some(id) = desk_by_code.get(&(authority.as_str(), desk.as_str())) {
            loads[id.index()] = (*count).clamp(0, i64::from(u32::MAX)) as u32;
        }
    }
    loads
}

/// The route stage.
#[derive(Debug)]
pub struct Route {
    reference: Arc<Reference>,
    files: RoutingFiles,
    store: Store,
    /// Encodes the routed message kept with each assignment (the back office's supplement
    /// requests resume from it).
    codec: motcua_schemas::Codec,
    current: RwLock<Arc<Snapshot>>,
    /// How often the desk loads are read from the store again (closed dossiers).
    pub load_refresh: std::time::Duration,
}

impl Route {
    /// Builds the tables from `files` (embedded data where a file is not given) and the
    /// desk loads from the store.
    pub async fn new(
        reference: Arc<Reference>,
        files: RoutingFiles,
        store: Store,
        codec: motcua_schemas::Codec,
    ) -> Result<Self, Error> {
        let tables = RoutingTables::load(&reference, &files)?;
        let open = store.desk_loads().await?;
        Ok(Self {
            current: RwLock::new(Arc::new(Snapshot::new(tables, &open, 1))),
            reference,
            files,
            store,
            codec,
            load_refresh: std::time::Duration::from_secs(60),
        })
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Rebuilds the tables from the files and swaps them in atomically. On error the old
    /// tables stay (a broken file never stops routing). Returns the new generation.
    pub async fn reload(&self) -> Result<u64, Error> {
        let tables = RoutingTables::load(&self.reference, &self.files)?;
        let open = self.store.desk_loads().await?;
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        let generation = current.generation + 1;
        *current = Arc::new(Snapshot::new(tables, &open, generation));
        telemetry::tables_reloaded(generation);
        Ok(generation)
    }

    pub fn generation(&self) -> u64 {
        self.snapshot().generation
    }

    /// Reads the desk loads from the store again: dossiers closed meanwhile (withdrawn,
    /// stopped, decided) free their desk. An assignment a concurrent batch is storing
    /// may be missed until the next refresh — a load is a balancing hint, not a ledger.
    pub async fn refresh_loads(&self) -> Result<u64, Error> {
        let open = self.store.desk_loads().await?;
        let snap = self.snapshot();
        let fresh = loads_of(&snap.tables, &open);
        let total = fresh.iter().map(|l| u64::from(*l)).sum();
        *snap.loads.lock().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(total)
    }

    /// Open assignments counted against the desks (what the least-loaded choice sees).
    pub fn open_assignments(&self) -> u64 {
        let snap = self.snapshot();
        let loads = snap.loads.lock().unwrap_or_else(|p| p.into_inner());
        loads.iter().map(|l| u64::from(*l)).sum()
    }

    pub fn files(&self) -> &RoutingFiles {
        &self.files
    }

    /// Routes one dossier against `loads` (the batch's tentative desk loads, raised by the
    /// decision); returns the assignment and its desk.
    fn decide(
        &self,
        snap: &Snapshot,
        loads: &mut [u32],
        paid: &DossierPaid,
        pauses: &[Pause],
        at: i64,
    ) -> Result<(Assignment, DeskId), motcua_routing::Error> {
        let d = &paid.dossier;
        let residence = d.applicant.residence_unit_code.as_deref();
        let query = RouteQuery {
            procedure_code: &paid.procedure.code,
            residence_unit_code: residence,
            parcel_unit_code: d.land_parcels.first().map(|p| p.unit_code.as_str()),
            head_office_unit_code: (d.applicant.kind == ApplicantKind::Business)
                .then_some(residence)
                .flatten(),
            receiving_center_code: &d.receiving_unit_code,
            // The legal clock starts at reception, not at payment.
            received_at_ms: paid.received_at,
        };
        let decision = snap.tables.route_codes(&query, loads)?;
        loads[decision.desk.index()] += 1;
        let authority = snap
            .tables
            .authority(decision.authority)
            .map(|a| a.code.clone())
            .unwrap_or_default();
        let desk = snap
            .tables
            .desk(decision.desk)
            .map(|i| i.code.to_owned())
            .unwrap_or_default();
        // The receiving center's calendar computed the due time: its pauses and version too.
        let calendar = snap.tables.calendar_of_center(&d.receiving_unit_code);
        let (due_at_ms, clock_pauses) = paused_due(calendar, decision.deadline.due_ms, pauses)?;
        Ok((
            Assignment {
                dossier_id: d.dossier_id.clone(),
                authority_code: authority,
                desk_code: desk,
                transferred: decision.transfer.is_transfer(),
                due_at_ms,
                routed_at_ms: at,
                calendar_version: Some(calendar.version().to_owned()),
                // Serializing plain records of strings and integers does not fail.
                clock_pauses: serde_json::to_string(&clock_pauses).unwrap_or_else(|_| "[]".to_owned()),
                routed: None,
            },
            decision.desk,
        ))
    }

    fn authority_name(&self, snap: &Snapshot, code: &str) -> String {
        snap.tables
            .authorities()
            .iter()
            .find(|a| a.code == code)
            .map(|a| a.name.clone())
            .unwrap_or_else(|| code.to_owned())
    }
}

/// The due time moved by each pause of the legal clock: the paused working time is given
/// back, pause by pause, so the citizen's wait does not eat the authority's time.
pub fn paused_due(
    calendar: &motcua_routing::Calendar,
    due_ms: i64,
    pauses: &[Pause],
) -> Result<(i64, Vec<ClockPause>), motcua_routing::Error> {
    let mut due = due_ms;
    let mut out = Vec::with_capacity(pauses.len());
    for p in pauses {
        let (moved, pause) = calendar.pause(due, &p.step, p.from_ms, p.to_ms)?;
        due = moved;
        out.push(pause);
    }
    Ok((due, out))
}

fn routed_events(paid: &DossierPaid, a: &Assignment, authority_name: String) -> Vec<AnyEvent> {
    let routed = DossierRouted {
        event_id: derived_event_id(&paid.event_id, STAGE, "routed"),
        causation_id: paid.event_id.clone(),
        dossier_code: paid.dossier_code.clone(),
        received_at: paid.received_at,
        procedure: paid.procedure.clone(),
        dossier: paid.dossier.clone(),
        competent_unit_code: a.authority_code.clone(),
        competent_unit_name: authority_name,
        desk: a.desk_code.clone(),
        transferred: a.transferred,
        due_at: a.due_at_ms,
        routed_at: a.routed_at_ms,
        traceparent: paid.traceparent.clone(),
        calendar_version: a.calendar_version.clone(),
        // What this stage stored; an unreadable value (not ours) reads as no pauses.
        clock_pauses: serde_json::from_str(&a.clock_pauses).unwrap_or_default(),
    };
    vec![
        routed.into(),
        status(paid, DossierStatus::Processing, Vec::new(), Some(a), a.routed_at_ms),
    ]
}

/// What becomes of one paid dossier of a batch.
enum Way {
    /// Routed: the index of its assignment.
    Routed(usize),
    /// Withdrawn or stopped elsewhere before it was routed.
    Ended,
    /// No authority or desk is found for it.
    Refused(motcua_routing::Error),
    /// Stopped on an earlier delivery: the recorded stop.
    Stopped(Vec<AnyEvent>),
}

/// The stop of a dossier no authority is found for. Stamped with its payment (a payment
/// announced again gets the same stop); its own kind, so it never shares an id with the
/// processing status of the same payment.
fn stop_event(paid: &DossierPaid, err: &motcua_routing::Error) -> DossierStatusChanged {
    let reason = Reason {
        code: err.reason_code().to_owned(),
        message: error_chain(err),
    };
    DossierStatusChanged::caused_by(paid, STAGE, "stopped", DossierStatus::ProcessingStopped, paid.paid_at)
        .with_reasons(vec![reason])
        .with_assignment(Some(paid.dossier.receiving_unit_code.clone()), None)
}

impl Route {
    /// A recorded stop closes its dossier, and is announced (again) while the closure is
    /// its own: a dossier withdrawn or ended otherwise first gets nothing.
    async fn announce_stop(&self, paid: &DossierPaid, stop: Vec<AnyEvent>) -> Result<Vec<AnyEvent>, StageError> {
        let Some(AnyEvent::Status(s)) = stop.first() else {
            return Ok(Vec::new());
        };
        let closure = self
            .store
            .close_dossier(
                &paid.dossier.dossier_id,
                ClosureKind::Stopped,
                &s.event_id,
                s.occurred_at,
            )
            .await
            .map_err(|e| StageError::from(e).context("closing an unroutable dossier"))?;
        Ok(match closure.event_id == s.event_id {
            true => stop,
            false => Vec::new(),
        })
    }
}

fn status(
    paid: &DossierPaid,
    status: DossierStatus,
    reasons: Vec<Reason>,
    a: Option<&Assignment>,
    at: i64,
) -> AnyEvent {
    DossierStatusChanged::caused_by(paid, STAGE, "status", status, at)
        .with_reasons(reasons)
        .with_assignment(
            Some(a.map_or_else(
                || paid.dossier.receiving_unit_code.clone(),
                |a| a.authority_code.clone(),
            )),
            a.map(|a| a.due_at_ms),
        )
        .into()
}

impl Stage for Route {
    type Input = DossierPaid;

    fn name(&self) -> &'static str {
        STAGE
    }

    fn owed_statuses(&self) -> Option<&Store> {
        Some(&self.store)
    }

    fn tick_interval(&self) -> Option<std::time::Duration> {
        Some(self.load_refresh)
    }

    /// Timer work: the desk loads follow the dossiers closed elsewhere.
    async fn tick(&self, _now_ms: i64) -> Result<motcua_runtime::Tick, StageError> {
        self.refresh_loads()
            .await
            .map_err(|e| StageError::Retryable(format!("refreshing desk loads: {e}")))?;
        Ok(motcua_runtime::Tick::default())
    }

    async fn handle_batch(&self, batch: &[Envelope<DossierPaid>]) -> Result<Vec<Outcome>, StageError> {
        // One generation for the whole batch, even if a reload lands meanwhile.
        let snap = self.snapshot();
        // Tentative loads for this batch: the shared ones grow only by assignments that
        // are stored new, so a retried batch or a redelivered dossier adds nothing.
        let mut loads = snap.loads.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let ids: Vec<&str> = batch.iter().map(|e| e.event.dossier.dossier_id.as_str()).collect();
        let ended = self
            .store
            .ended_among(&ids)
            .await
            .map_err(|e| StageError::from(e).context("reading dossier closures"))?;
        let pauses = self
            .store
            .clock_pauses(&ids)
            .await
            .map_err(|e| StageError::from(e).context("reading clock pauses"))?;
        let inputs: Vec<&str> = batch.iter().map(|e| e.event.event_id.as_str()).collect();
        let mut stops = recorded_decisions(&self.store, &self.codec, STAGE, &inputs).await?;
        let mut decided = Vec::with_capacity(batch.len());
        let mut assignments = Vec::new();
        let mut desks = Vec::new();
        let mut built: Vec<Option<Vec<AnyEvent>>> = Vec::new();
        for e in batch {
            let id = e.event.dossier.dossier_id.as_str();
            if let Some(stop) = stops.remove(&e.event.event_id) {
                // Stopped on an earlier delivery: that stop again, whatever the tables say now.
                decided.push(Way::Stopped(stop));
                continue;
            }
            if ended.contains(id) {
                // Withdrawn or stopped while it was paid: nobody is to work on it.
                decided.push(Way::Ended);
                continue;
            }
            let at = e.origin.timestamp_ms.unwrap_or(e.event.paid_at);
            let paused = pauses.get(id).map(Vec::as_slice).unwrap_or_default();
            match self.decide(&snap, &mut loads, &e.event, paused, at) {
                Ok((mut a, desk)) => {
                    // Built from the tentative assignment, which is what gets stored
                    // unless the dossier was routed before.
                    let events = routed_events(&e.event, &a, self.authority_name(&snap, &a.authority_code));
                    if let Some(AnyEvent::Routed(r)) = events.first() {
                        a.routed = Some(
                            self.codec
                                .encode(r)
                                .map_err(|e| StageError::Fatal(format!("encoding the routed message to keep: {e}")))?,
                        );
                    }
                    decided.push(Way::Routed(assignments.len()));
                    assignments.push(a);
                    desks.push(desk);
                    built.push(Some(events));
                }
                Err(err) => decided.push(Way::Refused(err)),
            }
        }
        // Stored first: a dossier routed before keeps its first desk and due time.
        let stored = self
            .store
            .assign(&assignments)
            .await
            .map_err(|e| StageError::from(e).context("recording routing assignments"))?;
        {
            let mut shared = snap.loads.lock().unwrap_or_else(|p| p.into_inner());
            for ((_, new), desk) in stored.iter().zip(&desks) {
                if *new {
                    shared[desk.index()] += 1;
                }
            }
        }
        let mut out = Vec::with_capacity(batch.len());
        let mut counted = Vec::with_capacity(batch.len());
        for (e, d) in batch.iter().zip(decided) {
            let events = match d {
                Way::Routed(i) => {
                    counted.push(Decided::Routed);
                    let (a, new) = &stored[i];
                    match built[i].take() {
                        Some(events) if *new => events,
                        // Routed before: what was stored then is sent again.
                        _ => routed_events(&e.event, a, self.authority_name(&snap, &a.authority_code)),
                    }
                }
                Way::Ended => {
                    counted.push(Decided::Ended);
                    Vec::new()
                }
                Way::Refused(err) => {
                    counted.push(Decided::Refused);
                    let stop = stop_event(&e.event, &err);
                    let recorded = decide_first(
                        &self.store,
                        &self.codec,
                        STAGE,
                        &[stored::Decided {
                            input_id: &e.event.event_id,
                            dossier_id: &e.event.dossier.dossier_id,
                            events: vec![stop.into()],
                            at_ms: e.event.paid_at,
                        }],
                    )
                    .await?;
                    self.announce_stop(&e.event, recorded.into_iter().flatten().collect())
                        .await?
                }
                Way::Stopped(stop) => self.announce_stop(&e.event, stop).await?,
            };
            out.push(Outcome::Emit(events));
        }
        // Counted once the assignments are stored: a retried batch counts once.
        counted.into_iter().for_each(Decided::emit);
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
