//! One error type for the routing core. Every refusal names what was wrong, so the route
//! stage can turn it into a citizen-facing reason without guessing.

use std::fmt;

use motcua_reference::civil::civil_from_days;
use motcua_schemas::ProcedureField;

/// Which input of a routing request a unit code came from (for error messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitRole {
    Residence,
    LandParcel,
    HeadOffice,
}

impl fmt::Display for UnitRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UnitRole::Residence => "residence",
            UnitRole::LandParcel => "land parcel",
            UnitRole::HeadOffice => "head office",
        })
    }
}

/// A local (Asia/Ho_Chi_Minh) calendar date given as a day number from 1970-01-01; kept
/// as a number so that errors carrying it are built without allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct LocalDate(pub i64);

impl fmt::Display for LocalDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, m, d) = civil_from_days(self.0);
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A data file (departments, desks, holidays) is malformed.
    #[error("{file}, line {line}: {message}")]
    Data { file: String, line: usize, message: String },
    #[error("cannot read {file}: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid working hours: {0}")]
    WorkingHours(String),
    /// The data files do not let every case be routed (found when building tables, so a
    /// bad file is refused at start-up or reload instead of failing dossiers later).
    #[error("incomplete routing data: {0}")]
    Incomplete(String),

    #[error("procedure '{code}' is not in the catalog")]
    UnknownProcedure { code: String },
    #[error("procedure {code} is abolished (inactive in the catalog)")]
    ProcedureInactive { code: String },
    #[error("{role} unit '{code}' is not a 2025 commune-level unit")]
    UnknownUnit { role: UnitRole, code: String },
    #[error(
        "receiving center '{code}' is neither a 2025 commune-level unit (5 digits) nor a provincial \
         center (P + province code)"
    )]
    UnknownCenter { code: String },
    /// A pre-resolved index that these tables did not issue (typically kept across a reload).
    #[error("{kind} index {index} does not belong to these routing tables (kept across a reload?)")]
    StaleId { kind: &'static str, index: u32 },
    #[error("procedure {procedure} ({field:?}) needs the {needed} unit to find the competent authority")]
    MissingJurisdiction {
        procedure: String,
        field: ProcedureField,
        needed: &'static str,
    },
    #[error(
        "procedure {procedure} may only be received in {jurisdiction_province} (the province of \
         the dossier's jurisdiction), not at center {center} of {center_province}: it does not \
         allow nationwide reception"
    )]
    NotReceivableOutsideProvince {
        procedure: String,
        jurisdiction_province: String,
        center: String,
        center_province: String,
    },
    #[error(
        "procedure {procedure} is not boundary-free: it must be received at {competent_center}, \
         not at center {center}"
    )]
    NotReceivableAtCenter {
        procedure: String,
        competent_center: String,
        center: String,
    },

    #[error("instant {instant_ms} ms is outside the working calendar ({first_day} to {last_day})")]
    OutsideCalendar {
        instant_ms: i64,
        first_day: LocalDate,
        last_day: LocalDate,
    },
    #[error("the deadline falls after the last day of the working calendar ({last_day}); load a newer holidays file")]
    DeadlineBeyondCalendar { last_day: LocalDate },
}

impl Error {
    /// A stable machine-readable code, the same vocabulary as intake's refusal reasons
    /// where the meaning is the same, so dashboards count them together.
    pub fn reason_code(&self) -> &'static str {
        match self {
            Error::Data { .. } | Error::Io { .. } | Error::WorkingHours(_) | Error::Incomplete(_) => {
                "ROUTING_DATA_INVALID"
            }
            Error::UnknownProcedure { .. } => "UNKNOWN_PROCEDURE",
            Error::ProcedureInactive { .. } => "PROCEDURE_INACTIVE",
            Error::UnknownUnit { .. } => "UNKNOWN_UNIT",
            Error::UnknownCenter { .. } => "UNKNOWN_RECEIVING_UNIT",
            Error::StaleId { .. } => "STALE_ROUTING_ID",
            Error::MissingJurisdiction { .. } => "MISSING_JURISDICTION",
            Error::NotReceivableOutsideProvince { .. } | Error::NotReceivableAtCenter { .. } => {
                "NOT_RECEIVABLE_AT_UNIT"
            }
            Error::OutsideCalendar { .. } | Error::DeadlineBeyondCalendar { .. } => "OUTSIDE_CALENDAR",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn data_error(file: &str, line: usize, message: impl Into<String>) -> Error {
    Error::Data {
        file: file.to_owned(),
        line,
        message: message.into(),
    }
}
