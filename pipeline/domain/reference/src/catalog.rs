use std::collections::HashMap;

use motcua_schemas::{CompetentLevel, LeadTimeUnit, ProcedureField, ProcedureSummary, Registry};

use crate::{data_error, Result};

const EMBEDDED: &str = include_str!("../data/procedures.csv");

/// Legal processing time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeadTime {
    pub value: u32,
    pub unit: LeadTimeUnit,
}

impl LeadTime {
    fn parse(s: &str) -> Option<Self> {
        let (digits, unit) = if let Some(d) = s.strip_suffix("cd") {
            (d, LeadTimeUnit::CalendarDays)
        } else if let Some(d) = s.strip_suffix('d') {
            (d, LeadTimeUnit::WorkingDays)
        } else if let Some(d) = s.strip_suffix('h') {
            (d, LeadTimeUnit::WorkingHours)
        } else {
            return None;
        };
        let value: u32 = digits.parse().ok()?;
        (value > 0).then_some(Self { value, unit })
    }
}

/// One administrative procedure of the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Procedure {
    pub code: String,
    pub name: String,
    pub field: ProcedureField,
    pub level: CompetentLevel,
    pub lead_time: LeadTime,
    pub fee_vnd: i64,
    pub required_documents: Vec<String>,
    /// May be received at any center of the province, whatever the applicant's address.
    pub boundary_free: bool,
    /// May be received anywhere in the country.
    pub nationwide: bool,
    pub active: bool,
    pub registry_checks: Vec<Registry>,
}

impl Procedure {
    /// What travels downstream with the dossier.
    pub fn summary(&self) -> ProcedureSummary {
        ProcedureSummary {
            code: self.code.clone(),
            name: self.name.clone(),
            field: self.field,
            level: self.level,
            lead_time: self.lead_time.value as i32,
            lead_time_unit: self.lead_time.unit,
            fee_vnd: self.fee_vnd,
        }
    }
}

/// The procedure catalog.
#[derive(Debug, Clone)]
pub struct Catalog {
    procedures: Vec<Procedure>,
    by_code: HashMap<String, usize>,
}

fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

impl Catalog {
    pub fn embedded() -> Result<Self> {
        Self::parse("procedures.csv (embedded)", EMBEDDED)
    }

    pub fn parse(file: &str, text: &str) -> Result<Self> {
        let mut rdr = csv::ReaderBuilder::new().has_headers(true).from_reader(text.as_bytes());
        let headers = rdr.headers().map_err(|e| data_error(file, 1, e.to_string()))?.clone();
        let expected = [
            "code",
            "name",
            "field",
            "level",
            "lead_time",
            "fee_vnd",
            "required_documents",
            "boundary_free",
            "nationwide",
            "active",
            "registry_checks",
        ];
        if headers.iter().collect::<Vec<_>>() != expected {
            return Err(data_error(file, 1, format!("header must be {}", expected.join(","))));
        }
        let mut procedures = Vec::new();
        let mut by_code = HashMap::new();
        for (i, rec) in rdr.records().enumerate() {
            let line = i + 2;
            let rec = rec.map_err(|e| data_error(file, line, e.to_string()))?;
            let err = |m: String| data_error(file, line, m);
            let field = match &rec[2] {
                "land" => ProcedureField::Land,
                "residence" => ProcedureField::Residence,
                "certification" => ProcedureField::Certification,
                "civil_status" => ProcedureField::CivilStatus,
                "business" => ProcedureField::Business,
                "construction" => ProcedureField::Construction,
                other => return Err(err(format!("unknown field '{other}'"))),
            };
            let level = match &rec[3] {
                "commune" => CompetentLevel::Commune,
                "province" => CompetentLevel::Province,
                other => return Err(err(format!("unknown level '{other}' (commune or province)"))),
            };
            let lead_time = LeadTime::parse(&rec[4])
                .ok_or_else(|| err(format!("lead_time '{}' is not Nd, Nh or Ncd with N > 0", &rec[4])))?;
            let fee_vnd: i64 = rec[5]
                .parse()
                .ok()
                .filter(|f| *f >= 0)
                .ok_or_else(|| err(format!("fee_vnd '{}' is not a non-negative integer", &rec[5])))?;
            let list = |s: &str| -> Vec<String> {
                s.split('|')
                    .map(str::trim)
                    .filter(|x| !x.is_empty())
                    .map(str::to_owned)
                    .collect()
            };
            let required_documents = list(&rec[6]);
            let flag = |idx: usize, name: &str| {
                parse_bool(&rec[idx]).ok_or_else(|| err(format!("{name} '{}' is not true/false", &rec[idx])))
            };
            let registry_checks = list(&rec[10])
                .iter()
                .map(|r| match r.as_str() {
                    "population" => Ok(Registry::Population),
                    "land" => Ok(Registry::Land),
                    "business" => Ok(Registry::Business),
                    other => Err(err(format!("unknown registry '{other}'"))),
                })
                .collect::<Result<Vec<_>>>()?;
            let p = Procedure {
                code: rec[0].trim().to_owned(),
                name: rec[1].trim().to_owned(),
                field,
                level,
                lead_time,
                fee_vnd,
                required_documents,
                boundary_free: flag(7, "boundary_free")?,
                nationwide: flag(8, "nationwide")?,
                active: flag(9, "active")?,
                registry_checks,
            };
            if by_code.insert(p.code.clone(), procedures.len()).is_some() {
                return Err(err(format!("procedure code {} appears twice", p.code)));
            }
            procedures.push(p);
        }
        Ok(Self { procedures, by_code })
    }

    pub fn get(&self, code: &str) -> Option<&Procedure> {
        self.by_code.get(code).map(|&i| &self.procedures[i])
    }

    pub fn procedures(&self) -> &[Procedure] {
        &self.procedures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_catalog_covers_every_field() {
        let c = Catalog::embedded().expect("catalog parses");
        assert!(c.procedures().len() >= 40, "{} procedures", c.procedures().len());
        for f in ProcedureField::ALL {
            assert!(c.procedures().iter().any(|p| p.field == f && p.active), "{f:?}");
        }
        assert!(c.procedures().iter().any(|p| !p.active));
        assert!(c.procedures().iter().any(|p| p.level == CompetentLevel::Province));
        assert!(c.procedures().iter().all(|p| !p.required_documents.is_empty()));
    }

    #[test]
    fn lead_times_parse_with_units() {
        assert_eq!(
            LeadTime::parse("5d"),
            Some(LeadTime {
                value: 5,
                unit: LeadTimeUnit::WorkingDays
            })
        );
        assert_eq!(
            LeadTime::parse("8h"),
            Some(LeadTime {
                value: 8,
                unit: LeadTimeUnit::WorkingHours
            })
        );
        assert_eq!(
            LeadTime::parse("30cd"),
            Some(LeadTime {
                value: 30,
                unit: LeadTimeUnit::CalendarDays
            })
        );
        assert_eq!(LeadTime::parse("0h"), None);
        assert_eq!(LeadTime::parse("5w"), None);
    }
}
