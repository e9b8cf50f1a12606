//! The National Public Service Portal, simulated: a real HTTP server that takes dossiers'
//! status changes in the national vocabulary (status codes 1–10), keeps each dossier's
//! record as citizens look it up there, and fails the way a remote portal does — latency,
//! errors, outages, and acknowledgements lost after the change was stored (the client
//! retries, and must not file it twice). The stand-in for the portal motcua synchronises
//! statuses to (issue 17).
//!
//! API (JSON, `Authorization: Bearer <token>` when started with one):
//! - `PUT /v1/dossiers/{code}/status-changes/{change_id}` with a [`StatusChange`]: 201
//!   `{"receipt_id": …}` when new; 200 with the same receipt when that change id was
//!   taken before with the same content (idempotent); 409 `change_conflict` when it came
//!   with other content; 422 `invalid` (status not 1–10, code mismatch, empty id).
//! - `GET /v1/dossiers/{code}` → the [`PortalRecord`] (404 `not_found`)
//! - `DELETE /admin/dossiers/{code}`: forgets a record (to test reconciliation)
//! - `GET /admin/faults`, `PUT /admin/faults` (a [`PortalFaults`]); `GET /admin/stats`
//!   ([`PortalStats`]: changes taken, duplicates absorbed, conflicts, changes that arrived
//!   older than the record's latest, faults, lost acknowledgements); `GET /admin/filed`:
//!   when each change id was filed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::faults::{common, take, FaultDocument, FaultInjector, Faults};
use crate::http::{error, lock};

/// One status change, in the portal's vocabulary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusChange {
    pub dossier_code: String,
    /// National status code: 1 registered … 10 result returned.
    pub status: u8,
    /// When the status changed (ms since the epoch).
    pub changed_at_ms: i64,
    #[serde(default)]
    pub procedure_code: Option<String>,
    /// The competent agency (unit code) once routed.
    #[serde(default)]
    pub agency_code: Option<String>,
    #[serde(default)]
    pub received_at_ms: Option<i64>,
    #[serde(default)]
    pub due_at_ms: Option<i64>,
}

/// A change as the portal filed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FiledChange {
    pub change_id: String,
    pub receipt_id: String,
    pub change: StatusChange,
    /// When the portal filed it (wall clock, ms since the epoch).
    #[serde(default)]
    pub filed_at_ms: i64,
}

/// What the portal shows of a dossier: its latest status and every change in the order
/// it arrived.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortalRecord {
    pub dossier_code: String,
    pub status: u8,
    pub changed_at_ms: i64,
    pub due_at_ms: Option<i64>,
    pub changes: Vec<FiledChange>,
}

/// The portal's faults: the common ones, and acknowledgements lost after the change was
/// stored (answered 503 although filed).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "FaultDocument")]
pub struct PortalFaults {
    #[serde(flatten)]
    pub common: Faults,
    /// Share of new changes filed and then answered 503 (0.0–1.0).
    pub lost_ack_rate: f64,
}

impl TryFrom<FaultDocument> for PortalFaults {
    type Error = String;

    fn try_from(mut doc: FaultDocument) -> Result<Self, String> {
        let lost_ack_rate = take(&mut doc, "lost_ack_rate")?.unwrap_or(0.0);
        Ok(Self {
            common: common(doc)?,
            lost_ack_rate,
        })
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortalStats {
    pub filed: u64,
    pub duplicates: u64,
    pub conflicts: u64,
    pub out_of_order: u64,
    pub faulted: u64,
    pub lost_acks: u64,
}

struct Portal {
    faults: FaultInjector,
    lost_ack_rate: Mutex<f64>,
    records: Mutex<HashMap<String, PortalRecord>>,
    filed: AtomicU64,
    duplicates: AtomicU64,
    conflicts: AtomicU64,
    out_of_order: AtomicU64,
    lost_acks: AtomicU64,
}

type Shared = Arc<Portal>;

/// The simulator's router (serve it with [`spawn`], or behind
/// [`crate::registries::with_bearer_token`] to require a token).
pub fn router(faults: PortalFaults, seed: u64) -> Router {
    let portal = Arc::new(Portal {
        faults: FaultInjector::new(faults.common, seed),
        lost_ack_rate: Mutex::new(faults.lost_ack_rate),
        records: Mutex::new(HashMap::new()),
        filed: AtomicU64::new(0),
        duplicates: AtomicU64::new(0),
        conflicts: AtomicU64::new(0),
        out_of_order: AtomicU64::new(0),
        lost_acks: AtomicU64::new(0),
    });
    Router::new()
        .route("/v1/dossiers/{code}/status-changes/{change_id}", put(file_change))
        .route("/v1/dossiers/{code}", get(record))
        .route("/admin/dossiers/{code}", delete(forget))
        .route("/admin/faults", get(get_faults).put(put_faults))
        .route("/admin/stats", get(stats))
        .route("/admin/filed", get(filed))
        .with_state(portal)
}

/// Starts the simulator on an ephemeral localhost port; returns its base URL.
pub async fn spawn(faults: PortalFaults, seed: u64) -> std::io::Result<(String, tokio::task::JoinHandle<()>)> {
    crate::http::spawn(router(faults, seed)).await
}

async fn file_change(
    State(p): State<Shared>,
    Path((code, change_id)): Path<(String, String)>,
    Json(change): Json<StatusChange>,
) -> Response {
    if p.faults.fails().await {
        return error(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    }
    if change_id.is_empty() || change.dossier_code != code || !(1..=10).contains(&change.status) {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    }
    let receipt_id = crate::http::receipt("NPSP", &change_id);
    let lose_ack = p.faults.draw(0x51) < *lock(&p.lost_ack_rate);
    {
        let mut records = lock(&p.records);
        let record = records.entry(code.clone()).or_insert_with(|| PortalRecord {
            dossier_code: code.clone(),
            ..PortalRecord::default()
        });
        if let Some(before) = record.changes.iter().find(|c| c.change_id == change_id) {
            if before.change != change {
                p.conflicts.fetch_add(1, Ordering::Relaxed);
                return error(StatusCode::CONFLICT, "change_conflict");
            }
            p.duplicates.fetch_add(1, Ordering::Relaxed);
            return (
                StatusCode::OK,
                Json(serde_json::json!({"receipt_id": receipt_id, "duplicate": true})),
            )
                .into_response();
        }
        if change.changed_at_ms < record.changed_at_ms {
            p.out_of_order.fetch_add(1, Ordering::Relaxed);
        } else {
            record.status = change.status;
            record.changed_at_ms = change.changed_at_ms;
            record.due_at_ms = change.due_at_ms.or(record.due_at_ms);
        }
        record.changes.push(FiledChange {
            change_id,
            receipt_id: receipt_id.clone(),
            change,
            filed_at_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64),
        });
        p.filed.fetch_add(1, Ordering::Relaxed);
    }
    if lose_ack {
        p.lost_acks.fetch_add(1, Ordering::Relaxed);
        return error(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    }
    (StatusCode::CREATED, Json(serde_json::json!({"receipt_id": receipt_id}))).into_response()
}

async fn record(State(p): State<Shared>, Path(code): Path<String>) -> Response {
    if p.faults.fails().await {
        return error(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    }
    match lock(&p.records).get(&code) {
        Some(r) => Json(r.clone()).into_response(),
        None => error(StatusCode::NOT_FOUND, "not_found"),
    }
}

async fn forget(State(p): State<Shared>, Path(code): Path<String>) -> StatusCode {
    match lock(&p.records).remove(&code) {
        Some(_) => StatusCode::NO_CONTENT,
        None => StatusCode::NOT_FOUND,
    }
}

async fn get_faults(State(p): State<Shared>) -> Json<PortalFaults> {
    Json(PortalFaults {
        common: p.faults.get(),
        lost_ack_rate: *lock(&p.lost_ack_rate),
    })
}

async fn put_faults(State(p): State<Shared>, Json(f): Json<PortalFaults>) -> Response {
    if !(0.0..=1.0).contains(&f.lost_ack_rate) {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "lost_ack_rate must be between 0 and 1",
        );
    }
    if let Err(e) = p.faults.set(f.common) {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(serde_json::json!({ "error": e })),
        )
            .into_response();
    }
    *lock(&p.lost_ack_rate) = f.lost_ack_rate;
    StatusCode::NO_CONTENT.into_response()
}

/// When each change was filed, by change id (how long the sync took, seen from here).
async fn filed(State(p): State<Shared>) -> Json<std::collections::BTreeMap<String, i64>> {
    Json(
        lock(&p.records)
            .values()
            .flat_map(|r| r.changes.iter().map(|c| (c.change_id.clone(), c.filed_at_ms)))
            .collect(),
    )
}

async fn stats(State(p): State<Shared>) -> Json<PortalStats> {
    Json(PortalStats {
        filed: p.filed.load(Ordering::Relaxed),
        duplicates: p.duplicates.load(Ordering::Relaxed),
        conflicts: p.conflicts.load(Ordering::Relaxed),
        out_of_order: p.out_of_order.load(Ordering::Relaxed),
        faulted: p.faults.faulted(),
        lost_acks: p.lost_acks.load(Ordering::Relaxed),
    })
}
