//! How motcua is put together, shared by the `motcua` binary and the demo so both run
//! the same wiring:
//!
//! - [`config`]: the typed configuration (TOML file, then `MOTCUA_<SECTION>__<KEY>`
//!   environment variables; unknown keys refused);
//! - [`stages`]: the stage table — every stage declared once, with its inputs, timers,
//!   side services and how it is built from the configuration;
//! - [`registries`]: the registry connectors a verify worker asks, as configured;
//! - [`keys`]: the result stage's signing keys;
//! - [`schemas`]: the codec, with the compiled-in ids or a Schema Registry's;
//! - [`replay`]: rebuilding the status projection from the event log;
//! - [`operations`]: consumer lag, dead letters and parked dossiers, for operators.
//!
//! An application crate: errors are `anyhow` with context for the person reading them.

pub mod config;
pub mod health;
pub mod keys;
pub mod operations;
pub mod registries;
pub mod replay;
pub mod schemas;
pub mod stages;

pub use config::Config;
pub use stages::{stage, Launch, StageSpec, STAGES};

/// Gives every metric a worker may record its unit and description. Call once, after
/// the exporter is installed (descriptions go to the installed recorder).
pub fn describe_metrics() {
    motcua_runtime::telemetry::describe();
    motcua_registries::telemetry::describe();
    motcua_intake::telemetry::describe();
    motcua_verify::telemetry::describe();
    motcua_payment::telemetry::describe();
    motcua_route::telemetry::describe();
    motcua_result::telemetry::describe();
    motcua_track::telemetry::describe();
    motcua_portal_sync::telemetry::describe();
    motcua_outward::telemetry::describe();
}
