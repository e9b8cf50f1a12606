//! The runtime's metrics and the log lines that go with them, in one place: names,
//! descriptions, and one function per thing that happens. Labels stay bounded (stage,
//! topic, outcome, reason code), never a dossier id.

use std::time::Duration;

use metrics::Unit;
use tracing::{debug, info, warn};

pub const CONSUMER_LAG_MESSAGES: &str = "motcua_consumer_lag_messages";
pub const CONSUMER_ERRORS_TOTAL: &str = "motcua_consumer_errors_total";
pub const OFFSETS_STORED_TOTAL: &str = "motcua_offsets_stored_total";
pub const OFFSETS_COMMITTED_TOTAL: &str = "motcua_offsets_committed_total";
pub const OFFSET_COMMIT_FAILURES_TOTAL: &str = "motcua_offset_commit_failures_total";
pub const DELIVERY_FAILURES_TOTAL: &str = "motcua_delivery_failures_total";
pub const STAGE_IN_FLIGHT_MESSAGES: &str = "motcua_stage_in_flight_messages";
pub const STAGE_MESSAGES_TOTAL: &str = "motcua_stage_messages_total";
pub const DEAD_LETTERS_TOTAL: &str = "motcua_dead_letters_total";
pub const STAGE_RETRIES_TOTAL: &str = "motcua_stage_retries_total";
pub const STAGE_BATCH_SPLITS_TOTAL: &str = "motcua_stage_batch_splits_total";
pub const STAGE_TICK_EVENTS_TOTAL: &str = "motcua_stage_tick_events_total";
pub const STAGE_TICK_FAILURES_TOTAL: &str = "motcua_stage_tick_failures_total";
pub const STAGE_BATCH_DURATION_SECONDS: &str = "motcua_stage_batch_duration_seconds";
pub const STAGE_BATCH_SIZE_MESSAGES: &str = "motcua_stage_batch_size_messages";
pub const STATUSES_WITHHELD_TOTAL: &str = "motcua_statuses_withheld_after_end_total";

/// Registers every runtime metric with its unit and description (call once, after the
/// exporter is installed).
pub fn describe() {
    metrics::describe_counter!(
        STAGE_TICK_EVENTS_TOTAL,
        Unit::Count,
        "Events the stage's timer work produced (bill expiry, retried dossiers, deadline warnings), once acknowledged"
    );
    metrics::describe_counter!(
        STAGE_TICK_FAILURES_TOTAL,
        Unit::Count,
        "Timer rounds that failed and are tried again at the next interval"
    );
    metrics::describe_counter!(
        STAGE_BATCH_SPLITS_TOTAL,
        Unit::Count,
        "Batches the stage refused (the database refused a row) and the runtime split to isolate the message"
    );
    metrics::describe_gauge!(
        CONSUMER_LAG_MESSAGES,
        Unit::Count,
        "Messages not yet consumed, per stage and input topic (librdkafka statistics)"
    );
    metrics::describe_counter!(
        CONSUMER_ERRORS_TOTAL,
        Unit::Count,
        "Errors the Kafka consumer reported while receiving"
    );
    metrics::describe_counter!(
        OFFSETS_STORED_TOTAL,
        Unit::Count,
        "Partition offsets stored for commit once their outputs were acknowledged"
    );
    metrics::describe_counter!(
        OFFSETS_COMMITTED_TOTAL,
        Unit::Count,
        "Partition offsets committed to the consumer group"
    );
    metrics::describe_counter!(
        OFFSET_COMMIT_FAILURES_TOTAL,
        Unit::Count,
        "Offset commits that failed (retried with the next commit)"
    );
    metrics::describe_counter!(
        DELIVERY_FAILURES_TOTAL,
        Unit::Count,
        "Produced messages the broker did not acknowledge (stops the worker)"
    );
    metrics::describe_gauge!(
        STAGE_IN_FLIGHT_MESSAGES,
        Unit::Count,
        "Handled input messages whose outputs are not yet acknowledged"
    );
    metrics::describe_counter!(
        STAGE_MESSAGES_TOTAL,
        Unit::Count,
        "Input messages handled, by outcome (processed, dead_lettered, skipped: undecodable on a topic another group owns)"
    );
    metrics::describe_counter!(
        DEAD_LETTERS_TOTAL,
        Unit::Count,
        "Input messages sent to the dead-letter topic, by reason code"
    );
    metrics::describe_counter!(
        STAGE_RETRIES_TOTAL,
        Unit::Count,
        "Batches the stage failed with a retryable error"
    );
    metrics::describe_histogram!(
        STAGE_BATCH_DURATION_SECONDS,
        Unit::Seconds,
        "Time from receiving a batch to having produced its outputs"
    );
    metrics::describe_histogram!(STAGE_BATCH_SIZE_MESSAGES, Unit::Count, "Input messages per batch");
    metrics::describe_counter!(
        STATUSES_WITHHELD_TOTAL,
        Unit::Count,
        "Output lists in which statuses of a dossier another stage withdrew or stopped first were left out (they would have followed its end)"
    );
}

/// Statuses of a dossier that ended first were left out of a batch's or a tick's outputs.
pub(crate) fn statuses_after_end_withheld(stage: &'static str) {
    debug!(stage, "statuses of dossiers that ended first left out");
    metrics::counter!(STATUSES_WITHHELD_TOTAL, "stage" => stage).increment(1);
}

pub(crate) fn consumer_lag(stage: &'static str, topic: &str, lag: i64) {
    metrics::gauge!(CONSUMER_LAG_MESSAGES, "stage" => stage, "topic" => topic.to_owned()).set(lag as f64);
}

pub(crate) fn consumer_error(error: &rdkafka::error::KafkaError) {
    metrics::counter!(CONSUMER_ERRORS_TOTAL).increment(1);
    warn!(error = %error, "consumer error");
}

pub(crate) fn offsets_stored(stage: &'static str, n: usize) {
    metrics::counter!(OFFSETS_STORED_TOTAL, "stage" => stage).increment(n as u64);
}

pub(crate) fn offsets_committed(stage: &'static str, n: usize) {
    metrics::counter!(OFFSETS_COMMITTED_TOTAL, "stage" => stage).increment(n as u64);
}

pub(crate) fn offset_commit_failed(stage: &'static str, error: &rdkafka::error::KafkaError) {
    metrics::counter!(OFFSET_COMMIT_FAILURES_TOTAL, "stage" => stage).increment(1);
    warn!(stage, error = %error, "offset commit failed; it is retried with the next commit");
}

/// Counts every failed delivery; the caller logs only the first (the ones queued behind
/// it add nothing).
pub(crate) fn delivery_failed(stage: &'static str) {
    metrics::counter!(DELIVERY_FAILURES_TOTAL, "stage" => stage).increment(1);
}

pub(crate) fn in_flight(stage: &'static str, n: usize) {
    metrics::gauge!(STAGE_IN_FLIGHT_MESSAGES, "stage" => stage).set(n as f64);
}

/// Logged inside the message's span, which carries the dossier id.
/// Which message a log line is about (identifiers only: the dossier id is the portal's,
/// never personal data).
#[derive(Debug, Clone, Copy)]
pub(crate) struct At<'a> {
    pub(crate) dossier_id: &'a str,
    pub(crate) topic: &'a str,
    pub(crate) partition: i32,
    pub(crate) offset: i64,
}

pub(crate) fn message_dead_lettered(stage: &'static str, at: &At<'_>, reason_code: &str, reason: &str) {
    warn!(
        dossier_id = at.dossier_id,
        topic = at.topic,
        partition = at.partition,
        offset = at.offset,
        reason_code = %reason_code,
        reason = %reason,
        "dead-lettering message"
    );
    metrics::counter!(STAGE_MESSAGES_TOTAL, "stage" => stage, "outcome" => "dead_lettered").increment(1);
    metrics::counter!(DEAD_LETTERS_TOTAL, "stage" => stage, "reason_code" => reason_code.to_owned()).increment(1);
}

/// An input this group cannot decode on a topic another group owns (and dead-letters):
/// recorded here, not dead-lettered a second time. Logged inside the message's span.
pub(crate) fn message_skipped(stage: &'static str, at: &At<'_>, reason_code: &str, reason: &str) {
    warn!(
        topic = at.topic,
        partition = at.partition,
        offset = at.offset,
        reason_code = %reason_code,
        reason = %reason,
        "skipping an undecodable message its topic's owner dead-letters"
    );
    metrics::counter!(STAGE_MESSAGES_TOTAL, "stage" => stage, "outcome" => "skipped").increment(1);
}

/// A batch the stage refused, split in halves to find the input(s) it is refused for.
pub(crate) fn batch_split(stage: &'static str, size: usize, reason_code: &str) {
    warn!(
        stage,
        size, reason_code, "batch refused; splitting it to find the message it is refused for"
    );
    metrics::counter!(STAGE_BATCH_SPLITS_TOTAL, "stage" => stage).increment(1);
}

/// Partitions paused (too much in flight) or resumed.
pub(crate) fn backpressure(stage: &'static str, paused: bool, in_flight: usize) {
    if paused {
        info!(
            stage,
            in_flight, "too much in flight: partitions paused until the broker catches up"
        );
    } else {
        info!(stage, in_flight, "partitions resumed");
    }
}

/// A tick's events are all acknowledged and the stage remembered them.
pub(crate) fn tick_done(stage: &'static str, events: usize) {
    debug!(stage, events, "timer work produced");
    metrics::counter!(STAGE_TICK_EVENTS_TOTAL, "stage" => stage).increment(events as u64);
}

/// A tick failed; it is tried again at the next interval.
pub(crate) fn tick_failed(stage: &'static str, reason: &str) {
    warn!(stage, %reason, "timer work failed; the next tick tries again");
    metrics::counter!(STAGE_TICK_FAILURES_TOTAL, "stage" => stage).increment(1);
}

/// A retryable failure that will be retried after `delay`.
pub(crate) fn batch_retrying(stage: &'static str, reason: &str, delay: Duration) {
    metrics::counter!(STAGE_RETRIES_TOTAL, "stage" => stage).increment(1);
    warn!(stage, %reason, retry_in = ?delay, "batch failed, retrying");
}

/// A retryable failure past the retry budget: counted like the others, the worker then
/// stops with a fatal error (logged by whoever reports it).
pub(crate) fn batch_retries_exhausted(stage: &'static str) {
    metrics::counter!(STAGE_RETRIES_TOTAL, "stage" => stage).increment(1);
}

/// Once per batch, not per message: a labelled metric costs a registry lookup.
pub(crate) fn batch_done(stage: &'static str, elapsed: Duration, size: usize, processed: u64) {
    metrics::counter!(STAGE_MESSAGES_TOTAL, "stage" => stage, "outcome" => "processed").increment(processed);
    metrics::histogram!(STAGE_BATCH_DURATION_SECONDS, "stage" => stage).record(elapsed.as_secs_f64());
    metrics::histogram!(STAGE_BATCH_SIZE_MESSAGES, "stage" => stage).record(size as f64);
}

/// The target of the per-message processing spans: what an OTLP exporter takes (the
/// binary keeps it out of the logs, where a span per message would cost for nothing).
pub const PROCESS_SPAN_TARGET: &str = "motcua::process";

/// The span of one message's processing by one stage, from the batch's start to its
/// outputs' handover to the producer, in its dossier's trace: the parent is the message's
/// `traceparent` header (else, once decoded, the trace the event names or its dossier id
/// gives: [`reparent`]). Disabled, and free, when nothing exports spans.
pub(crate) fn process_span(
    stage: &'static str,
    topic: &str,
    partition: i32,
    offset: i64,
    traceparent: Option<&str>,
) -> tracing::Span {
    let span = tracing::info_span!(
        target: PROCESS_SPAN_TARGET,
        "process",
        otel.name = %format_args!("{stage} process {topic}"),
        otel.kind = "consumer",
        messaging.system = "kafka",
        messaging.operation.type = "process",
        messaging.destination.name = topic,
        messaging.destination.partition.id = partition,
        messaging.kafka.offset = offset,
        messaging.consumer.group.name = stage,
        motcua.outcome = tracing::field::Empty,
    );
    if let Some(tp) = traceparent {
        reparent(&span, tp);
    }
    span
}

/// Puts a processing span in the trace of a W3C `traceparent` (ignored when not one).
pub(crate) fn reparent(span: &tracing::Span, traceparent: &str) {
    if span.is_disabled() {
        return;
    }
    if let Some(cx) = remote_context(traceparent) {
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        let _ = span.set_parent(cx);
    }
}

/// The OpenTelemetry context of a W3C `traceparent` (`00-<trace>-<span>-<flags>`).
fn remote_context(traceparent: &str) -> Option<opentelemetry::Context> {
    use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
    let mut parts = traceparent.split('-');
    let (_version, trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let context = SpanContext::new(
        TraceId::from_hex(trace).ok()?,
        SpanId::from_hex(span).ok()?,
        TraceFlags::new(u8::from_str_radix(flags, 16).ok()?),
        true,
        TraceState::default(),
    );
    context
        .is_valid()
        .then(|| opentelemetry::Context::new().with_remote_span_context(context))
}
