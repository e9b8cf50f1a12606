//! Citizens' e-wallets, simulated: a real HTTP server that files signed result documents
//! in their owners' wallets, as the province's e-wallet gateway does, and fails the way it
//! does — latency, errors, outages, acknowledgements lost after filing, wallets that are
//! full and owners it does not know. The stand-in for the result delivery of issue 17.
//!
//! API (JSON, `Authorization: Bearer <token>` when started with one):
//! - `PUT /v1/owners/{owner}/documents/{idempotency_key}` with a [`Delivery`]: 201
//!   `{"receipt_id": …}` when filed; 200 with the same receipt for the same key and the same
//!   document again (a retry files nothing twice); 409 `key_conflict` for the same key with
//!   another document; 422 `invalid` (bad base64, a SHA-256 that does not match);
//!   404 `owner_unknown`; 507 `wallet_full` (more than `capacity` documents).
//! - `GET /v1/owners/{owner}/documents` → every [`Filed`] document of the owner
//! - `GET /admin/faults`, `PUT /admin/faults` (a [`WalletFaults`]); `GET /admin/stats`

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::faults::{common, take, FaultDocument, FaultInjector, Faults};
use crate::http::{error, lock};

/// A result document to file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Delivery {
    pub dossier_code: String,
    /// The document the back office produced, base64 (standard alphabet, padded).
    pub document_base64: String,
    /// Its SHA-256, lowercase hex: checked on arrival.
    pub document_sha256: String,
    /// The signed canonical record of the result (RFC 8785 JSON).
    pub signed_record: String,
    /// The issuer's Ed25519 signature over `signed_record`, base64.
    pub record_signature: String,
}

/// A document as the wallet holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filed {
    pub idempotency_key: String,
    pub receipt_id: String,
    pub dossier_code: String,
    pub document_sha256: String,
    pub signed_record: String,
    pub record_signature: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "FaultDocument")]
pub struct WalletFaults {
    #[serde(flatten)]
    pub common: Faults,
    /// Share of new documents filed and then answered 503 (0.0–1.0).
    pub lost_ack_rate: f64,
    /// Documents a wallet holds at most; past it, 507 `wallet_full`.
    pub capacity: usize,
    /// Owners the wallet gateway does not know (404 `owner_unknown`).
    pub unknown_owners: HashSet<String>,
}

impl TryFrom<FaultDocument> for WalletFaults {
    type Error = String;

    fn try_from(mut doc: FaultDocument) -> Result<Self, String> {
        let d = Self::default();
        Ok(Self {
            lost_ack_rate: take(&mut doc, "lost_ack_rate")?.unwrap_or(d.lost_ack_rate),
            capacity: take(&mut doc, "capacity")?.unwrap_or(d.capacity),
            unknown_owners: take(&mut doc, "unknown_owners")?.unwrap_or(d.unknown_owners),
            common: common(doc)?,
        })
    }
}

impl Default for WalletFaults {
    fn default() -> Self {
        Self {
            common: Faults::default(),
            lost_ack_rate: 0.0,
            capacity: 1_000,
            unknown_owners: HashSet::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalletStats {
    pub filed: u64,
    pub duplicates: u64,
    pub conflicts: u64,
    pub invalid: u64,
    pub unknown_owner: u64,
    pub full: u64,
    pub faulted: u64,
    pub lost_acks: u64,
}

struct Wallets {
    faults: FaultInjector,
    extra: Mutex<WalletFaults>,
    owners: Mutex<BTreeMap<String, Vec<Filed>>>,
    filed: AtomicU64,
    duplicates: AtomicU64,
    conflicts: AtomicU64,
    invalid: AtomicU64,
    unknown_owner: AtomicU64,
    full: AtomicU64,
    lost_acks: AtomicU64,
}

type Shared = Arc<Wallets>;

/// The simulator's router (serve it with [`spawn`], or behind
/// [`crate::registries::with_bearer_token`] to require a token).
pub fn router(faults: WalletFaults, seed: u64) -> Router {
    let wallets = Arc::new(Wallets {
        faults: FaultInjector::new(faults.common.clone(), seed),
        extra: Mutex::new(faults),
        owners: Mutex::new(BTreeMap::new()),
        filed: AtomicU64::new(0),
        duplicates: AtomicU64::new(0),
        conflicts: AtomicU64::new(0),
        invalid: AtomicU64::new(0),
        unknown_owner: AtomicU64::new(0),
        full: AtomicU64::new(0),
        lost_acks: AtomicU64::new(0),
    });
    Router::new()
        .route("/v1/owners/{owner}/documents/{key}", put(file))
        .route("/v1/owners/{owner}/documents", get(documents))
        .route("/admin/faults", get(get_faults).put(put_faults))
        .route("/admin/stats", get(stats))
        .with_state(wallets)
}

/// Starts the simulator on an ephemeral localhost port; returns its base URL.
pub async fn spawn(faults: WalletFaults, seed: u64) -> std::io::Result<(String, tokio::task::JoinHandle<()>)> {
    crate::http::spawn(router(faults, seed)).await
}

async fn file(
    State(w): State<Shared>,
    Path((owner, key)): Path<(String, String)>,
    Json(d): Json<Delivery>,
) -> Response {
    if w.faults.fails().await {
        return error(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    }
    let (capacity, unknown, lost_ack_rate) = {
        let x = lock(&w.extra);
        (x.capacity, x.unknown_owners.contains(&owner), x.lost_ack_rate)
    };
    if unknown {
        w.unknown_owner.fetch_add(1, Ordering::Relaxed);
        return error(StatusCode::NOT_FOUND, "owner_unknown");
    }
    use base64::Engine as _;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(&d.document_base64)
        .ok();
    let valid = decoded.is_some_and(|doc| {
        let hex = hex::encode(sha2::Sha256::digest(&doc));
        hex == d.document_sha256
    });
    if key.is_empty() || !valid {
        w.invalid.fetch_add(1, Ordering::Relaxed);
        return error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    }
    let receipt_id = crate::http::receipt("EW", &format!("{owner}/{key}"));
    let lose_ack = w.faults.draw(0x77) < lost_ack_rate;
    {
        let mut owners = lock(&w.owners);
        let wallet = owners.entry(owner.clone()).or_default();
        if let Some(before) = wallet.iter().find(|f| f.idempotency_key == key) {
            if before.document_sha256 != d.document_sha256 || before.signed_record != d.signed_record {
                w.conflicts.fetch_add(1, Ordering::Relaxed);
                return error(StatusCode::CONFLICT, "key_conflict");
            }
            w.duplicates.fetch_add(1, Ordering::Relaxed);
            return (
                StatusCode::OK,
                Json(serde_json::json!({"receipt_id": receipt_id, "duplicate": true})),
            )
                .into_response();
        }
        if wallet.len() >= capacity {
            w.full.fetch_add(1, Ordering::Relaxed);
            return error(StatusCode::INSUFFICIENT_STORAGE, "wallet_full");
        }
        wallet.push(Filed {
            idempotency_key: key,
            receipt_id: receipt_id.clone(),
            dossier_code: d.dossier_code,
            document_sha256: d.document_sha256,
            signed_record: d.signed_record,
            record_signature: d.record_signature,
        });
        w.filed.fetch_add(1, Ordering::Relaxed);
    }
    if lose_ack {
        w.lost_acks.fetch_add(1, Ordering::Relaxed);
        return error(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    }
    (StatusCode::CREATED, Json(serde_json::json!({"receipt_id": receipt_id}))).into_response()
}

async fn documents(State(w): State<Shared>, Path(owner): Path<String>) -> Response {
    if w.faults.fails().await {
        return error(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    }
    Json(lock(&w.owners).get(&owner).cloned().unwrap_or_default()).into_response()
}

async fn get_faults(State(w): State<Shared>) -> Json<WalletFaults> {
    let mut f = lock(&w.extra).clone();
    f.common = w.faults.get();
    Json(f)
}

async fn put_faults(State(w): State<Shared>, Json(f): Json<WalletFaults>) -> Response {
    if !(0.0..=1.0).contains(&f.lost_ack_rate) {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "lost_ack_rate must be between 0 and 1",
        );
    }
    if let Err(e) = w.faults.set(f.common.clone()) {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(serde_json::json!({ "error": e })),
        )
            .into_response();
    }
    *lock(&w.extra) = f;
    StatusCode::NO_CONTENT.into_response()
}

async fn stats(State(w): State<Shared>) -> Json<WalletStats> {
    Json(WalletStats {
        filed: w.filed.load(Ordering::Relaxed),
        duplicates: w.duplicates.load(Ordering::Relaxed),
        conflicts: w.conflicts.load(Ordering::Relaxed),
        invalid: w.invalid.load(Ordering::Relaxed),
        unknown_owner: w.unknown_owner.load(Ordering::Relaxed),
        full: w.full.load(Ordering::Relaxed),
        faulted: w.faults.faulted(),
        lost_acks: w.lost_acks.load(Ordering::Relaxed),
    })
}
