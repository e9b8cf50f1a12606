//! Dead letters: why an input is set aside, and the message that says so.

use std::sync::Arc;

use motcua_schemas::{Codec, DeadLetter};
use rdkafka::message::{Header, OwnedHeaders};

use crate::consumer::Received;
use crate::producer::Outgoing;
use crate::{Error, Outcome, Result};

/// Why an input goes to the dead-letter topic: a stable code (`AVRO_DECODE`,
/// `MESSAGE_TOO_LARGE`, `OUTPUT_TOO_LARGE`, a stage's own) and a text that names fields
/// and limits, never values (they may be personal data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeadLetterReason {
    pub(crate) code: String,
    pub(crate) reason: String,
}

impl DeadLetterReason {
    pub(crate) fn new(code: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            reason: reason.into(),
        }
    }
}

impl From<DeadLetterReason> for Outcome {
    fn from(r: DeadLetterReason) -> Self {
        Outcome::DeadLetter {
            reason_code: r.code,
            reason: r.reason,
        }
    }
}

/// How much of the original value a dead letter keeps (with its full length and SHA-256
/// in headers), so a dead letter always fits the producer's size limit.
pub(crate) const DEAD_LETTER_VALUE_PREFIX: usize = 64 * 1024;
/// Longest reason text in a dead letter.
pub(crate) const DEAD_LETTER_REASON_CHARS: usize = 1_000;

/// The first `max` characters of `s`.
fn clip(s: &str, max: usize) -> &str {
    s.char_indices().nth(max).map_or(s, |(i, _)| &s[..i])
}

/// The dead letter of `m`: a bounded prefix of its key and value, their length and
/// SHA-256, why, and the original headers (for a replay), on the dead-letter topic.
pub(crate) fn dead_letter(
    codec: &Codec,
    stage: &str,
    dlq_topic: &Arc<str>,
    m: &Received,
    why: &DeadLetterReason,
) -> Result<Outgoing> {
    use sha2::Digest;
    let reason_code = why.code.as_str();
    let reason = clip(&why.reason, DEAD_LETTER_REASON_CHARS);
    let value_len = m.payload.as_ref().map_or(0, Vec::len);
    let value_sha256 = m.payload.as_ref().map(|p| hex::encode(sha2::Sha256::digest(p)));
    let truncated = value_len > DEAD_LETTER_VALUE_PREFIX;
    let dl = DeadLetter {
        event_id: motcua_schemas::derived_event_id(
            &format!("{}/{}/{}", m.tp.0, m.tp.1, m.offset),
            stage,
            "dead-letter",
        ),
        stage: stage.to_owned(),
        reason_code: reason_code.to_owned(),
        reason: reason.to_owned(),
        origin_topic: m.tp.0.clone(),
        origin_partition: m.tp.1,
        origin_offset: m.offset,
        origin_key: m
            .key
            .as_ref()
            .map(|k| k[..k.len().min(DEAD_LETTER_VALUE_PREFIX)].to_vec()),
        origin_value: m
            .payload
            .as_ref()
            .map(|p| p[..p.len().min(DEAD_LETTER_VALUE_PREFIX)].to_vec()),
        failed_at: m.timestamp_ms.unwrap_or_default(),
    };
    let payload = codec.encode(&dl).map_err(|source| Error::Encode {
        stage: stage.to_owned(),
        source,
    })?;
    let partition = m.tp.1.to_string();
    let offset = m.offset.to_string();
    let value_len = value_len.to_string();
    let mut headers = OwnedHeaders::new_with_capacity(11 + m.headers.len())
        .insert(Header {
            key: "motcua-event-id",
            value: Some(dl.event_id.as_str()),
        })
        .insert(Header {
            key: "motcua-dlq-stage",
            value: Some(stage),
        })
        .insert(Header {
            key: "motcua-dlq-reason-code",
            value: Some(reason_code),
        })
        .insert(Header {
            key: "motcua-dlq-reason",
            value: Some(reason),
        })
        .insert(Header {
            key: "motcua-origin-topic",
            value: Some(m.tp.0.as_str()),
        })
        .insert(Header {
            key: "motcua-origin-partition",
            value: Some(partition.as_str()),
        })
        .insert(Header {
            key: "motcua-origin-offset",
            value: Some(offset.as_str()),
        })
        .insert(Header {
            key: "motcua-origin-value-bytes",
            value: Some(value_len.as_str()),
        })
        .insert(Header {
            key: "motcua-origin-value-truncated",
            value: Some(if truncated { "true" } else { "false" }),
        });
    if let Some(sha) = &value_sha256 {
        headers = headers.insert(Header {
            key: "motcua-origin-value-sha256",
            value: Some(sha.as_str()),
        });
    }
    // The original headers, kept for a replay, under a prefix so they cannot be taken for
    // the dead letter's own.
    for (key, value) in &m.headers {
        headers = headers.insert(Header {
            key: &format!("motcua-origin-header.{key}"),
            value: value.as_deref(),
        });
    }
    Ok(Outgoing {
        topic: dlq_topic.clone(),
        key: m
            .key
            .as_ref()
            .map(|k| k[..k.len().min(DEAD_LETTER_VALUE_PREFIX)].to_vec()),
        payload,
        headers,
        owed: None,
    })
}
