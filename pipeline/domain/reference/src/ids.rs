//! Well-formedness of Vietnamese identifiers.

/// Birth-registration province prefixes of 12-digit citizen IDs (the 63 pre-2025
/// provinces; IDs keep the prefix they were issued with).
const CITIZEN_ID_PROVINCES: [u16; 63] = [
    1, 2, 4, 6, 8, 10, 11, 12, 14, 15, 17, 19, 20, 22, 24, 25, 26, 27, 30, 31, 33, 34, 35, 36, 37, 38, 40, 42, 44, 45,
    46, 48, 49, 51, 52, 54, 56, 58, 60, 62, 64, 66, 67, 68, 70, 72, 74, 75, 77, 79, 80, 82, 83, 84, 86, 87, 89, 91, 92,
    93, 94, 95, 96,
];

/// Why a citizen ID is not well-formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CitizenIdProblem {
    NotTwelveDigits,
    UnknownProvince,
    /// The century/sex digit and year digits do not match the date of birth given.
    BirthYearMismatch,
}

/// Checks a 12-digit citizen ID (CCCD): province prefix, century/sex digit, birth year.
/// `birth_year` (if known) must agree with digits 4–6.
pub fn check_citizen_id(id: &str, birth_year: Option<i32>) -> Result<(), CitizenIdProblem> {
    let b = id.as_bytes();
    if b.len() != 12 || !b.iter().all(u8::is_ascii_digit) {
        return Err(CitizenIdProblem::NotTwelveDigits);
    }
    let d = |i: usize| u16::from(b[i] - b'0');
    let province = d(0) * 100 + d(1) * 10 + d(2);
    if !CITIZEN_ID_PROVINCES.contains(&province) {
        return Err(CitizenIdProblem::UnknownProvince);
    }
    // Digit 4: 0/1 = 20th century male/female, 2/3 = 21st, 4/5 = 22nd, …
    let century = 1900 + i32::from(d(3) / 2) * 100;
    let year = century + i32::from(d(4) * 10 + d(5));
    if let Some(y) = birth_year {
        if y != year {
            return Err(CitizenIdProblem::BirthYearMismatch);
        }
    }
    Ok(())
}

/// Checks a tax code: 10 digits whose last is the check digit, optionally followed by
/// `-NNN` for a branch or dependent unit.
pub fn check_tax_code(code: &str) -> bool {
    let (main, branch) = match code.split_once('-') {
        Some((m, b)) => (m, Some(b)),
        None => (code, None),
    };
    if let Some(b) = branch {
        if b.len() != 3 || !b.bytes().all(|c| c.is_ascii_digit()) || b == "000" {
            return false;
        }
    }
    let m = main.as_bytes();
    if m.len() != 10 || !m.iter().all(u8::is_ascii_digit) {
        return false;
    }
    tax_check_digit(&m[..9]).is_some_and(|c| c == m[9] - b'0')
}

/// The check digit of the first nine digits of a tax code, if one exists (codes whose
/// computed digit would be 10 are never issued).
pub fn tax_check_digit(first_nine: &[u8]) -> Option<u8> {
    const WEIGHTS: [u32; 9] = [31, 29, 23, 19, 17, 13, 7, 5, 3];
    let sum: u32 = first_nine
        .iter()
        .zip(WEIGHTS)
        .map(|(d, w)| u32::from(d.saturating_sub(b'0')) * w)
        .sum();
    let check = 10 - (sum % 11);
    (check < 10).then_some(check as u8)
}

/// 64 lower-case hex digits.
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn citizen_ids() {
        assert_eq!(check_citizen_id("022090001234", Some(1990)), Ok(()));
        assert_eq!(
            check_citizen_id("001305012345", Some(2005)),
            Ok(()),
            "female, 21st century"
        );
        assert_eq!(check_citizen_id("022090001234", None), Ok(()));
        assert_eq!(
            check_citizen_id("02209000123", None),
            Err(CitizenIdProblem::NotTwelveDigits)
        );
        assert_eq!(
            check_citizen_id("02209000123a", None),
            Err(CitizenIdProblem::NotTwelveDigits)
        );
        assert_eq!(
            check_citizen_id("003090001234", None),
            Err(CitizenIdProblem::UnknownProvince)
        );
        assert_eq!(
            check_citizen_id("022090001234", Some(1991)),
            Err(CitizenIdProblem::BirthYearMismatch)
        );
        assert_eq!(
            check_citizen_id("022290001234", Some(1990)),
            Err(CitizenIdProblem::BirthYearMismatch)
        );
    }

    #[test]
    fn tax_codes() {
        // 010010002: 0*31+1*29+0*23+0*19+1*17+0*13+0*7+0*5+2*3 = 52; 52 % 11 = 8; 10-8 = 2.
        assert_eq!(tax_check_digit(b"010010002"), Some(2));
        assert!(check_tax_code("0100100022"));
        assert!(check_tax_code("0100100022-001"));
        assert!(!check_tax_code("0100100023"));
        assert!(!check_tax_code("0100100022-000"));
        assert!(!check_tax_code("0100100022-01"));
        assert!(!check_tax_code("010010002"));
    }

    #[test]
    fn hashes() {
        assert!(is_sha256_hex(&"ab".repeat(32)));
        assert!(!is_sha256_hex(&"AB".repeat(32)));
        assert!(!is_sha256_hex("abc"));
    }
}
