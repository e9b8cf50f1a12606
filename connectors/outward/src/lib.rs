//! Connectors to the outside systems motcua delivers to, behind one trait each so a
//! province plugs in its own gateway:
//! - [`WalletGateway`]: files a dossier's signed result document in the applicant's
//!   e-wallet, once per idempotency key;
//! - [`NationalPortal`]: takes a dossier's status changes in the national vocabulary
//!   (status codes 1–10), once per change id, and shows what it holds.
//!
//! The HTTP implementations ([`http`]) put a timeout, jittered retries, a circuit breaker
//! and a concurrency limit around every call. The simulated systems live in
//! `motcua-simulators`, outside the production crates.

pub mod http;
pub mod telemetry;

use std::future::Future;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// The system cannot answer now (timeout, 5xx, connection refused, circuit open, a
    /// full wallet): try again later.
    #[error("{system} unavailable: {reason}")]
    Unavailable { system: &'static str, reason: String },
    /// The system refused (an unknown owner, an invalid request, a conflicting
    /// resend): asking again will not help; a person must look.
    /// The system holds another version under the same idempotency key or change id
    /// (HTTP 409): it keeps the first.
    #[error("{system} holds another version under this id: {reason}")]
    Conflict { system: &'static str, reason: String },
    #[error("{system} refused ({code}): {reason}")]
    Refused {
        system: &'static str,
        /// The system's own error code (`owner_unknown`, `invalid`, …), bounded.
        code: String,
        reason: String,
    },
}

impl Error {
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Unavailable { .. })
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One result document to file in an owner's wallet. `owner` is personal data (a citizen
/// ID or a tax code): it goes in the request, never in a log, a metric or an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalletDelivery {
    pub owner: String,
    /// The same for every attempt of the same document (dossier and document digest):
    /// the wallet files a key once.
    pub idempotency_key: String,
    pub dossier_code: String,
    pub document: Vec<u8>,
    /// SHA-256 of `document`, lowercase hex.
    pub document_sha256: String,
    /// The signed canonical record of the result and its Ed25519 signature.
    pub signed_record: String,
    pub record_signature: Vec<u8>,
}

/// The wallet's acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub receipt_id: String,
    /// The system had it already (a resend after a lost acknowledgement).
    #[serde(default)]
    pub duplicate: bool,
}

/// Citizens' e-wallets.
pub trait WalletGateway: Send + Sync + 'static {
    fn deliver(&self, delivery: &WalletDelivery) -> impl Future<Output = Result<Receipt>> + Send;
}

/// One status change of a dossier, in the portal's vocabulary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusChange {
    /// The status event's id: the portal files a change id once.
    #[serde(skip)]
    pub change_id: String,
    pub dossier_code: String,
    /// National status code: 1 registered … 10 result returned.
    pub status: u8,
    pub changed_at_ms: i64,
    pub procedure_code: Option<String>,
    /// The competent agency (unit code), once routed.
    pub agency_code: Option<String>,
    pub due_at_ms: Option<i64>,
}

/// What the portal holds of a dossier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortalRecord {
    pub dossier_code: String,
    /// Its latest status code.
    pub status: u8,
    pub changed_at_ms: i64,
    /// The ids of every change it filed.
    pub change_ids: Vec<String>,
}

/// The National Public Service Portal.
pub trait NationalPortal: Send + Sync + 'static {
    fn push(&self, change: &StatusChange) -> impl Future<Output = Result<Receipt>> + Send;
    /// The portal's record of a dossier (`None`: it has none).
    fn fetch(&self, dossier_code: &str) -> impl Future<Output = Result<Option<PortalRecord>>> + Send;
}
