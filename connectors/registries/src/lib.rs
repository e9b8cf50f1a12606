//! Connectors to the national registries a dossier is verified against: population
//! (citizen ID → person), land (parcel → owners, restrictions) and business registration
//! (tax code → enterprise). One trait per registry; implementations: the national
//! data-exchange gateway over HTTP (`http`) and a PostgreSQL replica (`sql`). The
//! simulated registries live in `motcua-simulators`, outside the production crates.

pub mod any;
pub mod audit;
pub mod http;
pub mod model;
pub mod sql;
pub mod telemetry;

use std::future::Future;

pub use model::{Business, BusinessStatus, Citizen, Parcel, Sex};
/// The breaker and cache every outward connector uses (re-exported: they were born here).
pub use motcua_resilience as resilience;

/// Who asks, and for which dossier: every lookup is audited with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup<'a> {
    /// Stage and replica, e.g. `verify/verify-0`.
    pub caller: &'a str,
    pub dossier_id: &'a str,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The registry cannot answer now (timeout, 5xx, connection refused, circuit open):
    /// try again later.
    #[error("{registry} registry unavailable: {reason}")]
    Unavailable { registry: &'static str, reason: String },
    /// The registry refused the question (malformed key, not authorised): asking again
    /// will not help.
    #[error("{registry} registry refused the lookup: {reason}")]
    Refused { registry: &'static str, reason: String },
    #[error("registry database")]
    Database(#[from] sqlx::Error),
    #[error("registry migrations failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl Error {
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Unavailable { .. } => true,
            Error::Refused { .. } | Error::Migrate(_) => false,
            Error::Database(e) => !matches!(e, sqlx::Error::RowNotFound | sqlx::Error::ColumnDecode { .. }),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The national population database.
pub trait PopulationRegistry: Send + Sync {
    fn citizen(&self, lookup: &Lookup<'_>, citizen_id: &str) -> impl Future<Output = Result<Option<Citizen>>> + Send;
}

/// The land database.
pub trait LandRegistry: Send + Sync {
    fn parcel(
        &self,
        lookup: &Lookup<'_>,
        unit_code: &str,
        map_sheet: i32,
        parcel_number: i32,
    ) -> impl Future<Output = Result<Option<Parcel>>> + Send;
}

/// The business registration database.
pub trait BusinessRegistry: Send + Sync {
    fn business(&self, lookup: &Lookup<'_>, tax_code: &str) -> impl Future<Output = Result<Option<Business>>> + Send;
}
