//! motcua's event schemas: the `.avsc` files under `schemas/avro/` are the source of
//! truth; this crate embeds them, mirrors them as Rust types and frames messages in the
//! Confluent wire format.

mod codec;
mod error;
mod events;
pub mod samples;
mod topic;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded.rs"));
}

pub use codec::{Codec, SchemaSet, SchemaVersion};
pub use error::{Error, Result};
pub use events::*;
pub use topic::Topic;

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

#[cfg(test)]
mod tests;
