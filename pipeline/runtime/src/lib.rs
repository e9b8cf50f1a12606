//! The no-loss Kafka stage runtime: consume → decode → handle → encode → produce → commit.
//!
//! Guarantees (see ARCHITECTURE.md):
//! - an input offset is stored for commit only after every message it caused has been
//!   acknowledged by the broker (idempotent producer, acks=all) and the stage's database
//!   effects were committed (the stage returns only after they are);
//! - per partition, only the contiguous acknowledged prefix is committed;
//! - undecodable inputs and inputs the stage rejects go to the dead-letter topic with the
//!   reason and origin in headers, and the pipeline goes on;
//! - retryable batch failures back off and retry; fatal ones stop the worker non-zero;
//! - librdkafka's prefetch is capped, in-flight messages are bounded;
//! - on partition revocation and on shutdown, in-flight work is drained within a deadline
//!   and what is done is committed, nothing else.

// The steps of a worker, a file each (see `worker`, which runs them).
mod config;
mod consumer;
mod dead_letter;
mod decode;
mod destinations;
mod door;
mod ledger;
mod owed;
mod producer;
mod retry;
mod shutdown;
mod stage;
pub mod stored;
pub mod telemetry;
mod tick;
mod worker;

#[cfg(test)]
mod tests;

pub use config::{RunSummary, RuntimeConfig};
pub use door::Door;
pub use shutdown::Shutdown;
pub use stage::{AllTopics, Envelope, Input, Origin, Outcome, Stage, StageError, Tick};
pub use worker::run;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Kafka(#[from] motcua_kafka::Error),
    #[error("Kafka client error")]
    Client(#[from] rdkafka::error::KafkaError),
    #[error("stage {stage} failed: {reason}")]
    Fatal { stage: String, reason: String },
    #[error("cannot reach the Kafka brokers at {brokers}: {reason}")]
    Unreachable { brokers: String, reason: String },
    #[error("encoding an output of stage {stage}")]
    Encode {
        stage: String,
        #[source]
        source: motcua_schemas::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error and its causes on one line ("outer: inner: root"), for dead-letter reasons,
/// status messages and logs where only a string travels.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}
