//! Limits at the door: what a decoded event may hold before any stage acts on it.
//!
//! A well-formed Avro message can still be hostile: a 600 KB name that makes every
//! output too large, a NUL byte in a dossier id, ten thousand documents, a timestamp in
//! the year 30000. The runtime checks every decoded input against [`Limits`] and
//! dead-letters what breaks one, with a [`Violation`] that names the field and the limit
//! but never the value (values may be personal data).

use serde::{Deserialize, Serialize};

use crate::events::*;

/// The limits, with defaults generous for real dossiers and tight for attacks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest message value read from Kafka, in bytes.
    pub max_message_bytes: usize,
    /// Identifiers the pipeline keys on (dossier and event ids, dossier codes, bill
    /// references, trace contexts): at most this many bytes of `A–Z a–z 0–9 . _ - : / @ +`.
    /// Codes a stage checks itself (citizen IDs, procedure and unit codes) get the same
    /// length limit and no control characters, so that their stage can refuse them with
    /// a reason the citizen understands.
    pub max_identifier_bytes: usize,
    /// Names of people, enterprises, units and procedures, in bytes (UTF-8).
    pub max_name_bytes: usize,
    /// Other text (addresses, URIs, descriptions, reasons, form values), in bytes.
    pub max_text_bytes: usize,
    /// Documents attached to one dossier.
    pub max_documents: usize,
    /// Land parcels of one dossier.
    pub max_parcels: usize,
    /// Enterprise tax codes of one dossier.
    pub max_tax_codes: usize,
    /// Form fields of one dossier.
    pub max_form_fields: usize,
    /// Reasons of one status or decision, registry checks of one verification.
    pub max_reasons: usize,
    /// Timestamps (ms since the epoch) must lie in `[min_timestamp_ms, max_timestamp_ms]`.
    pub min_timestamp_ms: i64,
    pub max_timestamp_ms: i64,
    /// Bytes the flow may add to a dossier after it comes in (its procedure, registry
    /// checks, routing): a message from outside the pipeline (a portal's, the gateway's,
    /// an officer's) must leave this much room below the smallest message limit of the
    /// flow's topics, or it is refused at the door: found only once its stage had acted,
    /// an output too large would leave that act unannounced.
    pub output_room_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_bytes: 1_000_000,
            max_identifier_bytes: 128,
            max_name_bytes: 400,
            max_text_bytes: 4_000,
            max_documents: 100,
            max_parcels: 50,
            max_tax_codes: 50,
            max_form_fields: 200,
            max_reasons: 50,
            // 1970-01-01 .. 2200-01-01
            min_timestamp_ms: 0,
            max_timestamp_ms: 7_258_118_400_000,
            output_room_bytes: 65_536,
        }
    }
}

/// Dates of birth: from 1870 to 2170 (days since the epoch).
const DATE_DAYS: std::ops::RangeInclusive<i32> = -36_525..=73_048;

/// A broken limit: a stable code, the field and what was wrong — never the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {detail}")]
pub struct Violation {
    /// `FIELD_TOO_LONG`, `BAD_IDENTIFIER`, `CONTROL_CHARACTER`, `TOO_MANY_ITEMS`,
    /// `TIMESTAMP_OUT_OF_RANGE` or `MESSAGE_TOO_LARGE`.
    pub code: &'static str,
    pub field: &'static str,
    pub detail: String,
}

impl Limits {
    /// The check of a message's size, before it is decoded.
    pub fn check_size(&self, len: usize) -> Result<(), Violation> {
        if len > self.max_message_bytes {
            return Err(Violation {
                code: "MESSAGE_TOO_LARGE",
                field: "message",
                detail: format!("{len} bytes, more than the limit of {}", self.max_message_bytes),
            });
        }
        Ok(())
    }

    /// The check of a message from outside the pipeline against the room its outputs need
    /// below `topic_limit`, the smallest message limit of the flow's topics.
    pub fn check_room(&self, len: usize, topic_limit: usize) -> Result<(), Violation> {
        if len.saturating_add(self.output_room_bytes) > topic_limit {
            return Err(Violation {
                code: "MESSAGE_TOO_LARGE",
                field: "message",
                detail: format!(
                    "{len} bytes leave less than the {} bytes the flow adds to a dossier below the {topic_limit}-byte limit of its topics",
                    self.output_room_bytes
                ),
            });
        }
        Ok(())
    }

    /// Checks a decoded event; the first broken limit is returned.
    pub fn check(&self, event: &impl Validate) -> Result<(), Violation> {
        let mut c = Checker {
            limits: self,
            first: None,
        };
        event.validate(&mut c);
        c.first.map_or(Ok(()), Err)
    }
}

/// An event whose fields the limits apply to.
pub trait Validate {
    fn validate(&self, c: &mut Checker<'_>);
}

/// Collects the first violation while an event's fields are visited.
#[derive(Debug)]
pub struct Checker<'a> {
    limits: &'a Limits,
    first: Option<Violation>,
}

fn is_identifier_byte(b: u8) -> bool {
    IDENTIFIER_BYTES[b as usize]
}

/// A table rather than a chain of comparisons: every input's identifiers go through it.
const IDENTIFIER_BYTES: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-' | b':' | b'/' | b'@' | b'+');
        b += 1;
    }
    t
};

/// Whether `v` holds a control character (Unicode category Cc: U+0000–U+001F and
/// U+007F–U+009F), line breaks and tabs excepted when `allow_newlines`. Scans bytes, not
/// chars: in UTF-8 the C1 controls are exactly 0xC2 followed by 0x80–0x9F.
fn has_control(v: &str, allow_newlines: bool) -> bool {
    let b = v.as_bytes();
    b.iter().enumerate().any(|(i, &x)| match x {
        b'\n' | b'\r' | b'\t' => !allow_newlines,
        0x00..=0x1f | 0x7f => true,
        0xc2 => matches!(b.get(i + 1), Some(0x80..=0x9f)),
        _ => false,
    })
}

impl Checker<'_> {
    fn fail(&mut self, code: &'static str, field: &'static str, detail: String) {
        if self.first.is_none() {
            self.first = Some(Violation { code, field, detail });
        }
    }

    pub fn id(&mut self, field: &'static str, v: &str) {
        let max = self.limits.max_identifier_bytes;
        if v.is_empty() || v.len() > max {
            self.fail(
                "BAD_IDENTIFIER",
                field,
                format!("{} bytes, must be 1 to {max}", v.len()),
            );
        } else if let Some(b) = v.bytes().find(|b| !is_identifier_byte(*b)) {
            let what = if b.is_ascii_control() {
                "a control character"
            } else {
                "a character outside A-Z a-z 0-9 . _ - : / @ +"
            };
            self.fail("BAD_IDENTIFIER", field, format!("contains {what}"));
        }
    }

    /// A code a stage checks itself and refuses with a reason (a citizen ID, a procedure
    /// or unit code): here only its length and the absence of control characters.
    pub fn code(&mut self, field: &'static str, v: &str) {
        self.bounded(field, v, self.limits.max_identifier_bytes, false);
    }

    pub fn opt_code(&mut self, field: &'static str, v: Option<&str>) {
        if let Some(v) = v {
            self.code(field, v);
        }
    }

    pub fn opt_id(&mut self, field: &'static str, v: Option<&str>) {
        if let Some(v) = v {
            self.id(field, v);
        }
    }

    fn bounded(&mut self, field: &'static str, v: &str, max: usize, allow_newlines: bool) {
        if v.len() > max {
            self.fail("FIELD_TOO_LONG", field, format!("{} bytes, more than {max}", v.len()));
        } else if has_control(v, allow_newlines) {
            self.fail("CONTROL_CHARACTER", field, "contains a control character".to_owned());
        }
    }

    /// A name: one line, no control characters.
    pub fn name(&mut self, field: &'static str, v: &str) {
        self.bounded(field, v, self.limits.max_name_bytes, false);
    }

    /// Free text: line breaks and tabs allowed, other control characters not.
    pub fn text(&mut self, field: &'static str, v: &str) {
        self.bounded(field, v, self.limits.max_text_bytes, true);
    }

    pub fn opt_text(&mut self, field: &'static str, v: Option<&str>) {
        if let Some(v) = v {
            self.text(field, v);
        }
    }

    pub fn count(&mut self, field: &'static str, n: usize, max: usize) {
        if n > max {
            self.fail("TOO_MANY_ITEMS", field, format!("{n} items, more than {max}"));
        }
    }

    pub fn at(&mut self, field: &'static str, ms: i64) {
        let (lo, hi) = (self.limits.min_timestamp_ms, self.limits.max_timestamp_ms);
        if !(lo..=hi).contains(&ms) {
            self.fail("TIMESTAMP_OUT_OF_RANGE", field, format!("outside {lo}..={hi} ms"));
        }
    }

    pub fn opt_at(&mut self, field: &'static str, ms: Option<i64>) {
        if let Some(ms) = ms {
            self.at(field, ms);
        }
    }

    fn reasons(&mut self, field: &'static str, reasons: &[Reason]) {
        self.count(field, reasons.len(), self.limits.max_reasons);
        for r in reasons {
            self.id("reasons.code", &r.code);
            self.text("reasons.message", &r.message);
        }
    }

    fn procedure(&mut self, p: &ProcedureSummary) {
        self.code("procedure.code", &p.code);
        self.name("procedure.name", &p.name);
    }
}

impl Validate for Dossier {
    fn validate(&self, c: &mut Checker<'_>) {
        let l = c.limits;
        c.id("dossier.dossier_id", &self.dossier_id);
        c.code("dossier.portal", &self.portal);
        c.code("dossier.receiving_unit_code", &self.receiving_unit_code);
        c.code("dossier.procedure_code", &self.procedure_code);
        let a = &self.applicant;
        c.opt_code("dossier.applicant.citizen_id", a.citizen_id.as_deref());
        c.opt_code("dossier.applicant.tax_code", a.tax_code.as_deref());
        c.name("dossier.applicant.full_name", &a.full_name);
        if let Some(d) = a.date_of_birth {
            if !DATE_DAYS.contains(&d) {
                c.fail(
                    "TIMESTAMP_OUT_OF_RANGE",
                    "dossier.applicant.date_of_birth",
                    "outside 1870..2170".to_owned(),
                );
            }
        }
        c.opt_text("dossier.applicant.contact.phone", a.contact.phone.as_deref());
        c.opt_text("dossier.applicant.contact.email", a.contact.email.as_deref());
        c.opt_text(
            "dossier.applicant.contact.postal_address",
            a.contact.postal_address.as_deref(),
        );
        c.opt_code(
            "dossier.applicant.residence_unit_code",
            a.residence_unit_code.as_deref(),
        );
        c.count("dossier.land_parcels", self.land_parcels.len(), l.max_parcels);
        for p in &self.land_parcels {
            c.code("dossier.land_parcels.unit_code", &p.unit_code);
        }
        c.count(
            "dossier.enterprise_tax_codes",
            self.enterprise_tax_codes.len(),
            l.max_tax_codes,
        );
        for t in &self.enterprise_tax_codes {
            c.code("dossier.enterprise_tax_codes", t);
        }
        c.count("dossier.documents", self.documents.len(), l.max_documents);
        for d in &self.documents {
            c.code("dossier.documents.kind", &d.kind);
            c.text("dossier.documents.uri", &d.uri);
            c.id("dossier.documents.sha256", &d.sha256);
        }
        c.count("dossier.form_fields", self.form_fields.len(), l.max_form_fields);
        for (k, v) in &self.form_fields {
            c.code("dossier.form_fields.key", k);
            c.text("dossier.form_fields.value", v);
        }
        c.at("dossier.submitted_at", self.submitted_at);
    }
}

impl Validate for DossierSubmitted {
    fn validate(&self, c: &mut Checker<'_>) {
        c.id("event_id", &self.event_id);
        self.dossier.validate(c);
        c.at("published_at", self.published_at);
        c.opt_id("traceparent", self.traceparent.as_deref());
    }
}

/// What every event after reception carries: its ids, the dossier code and reception
/// time, the procedure, the dossier snapshot and the trace context.
struct Carried<'a> {
    event_id: &'a str,
    causation_id: &'a str,
    dossier_code: &'a str,
    received_at: i64,
    procedure: &'a ProcedureSummary,
    dossier: &'a Dossier,
    traceparent: Option<&'a str>,
}

impl Checker<'_> {
    fn carried(&mut self, e: Carried<'_>) {
        self.id("event_id", e.event_id);
        self.id("causation_id", e.causation_id);
        self.id("dossier_code", e.dossier_code);
        self.at("received_at", e.received_at);
        self.procedure(e.procedure);
        e.dossier.validate(self);
        self.opt_id("traceparent", e.traceparent);
    }
}

macro_rules! carried {
    ($e:expr) => {
        Carried {
            event_id: &$e.event_id,
            causation_id: &$e.causation_id,
            dossier_code: &$e.dossier_code,
            received_at: $e.received_at,
            procedure: &$e.procedure,
            dossier: &$e.dossier,
            traceparent: $e.traceparent.as_deref(),
        }
    };
}

impl Validate for DossierAccepted {
    fn validate(&self, c: &mut Checker<'_>) {
        c.carried(carried!(self));
        c.code("receiving_agency_code", &self.receiving_agency_code);
    }
}

impl Validate for DossierVerified {
    fn validate(&self, c: &mut Checker<'_>) {
        c.carried(carried!(self));
        c.count("checks", self.checks.len(), c.limits.max_reasons);
        for k in &self.checks {
            c.text("checks.subject", &k.subject);
            c.opt_text("checks.detail", k.detail.as_deref());
        }
        c.at("verified_at", self.verified_at);
    }
}

impl Validate for PaymentRequested {
    fn validate(&self, c: &mut Checker<'_>) {
        c.id("event_id", &self.event_id);
        c.id("causation_id", &self.causation_id);
        c.id("dossier_id", &self.dossier_id);
        c.id("dossier_code", &self.dossier_code);
        c.id("bill_reference", &self.bill_reference);
        c.name("payer_name", &self.payer_name);
        c.text("description", &self.description);
        c.at("issued_at", self.issued_at);
        c.at("expires_at", self.expires_at);
        c.opt_id("traceparent", self.traceparent.as_deref());
    }
}

impl Validate for PaymentConfirmed {
    fn validate(&self, c: &mut Checker<'_>) {
        c.id("event_id", &self.event_id);
        c.id("bill_reference", &self.bill_reference);
        c.code("gateway", &self.gateway);
        c.id("gateway_transaction_id", &self.gateway_transaction_id);
        c.opt_text("failure_reason", self.failure_reason.as_deref());
        c.at("confirmed_at", self.confirmed_at);
    }
}

impl Validate for DossierPaid {
    fn validate(&self, c: &mut Checker<'_>) {
        c.carried(carried!(self));
        c.opt_id("bill_reference", self.bill_reference.as_deref());
        c.at("paid_at", self.paid_at);
    }
}

impl Validate for DossierRouted {
    fn validate(&self, c: &mut Checker<'_>) {
        c.carried(carried!(self));
        c.code("competent_unit_code", &self.competent_unit_code);
        c.name("competent_unit_name", &self.competent_unit_name);
        c.code("desk", &self.desk);
        c.at("due_at", self.due_at);
        c.at("routed_at", self.routed_at);
        c.opt_id("calendar_version", self.calendar_version.as_deref());
        c.count("clock_pauses", self.clock_pauses.len(), c.limits.max_documents);
        for p in &self.clock_pauses {
            c.code("clock_pauses.step", &p.step);
            c.at("clock_pauses.from_at", p.from_at);
            c.at("clock_pauses.to_at", p.to_at);
        }
    }
}

impl Validate for DossierDecided {
    fn validate(&self, c: &mut Checker<'_>) {
        c.id("event_id", &self.event_id);
        c.id("dossier_id", &self.dossier_id);
        c.id("dossier_code", &self.dossier_code);
        c.code("procedure_code", &self.procedure_code);
        c.code("competent_unit_code", &self.competent_unit_code);
        c.reasons("reasons", &self.reasons);
        c.code("decided_by", &self.decided_by);
        c.opt_code("applicant_citizen_id", self.applicant_citizen_id.as_deref());
        c.opt_code("applicant_tax_code", self.applicant_tax_code.as_deref());
        c.at("received_at", self.received_at);
        c.at("due_at", self.due_at);
        c.at("decided_at", self.decided_at);
        c.opt_id("traceparent", self.traceparent.as_deref());
    }
}

impl Validate for DossierCompleted {
    fn validate(&self, c: &mut Checker<'_>) {
        c.id("event_id", &self.event_id);
        c.id("causation_id", &self.causation_id);
        c.id("dossier_id", &self.dossier_id);
        c.id("dossier_code", &self.dossier_code);
        c.code("procedure_code", &self.procedure_code);
        c.code("competent_unit_code", &self.competent_unit_code);
        let d = &self.result_document;
        c.id("result_document.reference", &d.reference);
        c.id("result_document.sha256", &d.sha256);
        c.code("result_document.signing_key_id", &d.signing_key_id);
        c.text("result_document.uri", &d.uri);
        c.count("result_document.signature", d.signature.len(), 1_024);
        c.code("wallet_owner", &self.wallet_owner);
        c.at("received_at", self.received_at);
        c.at("due_at", self.due_at);
        c.at("delivered_at", self.delivered_at);
        c.opt_id("traceparent", self.traceparent.as_deref());
        if let Some(r) = &self.signed_record {
            c.text("signed_record", r);
        }
        if let Some(sig) = &self.record_signature {
            c.count("record_signature", sig.len(), 1_024);
        }
        c.opt_id("wallet_receipt_id", self.wallet_receipt_id.as_deref());
    }
}

impl Validate for DossierStatusChanged {
    fn validate(&self, c: &mut Checker<'_>) {
        c.id("event_id", &self.event_id);
        c.opt_id("causation_id", self.causation_id.as_deref());
        c.id("dossier_id", &self.dossier_id);
        c.opt_id("dossier_code", self.dossier_code.as_deref());
        c.opt_code("procedure_code", self.procedure_code.as_deref());
        c.id("stage", &self.stage);
        c.reasons("reasons", &self.reasons);
        c.opt_code("unit_code", self.unit_code.as_deref());
        c.opt_at("due_at", self.due_at);
        c.at("occurred_at", self.occurred_at);
        c.opt_id("traceparent", self.traceparent.as_deref());
        c.opt_id("lookup_token", self.lookup_token.as_deref());
    }
}

impl Validate for DossierSupplemented {
    fn validate(&self, c: &mut Checker<'_>) {
        let l = c.limits;
        c.id("event_id", &self.event_id);
        c.id("dossier_id", &self.dossier_id);
        c.opt_id("dossier_code", self.dossier_code.as_deref());
        c.code("portal", &self.portal);
        c.count("documents", self.documents.len(), l.max_documents);
        for d in &self.documents {
            c.code("documents.kind", &d.kind);
            c.text("documents.uri", &d.uri);
            c.id("documents.sha256", &d.sha256);
        }
        c.count("form_fields", self.form_fields.len(), l.max_form_fields);
        for (k, v) in &self.form_fields {
            c.code("form_fields.key", k);
            c.text("form_fields.value", v);
        }
        if let Some(parcels) = &self.land_parcels {
            c.count("land_parcels", parcels.len(), l.max_parcels);
            for p in parcels {
                c.code("land_parcels.unit_code", &p.unit_code);
            }
        }
        c.opt_code("residence_unit_code", self.residence_unit_code.as_deref());
        if let Some(name) = &self.full_name {
            c.name("full_name", name);
        }
        if let Some(d) = self.date_of_birth {
            if !DATE_DAYS.contains(&d) {
                c.fail(
                    "TIMESTAMP_OUT_OF_RANGE",
                    "date_of_birth",
                    "outside 1870..2170".to_owned(),
                );
            }
        }
        c.at("supplemented_at", self.supplemented_at);
        c.at("published_at", self.published_at);
        c.opt_id("traceparent", self.traceparent.as_deref());
    }
}

impl Validate for DossierWithdrawn {
    fn validate(&self, c: &mut Checker<'_>) {
        c.id("event_id", &self.event_id);
        c.id("dossier_id", &self.dossier_id);
        c.opt_id("dossier_code", self.dossier_code.as_deref());
        c.code("portal", &self.portal);
        c.opt_code("reason_code", self.reason_code.as_deref());
        c.at("withdrawn_at", self.withdrawn_at);
        c.at("published_at", self.published_at);
        c.opt_id("traceparent", self.traceparent.as_deref());
    }
}

impl Validate for DossierReappointed {
    fn validate(&self, c: &mut Checker<'_>) {
        c.id("event_id", &self.event_id);
        c.id("dossier_id", &self.dossier_id);
        c.id("dossier_code", &self.dossier_code);
        c.code("competent_unit_code", &self.competent_unit_code);
        c.code("reason_code", &self.reason_code);
        c.id("apology_reference", &self.apology_reference);
        c.at("previous_due_at", self.previous_due_at);
        c.at("new_due_at", self.new_due_at);
        c.id("issued_by", &self.issued_by);
        c.at("issued_at", self.issued_at);
        c.opt_id("traceparent", self.traceparent.as_deref());
    }
}

impl Validate for DossierSupplementRequested {
    fn validate(&self, c: &mut Checker<'_>) {
        c.id("event_id", &self.event_id);
        c.id("dossier_id", &self.dossier_id);
        c.id("dossier_code", &self.dossier_code);
        c.code("competent_unit_code", &self.competent_unit_code);
        c.reasons("reasons", &self.reasons);
        c.id("requested_by", &self.requested_by);
        c.at("requested_at", self.requested_at);
        c.opt_id("traceparent", self.traceparent.as_deref());
    }
}

impl Validate for DeadLetter {
    fn validate(&self, c: &mut Checker<'_>) {
        c.id("event_id", &self.event_id);
        c.id("stage", &self.stage);
        c.id("reason_code", &self.reason_code);
        c.text("reason", &self.reason);
    }
}

impl Validate for AnyEvent {
    fn validate(&self, c: &mut Checker<'_>) {
        match self {
            AnyEvent::Submitted(e) => e.validate(c),
            AnyEvent::Accepted(e) => e.validate(c),
            AnyEvent::Verified(e) => e.validate(c),
            AnyEvent::PaymentRequested(e) => e.validate(c),
            AnyEvent::PaymentConfirmed(e) => e.validate(c),
            AnyEvent::Paid(e) => e.validate(c),
            AnyEvent::Routed(e) => e.validate(c),
            AnyEvent::Decided(e) => e.validate(c),
            AnyEvent::Completed(e) => e.validate(c),
            AnyEvent::Status(e) => e.validate(c),
            AnyEvent::DeadLetter(e) => e.validate(c),
            AnyEvent::Supplemented(e) => e.validate(c),
            AnyEvent::Withdrawn(e) => e.validate(c),
            AnyEvent::Reappointed(e) => e.validate(c),
            AnyEvent::SupplementRequested(e) => e.validate(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::samples;

    fn submitted() -> DossierSubmitted {
        samples::submitted()
    }

    #[test]
    fn every_sample_event_is_within_the_default_limits() {
        let limits = Limits::default();
        let codec = crate::Codec::embedded().expect("codec");
        for (topic, bytes) in samples::one_of_each(&codec).expect("samples") {
            let e = AnyEvent::decode(&codec, topic, &bytes).expect("decodes");
            assert_eq!(limits.check(&e), Ok(()), "{topic}");
        }
    }

    #[test]
    fn an_oversized_name_is_refused_without_quoting_it() {
        let mut s = submitted();
        s.dossier.applicant.full_name = "Nguyễn ".repeat(100_000);
        let v = Limits::default().check(&s).unwrap_err();
        assert_eq!((v.code, v.field), ("FIELD_TOO_LONG", "dossier.applicant.full_name"));
        assert!(!v.to_string().contains("Nguyễn"), "{v}");
    }

    #[test]
    fn identifiers_refuse_nul_bytes_other_characters_and_excess_length() {
        for bad in ["abc\0def", "a b", "đ", "", &"x".repeat(129)] {
            let mut s = submitted();
            s.dossier.dossier_id = bad.to_owned();
            let v = Limits::default().check(&s).unwrap_err();
            assert_eq!((v.code, v.field), ("BAD_IDENTIFIER", "dossier.dossier_id"), "{bad:?}");
        }
    }

    #[test]
    fn the_byte_scan_for_control_characters_agrees_with_unicode_for_every_char() {
        for cp in 0..=0x2000u32 {
            let Some(ch) = char::from_u32(cp) else { continue };
            let v = format!("a{ch}b");
            for allow in [false, true] {
                let expected = ch.is_control() && !(allow && matches!(ch, '\n' | '\r' | '\t'));
                assert_eq!(has_control(&v, allow), expected, "U+{cp:04X} allow_newlines={allow}");
            }
        }
    }

    #[test]
    fn control_characters_are_refused_in_names_and_allowed_as_line_breaks_in_text() {
        let mut s = submitted();
        s.dossier.applicant.full_name = "An\u{7}".to_owned();
        assert_eq!(Limits::default().check(&s).unwrap_err().code, "CONTROL_CHARACTER");
        let mut s = submitted();
        s.dossier.applicant.contact.postal_address = Some("Số 1\nPhường Hồng Gai".to_owned());
        assert_eq!(Limits::default().check(&s), Ok(()));
        s.dossier.applicant.contact.postal_address = Some("Số 1\0".to_owned());
        assert_eq!(Limits::default().check(&s).unwrap_err().code, "CONTROL_CHARACTER");
    }

    #[test]
    fn collections_are_bounded() {
        let mut s = submitted();
        let doc = s.dossier.documents[0].clone();
        s.dossier.documents = vec![doc; 101];
        let v = Limits::default().check(&s).unwrap_err();
        assert_eq!((v.code, v.field), ("TOO_MANY_ITEMS", "dossier.documents"));
        let mut s = submitted();
        for i in 0..201 {
            s.dossier.form_fields.insert(format!("k{i}"), "v".into());
        }
        assert_eq!(Limits::default().check(&s).unwrap_err().field, "dossier.form_fields");
    }

    #[test]
    fn timestamps_must_be_sane() {
        let mut s = submitted();
        s.dossier.submitted_at = -1;
        assert_eq!(Limits::default().check(&s).unwrap_err().code, "TIMESTAMP_OUT_OF_RANGE");
        let mut s = submitted();
        s.published_at = i64::MAX;
        assert_eq!(Limits::default().check(&s).unwrap_err().field, "published_at");
        let mut s = submitted();
        s.dossier.applicant.date_of_birth = Some(i32::MIN);
        assert_eq!(
            Limits::default().check(&s).unwrap_err().field,
            "dossier.applicant.date_of_birth"
        );
    }

    #[test]
    fn the_size_check_names_the_limit() {
        let l = Limits::default();
        assert!(l.check_size(1_000_000).is_ok());
        assert_eq!(l.check_size(1_000_001).unwrap_err().code, "MESSAGE_TOO_LARGE");
    }
}
