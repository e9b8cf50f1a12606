use std::collections::HashMap;

use crate::{data_error, Result};

const EMBEDDED: &str = include_str!("../data/admin-units-2025.csv");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnitKind {
    Ward,
    Commune,
    SpecialZone,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Province {
    /// 2-digit statistics-office code, e.g. "22".
    pub code: String,
    pub name: String,
    pub centrally_run_city: bool,
}

impl Province {
    /// The code of the provincial public service center (a receiving center that is not a
    /// commune-level unit): `P` + province code.
    pub fn center_code(&self) -> String {
        format!("P{}", self.code)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    /// 5-digit statistics-office code, e.g. "07090".
    pub code: String,
    pub name: String,
    pub kind: UnitKind,
    /// Index into [`AdminUnits::provinces`].
    pub province: usize,
}

/// The 2025 administrative units: 34 provinces, 3,321 commune-level units.
#[derive(Debug, Clone)]
pub struct AdminUnits {
    provinces: Vec<Province>,
    units: Vec<Unit>,
    by_code: HashMap<String, usize>,
    province_by_code: HashMap<String, usize>,
}

/// Normalises a statistics-office code to `width` digits ("70" → "00070").
fn pad(code: &str, width: usize) -> Option<String> {
    let code = code.trim();
    if code.is_empty() || code.len() > width || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(format!("{code:0>width$}"))
}

impl AdminUnits {
    pub fn embedded() -> Result<Self> {
        Self::parse("admin-units-2025.csv (embedded)", EMBEDDED)
    }

    pub fn parse(file: &str, text: &str) -> Result<Self> {
        let mut rdr = csv::ReaderBuilder::new().has_headers(true).from_reader(text.as_bytes());
        let headers = rdr.headers().map_err(|e| data_error(file, 1, e.to_string()))?.clone();
        let expected = [
            "province_code",
            "province_name",
            "province_type",
            "unit_code",
            "unit_name",
            "unit_type",
        ];
        if headers.iter().collect::<Vec<_>>() != expected {
            return Err(data_error(file, 1, format!("header must be {}", expected.join(","))));
        }
        let mut out = Self {
            provinces: Vec::new(),
            units: Vec::new(),
            by_code: HashMap::new(),
            province_by_code: HashMap::new(),
        };
        for (i, rec) in rdr.records().enumerate() {
            let line = i + 2;
            let rec = rec.map_err(|e| data_error(file, line, e.to_string()))?;
            let p_code =
                pad(&rec[0], 2).ok_or_else(|| data_error(file, line, format!("bad province code '{}'", &rec[0])))?;
            let u_code =
                pad(&rec[3], 5).ok_or_else(|| data_error(file, line, format!("bad unit code '{}'", &rec[3])))?;
            let kind = match &rec[5] {
                "phường" => UnitKind::Ward,
                "xã" => UnitKind::Commune,
                "đặc khu" => UnitKind::SpecialZone,
                other => return Err(data_error(file, line, format!("unknown unit type '{other}'"))),
            };
            let province = match out.province_by_code.get(&p_code) {
                Some(&p) => p,
                None => {
                    out.provinces.push(Province {
                        code: p_code.clone(),
                        name: rec[1].to_owned(),
                        centrally_run_city: &rec[2] == "thành phố trung ương",
                    });
                    out.province_by_code.insert(p_code, out.provinces.len() - 1);
                    out.provinces.len() - 1
                }
            };
            if out.by_code.insert(u_code.clone(), out.units.len()).is_some() {
                return Err(data_error(file, line, format!("unit code {u_code} appears twice")));
            }
            out.units.push(Unit {
                code: u_code,
                name: rec[4].to_owned(),
                kind,
                province,
            });
        }
        if out.units.is_empty() {
            return Err(data_error(file, 1, "no units"));
        }
        Ok(out)
    }

    pub fn provinces(&self) -> &[Province] {
        &self.provinces
    }

    pub fn units(&self) -> &[Unit] {
        &self.units
    }

    /// A commune-level unit by its 5-digit code (shorter codes are zero-padded).
    pub fn unit(&self, code: &str) -> Option<&Unit> {
        match self.by_code.get(code) {
            Some(&i) => Some(&self.units[i]),
            None => pad(code, 5).and_then(|c| self.by_code.get(&c)).map(|&i| &self.units[i]),
        }
    }

    pub fn province(&self, code: &str) -> Option<&Province> {
        pad(code, 2)
            .and_then(|c| self.province_by_code.get(&c))
            .map(|&i| &self.provinces[i])
    }

    pub fn province_of(&self, unit: &Unit) -> &Province {
        &self.provinces[unit.province]
    }

    /// Units of one province.
    pub fn units_of(&self, province_code: &str) -> impl Iterator<Item = &Unit> + '_ {
        let p = pad(province_code, 2).and_then(|c| self.province_by_code.get(&c).copied());
        self.units.iter().filter(move |u| Some(u.province) == p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_units_match_the_2025_reform() {
        let u = AdminUnits::embedded().expect("embedded units parse");
        assert_eq!(u.provinces().len(), 34);
        assert_eq!(u.units().len(), 3_321);
        let qn: Vec<&Unit> = u.units_of("22").collect();
        assert_eq!(qn.len(), 54);
        assert_eq!(qn.iter().filter(|x| x.kind == UnitKind::Ward).count(), 30);
        assert_eq!(qn.iter().filter(|x| x.kind == UnitKind::Commune).count(), 22);
        assert_eq!(qn.iter().filter(|x| x.kind == UnitKind::SpecialZone).count(), 2);
        let hk = u.unit("70").expect("Phường Hoàn Kiếm by short code");
        assert_eq!(hk.code, "00070");
        assert_eq!(u.province_of(hk).name, "Thành phố Hà Nội");
        assert_eq!(u.province("1").map(|p| p.center_code()), Some("P01".to_owned()));
        assert!(u.unit("99999").is_none());
        assert!(u.unit("abc").is_none());
    }

    #[test]
    fn malformed_files_name_the_line() {
        let bad = "province_code,province_name,province_type,unit_code,unit_name,unit_type\n1,Hà Nội,tỉnh,70,X,huyện\n";
        let e = AdminUnits::parse("u.csv", bad).unwrap_err().to_string();
        assert_eq!(e, "u.csv, line 2: unknown unit type 'huyện'");
    }
}
