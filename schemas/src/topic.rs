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
}

impl Topic {
    pub const ALL: [Topic; 11] = [
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
        }
    }

    /// The component that writes this topic (the `stage` a consumer sees in history and
    /// metrics); `None` for the topics every stage writes (statuses, dead letters).
    pub const fn producer(self) -> Option<&'static str> {
        use crate::component::*;
        Some(match self {
            Topic::Submitted => PORTAL,
            Topic::Accepted => INTAKE,
            Topic::Verified => VERIFY,
            Topic::PaymentRequested | Topic::Paid => PAYMENT,
            Topic::PaymentConfirmed => GATEWAY,
            Topic::Routed => ROUTE,
            Topic::Decided => BACKOFFICE,
            Topic::Completed => RESULT,
            Topic::Status | Topic::DeadLetter => return None,
        })
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
