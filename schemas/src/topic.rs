use std::fmt;
use std::str::FromStr;

/// Every topic of the flow. One event type and one Avro schema per topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Topic {
    Submitted,
    Accepted,
    Verified,
    PaymentRequested,
    PaymentConfirmed,
    Paid,
    Routed,
    Decided,
    Completed,
    Status,
    DeadLetter,
    // Appended, never inserted: a topic's index is stored with parked decisions.
    Supplemented,
    Withdrawn,
    Reappointed,
    SupplementRequested,
}

impl Topic {
    pub const ALL: [Topic; 15] = [
        Topic::Submitted,
        Topic::Accepted,
        Topic::Verified,
        Topic::PaymentRequested,
        Topic::PaymentConfirmed,
        Topic::Paid,
        Topic::Routed,
        Topic::Decided,
        Topic::Completed,
        Topic::Status,
        Topic::DeadLetter,
        Topic::Supplemented,
        Topic::Withdrawn,
        Topic::Reappointed,
        Topic::SupplementRequested,
    ];

    /// The default topic name (deployments may add a prefix, see the Kafka config).
    pub const fn name(self) -> &'static str {
        match self {
            Topic::Submitted => "dossier.submitted",
            Topic::Accepted => "dossier.accepted",
            Topic::Verified => "dossier.verified",
            Topic::PaymentRequested => "payment.requested",
            Topic::PaymentConfirmed => "payment.confirmed",
            Topic::Paid => "dossier.paid",
            Topic::Routed => "dossier.routed",
            Topic::Decided => "dossier.decided",
            Topic::Completed => "dossier.completed",
            Topic::Status => "dossier.status",
            Topic::DeadLetter => "dossier.dlq",
            Topic::Supplemented => "dossier.supplemented",
            Topic::Withdrawn => "dossier.withdrawn",
            Topic::Reappointed => "dossier.reappointed",
            Topic::SupplementRequested => "dossier.supplement-requested",
        }
    }

    /// The component that writes this topic (the `stage` a consumer sees in history and
    /// metrics); `None` for the topics every stage writes (statuses, dead letters). On
    /// `dossier.routed`, intake also writes the messages that send a dossier back to the
    /// back office (`DossierRouted::is_return`).
    pub const fn producer(self) -> Option<&'static str> {
        use crate::component::*;
        Some(match self {
            Topic::Submitted | Topic::Supplemented | Topic::Withdrawn => PORTAL,
            Topic::Accepted => INTAKE,
            Topic::Verified => VERIFY,
            Topic::PaymentRequested | Topic::Paid => PAYMENT,
            Topic::PaymentConfirmed => GATEWAY,
            Topic::Routed => ROUTE,
            Topic::Decided | Topic::Reappointed | Topic::SupplementRequested => BACKOFFICE,
            Topic::Completed => RESULT,
            Topic::Status | Topic::DeadLetter => return None,
        })
    }

    /// Whether messages of this topic come from outside the pipeline (portals, the payment
    /// gateway, officers): their size is not bounded by any stage of ours.
    pub fn from_outside(self) -> bool {
        use crate::component::*;
        matches!(self.producer(), Some(PORTAL | GATEWAY | BACKOFFICE))
    }

    /// Every component that writes this topic: the [`Topic::producer`] of a flow topic;
    /// for statuses, each component that changes one (track's deadline warnings included);
    /// for dead letters, each stage, whose runtime dead-letters what it cannot process.
    pub const fn writers(self) -> &'static [&'static str] {
        use crate::component::*;
        match self {
            Topic::Submitted | Topic::Supplemented | Topic::Withdrawn => &[PORTAL],
            Topic::Accepted => &[INTAKE],
            Topic::Verified => &[VERIFY],
            Topic::PaymentRequested | Topic::Paid => &[PAYMENT],
            Topic::PaymentConfirmed => &[GATEWAY],
            // Intake sends a dossier back to the back office with the papers it asked for.
            Topic::Routed => &[ROUTE, INTAKE],
            Topic::Decided | Topic::Reappointed | Topic::SupplementRequested => &[BACKOFFICE],
            Topic::Completed => &[RESULT],
            Topic::Status => &[INTAKE, VERIFY, PAYMENT, ROUTE, RESULT, TRACK],
            Topic::DeadLetter => &[INTAKE, VERIFY, PAYMENT, ROUTE, RESULT, TRACK],
        }
    }

    /// The components that consume this topic. For the stages this mirrors the inputs of
    /// the stage table (`motcua_wiring::STAGES`), which this crate cannot see: the schemas
    /// depend on nothing of ours. Nothing in the pipeline reads dead letters (operators do).
    pub const fn readers(self) -> &'static [&'static str] {
        use crate::component::*;
        match self {
            Topic::Submitted | Topic::Supplemented | Topic::Withdrawn | Topic::SupplementRequested => &[INTAKE, TRACK],
            Topic::Accepted => &[VERIFY, TRACK],
            Topic::Verified | Topic::PaymentConfirmed => &[PAYMENT, TRACK],
            Topic::PaymentRequested => &[GATEWAY, TRACK],
            Topic::Paid => &[ROUTE, TRACK],
            Topic::Routed => &[BACKOFFICE, TRACK],
            Topic::Decided => &[RESULT, TRACK],
            Topic::Completed | Topic::Reappointed => &[TRACK],
            // The portal shows the citizen the lookup token of the "received" status;
            // portal-sync pushes every change to the National Public Service Portal.
            Topic::Status => &[TRACK, PORTAL_SYNC, PORTAL],
            Topic::DeadLetter => &[],
        }
    }

    /// The event field whose value is the message key (a path as the data dictionary
    /// writes it); `None` when the key is not a field of the event (dead letters).
    /// `Event::key` is what sets it; a test checks the two agree.
    pub const fn key_field(self) -> Option<&'static str> {
        match self {
            Topic::Submitted | Topic::Accepted | Topic::Verified | Topic::Paid | Topic::Routed => {
                Some("dossier.dossier_id")
            }
            Topic::PaymentRequested
            | Topic::Decided
            | Topic::Completed
            | Topic::Status
            | Topic::Supplemented
            | Topic::Withdrawn
            | Topic::Reappointed
            | Topic::SupplementRequested => Some("dossier_id"),
            Topic::PaymentConfirmed => Some("bill_reference"),
            Topic::DeadLetter => None,
        }
    }

    /// What the message key is, for people reading the topic.
    pub const fn key_doc(self) -> &'static str {
        match self {
            Topic::PaymentConfirmed => {
                "the bill reference (`bill_reference`) as a UTF-8 string: the gateway knows no dossier id; \
                 `payment.requested` maps the bill to its dossier"
            }
            // Set by the runtime when it dead-letters (not by `Event::key`).
            Topic::DeadLetter => {
                "the original message's key, copied byte for byte (its first 64 KiB; for our topics a dossier \
                 id or bill reference); no key when the original had none"
            }
            _ => "the dossier id as a UTF-8 string, so all events of one dossier share a partition",
        }
    }

    /// The retention a topic gets. `motcua topics create` (motcua-kafka's `create_topics`)
    /// sets no topic configuration: change this with it.
    pub const fn retention_doc(self) -> &'static str {
        match self {
            Topic::DeadLetter => {
                "not set at creation, so the broker's default (`log.retention.ms` / `log.retention.hours`) \
                 applies. Give it one, e.g. 30 days (`retention.ms=2592000000`): a dead letter keeps a prefix of \
                 the original message, which can hold personal data; read access for operators only"
            }
            _ => {
                "not set at creation, so the broker's default (`log.retention.ms` / `log.retention.hours`) \
                 applies; set it to the province's records policy"
            }
        }
    }

    /// Confluent TopicNameStrategy subject of the message value.
    pub fn value_subject(self) -> String {
        format!("{}-value", self.name())
    }

    pub(crate) const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Topic {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Topic::ALL.into_iter().find(|t| t.name() == s).ok_or_else(|| {
            let known: Vec<&str> = Topic::ALL.iter().map(|t| t.name()).collect();
            format!("unknown topic '{s}'; known topics: {}", known.join(", "))
        })
    }
}
