use std::future::Future;

use motcua_schemas::{AnyEvent, Codec, Event, Limits, Topic, Validate, Violation};

/// What a stage consumes: one event type (one topic), or [`AllTopics`].
pub trait Input: Clone + Send + Sync + 'static {
    /// The topics to subscribe to.
    fn topics() -> Vec<Topic>;
    /// Decodes a message read from `topic`.
    fn decode(codec: &Codec, topic: Topic, bytes: &[u8]) -> motcua_schemas::Result<Self>;
    /// The message key (the dossier id), for logs and spans.
    fn key(&self) -> &str;
    /// The trace of the input's dossier (`Event::dossier_trace`), for its processing span
    /// when the message came without a `traceparent` header.
    fn dossier_trace(&self) -> Option<std::borrow::Cow<'_, str>>;
    /// Checks the decoded input against the limits at the door (before any effect).
    fn check(&self, limits: &Limits) -> Result<(), Violation>;
}

impl<E: Event + Validate> Input for E {
    fn topics() -> Vec<Topic> {
        vec![E::TOPIC]
    }

    fn decode(codec: &Codec, _topic: Topic, bytes: &[u8]) -> motcua_schemas::Result<Self> {
        codec.decode(bytes)
    }

    fn key(&self) -> &str {
        Event::key(self)
    }

    fn dossier_trace(&self) -> Option<std::borrow::Cow<'_, str>> {
        Event::dossier_trace(self)
    }

    fn check(&self, limits: &Limits) -> Result<(), Violation> {
        limits.check(self)
    }
}

/// Every event of the flow (the track stage reads them all), except dead letters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllTopics(pub AnyEvent);

impl Input for AllTopics {
    fn topics() -> Vec<Topic> {
        Topic::ALL.into_iter().filter(|t| *t != Topic::DeadLetter).collect()
    }

    fn decode(codec: &Codec, topic: Topic, bytes: &[u8]) -> motcua_schemas::Result<Self> {
        AnyEvent::decode(codec, topic, bytes).map(AllTopics)
    }

    fn key(&self) -> &str {
        self.0.key()
    }

    fn dossier_trace(&self) -> Option<std::borrow::Cow<'_, str>> {
        self.0.dossier_trace()
    }

    fn check(&self, limits: &Limits) -> Result<(), Violation> {
        limits.check(&self.0)
    }
}

/// Where a consumed message came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// Broker or producer timestamp, milliseconds since the epoch.
    pub timestamp_ms: Option<i64>,
}

/// A decoded input message.
#[derive(Debug, Clone)]
pub struct Envelope<T> {
    pub event: T,
    pub origin: Origin,
    /// The door the message passed (shared by its batch).
    pub door: std::sync::Arc<crate::Door>,
}

/// What a stage decided for one input message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Produce these events (possibly none), then the input counts as processed.
    Emit(Vec<AnyEvent>),
    /// The input is well-formed Avro but cannot be processed: send it to the dead-letter
    /// topic with this reason, and go on.
    DeadLetter { reason_code: String, reason: String },
}

/// A failure of a whole batch.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum StageError {
    /// Something outside is unavailable (database, registry): retry the same batch after
    /// a backoff; the offsets do not move meanwhile.
    #[error("retryable: {0}")]
    Retryable(String),
    /// Retrying the same batch cannot help, but the failure may be caused by one of its
    /// messages (the database refused a row): the runtime splits the batch to find the
    /// message(s) it fails on, dead-letters only those with `reason_code`, and goes on.
    #[error("refused ({reason_code}): {reason}")]
    Refused { reason_code: String, reason: String },
    /// Retrying cannot help and no message is to blame: the worker exits non-zero and
    /// its supervisor restarts it.
    #[error("fatal: {0}")]
    Fatal(String),
}

impl StageError {
    /// Says what was being done (`"allocating dossier codes"`) in a retryable or fatal
    /// reason; a refusal's reason stays as it is (it goes to a dead letter).
    pub fn context(self, doing: &str) -> Self {
        match self {
            StageError::Retryable(r) => StageError::Retryable(format!("{doing}: {r}")),
            StageError::Fatal(r) => StageError::Fatal(format!("{doing}: {r}")),
            refused => refused,
        }
    }
}

/// The one mapping from database errors to what the runtime does about them
/// (classification: [`motcua_store::classify`]). A refused row's reason names its
/// SQLSTATE, never the data.
impl From<motcua_store::Error> for StageError {
    fn from(e: motcua_store::Error) -> Self {
        match e.class() {
            motcua_store::Class::Retryable => StageError::Retryable(crate::error_chain(&e)),
            motcua_store::Class::Message => StageError::Refused {
                reason_code: "DATABASE_REFUSED".to_owned(),
                reason: match e.database_code() {
                    Some(code) => format!("the database refused this message's data (code {code})"),
                    None => "the database refused this message's data".to_owned(),
                },
            },
            motcua_store::Class::Fatal => StageError::Fatal(crate::error_chain(&e)),
        }
    }
}

/// What a stage's timer produced: events to send and, for [`Stage::ticked`], what they
/// were about (bill references, dossier ids) — the stage marks those done only once every
/// event is acknowledged, so a crash in between sends the same events (same ids) again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tick {
    pub events: Vec<AnyEvent>,
    pub done: Vec<String>,
}

/// One stage of the pipeline: a pure-enough function from a batch of decoded inputs to
/// one outcome per input, in order. The runtime owns Kafka, offsets and retries, so a
/// stage is unit-tested without a broker.
pub trait Stage: Send + Sync + 'static {
    type Input: Input;

    /// Stage name: consumer group `motcua-<name>`, metrics label, `stage` of status events.
    fn name(&self) -> &'static str;

    /// Handles a batch; must return exactly one outcome per input, in input order.
    /// Must be idempotent: after a crash the same inputs come again and must yield the
    /// same outcomes (same event ids) without duplicating effects.
    fn handle_batch(
        &self,
        batch: &[Envelope<Self::Input>],
    ) -> impl Future<Output = Result<Vec<Outcome>, StageError>> + Send;

    /// How often the stage's timer work runs ([`Stage::tick`]); `None`: it has none.
    fn tick_interval(&self) -> Option<std::time::Duration> {
        None
    }

    /// Timer work due at `now_ms` (bills to expire, parked dossiers to retry, deadlines
    /// to warn of). The runtime produces the events through the worker's producer, with
    /// the same framing, headers and metrics as every output, then calls
    /// [`Stage::ticked`]. A tick that produced events is followed at once by another, so
    /// a backlog drains.
    fn tick(&self, _now_ms: i64) -> impl Future<Output = Result<Tick, StageError>> + Send {
        async { Ok(Tick::default()) }
    }

    /// The store where the statuses this stage is about to produce are recorded as owed
    /// until acknowledged ([`motcua_store::Store::owe`]), so no stage ends one of their
    /// dossiers meanwhile; `None`: the stage announces no status of an open dossier, or
    /// shares no database with the stages that end dossiers.
    fn owed_statuses(&self) -> Option<&motcua_store::Store> {
        None
    }

    /// Whether this stage still announces statuses of a dossier once its decision is
    /// recorded (result: the result's return, and its escalations meanwhile). Every other
    /// stage's statuses of a decided dossier are left out: the decision was their last
    /// word (a deadline warning after it would reach the portal after the return).
    fn speaks_after_decision(&self) -> bool {
        false
    }

    /// Every event of `tick` is acknowledged by the broker: remember it is done.
    fn ticked(&self, _tick: &Tick) -> impl Future<Output = Result<(), StageError>> + Send {
        async { Ok(()) }
    }
}
