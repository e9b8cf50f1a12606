//! Decoding at the door: the wire format, the schemas, the limits, the room for outputs.

use motcua_schemas::Codec;

use crate::config::RuntimeConfig;
use crate::consumer::Received;
use crate::dead_letter::DeadLetterReason;
use crate::{Door, Input};

/// Whether this group dead-letters bad messages of `topic` (see
/// [`RuntimeConfig::dead_letters_for`]).
pub(crate) fn owns(cfg: &RuntimeConfig, topic: &str) -> bool {
    match (&cfg.dead_letters_for, cfg.kafka.topic_of(topic)) {
        (None, _) | (_, None) => true,
        (Some(owned), Some(t)) => owned.contains(&t),
    }
}

/// Decodes a message and checks it against the limits at the door; the error is a
/// dead-letter reason (code, text naming fields and limits, never values).
///
/// A message from outside must also leave its outputs room below the door's topic limit
/// (the smallest limit of the flow's topics, [`crate::destinations::Destinations::smallest`]): the stage acts
/// before its outputs are framed, so an output found too large then would be an act
/// nobody hears of.
pub(crate) fn decode<I: Input>(
    codec: &Codec,
    cfg: &RuntimeConfig,
    door: &Door,
    m: &Received,
) -> Result<I, DeadLetterReason> {
    let Some(p) = &m.payload else {
        return Err(DeadLetterReason::new("EMPTY_PAYLOAD", "message has no value"));
    };
    let violation = |v: motcua_schemas::Violation| DeadLetterReason::new(v.code, v.to_string());
    door.limits.check_size(p.len()).map_err(violation)?;
    let Some(topic) = cfg.kafka.topic_of(&m.tp.0) else {
        return Err(DeadLetterReason::new(
            "UNKNOWN_TOPIC",
            format!("{} is not a topic of the flow", m.tp.0),
        ));
    };
    let input = I::decode(codec, topic, p).map_err(|e| DeadLetterReason::new(e.code(), crate::error_chain(&e)))?;
    input.check(&door.limits).map_err(violation)?;
    if topic.from_outside() {
        door.room_for_outputs(p.len()).map_err(violation)?;
    }
    Ok(input)
}
