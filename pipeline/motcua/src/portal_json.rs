//! The JSON a portal (or a tester) writes, one dossier per line, and its conversion to the
//! Avro `dossier.submitted` event. Dates are `YYYY-MM-DD`, times RFC 3339
//! (`2025-11-25T09:00:00+07:00`) or epoch milliseconds.

use std::collections::BTreeMap;

use motcua_reference::civil;
use motcua_schemas::{Applicant, ApplicantKind, Channel, Contact, Document, Dossier, DossierSubmitted, LandParcel};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PortalDossier {
    /// Unique per dossier; the pipeline's idempotency key.
    pub(crate) dossier_id: String,
    /// Unique per publication; derived from the dossier id when absent, so publishing the
    /// same file twice publishes the same events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) event_id: Option<String>,
    pub(crate) portal: String,
    pub(crate) channel: PortalChannel,
    pub(crate) receiving_unit_code: String,
    pub(crate) procedure_code: String,
    pub(crate) applicant: PortalApplicant,
    #[serde(default)]
    pub(crate) land_parcels: Vec<LandParcel>,
    #[serde(default)]
    pub(crate) enterprise_tax_codes: Vec<String>,
    #[serde(default)]
    pub(crate) documents: Vec<Document>,
    #[serde(default)]
    pub(crate) form_fields: BTreeMap<String, String>,
    pub(crate) submitted_at: Instant,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) traceparent: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum PortalChannel {
    Online,
    Counter,
    Postal,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PortalApplicant {
    pub(crate) kind: PortalApplicantKind,
    #[serde(default)]
    pub(crate) citizen_id: Option<String>,
    #[serde(default)]
    pub(crate) tax_code: Option<String>,
    pub(crate) full_name: String,
    #[serde(default)]
    pub(crate) date_of_birth: Option<String>,
    #[serde(default)]
    pub(crate) phone: Option<String>,
    #[serde(default)]
    pub(crate) email: Option<String>,
    #[serde(default)]
    pub(crate) postal_address: Option<String>,
    #[serde(default)]
    pub(crate) residence_unit_code: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum PortalApplicantKind {
    Citizen,
    Business,
}

/// An instant: RFC 3339 text or epoch milliseconds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub(crate) enum Instant {
    Millis(i64),
    Text(String),
}

impl Instant {
    fn millis(&self) -> Result<i64, String> {
        match self {
            Instant::Millis(m) => Ok(*m),
            Instant::Text(t) => parse_rfc3339(t),
        }
    }
}

/// `YYYY-MM-DD` → days since 1970-01-01.
pub(crate) fn parse_date(s: &str) -> Result<i32, String> {
    let err = || format!("'{s}' is not a date like 1990-05-17");
    let b = s.as_bytes();
    // ASCII digits only: slicing below is by byte, and `parse` would take a sign.
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' || !digits(0..4) || !digits(5..7) || !digits(8..10) {
        return Err(err());
    }
    let y: i32 = s[0..4].parse().map_err(|_| err())?;
    let m: u32 = s[5..7].parse().map_err(|_| err())?;
    let d: u32 = s[8..10].parse().map_err(|_| err())?;
    if !(1..=12).contains(&m) || d == 0 || d > 31 {
        return Err(err());
    }
    let days = civil::days_from_civil(y, m, d);
    if civil::civil_from_days(days) != (y, m, d) {
        return Err(format!("'{s}' is not a real calendar date"));
    }
    Ok(days as i32)
}

pub(crate) fn format_date(days: i32) -> String {
    let (y, m, d) = civil::civil_from_days(i64::from(days));
    format!("{y:04}-{m:02}-{d:02}")
}

/// `YYYY-MM-DDTHH:MM:SS[.fff](Z|±HH:MM)` → epoch ms.
pub(crate) fn parse_rfc3339(s: &str) -> Result<i64, String> {
    let err = || format!("'{s}' is not a time like 2025-11-25T09:00:00+07:00");
    // The format is ASCII: anything else (full-width or Arabic-Indic digits, say) is
    // refused here, before byte-indexed slicing could split a character.
    if !s.is_ascii() || s.len() < 20 || s.as_bytes()[10] != b'T' && s.as_bytes()[10] != b' ' {
        return Err(err());
    }
    let days = i64::from(parse_date(&s[..10]).map_err(|_| err())?);
    let rest = &s[11..];
    let num = |r: &str| {
        if r.bytes().all(|b| b.is_ascii_digit()) {
            r.parse::<i64>().map_err(|_| err())
        } else {
            Err(err())
        }
    };
    if rest.len() < 8 || &rest[2..3] != ":" || &rest[5..6] != ":" {
        return Err(err());
    }
    let (h, mi, se) = (num(&rest[0..2])?, num(&rest[3..5])?, num(&rest[6..8])?);
    if h > 23 || mi > 59 || se > 60 {
        return Err(err());
    }
    let mut tail = &rest[8..];
    let mut millis = 0;
    if let Some(frac) = tail.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(err());
        }
        let ms_text: String = frac[..digits].chars().chain("000".chars()).take(3).collect();
        millis = num(&ms_text)?;
        tail = &frac[digits..];
    }
    let offset_min = match tail {
        "Z" | "z" => 0,
        t if t.len() == 6 && (t.starts_with('+') || t.starts_with('-')) && &t[3..4] == ":" => {
            let v = num(&t[1..3])? * 60 + num(&t[4..6])?;
            if t.starts_with('-') {
                -v
            } else {
                v
            }
        }
        _ => return Err(err()),
    };
    Ok(((days * 24 + h) * 60 + mi - offset_min) * 60_000 + se * 1000 + millis)
}

pub(crate) fn format_rfc3339_vn(ms: i64) -> String {
    let local = ms + civil::VN_OFFSET_MS;
    let days = local.div_euclid(86_400_000);
    let rem = local.rem_euclid(86_400_000);
    let (y, m, d) = civil::civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}+07:00",
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000
    )
}

impl PortalDossier {
    /// The Avro event. `published_at` is when the publisher sends it.
    pub(crate) fn into_event(self, published_at: i64) -> Result<DossierSubmitted, String> {
        if self.dossier_id.trim().is_empty() {
            return Err("dossier_id is empty".to_owned());
        }
        let submitted_at = self.submitted_at.millis().map_err(|e| format!("submitted_at: {e}"))?;
        let date_of_birth = match &self.applicant.date_of_birth {
            Some(d) => Some(parse_date(d).map_err(|e| format!("applicant.date_of_birth: {e}"))?),
            None => None,
        };
        let event_id = self
            .event_id
            .unwrap_or_else(|| motcua_schemas::derived_event_id(&self.dossier_id, "portal", "submitted"));
        Ok(DossierSubmitted {
            event_id,
            dossier: Dossier {
                dossier_id: self.dossier_id,
                portal: self.portal,
                channel: match self.channel {
                    PortalChannel::Online => Channel::Online,
                    PortalChannel::Counter => Channel::Counter,
                    PortalChannel::Postal => Channel::Postal,
                },
                receiving_unit_code: self.receiving_unit_code,
                procedure_code: self.procedure_code,
                applicant: Applicant {
                    kind: match self.applicant.kind {
                        PortalApplicantKind::Citizen => ApplicantKind::Citizen,
                        PortalApplicantKind::Business => ApplicantKind::Business,
                    },
                    citizen_id: self.applicant.citizen_id,
                    tax_code: self.applicant.tax_code,
                    full_name: self.applicant.full_name,
                    date_of_birth,
                    contact: Contact {
                        phone: self.applicant.phone,
                        email: self.applicant.email,
                        postal_address: self.applicant.postal_address,
                    },
                    residence_unit_code: self.applicant.residence_unit_code,
                },
                land_parcels: self.land_parcels,
                enterprise_tax_codes: self.enterprise_tax_codes,
                documents: self.documents,
                form_fields: self.form_fields,
                submitted_at,
            },
            published_at,
            traceparent: self.traceparent,
        })
    }

    pub(crate) fn from_event(e: &DossierSubmitted) -> Self {
        let d = &e.dossier;
        Self {
            dossier_id: d.dossier_id.clone(),
            event_id: Some(e.event_id.clone()),
            portal: d.portal.clone(),
            channel: match d.channel {
                Channel::Online => PortalChannel::Online,
                Channel::Counter => PortalChannel::Counter,
                Channel::Postal => PortalChannel::Postal,
            },
            receiving_unit_code: d.receiving_unit_code.clone(),
            procedure_code: d.procedure_code.clone(),
            applicant: PortalApplicant {
                kind: match d.applicant.kind {
                    ApplicantKind::Citizen => PortalApplicantKind::Citizen,
                    ApplicantKind::Business => PortalApplicantKind::Business,
                },
                citizen_id: d.applicant.citizen_id.clone(),
                tax_code: d.applicant.tax_code.clone(),
                full_name: d.applicant.full_name.clone(),
                date_of_birth: d.applicant.date_of_birth.map(format_date),
                phone: d.applicant.contact.phone.clone(),
                email: d.applicant.contact.email.clone(),
                postal_address: d.applicant.contact.postal_address.clone(),
                residence_unit_code: d.applicant.residence_unit_code.clone(),
            },
            land_parcels: d.land_parcels.clone(),
            enterprise_tax_codes: d.enterprise_tax_codes.clone(),
            documents: d.documents.clone(),
            form_fields: d.form_fields.clone(),
            submitted_at: Instant::Text(format_rfc3339_vn(d.submitted_at)),
            traceparent: e.traceparent.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_dates_parse() {
        assert_eq!(parse_rfc3339("1970-01-01T07:00:00+07:00"), Ok(0));
        assert_eq!(parse_rfc3339("1970-01-01T00:00:01.5Z"), Ok(1500));
        assert_eq!(parse_rfc3339("2025-11-25T09:00:00+07:00"), Ok(1_764_036_000_000));
        assert!(parse_rfc3339("2025-11-25 09:00").is_err());
        assert!(parse_rfc3339("2025-13-25T09:00:00Z").is_err());
        assert_eq!(parse_date("1970-01-02"), Ok(1));
        assert!(parse_date("2025-02-30")
            .unwrap_err()
            .contains("not a real calendar date"));
        assert_eq!(format_rfc3339_vn(1_764_036_000_000), "2025-11-25T09:00:00.000+07:00");
        assert_eq!(format_date(7_440), "1990-05-16");
    }

    /// The fuzzer's corpus for `motcua publish` lines (tests/fuzz/corpus/portal_json),
    /// replayed: parsed or refused, never a panic.
    #[test]
    fn the_portal_json_fuzz_corpus_replays_without_a_panic() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fuzz/corpus/portal_json");
        let mut replayed = 0;
        for entry in std::fs::read_dir(&dir).expect("the corpus is committed") {
            let data = std::fs::read(entry.expect("entry").path()).expect("read");
            if let Ok(d) = serde_json::from_slice::<PortalDossier>(&data) {
                let _ = d.into_event(0);
            }
            if let Ok(s) = std::str::from_utf8(&data) {
                let _ = parse_rfc3339(s);
                let _ = parse_date(s);
            }
            replayed += 1;
        }
        assert!(replayed >= 3, "only {replayed} corpus entries");
    }

    /// Known from the issue: non-ASCII digits used to panic (byte slicing inside a character).
    #[test]
    fn non_ascii_digits_and_signs_are_refused_not_panicked_on() {
        for bad in [
            "２０２５-11-25T09:00:00Z",
            "2025-11-25T0٩:00:00+07:00",
            "2025-11-25T09:00:00+0٧:00",
            "2025-11-25T09:00:00.٥Z",
            "2025-1é-25T09:00:00Z",
            "+025-11-25T09:00:00Z",
            "2025-11-25T+9:00:00Z",
            "2025-11-25T09:00:00+-7:00",
        ] {
            assert!(parse_rfc3339(bad).is_err(), "{bad}");
        }
        for bad in ["２０２５-11-25", "1990-0٥-17", "+990-05-17", "1990--5-17", "1990-05-1é"] {
            assert!(parse_date(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn json_round_trips_through_the_event() {
        let e = motcua_schemas::samples::submitted();
        let json = serde_json::to_string(&PortalDossier::from_event(&e)).expect("json");
        let back: PortalDossier = serde_json::from_str(&json).expect("parse");
        assert_eq!(back.into_event(e.published_at).expect("event"), e);
    }

    #[test]
    fn unknown_fields_and_bad_values_are_explained() {
        let e = serde_json::from_str::<PortalDossier>(r#"{"dossier_idd": "x"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `dossier_idd`"), "{e}");
        let mut d = PortalDossier::from_event(&motcua_schemas::samples::submitted());
        d.applicant.date_of_birth = Some("17/05/1990".into());
        let e = d.into_event(0).unwrap_err();
        assert!(e.contains("applicant.date_of_birth"), "{e}");
    }
}
