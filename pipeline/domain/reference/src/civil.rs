//! Civil dates in Vietnam's time zone (Asia/Ho_Chi_Minh: UTC+7 all year, no daylight
//! saving), without a time-zone database.

/// Offset of Asia/Ho_Chi_Minh from UTC, in milliseconds.
pub const VN_OFFSET_MS: i64 = 7 * 3_600_000;
const DAY_MS: i64 = 86_400_000;

/// (year, month 1–12, day 1–31) of a day number counted from 1970-01-01.
pub fn civil_from_days(days: i64) -> (i32, u32, u32) {
    // Howard Hinnant's algorithm (public domain), proleptic Gregorian calendar.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = (yoe + era * 400 + i64::from(m <= 2)) as i32;
    (y, m, d)
}

/// Day number (from 1970-01-01) of a civil date.
pub fn days_from_civil(y: i32, m: u32, d: u32) -> i64 {
    let y = i64::from(y) - i64::from(m <= 2);
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The local (Vietnam) day number of an instant.
pub fn vn_day(epoch_ms: i64) -> i64 {
    (epoch_ms + VN_OFFSET_MS).div_euclid(DAY_MS)
}

/// Now, in milliseconds since the Unix epoch (0 if the system clock is before 1970).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// `YYMMDD` of an instant's local date, as in dossier codes.
pub fn vn_yymmdd(epoch_ms: i64) -> String {
    let (y, m, d) = civil_from_days(vn_day(epoch_ms));
    format!("{:02}{m:02}{d:02}", y.rem_euclid(100))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip_and_use_utc_plus_7() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(days_from_civil(2025, 7, 1), 20_270);
        for day in [-1_000_000, -1, 0, 59, 60, 11_016, 20_270, 2_000_000] {
            let (y, m, d) = civil_from_days(day);
            assert_eq!(days_from_civil(y, m, d), day);
        }
        // 2025-11-25 16:59:59 UTC is 23:59:59 in Hà Nội; one second later it is the 26th.
        let t = days_from_civil(2025, 11, 25) * DAY_MS + 16 * 3_600_000 + 59 * 60_000 + 59_000;
        assert_eq!(vn_yymmdd(t), "251125");
        assert_eq!(vn_yymmdd(t + 1000), "251126");
    }
}
