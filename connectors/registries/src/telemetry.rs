//! The registry connectors' metrics and the log lines that go with them, in one place.
//! Labels stay bounded (registry name, outcome), never a subject or dossier id.

use std::time::Duration;

use metrics::Unit;

pub const REGISTRY_LOOKUPS_TOTAL: &str = "motcua_registry_lookups_total";
pub const REGISTRY_CACHE_TOTAL: &str = "motcua_registry_cache_total";
pub const REGISTRY_REQUEST_DURATION_SECONDS: &str = "motcua_registry_request_duration_seconds";
pub const REGISTRY_CIRCUIT_OPENED_TOTAL: &str = "motcua_registry_circuit_opened_total";
pub const REGISTRY_CIRCUIT_OPEN: &str = "motcua_registry_circuit_open";
pub const REGISTRY_AUDIT_WRITE_FAILURES_TOTAL: &str = "motcua_registry_audit_write_failures_total";

/// Registers every registry metric with its unit and description.
pub fn describe() {
    metrics::describe_counter!(
        REGISTRY_LOOKUPS_TOTAL,
        Unit::Count,
        "Registry lookups, by registry and outcome (found, not_found, refused, unavailable)"
    );
    metrics::describe_counter!(
        REGISTRY_CACHE_TOTAL,
        Unit::Count,
        "Registry answer cache lookups, by registry and result (hit, miss)"
    );
    metrics::describe_histogram!(
        REGISTRY_REQUEST_DURATION_SECONDS,
        Unit::Seconds,
        "Duration of one HTTP request to a registry gateway"
    );
    metrics::describe_counter!(
        REGISTRY_CIRCUIT_OPENED_TOTAL,
        Unit::Count,
        "Times a registry's circuit breaker opened"
    );
    metrics::describe_gauge!(
        REGISTRY_CIRCUIT_OPEN,
        Unit::Count,
        "Whether a registry's circuit breaker is open (1) or closed (0), per registry"
    );
    metrics::describe_counter!(
        REGISTRY_AUDIT_WRITE_FAILURES_TOTAL,
        Unit::Count,
        "Failed writes of registry audit records (kept and retried)"
    );
}

/// A lookup's final outcome (the audit record is written next to it).
pub(crate) fn lookup_done(registry: &'static str, outcome: &'static str) {
    metrics::counter!(REGISTRY_LOOKUPS_TOTAL, "registry" => registry, "outcome" => outcome).increment(1);
}

pub(crate) fn cache_hit(registry: &'static str) {
    metrics::counter!(REGISTRY_CACHE_TOTAL, "registry" => registry, "result" => "hit").increment(1);
}

pub(crate) fn cache_miss(registry: &'static str) {
    metrics::counter!(REGISTRY_CACHE_TOTAL, "registry" => registry, "result" => "miss").increment(1);
}

pub(crate) fn request_done(registry: &'static str, elapsed: Duration) {
    metrics::histogram!(REGISTRY_REQUEST_DURATION_SECONDS, "registry" => registry).record(elapsed.as_secs_f64());
}

pub(crate) fn circuit_opened(registry: &'static str, reason: &str) {
    metrics::counter!(REGISTRY_CIRCUIT_OPENED_TOTAL, "registry" => registry).increment(1);
    metrics::gauge!(REGISTRY_CIRCUIT_OPEN, "registry" => registry).set(1.0);
    tracing::warn!(registry, %reason, "circuit opened");
}

pub(crate) fn circuit_closed(registry: &'static str) {
    metrics::gauge!(REGISTRY_CIRCUIT_OPEN, "registry" => registry).set(0.0);
    tracing::info!(registry, "circuit closed: the registry answers again");
}

pub(crate) fn audit_write_failed(error: &sqlx::Error, queued: usize) {
    metrics::counter!(REGISTRY_AUDIT_WRITE_FAILURES_TOTAL).increment(1);
    tracing::warn!(error = %error, queued, "audit write failed; will retry");
}
