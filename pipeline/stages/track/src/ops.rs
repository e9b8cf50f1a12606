//! What the operators' console shows of the pipeline itself, beyond the projection: each
//! stage's consumer lag, recent dead letters and the dossiers parked behind a registry or
//! waiting for an officer. The track stage does not read the stage table, the dead-letter
//! topic or the pipeline's store itself; whoever serves the API hands in an
//! [`Operations`] that does (`motcua_wiring::operations` in production and in the demo).

use std::future::Future;
use std::pin::Pin;

use serde::Serialize;

/// A boxed future, as the trait's methods return (the trait is used as `dyn`).
pub type OpsFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, String>> + Send + 'a>>;

/// The pipeline's state, as operators look at it. Each part fails on its own (a broker
/// down leaves the parked list readable), with a message fit to show (no personal data).
pub trait Operations: Send + Sync {
    /// Every stage's consumer group: committed and not yet processed messages.
    fn lag(&self) -> OpsFuture<'_, Vec<StageLag>>;
    /// Dead letters since `since_ms` (the newest `latest` of them listed one by one).
    fn dead_letters(&self, since_ms: i64, latest: usize) -> OpsFuture<'_, DeadLetters>;
    /// Dossiers parked behind a registry and escalated to an officer (oldest first, at
    /// most `limit` of each listed).
    fn waiting(&self, limit: i64) -> OpsFuture<'_, Waiting>;
}

impl std::fmt::Debug for dyn Operations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Operations")
    }
}

/// One stage's consumer group at one instant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StageLag {
    pub stage: String,
    /// Messages of its inputs committed as processed.
    pub committed: i64,
    /// Messages published to its inputs and not yet committed.
    pub lag: i64,
}

/// Dead letters of a period: counts by cause, and the newest ones.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DeadLetters {
    pub since_ms: i64,
    pub total: u64,
    /// By reason code, origin topic and stage; largest first.
    pub by_cause: Vec<DeadLetterCause>,
    /// Newest first.
    pub latest: Vec<DeadLetterLine>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadLetterCause {
    pub reason_code: String,
    pub origin_topic: String,
    pub stage: String,
    pub count: u64,
}

/// One dead letter: where it is, what failed and why (the code only: the message's
/// content and the reason's text stay in `motcua dlq show`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadLetterLine {
    /// `partition:offset` in the dead-letter topic (what `motcua dlq replay` takes).
    pub id: String,
    pub failed_at_ms: i64,
    pub origin_topic: String,
    pub stage: String,
    pub reason_code: String,
    pub replay_count: u32,
}

/// Dossiers waiting on an outside system or a person.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Waiting {
    pub parked_total: i64,
    pub parked: Vec<ParkedLine>,
    pub escalated: Vec<EscalatedLine>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParkedLine {
    pub dossier_code: String,
    pub parked_at_ms: i64,
    pub attempts: i32,
    /// The last error (which registry, what kind of failure).
    pub cause: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EscalatedLine {
    pub dossier_code: String,
    pub escalated_at_ms: i64,
    pub cause: String,
}
