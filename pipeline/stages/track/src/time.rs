//! Instants in Vietnam's local time (UTC+7, no daylight saving), without a date crate.

const OFFSET_MS: i64 = 7 * 3_600_000;
const DAY_MS: i64 = 86_400_000;

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { yoe + era * 400 + 1 } else { yoe + era * 400 }, m, d)
}

/// `2025-11-25T09:00:00+07:00`.
pub fn format_local(ms: i64) -> String {
    let local = ms + OFFSET_MS;
    let (y, m, d) = civil_from_days(local.div_euclid(DAY_MS));
    let s = local.rem_euclid(DAY_MS) / 1000;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}+07:00",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

fn num(s: &str) -> Option<i64> {
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// Parses a query instant: milliseconds since the epoch, or a local date `YYYY-MM-DD`
/// (its midnight in UTC+7; with `end_of_day`, the next midnight, so that `to=2025-11-30`
/// includes that day).
pub fn parse_instant(s: &str, end_of_day: bool) -> Option<i64> {
    if let Some(ms) = num(s) {
        return Some(ms);
    }
    let mut parts = s.split('-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let (y, m, d) = (num(y)?, num(m)?, num(d)?);
    if !(1..=12).contains(&m) || d < 1 {
        return None;
    }
    let days = days_from_civil(y, m, d);
    // Reject 2025-02-30 and the like: the date must survive the round trip.
    if civil_from_days(days) != (y, m, d) {
        return None;
    }
    let day = if end_of_day { days + 1 } else { days };
    Some(day * DAY_MS - OFFSET_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_dates_round_trip() {
        // 2025-11-25 09:00 in Hà Nội.
        assert_eq!(format_local(1_764_036_000_000), "2025-11-25T09:00:00+07:00");
        assert_eq!(
            parse_instant("2025-11-25", false),
            Some(1_764_036_000_000 - 9 * 3_600_000)
        );
        assert_eq!(
            parse_instant("2025-11-25", true),
            Some(1_764_036_000_000 + 15 * 3_600_000)
        );
        assert_eq!(parse_instant("1764036000000", false), Some(1_764_036_000_000));
        for bad in [
            "",
            "2025-02-30",
            "2025-13-01",
            "25-11-25",
            "2025-11-25T09:00",
            "-5",
            "abc",
        ] {
            assert_eq!(parse_instant(bad, false), None, "{bad}");
        }
        assert_eq!(
            format_local(parse_instant("2024-02-29", false).unwrap()),
            "2024-02-29T00:00:00+07:00"
        );
    }
}
