//! The outward connectors' metrics, in one place. Labels stay bounded (system, outcome),
//! never an owner, a dossier or a URL.

use std::time::Duration;

use metrics::Unit;

pub const WALLET: &str = "wallet";
pub const PORTAL: &str = "portal";

pub const OUTWARD_REQUESTS_TOTAL: &str = "motcua_outward_requests_total";
pub const OUTWARD_RETRIES_TOTAL: &str = "motcua_outward_retries_total";
pub const OUTWARD_REQUEST_DURATION_SECONDS: &str = "motcua_outward_request_duration_seconds";
pub const OUTWARD_CIRCUIT_OPEN: &str = "motcua_outward_circuit_open";
pub const OUTWARD_CIRCUIT_OPENED_TOTAL: &str = "motcua_outward_circuit_opened_total";

/// Registers every outward metric with its unit and description.
pub fn describe() {
    metrics::describe_counter!(
        OUTWARD_REQUESTS_TOTAL,
        Unit::Count,
        "HTTP requests to an outward system (wallet, portal), by outcome (answered, failed, circuit_open)"
    );
    metrics::describe_counter!(
        OUTWARD_RETRIES_TOTAL,
        Unit::Count,
        "Requests to an outward system sent again after a failure, within one call"
    );
    metrics::describe_histogram!(
        OUTWARD_REQUEST_DURATION_SECONDS,
        Unit::Seconds,
        "Duration of one HTTP request to an outward system"
    );
    metrics::describe_gauge!(
        OUTWARD_CIRCUIT_OPEN,
        Unit::Count,
        "Whether an outward system's circuit breaker is open (1) or closed (0)"
    );
    metrics::describe_counter!(
        OUTWARD_CIRCUIT_OPENED_TOTAL,
        Unit::Count,
        "Times an outward system's circuit breaker opened"
    );
}

pub(crate) fn request(system: &'static str, outcome: &'static str) {
    metrics::counter!(OUTWARD_REQUESTS_TOTAL, "system" => system, "outcome" => outcome).increment(1);
}

pub(crate) fn retry(system: &'static str) {
    metrics::counter!(OUTWARD_RETRIES_TOTAL, "system" => system).increment(1);
}

pub(crate) fn request_duration(system: &'static str, took: Duration) {
    metrics::histogram!(OUTWARD_REQUEST_DURATION_SECONDS, "system" => system).record(took.as_secs_f64());
}

pub(crate) fn circuit(system: &'static str, open: bool, reason: &str) {
    metrics::gauge!(OUTWARD_CIRCUIT_OPEN, "system" => system).set(if open { 1.0 } else { 0.0 });
    if open {
        metrics::counter!(OUTWARD_CIRCUIT_OPENED_TOTAL, "system" => system).increment(1);
        tracing::warn!(system, reason, "circuit opened: calls fail fast until it probes again");
    } else {
        tracing::info!(system, "circuit closed: the system answers again");
    }
}
