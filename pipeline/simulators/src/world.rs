//! Synthetic registries, deterministic by seed, shaped like the real ones.
//!
//! Record `i` of each registry is a pure function of (seed, i), and its key encodes `i`,
//! so a key can be looked up without storing anything (the registry simulator serves
//! millions of records from no memory) and the same records can be bulk-loaded into a
//! SQL replica. Dossier generators draw applicants from the same population, so claimed
//! names and dates of birth match the registry unless a test changes them on purpose.

use motcua_reference::civil::days_from_civil;
use motcua_reference::ids::tax_check_digit;
use motcua_reference::AdminUnits;

use motcua_registries::{Business, BusinessStatus, Citizen, Parcel, Sex};

pub const FAMILY: &[&str] = &[
    "Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Huỳnh", "Phan", "Vũ", "Võ", "Đặng", "Bùi", "Đỗ", "Hồ", "Ngô", "Dương",
    "Lý",
];
pub const MIDDLE_MALE: &[&str] = &["Văn", "Hữu", "Minh", "Đức", "Quang", "Xuân", "Gia", "Thành", "Công"];
pub const MIDDLE_FEMALE: &[&str] = &["Thị", "Ngọc", "Thu", "Thanh", "Hoài", "Minh", "Phương", "Bích"];
pub const GIVEN_MALE: &[&str] = &[
    "An", "Bình", "Dũng", "Hải", "Hiếu", "Hùng", "Khánh", "Long", "Nam", "Phong", "Phúc", "Quân", "Sơn", "Tuấn", "Việt",
];
pub const GIVEN_FEMALE: &[&str] = &[
    "Chi", "Giang", "Hà", "Hạnh", "Hoa", "Hương", "Lan", "Linh", "Mai", "Nga", "Tâm", "Thảo", "Trang", "Vy", "Yến",
];
pub const TRADE: &[&str] = &[
    "Thương mại",
    "Dịch vụ",
    "Xây dựng",
    "Thủy sản",
    "Du lịch",
    "Vận tải",
    "Nông sản",
    "Than",
];
const LAND_USE: &[&str] = &["ODT", "ONT", "CLN", "LUC", "BHK", "NTS"];
/// Birth-registration prefixes of citizen IDs (pre-2025 province codes).
const ID_PREFIXES: &[u16] = &[
    1, 2, 4, 6, 8, 10, 11, 12, 14, 15, 17, 19, 20, 22, 24, 25, 26, 27, 30, 31, 33, 34, 35, 36, 37, 38, 40, 42, 44, 45,
    46, 48, 49, 51, 52, 54, 56, 58, 60, 62, 64, 66, 67, 68, 70, 72, 74, 75, 77, 79, 80, 82, 83, 84, 86, 87, 89, 91, 92,
    93, 94, 95, 96,
];
const SERIALS: u64 = 1_000_000;
const SHEETS: u64 = 80;
const TAX_SERIALS: u64 = 10_000_000;

/// SplitMix64: a fast, well-mixed hash of (seed, stream, index).
fn mix(seed: u64, stream: u64, i: u64) -> u64 {
    let mut z = seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ i.wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn pick<'a>(items: &'a [&'a str], h: u64) -> &'a str {
    items[(h % items.len() as u64) as usize]
}

/// Sizes and scope of a synthetic registry world.
#[derive(Debug, Clone)]
pub struct World {
    pub seed: u64,
    pub citizens: u64,
    pub parcels: u64,
    pub businesses: u64,
    /// 5-digit codes of the units people live, own land and do business in.
    units: Vec<String>,
}

impl World {
    /// A world whose people, parcels and businesses are in `province` (2-digit code).
    pub fn for_province(units: &AdminUnits, province: &str, seed: u64, citizens: u64) -> Option<Self> {
        let units: Vec<String> = units.units_of(province).map(|u| u.code.clone()).collect();
        // Citizen IDs hold 10^6 serials per birth-province prefix.
        if units.is_empty() || citizens == 0 || citizens > SERIALS * ID_PREFIXES.len() as u64 {
            return None;
        }
        Some(Self {
            seed,
            citizens,
            parcels: citizens / 2 + 1,
            businesses: (citizens / 20 + 1).min(TAX_SERIALS),
            units,
        })
    }

    pub fn units(&self) -> &[String] {
        &self.units
    }

    /// Citizen number `i` (< `citizens`).
    pub fn citizen(&self, i: u64) -> Citizen {
        let h = |stream| mix(self.seed, stream, i);
        let sex = if h(1) & 1 == 0 { Sex::Male } else { Sex::Female };
        let year = 1940 + (h(2) % 67) as i32;
        let month = 1 + (h(3) % 12) as u32;
        let day = 1 + (h(4) % 28) as u32;
        let serial = i % SERIALS;
        // The prefix encodes the block (i / SERIALS), so two citizens never share an ID.
        let prefix = ID_PREFIXES[((mix(self.seed, 5, serial) + i / SERIALS) % ID_PREFIXES.len() as u64) as usize];
        let century_sex = (year / 100 - 19) * 2 + i32::from(sex == Sex::Female);
        let (middle, given) = match sex {
            Sex::Male => (pick(MIDDLE_MALE, h(6)), pick(GIVEN_MALE, h(7))),
            Sex::Female => (pick(MIDDLE_FEMALE, h(6)), pick(GIVEN_FEMALE, h(7))),
        };
        Citizen {
            citizen_id: format!("{prefix:03}{century_sex}{:02}{serial:06}", year % 100),
            full_name: format!("{} {middle} {given}", pick(FAMILY, h(8))),
            date_of_birth: days_from_civil(year, month, day) as i32,
            sex,
            residence_unit_code: self.units[(h(9) % self.units.len() as u64) as usize].clone(),
            deceased: h(10) % 100 == 0,
        }
    }

    /// Finds a citizen by ID: the serial digits give the candidate indices.
    pub fn citizen_by_id(&self, citizen_id: &str) -> Option<Citizen> {
        if citizen_id.len() != 12 || !citizen_id.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let serial: u64 = citizen_id[6..].parse().ok()?;
        let prefix: u16 = citizen_id[..3].parse().ok()?;
        let position = ID_PREFIXES.iter().position(|p| *p == prefix)? as u64;
        let n = ID_PREFIXES.len() as u64;
        let block = (position + n - mix(self.seed, 5, serial) % n) % n;
        let i = block * SERIALS + serial;
        (i < self.citizens)
            .then(|| self.citizen(i))
            .filter(|c| c.citizen_id == citizen_id)
    }

    /// Parcel number `j` (< `parcels`): unit, then map sheet, then parcel number.
    pub fn parcel(&self, j: u64) -> Parcel {
        let u = self.units.len() as u64;
        let h = |stream: u64| mix(self.seed, 100 + stream, j);
        let owners = if h(1) % 4 == 0 { 2 } else { 1 };
        let encumbrances = match h(2) % 100 {
            0 => vec!["DISPUTE".to_owned()],
            1..=9 => vec!["MORTGAGE".to_owned()],
            _ => Vec::new(),
        };
        Parcel {
            unit_code: self.units[(j % u) as usize].clone(),
            map_sheet: ((j / u) % SHEETS + 1) as i32,
            parcel_number: (j / (u * SHEETS) + 1) as i32,
            owners: (0..owners)
                .map(|k| self.citizen(mix(self.seed, 200 + k, j) % self.citizens).citizen_id)
                .collect(),
            area_m2: (40 + h(3) % 1_960) as f64 + (h(4) % 10) as f64 / 10.0,
            land_use: pick(LAND_USE, h(5)).to_owned(),
            encumbrances,
        }
    }

    pub fn parcel_at(&self, unit_code: &str, map_sheet: i32, parcel_number: i32) -> Option<Parcel> {
        let unit = self.units.iter().position(|u| u == unit_code)? as u64;
        if map_sheet < 1 || map_sheet as u64 > SHEETS || parcel_number < 1 {
            return None;
        }
        let u = self.units.len() as u64;
        let j = (parcel_number as u64 - 1) * u * SHEETS + (map_sheet as u64 - 1) * u + unit;
        (j < self.parcels).then(|| self.parcel(j))
    }

    /// Business number `k` (< `businesses`), if it exists: serials whose check digit
    /// would be 10 are never issued, as in the real registry.
    pub fn business(&self, k: u64) -> Option<Business> {
        let h = |stream: u64| mix(self.seed, 300 + stream, k);
        let province = 1 + h(1) % 96;
        let nine = format!("{province:02}{:07}", k % TAX_SERIALS);
        let check = tax_check_digit(nine.as_bytes())?;
        let status = match h(2) % 100 {
            0..=89 => BusinessStatus::Active,
            90..=95 => BusinessStatus::Suspended,
            _ => BusinessStatus::Dissolved,
        };
        let kind = if h(3) % 3 == 0 {
            "Công ty TNHH"
        } else {
            "Hộ kinh doanh"
        };
        Some(Business {
            tax_code: format!("{nine}{check}"),
            name: format!("{kind} {} {}", pick(TRADE, h(4)), pick(GIVEN_MALE, h(5))),
            status,
            legal_representative_citizen_id: self.citizen(h(6) % self.citizens).citizen_id,
            head_office_unit_code: self.units[(h(7) % self.units.len() as u64) as usize].clone(),
        })
    }

    pub fn business_by_tax_code(&self, tax_code: &str) -> Option<Business> {
        let main = tax_code.split('-').next()?;
        if main.len() != 10 || !main.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let k: u64 = main[2..9].parse().ok()?;
        self.business(k).filter(|b| b.tax_code == main)
    }
}

#[cfg(test)]
mod tests {
    use motcua_reference::ids::{check_citizen_id, check_tax_code};

    use super::*;

    fn world(citizens: u64) -> World {
        let units = AdminUnits::embedded().expect("units");
        World::for_province(&units, "22", 7, citizens).expect("Quảng Ninh")
    }

    #[test]
    fn records_are_well_formed_and_found_by_key() {
        let w = world(2_500_000);
        for i in (0..w.citizens).step_by(97_001) {
            let c = w.citizen(i);
            let year = motcua_reference::civil::civil_from_days(i64::from(c.date_of_birth)).0;
            assert_eq!(check_citizen_id(&c.citizen_id, Some(year)), Ok(()), "{c:?}");
            assert!(w.units().contains(&c.residence_unit_code));
            assert_eq!(w.citizen_by_id(&c.citizen_id), Some(c));
        }
        for j in (0..w.parcels).step_by(50_021) {
            let p = w.parcel(j);
            assert_eq!(w.parcel_at(&p.unit_code, p.map_sheet, p.parcel_number), Some(p.clone()));
            assert!(!p.owners.is_empty());
        }
        let mut found = 0;
        for k in 0..w.businesses.min(5_000) {
            if let Some(b) = w.business(k) {
                assert!(check_tax_code(&b.tax_code), "{}", b.tax_code);
                assert_eq!(w.business_by_tax_code(&b.tax_code), Some(b));
                found += 1;
            }
        }
        assert!(found > 4_000, "about 10/11 serials are issued, got {found}");
    }

    #[test]
    fn unknown_keys_are_not_found() {
        let w = world(1_000);
        assert_eq!(w.citizen_by_id("022090999999"), None);
        assert_eq!(w.citizen_by_id("abc"), None);
        assert_eq!(w.parcel_at("99999", 1, 1), None);
        assert_eq!(w.parcel_at(&w.units()[0].clone(), 1, 1_000_000), None);
        assert_eq!(w.business_by_tax_code("0100100022"), None);
    }

    #[test]
    fn the_same_seed_gives_the_same_world() {
        let (a, b) = (world(10_000), world(10_000));
        assert_eq!(a.citizen(1234), b.citizen(1234));
        let units = AdminUnits::embedded().expect("units");
        let other = World::for_province(&units, "22", 8, 10_000).expect("world");
        assert_ne!(a.citizen(1234), other.citizen(1234));
    }
}
