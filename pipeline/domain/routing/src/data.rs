//! The routing data files other than the calendar: which provincial department decides each
//! field, and which desks a center has. Both changed with the 2025 reorganisation and may
//! change again, so they are data, replaceable at start-up or reload.

use motcua_schemas::ProcedureField;

use crate::error::{data_error, Error, Result};

/// The departments file compiled into the binary.
pub const EMBEDDED_DEPARTMENTS: &str = include_str!("../data/departments.csv");
/// The desk layout file compiled into the binary.
pub const EMBEDDED_DESKS: &str = include_str!("../data/desks.csv");

/// The procedure fields in a fixed order; a field's position is its index in per-field tables.
pub const FIELDS: [ProcedureField; 6] = ProcedureField::ALL;

/// Index of a field in [`FIELDS`].
#[inline]
pub fn field_index(field: ProcedureField) -> usize {
    match field {
        ProcedureField::Land => 0,
        ProcedureField::Residence => 1,
        ProcedureField::Certification => 2,
        ProcedureField::CivilStatus => 3,
        ProcedureField::Business => 4,
        ProcedureField::Construction => 5,
    }
}

/// The catalog's spelling of a field (as in procedures.csv).
pub fn field_name(field: ProcedureField) -> &'static str {
    match field {
        ProcedureField::Land => "land",
        ProcedureField::Residence => "residence",
        ProcedureField::Certification => "certification",
        ProcedureField::CivilStatus => "civil_status",
        ProcedureField::Business => "business",
        ProcedureField::Construction => "construction",
    }
}

fn parse_field(s: &str) -> Option<ProcedureField> {
    FIELDS.into_iter().find(|f| field_name(*f) == s)
}

fn read_file(path: &std::path::Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| Error::Io {
        file: path.display().to_string(),
        source,
    })
}

fn reader(text: &str) -> csv::Reader<&[u8]> {
    csv::ReaderBuilder::new()
        .has_headers(true)
        .comment(Some(b'#'))
        .from_reader(text.as_bytes())
}

fn check_header(file: &str, rdr: &mut csv::Reader<&[u8]>, expected: &[&str]) -> Result<()> {
    let headers = rdr.headers().map_err(|e| data_error(file, 1, e.to_string()))?;
    if headers.iter().collect::<Vec<_>>() != expected {
        return Err(data_error(file, 1, format!("header must be {}", expected.join(","))));
    }
    Ok(())
}

/// One line of the departments file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DepartmentRule {
    /// 2-digit province code, or `None` for the default of every province (`*`).
    pub province: Option<String>,
    pub field: ProcedureField,
    /// Short code; the department's authority code is `S<province>.<code>`, e.g. `S22.NNMT`.
    pub code: String,
    /// Name without the province, e.g. "Sở Tư pháp"; the province's name is appended.
    pub name: String,
}

/// Which provincial department decides province-level procedures of each field. A line for
/// a given province overrides the `*` default, for provinces organised differently.
#[derive(Debug, Clone)]
pub struct Departments {
    rules: Vec<DepartmentRule>,
}

impl Departments {
    pub fn embedded() -> Result<Self> {
        Self::parse("departments.csv (embedded)", EMBEDDED_DEPARTMENTS)
    }

    pub fn load(path: &std::path::Path) -> Result<Self> {
        Self::parse(&path.display().to_string(), &read_file(path)?)
    }

    /// `province,field,code,name`.
    pub fn parse(file: &str, text: &str) -> Result<Self> {
        let mut rdr = reader(text);
        check_header(file, &mut rdr, &["province", "field", "code", "name"])?;
        let mut rules: Vec<DepartmentRule> = Vec::new();
        for (i, rec) in rdr.records().enumerate() {
            let rec = rec.map_err(|e| data_error(file, i + 2, e.to_string()))?;
            let line = rec.position().map_or(i + 2, |p| p.line() as usize);
            let err = |m: String| data_error(file, line, m);
            let province = match rec[0].trim() {
                "*" => None,
                p if (1..=2).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()) => Some(format!("{p:0>2}")),
                p => return Err(err(format!("province '{p}' is neither * nor a province code"))),
            };
            let field = parse_field(rec[1].trim()).ok_or_else(|| err(format!("unknown field '{}'", &rec[1])))?;
            let code = rec[2].trim();
            if code.is_empty() || !code.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(err(format!("department code '{code}' must be letters and digits")));
            }
            if rules.iter().any(|r| r.province == province && r.field == field) {
                return Err(err(format!(
                    "a second line for province {} and field {}",
                    &rec[0], &rec[1]
                )));
            }
            rules.push(DepartmentRule {
                province,
                field,
                code: code.to_owned(),
                name: rec[3].trim().to_owned(),
            });
        }
        Ok(Self { rules })
    }

    pub fn rules(&self) -> &[DepartmentRule] {
        &self.rules
    }

    /// The rule for a province and field: the province's own line, else the default.
    pub fn rule_for(&self, province_code: &str, field: ProcedureField) -> Option<&DepartmentRule> {
        let own = self
            .rules
            .iter()
            .find(|r| r.field == field && r.province.as_deref() == Some(province_code));
        own.or_else(|| self.rules.iter().find(|r| r.field == field && r.province.is_none()))
    }
}

/// The level of authority a desk layout applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthorityLevel {
    /// A commune, ward or special zone public service center.
    Commune,
    /// A provincial department (its desks at the provincial public service center).
    Department,
}

/// One desk of a layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeskTemplate {
    pub code: String,
    pub name: String,
    /// Fields it serves, indexed like [`FIELDS`].
    pub serves: [bool; 6],
}

/// The desks every authority of a level has, and which fields each serves. The same layout
/// for all units keeps the data small; loads, not layouts, differ between units.
#[derive(Debug, Clone)]
pub struct DeskLayout {
    commune: Vec<DeskTemplate>,
    department: Vec<DeskTemplate>,
}

impl DeskLayout {
    pub fn embedded() -> Result<Self> {
        Self::parse("desks.csv (embedded)", EMBEDDED_DESKS)
    }

    pub fn load(path: &std::path::Path) -> Result<Self> {
        Self::parse(&path.display().to_string(), &read_file(path)?)
    }

    /// `level,code,name,fields` with level `commune` or `province`, fields `|`-separated or
    /// `*` for all. Every field must be served by some desk at both levels.
    pub fn parse(file: &str, text: &str) -> Result<Self> {
        let mut rdr = reader(text);
        check_header(file, &mut rdr, &["level", "code", "name", "fields"])?;
        let mut layout = Self {
            commune: Vec::new(),
            department: Vec::new(),
        };
        for (i, rec) in rdr.records().enumerate() {
            let rec = rec.map_err(|e| data_error(file, i + 2, e.to_string()))?;
            let line = rec.position().map_or(i + 2, |p| p.line() as usize);
            let err = |m: String| data_error(file, line, m);
            let desks = match rec[0].trim() {
                "commune" => &mut layout.commune,
                "province" => &mut layout.department,
                other => return Err(err(format!("unknown level '{other}' (commune or province)"))),
            };
            let code = rec[1].trim();
            if code.is_empty() || desks.iter().any(|d| d.code == code) {
                return Err(err(format!("desk code '{code}' is empty or repeated")));
            }
            let mut serves = [false; 6];
            for f in rec[3].split('|').map(str::trim) {
                if f == "*" {
                    serves = [true; 6];
                } else {
                    let field = parse_field(f).ok_or_else(|| err(format!("unknown field '{f}'")))?;
                    serves[field_index(field)] = true;
                }
            }
            desks.push(DeskTemplate {
                code: code.to_owned(),
                name: rec[2].trim().to_owned(),
                serves,
            });
        }
        for (level, desks) in [("commune", &layout.commune), ("province", &layout.department)] {
            for field in FIELDS {
                if !desks.iter().any(|d| d.serves[field_index(field)]) {
                    return Err(data_error(
                        file,
                        1,
                        format!("no {level} desk serves field {}", field_name(field)),
                    ));
                }
            }
        }
        Ok(layout)
    }

    pub fn desks(&self, level: AuthorityLevel) -> &[DeskTemplate] {
        match level {
            AuthorityLevel::Commune => &self.commune,
            AuthorityLevel::Department => &self.department,
        }
    }
}

/// The unit hours file compiled into the binary.
pub const EMBEDDED_UNIT_HOURS: &str = include_str!("../data/unit-hours.csv");

/// One center's own working hours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CenterHours {
    /// A 5-digit commune-level unit code, or `P` + a 2-digit province code.
    pub center: String,
    /// Its weekday hours; `None`: the calendar's.
    pub hours: Option<crate::WorkingHours>,
    /// Its Saturday hours, if it works Saturday mornings.
    pub saturday: Option<crate::WorkingHours>,
}

/// Centers that work other hours than the calendar's (`unit-hours.csv`): their dossiers'
/// legal clocks count their own working time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitHours {
    pub centers: Vec<CenterHours>,
}

impl UnitHours {
    pub fn embedded() -> Result<Self> {
        Self::parse("unit-hours.csv (embedded)", EMBEDDED_UNIT_HOURS)
    }

    pub fn load(path: &std::path::Path) -> Result<Self> {
        let text = read_file(path)?;
        Self::parse(&path.display().to_string(), &text)
    }

    /// `center,hours,saturday`: hours as `07:30-11:30,13:00-16:30` (quoted, since they
    /// hold commas), empty for the calendar's; Saturday hours empty when the center does
    /// not open on Saturdays. Whether each center exists is checked by the tables.
    pub fn parse(file: &str, text: &str) -> Result<Self> {
        let mut rdr = reader(text);
        check_header(file, &mut rdr, &["center", "hours", "saturday"])?;
        let mut centers: Vec<CenterHours> = Vec::new();
        for (i, rec) in rdr.records().enumerate() {
            let rec = rec.map_err(|e| data_error(file, i + 2, e.to_string()))?;
            let line = rec.position().map_or(i + 2, |p| p.line() as usize);
            let err = |m: String| data_error(file, line, m);
            let center = rec[0].trim().to_owned();
            let periods = |col: usize, what: &str| -> Result<Option<crate::WorkingHours>> {
                let text = rec[col].trim();
                if text.is_empty() {
                    return Ok(None);
                }
                crate::WorkingHours::parse(text)
                    .map(Some)
                    .map_err(|e| err(format!("{what} of {center}: {e}")))
            };
            let (hours, saturday) = (periods(1, "hours")?, periods(2, "Saturday hours")?);
            if hours.is_none() && saturday.is_none() {
                return Err(err(format!("{center} has neither its own hours nor Saturday hours")));
            }
            if centers.iter().any(|c| c.center == center) {
                return Err(err(format!("{center} appears twice")));
            }
            centers.push(CenterHours {
                center,
                hours,
                saturday,
            });
        }
        Ok(Self { centers })
    }
}
