//! motcua's event schemas: the `.avsc` files under `schemas/avro/` are the source of
//! truth; this crate embeds them, mirrors them as Rust types and frames messages in the
//! Confluent wire format.

mod codec;
pub mod dictionary;
mod error;
mod events;
mod fast;
pub mod limits;
pub mod samples;
mod topic;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded.rs"));
}

pub use codec::{Codec, FetchedSchema, LookupError, SchemaSet, SchemaVersion, WriterSchemas};
pub use error::{Error, Result};
pub use events::*;
pub use limits::{Limits, Validate, Violation};
pub use topic::Topic;

/// The names of the components that write events: the pipeline's stages (consumer group
/// `motcua-<name>`, metrics label, `stage` of the status events they emit) and the outside
/// world that publishes into the flow. Declared once here; each stage crate's `STAGE`
/// is one of them and the stage table (`motcua-wiring`) lists the stages.
pub mod component {
    /// Upstream portals publishing submissions.
    pub const PORTAL: &str = "portal";
    pub const INTAKE: &str = "intake";
    pub const VERIFY: &str = "verify";
    pub const PAYMENT: &str = "payment";
    /// The payment gateway confirming bills.
    pub const GATEWAY: &str = "gateway";
    pub const ROUTE: &str = "route";
    /// The back office (officers) deciding routed dossiers.
    pub const BACKOFFICE: &str = "backoffice";
    pub const RESULT: &str = "result";
    pub const TRACK: &str = "track";
    /// Pushes status changes to the National Public Service Portal.
    pub const PORTAL_SYNC: &str = "portal-sync";
}

/// Deterministic event ids: the same input, stage and output kind always give the same id,
/// so a redelivered message re-emits byte-identical events and every consumer can
/// deduplicate by event id.
pub fn derived_event_id(causation_id: &str, stage: &str, kind: &str) -> String {
    const NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6d6f_7463_7561_4000_8000_6576_656e_7473);
    let mut name = String::with_capacity(causation_id.len() + stage.len() + kind.len() + 2);
    name.push_str(causation_id);
    name.push('/');
    name.push_str(stage);
    name.push('/');
    name.push_str(kind);
    uuid::Uuid::new_v5(&NAMESPACE, name.as_bytes()).to_string()
}

/// A W3C trace context (`traceparent`) for a dossier that arrived without one: the trace
/// id derives from the dossier id, so every event of the dossier — redelivered or not,
/// resumed after a supplement or not — is in one trace; the parent span id derives from
/// the event that started it.
pub fn dossier_traceparent(dossier_id: &str, event_id: &str) -> String {
    const NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6d6f_7463_7561_4000_8000_7472_6163_6573);
    let trace = uuid::Uuid::new_v5(&NAMESPACE, dossier_id.as_bytes());
    let span = uuid::Uuid::new_v5(&NAMESPACE, event_id.as_bytes());
    let span_hex = span.simple().to_string();
    format!("00-{}-{}-01", trace.simple(), &span_hex[..16])
}

/// The trace id of a W3C `traceparent` value (`None` when it is not one).
pub fn trace_id(traceparent: &str) -> Option<&str> {
    let mut parts = traceparent.split('-');
    let (_version, trace) = (parts.next()?, parts.next()?);
    (trace.len() == 32 && trace.bytes().all(|b| b.is_ascii_hexdigit())).then_some(trace)
}

#[cfg(test)]
mod tests;
