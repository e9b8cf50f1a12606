//! The route stage's metrics and the log lines that go with them, in one place. Labels:
//! outcome only, never a dossier id or desk.

use metrics::Unit;

pub const ROUTE_DOSSIERS_TOTAL: &str = "motcua_route_dossiers_total";
pub const ROUTE_RELOADS_TOTAL: &str = "motcua_route_reloads_total";

/// Registers every route metric with its unit and description.
pub fn describe() {
    metrics::describe_counter!(
        ROUTE_DOSSIERS_TOTAL,
        Unit::Count,
        "Paid dossiers, by outcome (routed; refused: no competent authority or desk; ended: withdrawn or stopped before routing)"
    );
    metrics::describe_counter!(
        ROUTE_RELOADS_TOTAL,
        Unit::Count,
        "Routing table reloads that took effect"
    );
}

/// How one dossier was routed; [`Decided::emit`] counts it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Decided {
    Routed,
    Refused,
    Ended,
}

impl Decided {
    pub(crate) fn emit(self) {
        let outcome = match self {
            Decided::Routed => "routed",
            Decided::Refused => "refused",
            Decided::Ended => "ended",
        };
        metrics::counter!(ROUTE_DOSSIERS_TOTAL, "outcome" => outcome).increment(1);
    }
}

pub(crate) fn tables_reloaded(generation: u64) {
    metrics::counter!(ROUTE_RELOADS_TOTAL).increment(1);
    tracing::info!(generation, "routing tables reloaded");
}
