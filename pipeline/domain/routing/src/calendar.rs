//! The working-day calendar of Vietnam's public administration (Asia/Ho_Chi_Minh, UTC+7,
//! no daylight saving) and legal deadlines computed on it.
//!
//! Holidays and make-up working days are decided every year, so they are data
//! (`data/holidays.csv`), not code. At load time the calendar turns them into tables over
//! its whole range of days: the working time before each day, and the legal working days.
//! Working days have the calendar's working hours; a unit open on Saturday mornings has a
//! calendar of its own ([`Calendar::with_hours`]) whose Saturdays add their hours. The
//! working time elapsed since the start of the range is `working time before the day +
//! worked within the day`, and a deadline is that position plus the lead time, mapped back
//! to an instant by a direct index into the working days (O(1), every working day having
//! the same hours), or by a binary search over the days for a calendar with Saturday hours.
//!
//! All instants are epoch milliseconds, as in the events.

use motcua_reference::civil::{days_from_civil, vn_day, VN_OFFSET_MS};
use motcua_reference::LeadTime;
use motcua_schemas::{ClockPause, LeadTimeUnit};

use crate::error::{data_error, Error, LocalDate, Result};

/// The holidays file compiled into the binary (see `data/README.md` for its sources).
pub const EMBEDDED_HOLIDAYS: &str = include_str!("../data/holidays.csv");

const DAY_MS: i64 = 86_400_000;
const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 3_600_000;
/// More periods than morning and afternoon are allowed (e.g. a split evening shift), up to
/// this many; a fixed array keeps the per-day arithmetic free of heap indirection.
const MAX_PERIODS: usize = 4;

/// Daily working periods, in minutes after local midnight, the same for every working day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkingHours {
    /// `[start, end)` in ms after local midnight; only the first `count` are used.
    start_ms: [i64; MAX_PERIODS],
    end_ms: [i64; MAX_PERIODS],
    /// Working ms in the periods before period `i`.
    before_ms: [i64; MAX_PERIODS],
    count: usize,
    per_day_ms: i64,
}

impl Default for WorkingHours {
    /// 07:00–11:30 and 13:30–17:00: 8 hours, the usual hours of one-stop centers.
    fn default() -> Self {
        match Self::new(&[(7 * 60, 11 * 60 + 30), (13 * 60 + 30, 17 * 60)]) {
            Ok(h) => h,
            Err(_) => unreachable!("the default working hours are valid"),
        }
    }
}

impl WorkingHours {
    /// Periods as `(start minute, end minute)` after local midnight: non-empty, ascending,
    /// not overlapping, within the day, at most 4.
    pub fn new(periods: &[(u32, u32)]) -> Result<Self> {
        if periods.is_empty() || periods.len() > MAX_PERIODS {
            return Err(Error::WorkingHours(format!(
                "between 1 and {MAX_PERIODS} periods are needed"
            )));
        }
        let mut h = Self {
            start_ms: [0; MAX_PERIODS],
            end_ms: [0; MAX_PERIODS],
            before_ms: [0; MAX_PERIODS],
            count: periods.len(),
            per_day_ms: 0,
        };
        let mut previous_end = 0;
        for (i, &(start, end)) in periods.iter().enumerate() {
            if start >= end || end > 24 * 60 || (i > 0 && start < previous_end) {
                return Err(Error::WorkingHours(format!(
                    "period {} ({start}–{end} minutes) must be non-empty, within the day and after the previous one",
                    i + 1
                )));
            }
            previous_end = end;
            h.start_ms[i] = i64::from(start) * MINUTE_MS;
            h.end_ms[i] = i64::from(end) * MINUTE_MS;
            h.before_ms[i] = h.per_day_ms;
            h.per_day_ms += h.end_ms[i] - h.start_ms[i];
        }
        Ok(h)
    }

    /// Parses `"07:00-11:30,13:30-17:00"` (the form used in configuration).
    pub fn parse(text: &str) -> Result<Self> {
        let minute = |s: &str| -> Option<u32> {
            let (h, m) = s.trim().split_once(':')?;
            let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
            (m < 60 && h <= 24 && h * 60 + m <= 24 * 60).then(|| h * 60 + m)
        };
        let periods = text
            .split(',')
            .map(|p| {
                let (a, b) = p.split_once('-')?;
                Some((minute(a)?, minute(b)?))
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| Error::WorkingHours(format!("'{text}' is not like 07:00-11:30,13:30-17:00")))?;
        Self::new(&periods)
    }

    /// Working time of one working day, in ms.
    pub fn per_day_ms(&self) -> i64 {
        self.per_day_ms
    }

    /// The periods in a fixed text form, `07:00-11:30,13:30-17:00` (part of the
    /// calendar's version).
    pub fn canonical(&self) -> String {
        let hm = |ms: i64| format!("{:02}:{:02}", ms / HOUR_MS, ms % HOUR_MS / MINUTE_MS);
        self.periods_ms()
            .map(|(a, b)| format!("{}-{}", hm(a), hm(b)))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The periods as `(start ms, end ms)` after local midnight.
    pub fn periods_ms(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        (0..self.count).map(|i| (self.start_ms[i], self.end_ms[i]))
    }

    /// Working ms of a working day elapsed at `time_of_day_ms` after midnight.
    #[inline]
    fn worked_by(&self, time_of_day_ms: i64) -> i64 {
        let mut worked = 0;
        for i in 0..self.count {
            worked += (time_of_day_ms.min(self.end_ms[i]) - self.start_ms[i]).max(0);
        }
        worked
    }

    /// The time of day at which `worked_ms` (0 < worked_ms ≤ per day) have been worked —
    /// the earliest such time, so a half-day ends at 11:30, not 13:30.
    #[inline]
    fn time_when_worked(&self, worked_ms: i64) -> i64 {
        for i in 0..self.count {
            if worked_ms <= self.before_ms[i] + (self.end_ms[i] - self.start_ms[i]) {
                return self.start_ms[i] + (worked_ms - self.before_ms[i]);
            }
        }
        self.end_ms[self.count - 1]
    }

    /// The time of day at which work resumes after `worked_ms` (0 ≤ worked_ms < per day)
    /// have been worked — the latest such time, so after 11:30 work resumes at 13:30.
    #[inline]
    fn time_resuming_after(&self, worked_ms: i64) -> i64 {
        for i in 0..self.count {
            if worked_ms < self.before_ms[i] + (self.end_ms[i] - self.start_ms[i]) {
                return self.start_ms[i] + (worked_ms - self.before_ms[i]);
            }
        }
        self.end_ms[self.count - 1]
    }
}

/// What the holidays file says about a date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DayKind {
    /// A public holiday, a compensatory day off or a swapped day off on a weekday.
    Holiday,
    /// A Saturday or Sunday worked to make up a swapped day off.
    MakeUpWorkday,
}

/// One line of the holidays file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CalendarException {
    /// Local day number (days since 1970-01-01).
    pub day: i64,
    pub kind: DayKind,
    /// `official` (announced by the government), `statutory` (fixed by the Labour Code) or
    /// `provisional` (projected; to be replaced when the year's decision is published).
    pub status: String,
    pub name: String,
}

/// When the legal clock of a dossier started and when it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    /// The reception instant if it is within working time, else the next working moment
    /// (a dossier received after hours counts from the next working morning).
    pub clock_start_ms: i64,
    pub due_ms: i64,
}

/// The working-day calendar over the years of its holidays file.
#[derive(Debug, Clone)]
pub struct Calendar {
    hours: WorkingHours,
    /// Saturday hours of a unit open on Saturday mornings: worked on Saturdays that are
    /// not part of a holiday break (see [`Calendar::with_hours`]).
    saturday: Option<WorkingHours>,
    /// Local day number of the first day of the range (1 January of the first year).
    first_day: i64,
    /// `working_before[d]`: legal working days (weekdays and make-up days) in the range
    /// before day offset `d`; one more entry than days, so
    /// `working_before[d + 1] - working_before[d]` says if `d` is one.
    working_before: Vec<u32>,
    /// Day offset of the k-th legal working day of the range.
    working_days: Vec<u32>,
    /// `before_ms[d]`: working ms in the range before day offset `d` (one more entry than
    /// days); with the same hours every working day it is `working_before[d]` × hours.
    before_ms: Vec<i64>,
    /// The hours of each day: [`NO_HOURS`], [`WEEKDAY_HOURS`] or [`SATURDAY_HOURS`].
    day_hours: Vec<u8>,
    exceptions: Vec<CalendarException>,
    /// The holidays file, kept for the version of calendars with other hours.
    holidays_text: std::sync::Arc<str>,
    version: String,
}

const NO_HOURS: u8 = 0;
const WEEKDAY_HOURS: u8 = 1;
const SATURDAY_HOURS: u8 = 2;

/// The version of a calendar's data: `sha256:` and the hex SHA-256 of a format tag, the
/// working hours' canonical form (with ` saturday ` and the Saturday hours, when there
/// are some) and the holidays file's bytes. Two calendars with the same version compute
/// the same deadlines; the version goes with every due time.
pub fn calendar_version(holidays_text: &str, hours: &WorkingHours, saturday: Option<&WorkingHours>) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(b"motcua-calendar/1\n");
    h.update(hours.canonical().as_bytes());
    if let Some(sat) = saturday {
        h.update(b" saturday ");
        h.update(sat.canonical().as_bytes());
    }
    h.update(b"\n");
    h.update(holidays_text.as_bytes());
    let hex = hex::encode(h.finalize());
    format!("sha256:{hex}")
}

/// 0 = Monday … 6 = Sunday (1970-01-01 was a Thursday).
fn weekday(day: i64) -> i64 {
    (day + 3).rem_euclid(7)
}

fn is_weekend(day: i64) -> bool {
    weekday(day) >= 5
}

impl Calendar {
    /// The embedded holidays file with the default working hours.
    pub fn embedded() -> Result<Self> {
        Self::parse("holidays.csv (embedded)", EMBEDDED_HOLIDAYS, WorkingHours::default())
    }

    /// Parses a holidays file: `date,kind,status,name` with `kind` `holiday` (a weekday off)
    /// or `workday` (a weekend day worked). The calendar covers 1 January of the earliest
    /// year to 31 December of the latest; every year in between must have lines, so a
    /// missing year is an error rather than a year silently without holidays.
    pub fn parse(file: &str, text: &str, hours: WorkingHours) -> Result<Self> {
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(true)
            .comment(Some(b'#'))
            .from_reader(text.as_bytes());
        let headers = rdr.headers().map_err(|e| data_error(file, 1, e.to_string()))?.clone();
        if headers.iter().collect::<Vec<_>>() != ["date", "kind", "status", "name"] {
            return Err(data_error(file, 1, "header must be date,kind,status,name"));
        }
        let mut exceptions: Vec<CalendarException> = Vec::new();
        for (i, rec) in rdr.records().enumerate() {
            let rec = rec.map_err(|e| data_error(file, i + 2, e.to_string()))?;
            let line = rec.position().map_or(i + 2, |p| p.line() as usize);
            let err = |m: String| data_error(file, line, m);
            let day = parse_date(&rec[0]).ok_or_else(|| err(format!("'{}' is not a YYYY-MM-DD date", &rec[0])))?;
            let kind = match &rec[1] {
                "holiday" if is_weekend(day) => {
                    return Err(err(format!(
                        "{} is a weekend day: list the compensatory weekday off instead",
                        &rec[0]
                    )))
                }
                "holiday" => DayKind::Holiday,
                "workday" if !is_weekend(day) => {
                    return Err(err(format!(
                        "{} is a weekday: a make-up workday must be a weekend day",
                        &rec[0]
                    )))
                }
                "workday" => DayKind::MakeUpWorkday,
                other => return Err(err(format!("unknown kind '{other}' (holiday or workday)"))),
            };
            let status = match &rec[2] {
                s @ ("official" | "statutory" | "provisional") => s.to_owned(),
                other => {
                    return Err(err(format!(
                        "unknown status '{other}' (official, statutory, provisional)"
                    )))
                }
            };
            if exceptions.iter().any(|e| e.day == day) {
                return Err(err(format!("{} appears twice", &rec[0])));
            }
            exceptions.push(CalendarException {
                day,
                kind,
                status,
                name: rec[3].trim().to_owned(),
            });
        }
        exceptions.sort_by_key(|e| e.day);
        let (Some(first), Some(last)) = (exceptions.first(), exceptions.last()) else {
            return Err(data_error(
                file,
                1,
                "no dates: the calendar's years are those of its lines",
            ));
        };
        let (first_year, last_year) = (year_of(first.day), year_of(last.day));
        for year in first_year..=last_year {
            if !exceptions.iter().any(|e| year_of(e.day) == year) {
                return Err(data_error(
                    file,
                    1,
                    format!("no line for {year}: every covered year needs its holidays"),
                ));
            }
        }
        let first_day = days_from_civil(first_year, 1, 1);
        let end_day = days_from_civil(last_year + 1, 1, 1);
        Ok(Self::build(first_day, end_day, exceptions, text.into(), hours, None))
    }

    /// The same holidays with other hours: a unit's own working hours, and Saturday hours
    /// for a unit open on Saturday mornings. Saturday hours count on Saturdays that are
    /// not a make-up day (those have the weekday hours) and not part of a holiday break
    /// — a Saturday whose Friday or Monday is a holiday (the holidays file lists weekday
    /// days off only, so the break's weekend is known from its neighbours).
    pub fn with_hours(&self, hours: WorkingHours, saturday: Option<WorkingHours>) -> Self {
        let end_day = self.first_day + self.day_hours.len() as i64;
        Self::build(
            self.first_day,
            end_day,
            self.exceptions.clone(),
            self.holidays_text.clone(),
            hours,
            saturday,
        )
    }

    fn build(
        first_day: i64,
        end_day: i64,
        exceptions: Vec<CalendarException>,
        holidays_text: std::sync::Arc<str>,
        hours: WorkingHours,
        saturday: Option<WorkingHours>,
    ) -> Self {
        let kind_of = |day: i64| {
            exceptions
                .binary_search_by_key(&day, |e| e.day)
                .ok()
                .map(|i| exceptions[i].kind)
        };
        let days = (end_day - first_day) as usize;
        let mut working_before = Vec::with_capacity(days + 1);
        let mut working_days = Vec::new();
        let mut before_ms = Vec::with_capacity(days + 1);
        let mut day_hours = Vec::with_capacity(days);
        let mut worked = 0i64;
        for day in first_day..end_day {
            working_before.push(working_days.len() as u32);
            before_ms.push(worked);
            let kind = kind_of(day);
            let legal = match kind {
                Some(DayKind::Holiday) => false,
                Some(DayKind::MakeUpWorkday) => true,
                None => !is_weekend(day),
            };
            let which = if legal {
                working_days.push((day - first_day) as u32);
                WEEKDAY_HOURS
            } else if saturday.is_some()
                && weekday(day) == 5
                && kind.is_none()
                && kind_of(day - 1) != Some(DayKind::Holiday)
                && kind_of(day + 2) != Some(DayKind::Holiday)
            {
                SATURDAY_HOURS
            } else {
                NO_HOURS
            };
            day_hours.push(which);
            worked += match which {
                WEEKDAY_HOURS => hours.per_day_ms,
                SATURDAY_HOURS => saturday.as_ref().map_or(0, WorkingHours::per_day_ms),
                _ => 0,
            };
        }
        working_before.push(working_days.len() as u32);
        before_ms.push(worked);
        Self {
            version: calendar_version(&holidays_text, &hours, saturday.as_ref()),
            hours,
            saturday,
            first_day,
            working_before,
            working_days,
            before_ms,
            day_hours,
            exceptions,
            holidays_text,
        }
    }

    /// The Saturday hours, if this calendar has some.
    pub fn saturday_hours(&self) -> Option<&WorkingHours> {
        self.saturday.as_ref()
    }

    #[inline]
    fn hours_of(&self, d: usize) -> Option<&WorkingHours> {
        match self.day_hours.get(d) {
            Some(&WEEKDAY_HOURS) => Some(&self.hours),
            Some(&SATURDAY_HOURS) => self.saturday.as_ref(),
            _ => None,
        }
    }

    /// Which data this calendar was built from ([`calendar_version`]).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Reads a holidays file from disk (for reload without restart).
    pub fn load(path: &std::path::Path, hours: WorkingHours) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            file: path.display().to_string(),
            source,
        })?;
        Self::parse(&path.display().to_string(), &text, hours)
    }

    pub fn hours(&self) -> &WorkingHours {
        &self.hours
    }

    /// The holidays and make-up days of the file, by date.
    pub fn exceptions(&self) -> &[CalendarException] {
        &self.exceptions
    }

    /// First and last local day numbers of the range.
    pub fn range(&self) -> (LocalDate, LocalDate) {
        (LocalDate(self.first_day), LocalDate(self.last_day()))
    }

    fn last_day(&self) -> i64 {
        self.first_day + self.working_before.len() as i64 - 2
    }

    fn outside(&self, instant_ms: i64) -> Error {
        Error::OutsideCalendar {
            instant_ms,
            first_day: LocalDate(self.first_day),
            last_day: LocalDate(self.last_day()),
        }
    }

    /// Is this local day (days since 1970-01-01) a working day?
    pub fn is_working_day(&self, day: i64) -> Result<bool> {
        let offset = day.checked_sub(self.first_day).unwrap_or(-1);
        if offset < 0 || offset > self.last_day() - self.first_day {
            return Err(self.outside(day.saturating_mul(DAY_MS).saturating_sub(VN_OFFSET_MS)));
        }
        let d = offset as usize;
        Ok(self.working_before[d + 1] > self.working_before[d])
    }

    /// Working ms from the start of the range to `instant_ms`.
    #[inline]
    fn position(&self, instant_ms: i64) -> Result<i64> {
        let local = instant_ms
            .checked_add(VN_OFFSET_MS)
            .ok_or_else(|| self.outside(instant_ms))?;
        let offset = local.div_euclid(DAY_MS) - self.first_day;
        let time_of_day = local.rem_euclid(DAY_MS);
        let (Ok(d), true) = (usize::try_from(offset), offset <= self.last_day() - self.first_day) else {
            return Err(self.outside(instant_ms));
        };
        let within = self.hours_of(d).map_or(0, |h| h.worked_by(time_of_day));
        Ok(self.before_ms[d] + within)
    }

    #[inline]
    fn day_start_ms(&self, d: usize) -> i64 {
        (self.first_day + d as i64) * DAY_MS - VN_OFFSET_MS
    }

    /// The start of the k-th legal working day of the range.
    #[inline]
    fn working_day_start_ms(&self, k: i64) -> Result<i64> {
        match usize::try_from(k).ok().and_then(|k| self.working_days.get(k)) {
            Some(&d) => Ok(self.day_start_ms(d as usize)),
            None => Err(self.beyond()),
        }
    }

    fn beyond(&self) -> Error {
        Error::DeadlineBeyondCalendar {
            last_day: LocalDate(self.last_day()),
        }
    }

    /// The earliest instant by which `position` working ms have elapsed (`position` > 0):
    /// a deadline ending exactly at a day's end is that day's 17:00, not the next 07:00.
    /// O(1) when every working day has the same hours (a division gives the working day);
    /// with Saturday hours, a binary search over the days' cumulative working time (≈ 12
    /// steps for 7 years).
    #[inline]
    fn instant_when_worked(&self, position: i64) -> Result<i64> {
        if self.saturday.is_none() {
            let per_day = self.hours.per_day_ms;
            let (mut k, mut worked) = (position.div_euclid(per_day), position.rem_euclid(per_day));
            if worked == 0 && k > 0 {
                k -= 1;
                worked = per_day;
            }
            return Ok(self.working_day_start_ms(k)? + self.hours.time_when_worked(worked));
        }
        // The day d with before_ms[d] < position <= before_ms[d + 1]: it has working time.
        let i = self.before_ms.partition_point(|&b| b < position);
        if i == 0 || i >= self.before_ms.len() {
            return Err(self.beyond());
        }
        let d = i - 1;
        let hours = self.hours_of(d).ok_or_else(|| self.beyond())?;
        Ok(self.day_start_ms(d) + hours.time_when_worked(position - self.before_ms[d]))
    }

    /// The instant at which work resumes after `position` working ms: the next working moment.
    #[inline]
    fn instant_resuming_after(&self, position: i64) -> Result<i64> {
        if self.saturday.is_none() {
            let per_day = self.hours.per_day_ms;
            let (k, worked) = (position.div_euclid(per_day), position.rem_euclid(per_day));
            return Ok(self.working_day_start_ms(k)? + self.hours.time_resuming_after(worked));
        }
        // The day d with before_ms[d] <= position < before_ms[d + 1].
        let i = self.before_ms.partition_point(|&b| b <= position);
        if i == 0 || i >= self.before_ms.len() {
            return Err(self.beyond());
        }
        let d = i - 1;
        let hours = self.hours_of(d).ok_or_else(|| self.beyond())?;
        Ok(self.day_start_ms(d) + hours.time_resuming_after(position - self.before_ms[d]))
    }

    /// `instant_ms` itself when it is working time, else the next working moment (after
    /// hours → next working morning; lunch break → 13:30; holiday → next working day).
    #[inline]
    pub fn clock_start(&self, instant_ms: i64) -> Result<i64> {
        self.instant_resuming_after(self.position(instant_ms)?)
    }

    /// Working time between two instants, in ms (negative if `to` is before `from`).
    #[inline]
    pub fn working_ms_between(&self, from_ms: i64, to_ms: i64) -> Result<i64> {
        Ok(self.position(to_ms)? - self.position(from_ms)?)
    }

    /// The legal deadline of a dossier received at `received_ms`:
    /// - working days / hours: the earliest instant by which `N × 8 h` (working days, with
    ///   the configured hours per day) or `N h` of working time have elapsed since the clock
    ///   start — received Monday 09:00 with 1 working day is due Tuesday 09:00, and a
    ///   deadline never falls outside working time (at worst it is the end of a period);
    /// - calendar days: the end of working hours of the N-th day after the reception date
    ///   (the reception day itself is not counted, Civil Code 2015 Art. 147), moved to the
    ///   next working day when that day is a weekend or holiday (Art. 148).
    ///
    /// O(1) (table look-ups and a division) with the same hours every working day; a
    /// binary search over the days with Saturday hours.
    #[inline]
    pub fn deadline(&self, received_ms: i64, lead_time: LeadTime) -> Result<Deadline> {
        let start_position = self.position(received_ms)?;
        let clock_start_ms = self.instant_resuming_after(start_position)?;
        let lead_ms = match lead_time.unit {
            LeadTimeUnit::WorkingDays => i64::from(lead_time.value) * self.hours.per_day_ms,
            LeadTimeUnit::WorkingHours => i64::from(lead_time.value) * HOUR_MS,
            LeadTimeUnit::CalendarDays => {
                let offset = vn_day(received_ms) - self.first_day + i64::from(lead_time.value);
                let d = usize::try_from(offset).unwrap_or(usize::MAX);
                let Some(&k) = self.working_before.get(d) else {
                    return Err(Error::DeadlineBeyondCalendar {
                        last_day: LocalDate(self.last_day()),
                    });
                };
                // `k` working days precede day `d`, so the k-th (0-based) is the first on or
                // after it; the due time is its end.
                let Some(&first) = self.working_days.get(k as usize) else {
                    return Err(self.beyond());
                };
                let due_ms = self.instant_when_worked(self.before_ms[first as usize + 1])?;
                return Ok(Deadline { clock_start_ms, due_ms });
            }
        };
        if lead_ms == 0 {
            return Ok(Deadline {
                clock_start_ms,
                due_ms: clock_start_ms,
            });
        }
        Ok(Deadline {
            clock_start_ms,
            due_ms: self.instant_when_worked(start_position + lead_ms)?,
        })
    }

    /// The deadline after a suspension (supplement requested at `suspended_ms`, papers
    /// received at `resumed_ms`): `due_ms` moved later by exactly the working time that
    /// elapsed while suspended, so the citizen's wait does not eat the authority's time.
    #[inline]
    pub fn extend_for_suspension(&self, due_ms: i64, suspended_ms: i64, resumed_ms: i64) -> Result<i64> {
        let paused = self.working_ms_between(suspended_ms, resumed_ms)?;
        if paused <= 0 {
            return Ok(due_ms);
        }
        self.instant_when_worked(self.position(due_ms)? + paused)
    }

    /// One pause of the legal clock asked by `step` from `from_ms` to `to_ms`: `due_ms`
    /// moved by its working time ([`Calendar::extend_for_suspension`]), and the pause as
    /// the events record it. Every stage that moves a due time for a wait goes through
    /// here, so the due time is recomputable from the events and the calendar version.
    pub fn pause(&self, due_ms: i64, step: &str, from_ms: i64, to_ms: i64) -> Result<(i64, ClockPause)> {
        let paused = self.working_ms_between(from_ms, to_ms)?.max(0);
        let due = self.extend_for_suspension(due_ms, from_ms, to_ms)?;
        Ok((
            due,
            ClockPause {
                step: step.to_owned(),
                from_at: from_ms,
                to_at: to_ms,
                paused_working_ms: paused,
            },
        ))
    }
}

fn year_of(day: i64) -> i32 {
    motcua_reference::civil::civil_from_days(day).0
}

fn parse_date(s: &str) -> Option<i64> {
    let mut parts = s.trim().splitn(3, '-');
    let y: i32 = parts.next()?.parse().ok()?;
    let m: u32 = parts.next()?.parse().ok()?;
    let d: u32 = parts.next()?.parse().ok()?;
    let day = days_from_civil(y, m, d);
    // Reject 2025-02-30 and the like: the day must map back to the same date.
    (motcua_reference::civil::civil_from_days(day) == (y, m, d)).then_some(day)
}
