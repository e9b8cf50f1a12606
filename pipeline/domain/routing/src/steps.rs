//! Step budgets: a procedure's internal process (quy trình nội bộ) as five steps, each with
//! a share of the dossier's legal working time, from `data/procedure-steps.csv`.
//!
//! A budget is a share (`60%`) of the working time between the dossier's clock start and
//! its legal due time, or an absolute working time (`4h`, `2d` = 2 working days). The
//! budgets of a dossier are resolved on the calendar when asked for, so calendar-day
//! procedures (whose working time depends on the reception date) get exact shares too.

use std::collections::BTreeMap;

use motcua_reference::LeadTime;
use motcua_schemas::{LeadTimeUnit, ProcedureField};

use crate::data::{field_index, field_name, FIELDS};
use crate::error::{data_error, Error, Result};
use crate::Calendar;

/// The step budgets file compiled into the binary.
pub const EMBEDDED_STEPS: &str = include_str!("../data/procedure-steps.csv");

const HOUR_MS: i64 = 3_600_000;

/// The steps of a dossier's internal process, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Step {
    /// From submission to reception at the one-stop desk (intake).
    Reception,
    /// From reception to the end of the checks against the registries (verify), without
    /// the time waiting for the citizen's supplement.
    Verification,
    /// From verification to the end of the competent unit's appraisal (fees and routing
    /// included): the back office reports when appraisal ended with its decision.
    Appraisal,
    /// From the end of appraisal to the decision.
    Approval,
    /// From the decision to the result delivered.
    Result,
}

impl Step {
    pub const ALL: [Step; 5] = [
        Step::Reception,
        Step::Verification,
        Step::Appraisal,
        Step::Approval,
        Step::Result,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Step::Reception => "reception",
            Step::Verification => "verification",
            Step::Appraisal => "appraisal",
            Step::Approval => "approval",
            Step::Result => "result",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// One step's budget as written in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// Percent of the dossier's legal working time.
    Share(u32),
    /// Working hours (days are converted with the calendar's hours per day).
    WorkingMs(i64),
}

/// The five budgets of one line.
pub type Plan = [Budget; 5];

/// Budgets for every procedure: a default, per-field and per-procedure lines.
#[derive(Debug, Clone)]
pub struct StepPlans {
    default: Plan,
    by_field: [Option<Plan>; FIELDS.len()],
    by_procedure: BTreeMap<String, Plan>,
}

impl StepPlans {
    pub fn embedded(calendar: &Calendar) -> Result<Self> {
        Self::parse("procedure-steps.csv (embedded)", EMBEDDED_STEPS, calendar)
    }

    pub fn load(path: &std::path::Path, calendar: &Calendar) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            file: path.display().to_string(),
            source,
        })?;
        Self::parse(&path.display().to_string(), &text, calendar)
    }

    /// `key,reception,verification,appraisal,approval,result`: `key` is `*` (every
    /// procedure; required), a field (`land`) or a procedure code; the most specific line
    /// wins. A line's budgets are all shares summing to 100 %, or all working times.
    pub fn parse(file: &str, text: &str, calendar: &Calendar) -> Result<Self> {
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(true)
            .comment(Some(b'#'))
            .trim(csv::Trim::All)
            .from_reader(text.as_bytes());
        let headers = rdr.headers().map_err(|e| data_error(file, 1, e.to_string()))?.clone();
        let expected: Vec<&str> = std::iter::once("key")
            .chain(Step::ALL.iter().map(|s| s.as_str()))
            .collect();
        if headers.iter().collect::<Vec<_>>() != expected {
            return Err(data_error(file, 1, format!("header must be {}", expected.join(","))));
        }
        let per_day = calendar.hours().per_day_ms();
        let mut default = None;
        let mut by_field: [Option<Plan>; FIELDS.len()] = [None; FIELDS.len()];
        let mut by_procedure = BTreeMap::new();
        for (i, rec) in rdr.records().enumerate() {
            let rec = rec.map_err(|e| data_error(file, i + 2, e.to_string()))?;
            let line = rec.position().map_or(i + 2, |p| p.line() as usize);
            let err = |m: String| data_error(file, line, m);
            let mut plan = [Budget::Share(0); 5];
            for (k, step) in Step::ALL.into_iter().enumerate() {
                plan[k] = parse_budget(&rec[k + 1], per_day).ok_or_else(|| {
                    err(format!(
                        "{} budget '{}' is not like 60% or 4h or 2d",
                        step.as_str(),
                        &rec[k + 1]
                    ))
                })?;
            }
            let shares: Vec<u32> = plan
                .iter()
                .filter_map(|b| match b {
                    Budget::Share(s) => Some(*s),
                    Budget::WorkingMs(_) => None,
                })
                .collect();
            match shares.len() {
                0 => {}
                5 if shares.iter().sum::<u32>() == 100 => {}
                5 => {
                    return Err(err(format!(
                        "the shares add up to {} %, not 100 %",
                        shares.iter().sum::<u32>()
                    )))
                }
                _ => return Err(err("a line's budgets are all shares or all working times".to_owned())),
            }
            let key = rec[0].to_owned();
            let duplicate = if key == "*" {
                default.replace(plan).is_some()
            } else if let Some(f) = FIELDS.into_iter().find(|f| field_name(*f) == key) {
                by_field[field_index(f)].replace(plan).is_some()
            } else {
                by_procedure.insert(key.clone(), plan).is_some()
            };
            if duplicate {
                return Err(err(format!("'{key}' appears twice")));
            }
        }
        let default = default.ok_or_else(|| data_error(file, 1, "a '*' line (every procedure) is required"))?;
        Ok(Self {
            default,
            by_field,
            by_procedure,
        })
    }

    /// The plan of a procedure: its own line, else its field's, else the default.
    pub fn plan(&self, procedure_code: &str, field: ProcedureField) -> &Plan {
        self.by_procedure
            .get(procedure_code)
            .or(self.by_field[field_index(field)].as_ref())
            .unwrap_or(&self.default)
    }

    /// Procedure codes with a line of their own (checked against the catalog at build).
    pub fn procedure_codes(&self) -> impl Iterator<Item = &str> {
        self.by_procedure.keys().map(String::as_str)
    }

    /// Refuses absolute budgets longer than the procedure's legal time, when that time is
    /// a fixed amount of work (working days or hours).
    pub fn check(&self, procedure_code: &str, field: ProcedureField, lead: LeadTime, per_day_ms: i64) -> Result<()> {
        let legal_ms = match lead.unit {
            LeadTimeUnit::WorkingDays => i64::from(lead.value) * per_day_ms,
            LeadTimeUnit::WorkingHours => i64::from(lead.value) * HOUR_MS,
            LeadTimeUnit::CalendarDays => return Ok(()),
        };
        let absolute: i64 = self
            .plan(procedure_code, field)
            .iter()
            .map(|b| match b {
                Budget::WorkingMs(ms) => *ms,
                Budget::Share(_) => 0,
            })
            .sum();
        if absolute > legal_ms {
            return Err(Error::Incomplete(format!(
                "the step budgets of procedure {procedure_code} add up to {:.1} working hours, more than its legal {:.1}",
                absolute as f64 / HOUR_MS as f64,
                legal_ms as f64 / HOUR_MS as f64
            )));
        }
        Ok(())
    }

    /// The budgets of a dossier in working ms, given its legal working time (clock start
    /// to legal due time). Shares are rounded down, the last step taking the remainder,
    /// so they add up to exactly the legal time.
    pub fn budgets(&self, plan: &Plan, legal_working_ms: i64) -> [i64; 5] {
        let mut out = [0i64; 5];
        let mut given = 0;
        let last_share = plan.iter().rposition(|b| matches!(b, Budget::Share(_)));
        for (k, b) in plan.iter().enumerate() {
            out[k] = match *b {
                Budget::WorkingMs(ms) => ms,
                Budget::Share(_) if Some(k) == last_share => legal_working_ms - given,
                Budget::Share(s) => legal_working_ms * i64::from(s) / 100,
            };
            if matches!(b, Budget::Share(_)) {
                given += out[k];
            }
        }
        out
    }
}

fn parse_budget(s: &str, per_day_ms: i64) -> Option<Budget> {
    if let Some(p) = s.strip_suffix('%') {
        return p.trim().parse::<u32>().ok().filter(|p| *p <= 100).map(Budget::Share);
    }
    let (n, unit_ms) = if let Some(h) = s.strip_suffix('h') {
        (h, HOUR_MS)
    } else {
        (s.strip_suffix('d')?, per_day_ms)
    };
    // Tenths are enough for "0.5d".
    let tenths = parse_tenths(n.trim())?;
    Some(Budget::WorkingMs(tenths * unit_ms / 10))
}

fn parse_tenths(s: &str) -> Option<i64> {
    let (whole, frac) = s.split_once('.').unwrap_or((s, "0"));
    if frac.len() != 1 {
        return None;
    }
    let w: i64 = whole.parse().ok().filter(|w| *w >= 0 && *w <= 10_000)?;
    let f: i64 = frac.parse().ok()?;
    Some(w * 10 + f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn calendar() -> Calendar {
        Calendar::embedded().expect("calendar")
    }

    #[test]
    fn the_most_specific_line_wins_and_shares_add_up_to_the_legal_time() {
        let text = "key,reception,verification,appraisal,approval,result\n\
                    *,5%,10%,60%,15%,10%\n\
                    land,0.5h,4h,1d,4h,0.5d\n\
                    1.000001,10%,10%,50%,20%,10%\n";
        let p = StepPlans::parse("t.csv", text, &calendar()).expect("parses");
        let day = 8 * HOUR_MS;
        assert_eq!(
            p.plan("9.999999", ProcedureField::Land)[2],
            Budget::WorkingMs(day),
            "the field's line"
        );
        assert_eq!(
            p.plan("1.000001", ProcedureField::Land)[3],
            Budget::Share(20),
            "the procedure's own"
        );
        let default = p.plan("9.999999", ProcedureField::Residence);
        assert_eq!(default[0], Budget::Share(5));
        // 3 working days = 24 h: 1.2 h, 2.4 h, 14.4 h, 3.6 h and the rest (2.4 h).
        let b = p.budgets(default, 3 * day);
        assert_eq!(b, [4_320_000, 8_640_000, 51_840_000, 12_960_000, 8_640_000]);
        assert_eq!(b.iter().sum::<i64>(), 3 * day);
        // An odd legal time: the last step takes what rounding left.
        let b = p.budgets(default, 7);
        assert_eq!(b.iter().sum::<i64>(), 7);
        let land = p.plan("9.999999", ProcedureField::Land);
        assert_eq!(p.budgets(land, 3 * day)[0], HOUR_MS / 2);
    }

    #[test]
    fn bad_lines_are_refused_with_their_line() {
        let cal = calendar();
        let header = "key,reception,verification,appraisal,approval,result\n";
        for (body, expect) in [
            ("*,5%,10%,60%,15%,20%\n", "add up to 110 %"),
            ("*,5%,10%,60%,15%,1h\n", "all shares or all working times"),
            ("*,5%,10%,60%,15%,ten\n", "result budget 'ten'"),
            ("land,1h,1h,1h,1h,1h\n", "a '*' line"),
            ("*,5%,10%,60%,15%,10%\n*,5%,10%,60%,15%,10%\n", "'*' appears twice"),
        ] {
            let e = StepPlans::parse("t.csv", &format!("{header}{body}"), &cal)
                .expect_err(body)
                .to_string();
            assert!(e.contains(expect), "{body}: {e}");
            assert!(e.contains("t.csv"), "{e}");
        }
        let e = StepPlans::parse("t.csv", "a,b\n", &cal)
            .expect_err("header")
            .to_string();
        assert!(e.contains("header must be key,reception"), "{e}");
    }

    #[test]
    fn absolute_budgets_longer_than_the_legal_time_are_refused() {
        let text =
            "key,reception,verification,appraisal,approval,result\n*,5%,10%,60%,15%,10%\n1.000001,1d,1d,1d,1d,1d\n";
        let p = StepPlans::parse("t.csv", text, &calendar()).expect("parses");
        let lead = |value| LeadTime {
            value,
            unit: LeadTimeUnit::WorkingDays,
        };
        assert!(p.check("1.000001", ProcedureField::Land, lead(5), 8 * HOUR_MS).is_ok());
        let e = p
            .check("1.000001", ProcedureField::Land, lead(3), 8 * HOUR_MS)
            .expect_err("too long")
            .to_string();
        assert!(
            e.contains("add up to 40.0 working hours, more than its legal 24.0"),
            "{e}"
        );
    }

    /// A replacement file given to the tables: its procedures must be in the catalog and
    /// fit their legal time; a dossier's budgets then come from it.
    #[test]
    fn a_steps_file_replaces_the_embedded_one_and_is_checked_against_the_catalog() {
        let reference = motcua_reference::Reference::embedded().expect("reference");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("procedure-steps.csv");
        let header = "key,reception,verification,appraisal,approval,result\n*,5%,10%,60%,15%,10%\n";
        let load = |body: &str| {
            std::fs::write(&path, format!("{header}{body}")).expect("write");
            crate::RoutingTables::load(
                &reference,
                &crate::RoutingFiles {
                    steps: Some(path.clone()),
                    ..Default::default()
                },
            )
        };
        // 1.004227 has 3 working days (24 h).
        let t = load("1.004227,0.5h,1h,1.5d,2h,1h\n").expect("fits");
        let b = t.step_budgets("1.004227", "P22", 1_764_036_000_000).expect("budgets");
        assert_eq!(b, [HOUR_MS / 2, HOUR_MS, 12 * HOUR_MS, 2 * HOUR_MS, HOUR_MS]);
        let e = load("9.999999,1h,1h,1h,1h,1h\n").expect_err("unknown").to_string();
        assert!(e.contains("procedure 9.999999, which is not in the catalog"), "{e}");
        let e = load("1.004227,1d,1d,1d,1d,1d\n").expect_err("too long").to_string();
        assert!(e.contains("more than its legal 24.0"), "{e}");
    }

    #[test]
    fn the_embedded_file_parses() {
        let p = StepPlans::embedded(&calendar()).expect("embedded");
        assert!(matches!(p.default[0], Budget::Share(_)));
    }
}
