//! The fee schedule: the catalog's fee, a per-procedure charge, and exemptions for listed
//! beneficiary groups (the applicant's group travels in the form field `beneficiary_group`).

use std::collections::HashMap;

use motcua_schemas::{DossierVerified, ProcedureSummary};

const EMBEDDED: &str = include_str!("../data/fees.csv");

/// What a dossier owes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fee {
    pub fee_vnd: i64,
    pub charge_vnd: i64,
    /// The beneficiary group that exempted the fee, if any.
    pub exempt_as: Option<String>,
}

impl Fee {
    pub fn total(&self) -> i64 {
        self.fee_vnd + self.charge_vnd
    }
}

#[derive(Debug, Clone, Default)]
pub struct FeeSchedule {
    rules: HashMap<String, (i64, Vec<String>)>,
}

impl FeeSchedule {
    pub fn embedded() -> Result<Self, String> {
        Self::parse(EMBEDDED)
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let mut rules = HashMap::new();
        let body: String = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n");
        let mut rdr = csv::Reader::from_reader(body.as_bytes());
        for (i, rec) in rdr.records().enumerate() {
            let rec = rec.map_err(|e| format!("fees line {}: {e}", i + 2))?;
            let charge: i64 = rec[1]
                .parse()
                .map_err(|_| format!("fees line {}: charge '{}' is not a number", i + 2, &rec[1]))?;
            let groups = rec[2].split('|').filter(|g| !g.is_empty()).map(str::to_owned).collect();
            rules.insert(rec[0].to_owned(), (charge, groups));
        }
        Ok(Self { rules })
    }

    pub fn fee(&self, procedure: &ProcedureSummary, verified: &DossierVerified) -> Fee {
        let (charge, exempt) = self.rules.get(&procedure.code).cloned().unwrap_or_default();
        let group = verified.dossier.form_fields.get("beneficiary_group");
        let exempt_as = group.filter(|g| exempt.contains(g)).cloned();
        Fee {
            fee_vnd: if exempt_as.is_some() { 0 } else { procedure.fee_vnd },
            charge_vnd: charge,
            exempt_as,
        }
    }
}
