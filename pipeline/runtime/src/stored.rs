//! Events a stage stores before it produces them (a parked dossier's decided outcome, the
//! first decision on an input), so that a crash between producing and forgetting, or the
//! same input handled again, re-emits exactly the same messages: per event, its topic's
//! index, its length and its framed message.

use std::collections::HashMap;

use motcua_schemas::{AnyEvent, Codec, Topic};
use motcua_store::{Decision, Store};

use crate::{error_chain, StageError};

/// Frames `events` for storage.
pub fn encode_events(codec: &Codec, events: &[AnyEvent]) -> Result<Vec<u8>, StageError> {
    let mut out = Vec::new();
    for e in events {
        let mut framed = Vec::new();
        e.encode(codec, &mut framed).map_err(|err| StageError::Refused {
            reason_code: "ENCODE_FAILED".to_owned(),
            reason: error_chain(&err),
        })?;
        let topic = Topic::ALL.iter().position(|t| *t == e.topic()).unwrap_or_default() as u8;
        out.push(topic);
        out.extend_from_slice(&(framed.len() as u32).to_be_bytes());
        out.extend_from_slice(&framed);
    }
    Ok(out)
}

/// The framed messages of stored events (as far as they parse): to learn their writer
/// schemas before decoding (stored by a newer worker, perhaps).
pub fn event_frames(mut bytes: &[u8]) -> Vec<&[u8]> {
    let mut frames = Vec::new();
    while let Some((_, rest)) = bytes.split_first() {
        let Some((len, rest)) = rest.split_first_chunk::<4>() else {
            break;
        };
        let len = u32::from_be_bytes(*len) as usize;
        let Some(framed) = rest.get(..len) else { break };
        frames.push(framed);
        bytes = &rest[len..];
    }
    frames
}

/// The stored events.
pub fn decode_events(codec: &Codec, mut bytes: &[u8]) -> Result<Vec<AnyEvent>, String> {
    let mut events = Vec::new();
    while let Some((&topic, rest)) = bytes.split_first() {
        let topic = *Topic::ALL.get(usize::from(topic)).ok_or("unknown topic")?;
        let (len, rest) = rest.split_first_chunk::<4>().ok_or("truncated")?;
        let len = u32::from_be_bytes(*len) as usize;
        let framed = rest.get(..len).ok_or("truncated")?;
        events.push(AnyEvent::decode(codec, topic, framed).map_err(|e| e.to_string())?);
        bytes = &rest[len..];
    }
    Ok(events)
}

/// A decision a stage took for one input, before it is recorded.
#[derive(Debug, Clone)]
pub struct Decided<'a> {
    /// The event decided on. A stage that decides twice about one input (result:
    /// delivered, and escalated meanwhile) keys the second by the id of what it announces.
    pub input_id: &'a str,
    pub dossier_id: &'a str,
    pub events: Vec<AnyEvent>,
    pub at_ms: i64,
}

/// Records `fresh` decisions unless their inputs were decided before, and returns what is
/// recorded for each, in order: the first decision of an input is the one announced,
/// whoever decides it again and whatever they decide.
pub async fn decide_first(
    store: &Store,
    codec: &Codec,
    stage: &str,
    fresh: &[Decided<'_>],
) -> Result<Vec<Vec<AnyEvent>>, StageError> {
    let mut offered = Vec::with_capacity(fresh.len());
    for d in fresh {
        offered.push(Decision {
            input_id: d.input_id,
            dossier_id: d.dossier_id,
            events: encode_events(codec, &d.events)?,
            decided_at_ms: d.at_ms,
        });
    }
    let recorded = store
        .decide_first(stage, &offered)
        .await
        .map_err(|e| StageError::from(e).context("recording decisions"))?;
    let mut out = Vec::with_capacity(recorded.len());
    for (bytes, d) in recorded.iter().zip(fresh) {
        out.push(decode_recorded(codec, d.input_id, bytes).await?);
    }
    Ok(out)
}

/// The decisions recorded for these inputs, by input id.
pub async fn recorded_decisions(
    store: &Store,
    codec: &Codec,
    stage: &str,
    input_ids: &[&str],
) -> Result<HashMap<String, Vec<AnyEvent>>, StageError> {
    let recorded = store
        .decisions(stage, input_ids)
        .await
        .map_err(|e| StageError::from(e).context("reading recorded decisions"))?;
    let mut out = HashMap::with_capacity(recorded.len());
    for (input_id, bytes) in recorded {
        let events = decode_recorded(codec, &input_id, &bytes).await?;
        out.insert(input_id, events);
    }
    Ok(out)
}

async fn decode_recorded(codec: &Codec, input_id: &str, bytes: &[u8]) -> Result<Vec<AnyEvent>, StageError> {
    // Recorded by a newer worker, perhaps with versions this one has not seen.
    let _ = codec.learn_writers(event_frames(bytes)).await;
    decode_events(codec, bytes).map_err(|e| {
        StageError::Fatal(format!(
            "the recorded decision on event {input_id} does not decode: {e}"
        ))
    })
}
