//! The door: what a message must be before a stage acts on it.

use motcua_schemas::{Limits, Validate, Violation};

/// The limits at the door, and the smallest message limit of the flow's topics (dead
/// letters aside): no output can be larger. Every input reaches its stage with the door
/// it passed ([`crate::Envelope::door`]), so that a stage which builds a dossier out of
/// several messages (intake merging a supplement into a waiting dossier) holds the
/// result to the door a portal's message passes: an output found too large only after
/// the stage acted would be an act nobody hears of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Door {
    pub limits: Limits,
    /// The smallest message limit of the flow's topics, in bytes.
    pub topic_limit: usize,
}

impl Default for Door {
    /// The default limits, and topics that take what the default limits let in.
    fn default() -> Self {
        let limits = Limits::default();
        let topic_limit = limits.max_message_bytes;
        Self { limits, topic_limit }
    }
}

impl Door {
    /// Whether `event`, encoded in `len` bytes, would pass as a message from outside the
    /// pipeline: its fields within the limits, and room left below the topics' limit
    /// for what the flow adds to it (`limits.output_room_bytes`).
    pub fn admits_from_outside(&self, event: &impl Validate, len: usize) -> Result<(), Violation> {
        self.limits.check_size(len)?;
        self.limits.check(event)?;
        self.room_for_outputs(len)
    }

    /// The room check alone, for a message whose fields were checked already.
    pub(crate) fn room_for_outputs(&self, len: usize) -> Result<(), Violation> {
        self.limits.check_room(len, self.topic_limit)
    }
}
