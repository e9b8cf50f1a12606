//! Rust mirrors of the `.avsc` files in `schemas/avro/` (the source of truth).
//!
//! Field names and order follow the schemas exactly; `tests::every_event_round_trips`
//! proves each type encodes against, and decodes from, its schema. Timestamps are
//! milliseconds since the Unix epoch (`timestamp-millis`), dates days since the epoch.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Topic;

/// Milliseconds since 1970-01-01T00:00:00Z.
pub type TimestampMillis = i64;
/// Days since 1970-01-01.
pub type DateDays = i32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ApplicantKind {
    Citizen,
    Business,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Channel {
    Online,
    Counter,
    Postal,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Online => "online",
            Channel::Counter => "counter",
            Channel::Postal => "postal",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    pub phone: Option<String>,
    pub email: Option<String>,
    pub postal_address: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applicant {
    pub kind: ApplicantKind,
    pub citizen_id: Option<String>,
    pub tax_code: Option<String>,
    pub full_name: String,
    pub date_of_birth: Option<DateDays>,
    pub contact: Contact,
    pub residence_unit_code: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LandParcel {
    pub unit_code: String,
    pub map_sheet: i32,
    pub parcel_number: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Document {
    pub kind: String,
    pub uri: String,
    pub sha256: String,
    pub digitized: bool,
}

/// The dossier as submitted. It travels with every event, so no stage looks it up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dossier {
    pub dossier_id: String,
    pub portal: String,
    pub channel: Channel,
    pub receiving_unit_code: String,
    pub procedure_code: String,
    pub applicant: Applicant,
    pub land_parcels: Vec<LandParcel>,
    pub enterprise_tax_codes: Vec<String>,
    pub documents: Vec<Document>,
    pub form_fields: BTreeMap<String, String>,
    pub submitted_at: TimestampMillis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ProcedureField {
    Land,
    Residence,
    Certification,
    CivilStatus,
    Business,
    Construction,
}

impl ProcedureField {
    pub const ALL: [ProcedureField; 6] = [
        ProcedureField::Land,
        ProcedureField::Residence,
        ProcedureField::Certification,
        ProcedureField::CivilStatus,
        ProcedureField::Business,
        ProcedureField::Construction,
    ];

    /// The schema's own spelling (`LAND`, `CIVIL_STATUS`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            ProcedureField::Land => "LAND",
            ProcedureField::Residence => "RESIDENCE",
            ProcedureField::Certification => "CERTIFICATION",
            ProcedureField::CivilStatus => "CIVIL_STATUS",
            ProcedureField::Business => "BUSINESS",
            ProcedureField::Construction => "CONSTRUCTION",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CompetentLevel {
    Commune,
    Province,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LeadTimeUnit {
    WorkingDays,
    WorkingHours,
    CalendarDays,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcedureSummary {
    pub code: String,
    pub name: String,
    pub field: ProcedureField,
    pub level: CompetentLevel,
    pub lead_time: i32,
    pub lead_time_unit: LeadTimeUnit,
    pub fee_vnd: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DossierSubmitted {
    pub event_id: String,
    pub dossier: Dossier,
    pub published_at: TimestampMillis,
    pub traceparent: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DossierAccepted {
    pub event_id: String,
    pub causation_id: String,
    pub dossier_code: String,
    pub receiving_agency_code: String,
    pub received_at: TimestampMillis,
    pub procedure: ProcedureSummary,
    pub dossier: Dossier,
    pub traceparent: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Registry {
    Population,
    Land,
    Business,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CheckOutcome {
    Matched,
    Filled,
    Mismatch,
    NotFound,
    Skipped,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryCheck {
    pub registry: Registry,
    pub subject: String,
    pub outcome: CheckOutcome,
    pub detail: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DossierVerified {
    pub event_id: String,
    pub causation_id: String,
    pub dossier_code: String,
    pub received_at: TimestampMillis,
    pub procedure: ProcedureSummary,
    pub dossier: Dossier,
    pub checks: Vec<RegistryCheck>,
    pub verified_at: TimestampMillis,
    pub traceparent: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentRequested {
    pub event_id: String,
    pub causation_id: String,
    pub dossier_id: String,
    pub dossier_code: String,
    pub bill_reference: String,
    pub fee_vnd: i64,
    pub charge_vnd: i64,
    pub amount_vnd: i64,
    pub payer_name: String,
    pub description: String,
    pub issued_at: TimestampMillis,
    pub expires_at: TimestampMillis,
    pub traceparent: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PaymentOutcome {
    Succeeded,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentConfirmed {
    pub event_id: String,
    pub bill_reference: String,
    pub gateway: String,
    pub gateway_transaction_id: String,
    pub amount_vnd: i64,
    pub outcome: PaymentOutcome,
    pub failure_reason: Option<String>,
    pub confirmed_at: TimestampMillis,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DossierPaid {
    pub event_id: String,
    pub causation_id: String,
    pub dossier_code: String,
    pub received_at: TimestampMillis,
    pub procedure: ProcedureSummary,
    pub dossier: Dossier,
    pub bill_reference: Option<String>,
    pub amount_vnd: i64,
    pub paid_at: TimestampMillis,
    pub traceparent: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DossierRouted {
    pub event_id: String,
    pub causation_id: String,
    pub dossier_code: String,
    pub received_at: TimestampMillis,
    pub procedure: ProcedureSummary,
    pub dossier: Dossier,
    pub competent_unit_code: String,
    pub competent_unit_name: String,
    pub desk: String,
    pub transferred: bool,
    pub due_at: TimestampMillis,
    pub routed_at: TimestampMillis,
    pub traceparent: Option<String>,
    /// Added in schema v2: which calendar data computed `due_at` (`sha256:<hex>`);
    /// `None` when read from a v1 message.
    pub calendar_version: Option<String>,
    /// Added in schema v2: the pauses of the legal clock before routing, oldest first
    /// (empty when read from a v1 message).
    pub clock_pauses: Vec<ClockPause>,
}

impl DossierRouted {
    /// Whether this message sends the dossier back to the back office with the papers it
    /// asked for (written by intake, not route): its last pause of the legal clock is the
    /// back office's and ends when the message was sent. Route never writes such a pause
    /// last with that end: the back office asks only after routing.
    pub fn is_return(&self) -> bool {
        self.clock_pauses
            .last()
            .is_some_and(|p| p.step == crate::component::BACKOFFICE && p.to_at == self.routed_at)
    }
}

/// A period the legal clock stood still while the dossier waited for a supplement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockPause {
    pub step: String,
    pub from_at: TimestampMillis,
    pub to_at: TimestampMillis,
    pub paused_working_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Decision {
    Approved,
    Refused,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DossierDecided {
    pub event_id: String,
    pub dossier_id: String,
    pub dossier_code: String,
    pub procedure_code: String,
    pub competent_unit_code: String,
    pub decision: Decision,
    pub reasons: Vec<Reason>,
    pub decided_by: String,
    pub applicant_citizen_id: Option<String>,
    pub applicant_tax_code: Option<String>,
    pub received_at: TimestampMillis,
    pub due_at: TimestampMillis,
    pub decided_at: TimestampMillis,
    pub traceparent: Option<String>,
    /// Added in schema v2: when the appraisal ended (the approval step began); `None`
    /// when read from a v1 message or not reported.
    pub appraised_at: Option<TimestampMillis>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultDocument {
    pub reference: String,
    pub sha256: String,
    #[serde(with = "avro_bytes")]
    pub signature: Vec<u8>,
    pub signing_key_id: String,
    pub uri: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Timeliness {
    Early,
    OnTime,
    Late,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DossierCompleted {
    pub event_id: String,
    pub causation_id: String,
    pub dossier_id: String,
    pub dossier_code: String,
    pub procedure_code: String,
    pub competent_unit_code: String,
    pub decision: Decision,
    pub result_document: ResultDocument,
    pub wallet_owner: String,
    pub received_at: TimestampMillis,
    pub due_at: TimestampMillis,
    pub delivered_at: TimestampMillis,
    pub timeliness: Timeliness,
    pub traceparent: Option<String>,
    /// Added in schema v2: the signed result record (RFC 8785 canonical JSON) and its
    /// Ed25519 signature; `None` when read from a v1 message.
    pub signed_record: Option<String>,
    #[serde(with = "avro_opt_bytes")]
    pub record_signature: Option<Vec<u8>>,
    /// Added in schema v3: the e-wallet gateway's receipt (the event is produced once the
    /// wallet acknowledged); `None` when read from an older message.
    #[serde(default)]
    pub wallet_receipt_id: Option<String>,
}

/// The national public service portal's status codes (1..10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DossierStatus {
    Registered,
    Received,
    RejectedAtReception,
    Processing,
    SupplementRequested,
    FinancialObligationRequested,
    Withdrawn,
    ProcessingStopped,
    Completed,
    ResultReturned,
}

/// Where a status stands in a dossier's life. A dossier never goes back from a later
/// phase to an earlier one, whatever the clocks of the stages say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// Still being worked on (or waiting on the citizen): the legal clock matters.
    Open,
    /// Decided or rejected.
    Closed,
    /// Withdrawn or stopped. The store lets one of decision, withdrawal and stop close a
    /// dossier, and a withdrawal or stop is announced only when it won: a decision sent
    /// afterwards by a back office that had not heard of it does not undo it.
    Ended,
    /// The result is in the citizen's hands.
    Returned,
}

/// The one table of the national statuses: code, name, phase, and the precedence that
/// orders two statuses reached in the same millisecond (the greater wins).
#[rustfmt::skip]
const STATUS_TABLE: [(DossierStatus, i32, &str, Phase, u8); 10] = [
    (DossierStatus::Registered,                   1,  "registered",                     Phase::Open,     1),
    (DossierStatus::Received,                     2,  "received",                       Phase::Open,     2),
    (DossierStatus::RejectedAtReception,          3,  "rejected_at_reception",          Phase::Closed,   7),
    (DossierStatus::Processing,                   4,  "processing",                     Phase::Open,     4),
    (DossierStatus::SupplementRequested,          5,  "supplement_requested",           Phase::Open,     5),
    (DossierStatus::FinancialObligationRequested, 6,  "financial_obligation_requested", Phase::Open,     3),
    (DossierStatus::Withdrawn,                    7,  "withdrawn",                      Phase::Ended,    8),
    (DossierStatus::ProcessingStopped,            8,  "processing_stopped",             Phase::Ended,    9),
    (DossierStatus::Completed,                    9,  "completed",                      Phase::Closed,   6),
    (DossierStatus::ResultReturned,               10, "result_returned",                Phase::Returned, 10),
];

impl DossierStatus {
    /// Every status, in code order (from the table).
    pub const ALL: [DossierStatus; 10] = {
        let mut all = [DossierStatus::Registered; 10];
        let mut i = 0;
        while i < all.len() {
            all[i] = STATUS_TABLE[i].0;
            i += 1;
        }
        all
    };

    fn row(self) -> &'static (DossierStatus, i32, &'static str, Phase, u8) {
        // The table is in declaration order (checked by a test).
        &STATUS_TABLE[self as usize]
    }

    /// The national portal's numeric code.
    pub fn code(self) -> i32 {
        self.row().1
    }

    /// The status of a national code, if it is one.
    pub fn from_code(code: i32) -> Option<Self> {
        STATUS_TABLE.iter().find(|r| r.1 == code).map(|r| r.0)
    }

    pub fn as_str(self) -> &'static str {
        self.row().2
    }

    pub fn phase(self) -> Phase {
        self.row().3
    }

    /// Whether the dossier is still being worked on (its deadline runs, or is paused
    /// while it waits for a supplement).
    pub fn is_open(self) -> bool {
        self.phase() == Phase::Open
    }

    /// Precedence between statuses reached in the same millisecond (greater wins).
    pub fn precedence(self) -> u8 {
        self.row().4
    }
}

/// An event that can cause a status change: it names the dossier and what is known of it
/// at that point (code, procedure, the unit it is with, its due time).
pub trait StatusCause {
    fn cause_event_id(&self) -> &str;
    fn dossier_id(&self) -> &str;
    fn dossier_code(&self) -> Option<&str>;
    fn procedure_code(&self) -> &str;
    /// The unit the dossier is with: the receiving unit until it is routed, then the
    /// competent one.
    fn unit_code(&self) -> &str;
    fn due_at(&self) -> Option<TimestampMillis>;
    fn traceparent(&self) -> Option<&str>;
}

macro_rules! status_cause {
    ($ty:ty, |$s:ident| code: $code:expr, procedure: $proc:expr, dossier: $dossier:expr, unit: $unit:expr, due: $due:expr) => {
        impl StatusCause for $ty {
            fn cause_event_id(&self) -> &str {
                &self.event_id
            }
            fn dossier_id(&self) -> &str {
                let $s = self;
                $dossier
            }
            #[allow(unused_variables)]
            fn dossier_code(&self) -> Option<&str> {
                let $s = self;
                $code
            }
            fn procedure_code(&self) -> &str {
                let $s = self;
                $proc
            }
            fn unit_code(&self) -> &str {
                let $s = self;
                $unit
            }
            #[allow(unused_variables)]
            fn due_at(&self) -> Option<TimestampMillis> {
                let $s = self;
                $due
            }
            fn traceparent(&self) -> Option<&str> {
                self.traceparent.as_deref()
            }
        }
    };
}

status_cause!(DossierSubmitted, |s| code: None, procedure: &s.dossier.procedure_code,
    dossier: &s.dossier.dossier_id, unit: &s.dossier.receiving_unit_code, due: None);
status_cause!(DossierAccepted, |s| code: Some(&s.dossier_code), procedure: &s.procedure.code,
    dossier: &s.dossier.dossier_id, unit: &s.dossier.receiving_unit_code, due: None);
status_cause!(DossierVerified, |s| code: Some(&s.dossier_code), procedure: &s.procedure.code,
    dossier: &s.dossier.dossier_id, unit: &s.dossier.receiving_unit_code, due: None);
status_cause!(DossierPaid, |s| code: Some(&s.dossier_code), procedure: &s.procedure.code,
    dossier: &s.dossier.dossier_id, unit: &s.dossier.receiving_unit_code, due: None);
status_cause!(DossierRouted, |s| code: Some(&s.dossier_code), procedure: &s.procedure.code,
    dossier: &s.dossier.dossier_id, unit: &s.competent_unit_code, due: Some(s.due_at));
status_cause!(DossierDecided, |s| code: Some(&s.dossier_code), procedure: &s.procedure_code,
    dossier: &s.dossier_id, unit: &s.competent_unit_code, due: Some(s.due_at));

impl DossierStatusChanged {
    /// A status change with no cause event (a timer's, e.g. a deadline warning): the
    /// optional facts are empty until set with the `with_*` methods.
    pub fn new(
        event_id: String,
        stage: &str,
        dossier_id: &str,
        status: DossierStatus,
        occurred_at: TimestampMillis,
    ) -> Self {
        Self {
            event_id,
            causation_id: None,
            dossier_id: dossier_id.to_owned(),
            dossier_code: None,
            status,
            status_code: status.code(),
            procedure_code: None,
            stage: stage.to_owned(),
            reasons: Vec::new(),
            unit_code: None,
            due_at: None,
            occurred_at,
            traceparent: None,
            lookup_token: None,
        }
    }

    /// The status change `stage` makes because of `cause`: its event id derives from the
    /// cause's (so a redelivery emits the identical event), and the dossier's facts come
    /// from the cause.
    pub fn caused_by(
        cause: &impl StatusCause,
        stage: &str,
        kind: &str,
        status: DossierStatus,
        occurred_at: TimestampMillis,
    ) -> Self {
        Self::about(cause, cause.cause_event_id(), stage, kind, status, occurred_at)
    }

    /// Like [`Self::caused_by`], for a dossier described by `dossier` but caused by another
    /// event (a payment confirmation about a verified dossier, a timer).
    pub fn about(
        dossier: &impl StatusCause,
        cause_event_id: &str,
        stage: &str,
        kind: &str,
        status: DossierStatus,
        occurred_at: TimestampMillis,
    ) -> Self {
        let mut e = Self::new(
            crate::derived_event_id(cause_event_id, stage, kind),
            stage,
            dossier.dossier_id(),
            status,
            occurred_at,
        );
        e.causation_id = Some(cause_event_id.to_owned());
        e.dossier_code = dossier.dossier_code().map(str::to_owned);
        e.procedure_code = Some(dossier.procedure_code().to_owned());
        e.unit_code = Some(dossier.unit_code().to_owned());
        e.due_at = dossier.due_at();
        e.traceparent = dossier.traceparent().map(str::to_owned);
        e
    }

    pub fn with_reasons(mut self, reasons: Vec<Reason>) -> Self {
        self.reasons = reasons;
        self
    }

    pub fn with_code(mut self, dossier_code: Option<String>) -> Self {
        self.dossier_code = dossier_code;
        self
    }

    /// The lookup token the citizen was given (the "received" status carries it to the
    /// portal and the status service).
    pub fn with_lookup_token(mut self, token: String) -> Self {
        self.lookup_token = Some(token);
        self
    }

    pub fn with_procedure(mut self, procedure_code: Option<String>) -> Self {
        self.procedure_code = procedure_code;
        self
    }

    /// The unit the dossier is with and its due time (an assignment: routing, a due time
    /// moved after a supplement pause).
    pub fn with_assignment(mut self, unit_code: Option<String>, due_at: Option<TimestampMillis>) -> Self {
        self.unit_code = unit_code;
        self.due_at = due_at;
        self
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DossierStatusChanged {
    pub event_id: String,
    pub causation_id: Option<String>,
    pub dossier_id: String,
    pub dossier_code: Option<String>,
    pub status: DossierStatus,
    pub status_code: i32,
    /// Added in schema v2; `None` when read from a v1 message.
    pub procedure_code: Option<String>,
    pub stage: String,
    pub reasons: Vec<Reason>,
    pub unit_code: Option<String>,
    pub due_at: Option<TimestampMillis>,
    pub occurred_at: TimestampMillis,
    pub traceparent: Option<String>,
    /// Added in schema v3: the citizen's lookup token, on the "received" status only
    /// (`None` otherwise, and when read from an older message).
    pub lookup_token: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub event_id: String,
    pub stage: String,
    pub reason_code: String,
    pub reason: String,
    pub origin_topic: String,
    pub origin_partition: i32,
    pub origin_offset: i64,
    #[serde(with = "avro_opt_bytes")]
    pub origin_key: Option<Vec<u8>>,
    #[serde(with = "avro_opt_bytes")]
    pub origin_value: Option<Vec<u8>>,
    pub failed_at: TimestampMillis,
}

/// Papers and fields a citizen added or corrected for a dossier waiting for them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DossierSupplemented {
    pub event_id: String,
    pub dossier_id: String,
    pub dossier_code: Option<String>,
    pub portal: String,
    pub documents: Vec<Document>,
    pub form_fields: BTreeMap<String, String>,
    pub land_parcels: Option<Vec<LandParcel>>,
    pub residence_unit_code: Option<String>,
    pub full_name: Option<String>,
    pub date_of_birth: Option<DateDays>,
    pub supplemented_at: TimestampMillis,
    pub published_at: TimestampMillis,
    pub traceparent: Option<String>,
}

/// A citizen's withdrawal of a dossier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DossierWithdrawn {
    pub event_id: String,
    pub dossier_id: String,
    pub dossier_code: Option<String>,
    pub portal: String,
    pub reason_code: Option<String>,
    pub withdrawn_at: TimestampMillis,
    pub published_at: TimestampMillis,
    pub traceparent: Option<String>,
}

/// A new appointment: the authority will be late, apologised in writing, and promised a
/// new date (the legal due time stays what it was).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DossierReappointed {
    pub event_id: String,
    pub dossier_id: String,
    pub dossier_code: String,
    pub competent_unit_code: String,
    pub reason_code: String,
    pub apology_reference: String,
    pub previous_due_at: TimestampMillis,
    pub new_due_at: TimestampMillis,
    pub issued_by: String,
    pub issued_at: TimestampMillis,
    pub traceparent: Option<String>,
}

/// The back office asks the citizen for papers of a routed dossier; intake records the
/// wait and announces it (the back office does not change statuses itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DossierSupplementRequested {
    pub event_id: String,
    pub dossier_id: String,
    pub dossier_code: String,
    pub competent_unit_code: String,
    pub reasons: Vec<Reason>,
    pub requested_by: String,
    pub requested_at: TimestampMillis,
    pub traceparent: Option<String>,
}

/// An event type bound to its topic. The key of every message is the dossier id
/// (the bill reference on `payment.confirmed`, which the gateway knows), so all events
/// of one dossier stay ordered on one partition.
pub trait Event: Serialize + for<'de> Deserialize<'de> + Clone + Send + Sync + 'static {
    const TOPIC: Topic;
    fn key(&self) -> &str;
    fn event_id(&self) -> &str;
    /// The W3C trace context the event carries (always `None` for the gateway's
    /// confirmations and dead letters, which have no field for it).
    fn traceparent(&self) -> Option<&str>;
    /// The trace of the event's dossier: its `traceparent`, else the one its dossier id
    /// gives ([`crate::dossier_traceparent`], what intake starts for a submission that
    /// came without one); `None` for events outside a dossier's trace.
    fn dossier_trace(&self) -> Option<std::borrow::Cow<'_, str>>;
}

macro_rules! event {
    ($ty:ty, $topic:expr, |$s:ident| $key:expr) => {
        event!(@impl $ty, $topic, |$s| $key, |e| e.traceparent.as_deref(), |e| Some(
            e.traceparent.as_deref().map_or_else(
                || std::borrow::Cow::Owned(crate::dossier_traceparent(Event::key(e), &e.event_id)),
                std::borrow::Cow::Borrowed
            )
        ));
    };
    ($ty:ty, $topic:expr, |$s:ident| $key:expr, untraced) => {
        event!(@impl $ty, $topic, |$s| $key, |_e| None, |_e| None);
    };
    (@impl $ty:ty, $topic:expr, |$s:ident| $key:expr, |$t:ident| $trace:expr, |$d:ident| $dossier:expr) => {
        impl Event for $ty {
            const TOPIC: Topic = $topic;
            fn key(&self) -> &str {
                let $s = self;
                $key
            }
            fn event_id(&self) -> &str {
                &self.event_id
            }
            fn traceparent(&self) -> Option<&str> {
                let $t = self;
                $trace
            }
            fn dossier_trace(&self) -> Option<std::borrow::Cow<'_, str>> {
                let $d = self;
                $dossier
            }
        }
    };
}

event!(DossierSubmitted, Topic::Submitted, |s| &s.dossier.dossier_id);
event!(DossierAccepted, Topic::Accepted, |s| &s.dossier.dossier_id);
event!(DossierVerified, Topic::Verified, |s| &s.dossier.dossier_id);
event!(PaymentRequested, Topic::PaymentRequested, |s| &s.dossier_id);
event!(
    PaymentConfirmed,
    Topic::PaymentConfirmed,
    |s| &s.bill_reference,
    untraced
);
event!(DossierPaid, Topic::Paid, |s| &s.dossier.dossier_id);
event!(DossierRouted, Topic::Routed, |s| &s.dossier.dossier_id);
event!(DossierDecided, Topic::Decided, |s| &s.dossier_id);
event!(DossierCompleted, Topic::Completed, |s| &s.dossier_id);
event!(DossierStatusChanged, Topic::Status, |s| &s.dossier_id);
event!(DeadLetter, Topic::DeadLetter, |s| &s.event_id, untraced);
event!(DossierSupplemented, Topic::Supplemented, |s| &s.dossier_id);
event!(DossierWithdrawn, Topic::Withdrawn, |s| &s.dossier_id);
event!(DossierReappointed, Topic::Reappointed, |s| &s.dossier_id);
event!(DossierSupplementRequested, Topic::SupplementRequested, |s| &s
    .dossier_id);

/// Avro `bytes` must reach the serializer as bytes, not as a sequence of integers.
mod avro_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        Ok(serde_bytes_buf::ByteBuf::deserialize(d)?.0)
    }

    pub(super) mod serde_bytes_buf {
        use std::fmt;

        use serde::de::{self, SeqAccess, Visitor};
        use serde::{Deserialize, Deserializer};

        pub(crate) struct ByteBuf(pub(crate) Vec<u8>);

        impl<'de> Deserialize<'de> for ByteBuf {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = ByteBuf;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str("bytes")
                    }
                    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<ByteBuf, E> {
                        Ok(ByteBuf(v.to_vec()))
                    }
                    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<ByteBuf, E> {
                        Ok(ByteBuf(v))
                    }
                    fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteBuf, E> {
                        Ok(ByteBuf(v.as_bytes().to_vec()))
                    }
                    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ByteBuf, A::Error> {
                        let mut out = Vec::new();
                        while let Some(b) = seq.next_element::<u8>()? {
                            out.push(b);
                        }
                        Ok(ByteBuf(out))
                    }
                }
                d.deserialize_bytes(V)
            }
        }
    }
}

mod avro_opt_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::avro_bytes::serde_bytes_buf::ByteBuf;

    pub(super) fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_some(&Bytes(b)),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        Ok(Option::<ByteBuf>::deserialize(d)?.map(|b| b.0))
    }

    struct Bytes<'a>(&'a [u8]);

    impl serde::Serialize for Bytes<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(self.0)
        }
    }
}

/// Any event of the flow, for stages that emit to several topics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnyEvent {
    Submitted(DossierSubmitted),
    Accepted(DossierAccepted),
    Verified(DossierVerified),
    PaymentRequested(PaymentRequested),
    PaymentConfirmed(PaymentConfirmed),
    Paid(DossierPaid),
    Routed(DossierRouted),
    Decided(DossierDecided),
    Completed(DossierCompleted),
    Status(DossierStatusChanged),
    DeadLetter(DeadLetter),
    Supplemented(DossierSupplemented),
    Withdrawn(DossierWithdrawn),
    Reappointed(DossierReappointed),
    SupplementRequested(DossierSupplementRequested),
}

macro_rules! any_event {
    ($($variant:ident($ty:ty)),* $(,)?) => {
        impl AnyEvent {
            pub fn topic(&self) -> Topic {
                match self { $(AnyEvent::$variant(_) => <$ty as Event>::TOPIC,)* }
            }
            pub fn key(&self) -> &str {
                match self { $(AnyEvent::$variant(e) => e.key(),)* }
            }
            pub fn event_id(&self) -> &str {
                match self { $(AnyEvent::$variant(e) => e.event_id(),)* }
            }
            /// The W3C trace context the event carries ([`Event::traceparent`]).
            pub fn traceparent(&self) -> Option<&str> {
                match self { $(AnyEvent::$variant(e) => Event::traceparent(e),)* }
            }
            /// The trace of the event's dossier ([`Event::dossier_trace`]).
            pub fn dossier_trace(&self) -> Option<std::borrow::Cow<'_, str>> {
                match self { $(AnyEvent::$variant(e) => Event::dossier_trace(e),)* }
            }
            pub fn encode(&self, codec: &crate::Codec, out: &mut Vec<u8>) -> crate::Result<()> {
                match self { $(AnyEvent::$variant(e) => codec.encode_into(e, out),)* }
            }
            /// Decodes a message of `topic`.
            pub fn decode(codec: &crate::Codec, topic: Topic, bytes: &[u8]) -> crate::Result<Self> {
                Ok(match topic { $(<$ty as Event>::TOPIC => AnyEvent::$variant(codec.decode(bytes)?),)* })
            }
            /// A message of `topic` through the decoding fast path alone, and through the
            /// general path alone (tests hold the two to the same result).
            #[cfg(test)]
            pub(crate) fn decode_both(codec: &crate::Codec, topic: Topic, bytes: &[u8]) -> (Option<Self>, crate::Result<Self>) {
                match topic { $(<$ty as Event>::TOPIC => (
                    codec.decode_fast::<$ty>(bytes).map(AnyEvent::$variant),
                    codec.decode_general::<$ty>(bytes).map(AnyEvent::$variant),
                ),)* }
            }
        }
        $(impl From<$ty> for AnyEvent {
            fn from(e: $ty) -> Self { AnyEvent::$variant(e) }
        })*
    };
}

any_event!(
    Submitted(DossierSubmitted),
    Accepted(DossierAccepted),
    Verified(DossierVerified),
    PaymentRequested(PaymentRequested),
    PaymentConfirmed(PaymentConfirmed),
    Paid(DossierPaid),
    Routed(DossierRouted),
    Decided(DossierDecided),
    Completed(DossierCompleted),
    Status(DossierStatusChanged),
    DeadLetter(DeadLetter),
    Supplemented(DossierSupplemented),
    Withdrawn(DossierWithdrawn),
    Reappointed(DossierReappointed),
    SupplementRequested(DossierSupplementRequested),
);
