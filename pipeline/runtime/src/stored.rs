//! Events a stage stores before it produces them (a parked dossier's decided outcome), so
//! that a crash between producing and forgetting re-emits exactly the same messages: per
//! event, its topic's index, its length and its framed message.

use motcua_schemas::{AnyEvent, Codec, Topic};

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
