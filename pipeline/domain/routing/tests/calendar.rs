//! The calendar against a naive reference that walks minute by minute, built from the
//! holidays file independently of the crate's tables (its own CSV reading, its own weekday
//! formula), over random instants from 2025 to 2030.

use std::collections::HashMap;

use motcua_reference::civil::{days_from_civil, VN_OFFSET_MS};
use motcua_reference::LeadTime;
use motcua_routing::{Calendar, DayKind, Error, WorkingHours, EMBEDDED_HOLIDAYS};
use motcua_schemas::LeadTimeUnit;
use proptest::prelude::*;

const MINUTE_MS: i64 = 60_000;
const DAY_MINUTES: i64 = 1_440;

/// The reference: a day works if listed as `workday`, or is Monday–Friday and not listed as
/// `holiday`; a minute works if its day works and it lies in 07:00–11:30 or 13:30–17:00.
struct Naive {
    listed: HashMap<i64, bool>,
    /// A unit open on Saturday mornings, 07:30–11:30, except on Saturdays of a holiday
    /// break (the Friday before or the Monday after is a holiday).
    saturday_mornings: bool,
}

impl Naive {
    fn new() -> Self {
        let mut listed = HashMap::new();
        for line in EMBEDDED_HOLIDAYS.lines().skip(1) {
            let mut cols = line.split(',');
            let date: Vec<i64> = cols.next().unwrap().split('-').map(|x| x.parse().unwrap()).collect();
            let day = days_from_civil(date[0] as i32, date[1] as u32, date[2] as u32);
            listed.insert(day, cols.next().unwrap() == "workday");
        }
        Self {
            listed,
            saturday_mornings: false,
        }
    }

    fn with_saturday_mornings() -> Self {
        Self {
            saturday_mornings: true,
            ..Self::new()
        }
    }

    fn saturday_works(&self, day: i64) -> bool {
        let holiday = |d: i64| self.listed.get(&d) == Some(&false);
        self.saturday_mornings
            && (day + 4).rem_euclid(7) == 6
            && !self.listed.contains_key(&day)
            && !holiday(day - 1)
            && !holiday(day + 2)
    }

    fn day_works(&self, day: i64) -> bool {
        // 1970-01-01 was a Thursday: (day + 4) % 7 is 0 on Sundays, 6 on Saturdays.
        let weekday = (day + 4).rem_euclid(7);
        self.listed.get(&day).copied().unwrap_or((1..=5).contains(&weekday))
    }

    /// Does the minute starting at `minute` (epoch minutes) work?
    fn minute_works(&self, minute: i64) -> bool {
        let local = minute + VN_OFFSET_MS / MINUTE_MS;
        let of_day = local.rem_euclid(DAY_MINUTES);
        let day = local.div_euclid(DAY_MINUTES);
        (self.day_works(day) && ((420..690).contains(&of_day) || (810..1020).contains(&of_day)))
            || (self.saturday_works(day) && (450..690).contains(&of_day))
    }

    fn clock_start(&self, minute: i64) -> i64 {
        let mut t = minute;
        while !self.minute_works(t) {
            t += 1;
        }
        t
    }

    /// The instant (epoch minutes) at which `lead` working minutes have been worked.
    fn due(&self, minute: i64, lead: i64) -> i64 {
        let (mut t, mut remaining) = (minute, lead);
        while remaining > 0 {
            if self.minute_works(t) {
                remaining -= 1;
            }
            t += 1;
        }
        t
    }

    fn worked_between(&self, from: i64, to: i64) -> i64 {
        (from..to).filter(|&m| self.minute_works(m)).count() as i64
    }

    fn due_calendar_days(&self, minute: i64, days: i64) -> i64 {
        let mut day = (minute + VN_OFFSET_MS / MINUTE_MS).div_euclid(DAY_MINUTES) + days;
        while !self.day_works(day) {
            day += 1;
        }
        day * DAY_MINUTES + 17 * 60 - VN_OFFSET_MS / MINUTE_MS
    }

    fn deadline(&self, minute: i64, lead: LeadTime) -> i64 {
        let n = i64::from(lead.value);
        match lead.unit {
            LeadTimeUnit::WorkingDays => self.due(minute, n * 480),
            LeadTimeUnit::WorkingHours => self.due(minute, n * 60),
            LeadTimeUnit::CalendarDays => self.due_calendar_days(minute, n),
        }
    }
}

fn calendar() -> Calendar {
    Calendar::embedded().expect("embedded holidays parse")
}

/// Epoch minutes of a local (UTC+7) date and time.
fn local_minute(y: i32, m: u32, d: u32, hh: i64, mm: i64) -> i64 {
    days_from_civil(y, m, d) * DAY_MINUTES + hh * 60 + mm - VN_OFFSET_MS / MINUTE_MS
}

fn ms(minute: i64) -> i64 {
    minute * MINUTE_MS
}

/// Random whole-minute instants from 2025-01-01 to 2030-10-31, so that even 60-day
/// deadlines end inside the calendar (which ends 2030-12-31).
fn instant() -> impl Strategy<Value = i64> {
    local_minute(2025, 1, 1, 0, 0)..local_minute(2030, 11, 1, 0, 0)
}

fn lead_time() -> impl Strategy<Value = LeadTime> {
    prop_oneof![
        (1u32..=30).prop_map(|value| LeadTime {
            value,
            unit: LeadTimeUnit::WorkingDays
        }),
        (1u32..=48).prop_map(|value| LeadTime {
            value,
            unit: LeadTimeUnit::WorkingHours
        }),
        (1u32..=60).prop_map(|value| LeadTime {
            value,
            unit: LeadTimeUnit::CalendarDays
        }),
    ]
}

fn is_working_time(naive: &Naive, due_ms: i64) -> bool {
    // Closed periods: a deadline may be the end of a period (11:30 or 17:00).
    let local = due_ms + VN_OFFSET_MS;
    let of_day = local.rem_euclid(86_400_000);
    let in_period = [(420, 690), (810, 1020)]
        .iter()
        .any(|&(a, b)| (a * MINUTE_MS..=b * MINUTE_MS).contains(&of_day));
    naive.day_works(local.div_euclid(86_400_000)) && in_period
}

fn saturday_calendar() -> Calendar {
    let sat = WorkingHours::parse("07:30-11:30").expect("hours");
    calendar().with_hours(WorkingHours::default(), Some(sat))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// A unit open on Saturday mornings: its Saturdays' hours count, except in holiday
    /// breaks, against the same minute-by-minute reference.
    #[test]
    fn saturday_mornings_count_against_the_minute_by_minute_reference(received in instant(), lead in lead_time()) {
        let (cal, naive) = (saturday_calendar(), Naive::with_saturday_mornings());
        let deadline = cal.deadline(ms(received), lead).unwrap();
        prop_assert_eq!(deadline.due_ms, ms(naive.deadline(received, lead)));
        prop_assert_eq!(deadline.clock_start_ms, ms(naive.clock_start(received)));
        let later = received + 3 * DAY_MINUTES + 17;
        prop_assert_eq!(
            cal.working_ms_between(ms(received), ms(later)).unwrap(),
            ms(naive.worked_between(received, later))
        );
    }

    #[test]
    fn deadline_equals_the_minute_by_minute_reference(received in instant(), lead in lead_time()) {
        let (cal, naive) = (calendar(), Naive::new());
        let deadline = cal.deadline(ms(received), lead).unwrap();
        prop_assert_eq!(deadline.due_ms, ms(naive.deadline(received, lead)));
        prop_assert_eq!(deadline.clock_start_ms, ms(naive.clock_start(received)));
    }

    #[test]
    fn deadline_is_never_outside_working_time(received in instant(), sub_minute_ms in 0i64..60_000, lead in lead_time()) {
        let (cal, naive) = (calendar(), Naive::new());
        let deadline = cal.deadline(ms(received) + sub_minute_ms, lead).unwrap();
        prop_assert!(is_working_time(&naive, deadline.due_ms), "due {} for {:?}", deadline.due_ms, lead);
        prop_assert!(is_working_time(&naive, deadline.clock_start_ms));
        prop_assert!(deadline.due_ms > ms(received) + sub_minute_ms);
        prop_assert!(deadline.clock_start_ms >= ms(received) + sub_minute_ms);
    }

    #[test]
    fn deadline_is_monotonic_in_lead_time(received in instant(), a in 1u32..=40, b in 1u32..=40, unit in 0usize..3) {
        let unit = [LeadTimeUnit::WorkingDays, LeadTimeUnit::WorkingHours, LeadTimeUnit::CalendarDays][unit];
        let cal = calendar();
        let (short, long) = (a.min(b), a.max(b));
        let due_short = cal.deadline(ms(received), LeadTime { value: short, unit }).unwrap().due_ms;
        let due_long = cal.deadline(ms(received), LeadTime { value: long, unit }).unwrap().due_ms;
        prop_assert!(due_short <= due_long);
        // Strictly later for working time; calendar-day deadlines of consecutive days may
        // roll to the same working day (Saturday and Sunday both end on Monday).
        if short < long && unit != LeadTimeUnit::CalendarDays {
            prop_assert!(due_short < due_long);
        }
    }

    #[test]
    fn deadline_is_monotonic_in_reception_time(a in instant(), b in instant(), lead in lead_time()) {
        let cal = calendar();
        let (early, late) = (a.min(b), a.max(b));
        prop_assert!(cal.deadline(ms(early), lead).unwrap().due_ms <= cal.deadline(ms(late), lead).unwrap().due_ms);
    }

    #[test]
    fn suspension_shifts_the_deadline_by_exactly_the_paused_working_time(
        received in instant(),
        lead in lead_time(),
        suspend_after in 0i64..20_000,
        paused_for in 0i64..30_000,
    ) {
        let (cal, naive) = (calendar(), Naive::new());
        let due = cal.deadline(ms(received), lead).unwrap().due_ms;
        let (suspended, resumed) = (received + suspend_after, received + suspend_after + paused_for);
        let extended = match cal.extend_for_suspension(due, ms(suspended), ms(resumed)) {
            Ok(e) => e,
            // A deadline pushed past the calendar's last day (received late in 2030, a
            // long lead time and pause) is refused rather than guessed: nothing to compare.
            Err(Error::DeadlineBeyondCalendar { .. }) => return Ok(()),
            Err(e) => panic!("{e}"),
        };
        let paused = naive.worked_between(suspended, resumed);
        prop_assert_eq!(cal.working_ms_between(ms(suspended), ms(resumed)).unwrap(), ms(paused));
        prop_assert_eq!(cal.working_ms_between(due, extended).unwrap(), ms(paused));
        prop_assert!(extended >= due);
        if paused > 0 {
            // The earliest instant with that much more work done: the reference walk from
            // the old deadline gives the same instant.
            prop_assert_eq!(extended, ms(naive.due(due / MINUTE_MS, paused)));
            prop_assert!(is_working_time(&naive, extended));
        } else {
            prop_assert_eq!(extended, due);
        }
    }
}

proptest! {
    #[test]
    fn arbitrary_inputs_never_panic(t in any::<i64>(), u in any::<i64>(), value in any::<u32>(), unit in 0usize..3) {
        let unit = [LeadTimeUnit::WorkingDays, LeadTimeUnit::WorkingHours, LeadTimeUnit::CalendarDays][unit];
        let cal = calendar();
        let _ = cal.deadline(t, LeadTime { value, unit });
        let _ = cal.extend_for_suspension(t, u, t);
        let _ = cal.working_ms_between(t, u);
        let _ = cal.clock_start(t);
        let _ = cal.is_working_day(t);
    }
}

#[test]
fn tet_2025_and_the_april_swap_are_honoured() {
    let cal = calendar();
    let one_day = LeadTime {
        value: 1,
        unit: LeadTimeUnit::WorkingDays,
    };
    // Friday 24 Jan 2025 16:00 + 1 working day: Tết closes 27–31 Jan, so Monday 3 Feb 16:00.
    let due = cal
        .deadline(ms(local_minute(2025, 1, 24, 16, 0)), one_day)
        .unwrap()
        .due_ms;
    assert_eq!(due, ms(local_minute(2025, 2, 3, 16, 0)));
    // Saturday 26 Apr 2025 is a make-up working day; Friday 2 May is off.
    assert!(cal.is_working_day(days_from_civil(2025, 4, 26)).unwrap());
    assert!(!cal.is_working_day(days_from_civil(2025, 5, 2)).unwrap());
    assert!(!cal.is_working_day(days_from_civil(2025, 4, 27)).unwrap());
}

#[test]
fn after_hours_reception_counts_from_the_next_working_morning() {
    let cal = calendar();
    // Tuesday 25 Nov 2025 18:00: clock starts Wednesday 07:00; one working day ends 17:00.
    let d = cal
        .deadline(
            ms(local_minute(2025, 11, 25, 18, 0)),
            LeadTime {
                value: 1,
                unit: LeadTimeUnit::WorkingDays,
            },
        )
        .unwrap();
    assert_eq!(d.clock_start_ms, ms(local_minute(2025, 11, 26, 7, 0)));
    assert_eq!(d.due_ms, ms(local_minute(2025, 11, 26, 17, 0)));
    // Lunch break: 12:00 starts at 13:30; 4 working hours end at 17:00... plus 30 minutes the next morning.
    let d = cal
        .deadline(
            ms(local_minute(2025, 11, 26, 12, 0)),
            LeadTime {
                value: 4,
                unit: LeadTimeUnit::WorkingHours,
            },
        )
        .unwrap();
    assert_eq!(d.clock_start_ms, ms(local_minute(2025, 11, 26, 13, 30)));
    assert_eq!(d.due_ms, ms(local_minute(2025, 11, 27, 7, 30)));
    // 4 h 30 from 07:00 is the end of the morning, 11:30 — not 13:30.
    let d = cal
        .deadline(
            ms(local_minute(2025, 11, 26, 7, 0)),
            LeadTime {
                value: 1,
                unit: LeadTimeUnit::WorkingHours,
            },
        )
        .unwrap();
    assert_eq!(d.due_ms, ms(local_minute(2025, 11, 26, 8, 0)));
}

#[test]
fn calendar_day_deadlines_end_at_close_of_the_nth_day_rolled_to_a_working_day() {
    let cal = calendar();
    // Received Thursday 2025-11-20 10:00, 15 calendar days: day 15 is Friday 5 Dec → 17:00.
    let due = cal
        .deadline(
            ms(local_minute(2025, 11, 20, 10, 0)),
            LeadTime {
                value: 15,
                unit: LeadTimeUnit::CalendarDays,
            },
        )
        .unwrap()
        .due_ms;
    assert_eq!(due, ms(local_minute(2025, 12, 5, 17, 0)));
    // 16 days: Saturday 6 Dec → Monday 8 Dec 17:00.
    let due = cal
        .deadline(
            ms(local_minute(2025, 11, 20, 10, 0)),
            LeadTime {
                value: 16,
                unit: LeadTimeUnit::CalendarDays,
            },
        )
        .unwrap()
        .due_ms;
    assert_eq!(due, ms(local_minute(2025, 12, 8, 17, 0)));
}

#[test]
fn out_of_range_instants_are_errors_not_panics() {
    let cal = calendar();
    let lead = LeadTime {
        value: 5,
        unit: LeadTimeUnit::WorkingDays,
    };
    for t in [
        i64::MIN,
        i64::MAX,
        -1,
        ms(local_minute(2023, 12, 31, 10, 0)),
        ms(local_minute(2031, 1, 1, 10, 0)),
    ] {
        assert!(
            matches!(cal.deadline(t, lead), Err(Error::OutsideCalendar { .. })),
            "{t}"
        );
        assert!(cal.clock_start(t).is_err());
        assert!(cal.working_ms_between(t, t).is_err());
        assert!(cal.extend_for_suspension(t, t, t).is_err());
    }
    let late = cal.deadline(ms(local_minute(2030, 12, 30, 10, 0)), lead).unwrap_err();
    assert!(matches!(late, Error::DeadlineBeyondCalendar { .. }));
    assert!(late.to_string().contains("2030-12-31"), "{late}");
    assert!(cal
        .deadline(
            ms(local_minute(2030, 12, 20, 10, 0)),
            LeadTime {
                value: 30,
                unit: LeadTimeUnit::CalendarDays
            }
        )
        .is_err());
    assert!(cal
        .deadline(
            ms(local_minute(2030, 12, 20, 10, 0)),
            LeadTime {
                value: u32::MAX,
                unit: LeadTimeUnit::WorkingDays
            }
        )
        .is_err());
    assert!(cal
        .deadline(
            ms(local_minute(2030, 12, 20, 10, 0)),
            LeadTime {
                value: u32::MAX,
                unit: LeadTimeUnit::CalendarDays
            }
        )
        .is_err());
    assert!(cal.is_working_day(i64::MAX).is_err());
    assert!(cal.is_working_day(i64::MIN).is_err());
}

#[test]
fn the_data_file_covers_2024_to_2030_with_every_year() {
    let cal = calendar();
    let (first, last) = cal.range();
    assert_eq!(
        (first.to_string(), last.to_string()),
        ("2024-01-01".to_owned(), "2030-12-31".to_owned())
    );
    for year in 2024..=2030 {
        let days: Vec<_> = cal.exceptions().iter().filter(|e| year_of(e.day) == year).collect();
        let holidays = days.iter().filter(|e| e.kind == DayKind::Holiday).count();
        // 11 public holidays a year, minus those on weekends, plus swaps and compensations.
        assert!((9..=14).contains(&holidays), "{year}: {holidays} holidays");
    }
}

fn year_of(day: i64) -> i32 {
    motcua_reference::civil::civil_from_days(day).0
}

#[test]
fn malformed_holiday_files_are_refused_with_the_line() {
    let hours = WorkingHours::default();
    let header = "date,kind,status,name\n";
    let err = |body: &str| {
        Calendar::parse("h.csv", &format!("{header}{body}"), hours)
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        err("2025-01-04,holiday,official,X\n"),
        "h.csv, line 2: 2025-01-04 is a weekend day: list the compensatory weekday off instead"
    );
    assert!(err("2025-01-06,workday,official,X\n").contains("a make-up workday must be a weekend day"));
    assert!(err("2025-02-30,holiday,official,X\n").contains("not a YYYY-MM-DD date"));
    assert!(err("2025-01-01,holiday,official,X\n2025-01-01,holiday,official,X\n")
        .contains("line 3: 2025-01-01 appears twice"));
    assert!(err("2025-01-01,holiday,official,X\n2027-01-01,holiday,official,X\n").contains("no line for 2026"));
    assert!(err("2025-01-01,holiday,rumoured,X\n").contains("unknown status"));
    assert!(err("").contains("no dates"));
}

#[test]
fn working_hours_are_configurable_and_validated() {
    let h = WorkingHours::parse("08:00-12:00,13:00-17:30").unwrap();
    assert_eq!(h.per_day_ms(), 8 * 3_600_000 + 30 * 60_000);
    assert_eq!(WorkingHours::default().per_day_ms(), 8 * 3_600_000);
    for bad in [
        "",
        "8-12",
        "99999999:00-99999999:30",
        "12:00-08:00",
        "07:00-12:00,11:00-17:00",
        "07:00-25:00",
        "07:61-08:00",
    ] {
        assert!(WorkingHours::parse(bad).is_err(), "{bad}");
    }
    // A 6-hour day: one working day from Monday 08:00 is Tuesday 08:00.
    let cal = Calendar::parse(
        "holidays.csv",
        EMBEDDED_HOLIDAYS,
        WorkingHours::parse("08:00-11:00,14:00-17:00").unwrap(),
    )
    .unwrap();
    let d = cal
        .deadline(
            ms(local_minute(2025, 11, 24, 8, 0)),
            LeadTime {
                value: 1,
                unit: LeadTimeUnit::WorkingDays,
            },
        )
        .unwrap();
    assert_eq!(d.due_ms, ms(local_minute(2025, 11, 24, 17, 0)));
    let d = cal
        .deadline(
            ms(local_minute(2025, 11, 24, 9, 0)),
            LeadTime {
                value: 1,
                unit: LeadTimeUnit::WorkingDays,
            },
        )
        .unwrap();
    assert_eq!(d.due_ms, ms(local_minute(2025, 11, 25, 9, 0)));
}

/// Friday 16:00 with one working day: Friday 1 h, Saturday 07:30–11:30 4 h, Monday 3 h →
/// Monday 10:00 (without Saturday hours: Monday 16:00); the version names the hours. Tết's
/// Saturdays do not work.
#[test]
fn a_unit_open_on_saturday_mornings_has_its_own_deadlines_and_version() {
    let lead = LeadTime {
        value: 1,
        unit: LeadTimeUnit::WorkingDays,
    };
    let friday_4pm = ms(local_minute(2025, 11, 28, 16, 0));
    let sat = saturday_calendar();
    assert_eq!(
        sat.deadline(friday_4pm, lead).unwrap().due_ms,
        ms(local_minute(2025, 12, 1, 10, 0))
    );
    assert_eq!(
        calendar().deadline(friday_4pm, lead).unwrap().due_ms,
        ms(local_minute(2025, 12, 1, 16, 0))
    );
    assert_ne!(sat.version(), calendar().version());
    assert_eq!(
        calendar().with_hours(WorkingHours::default(), None).version(),
        calendar().version(),
        "the same hours, the same version"
    );
    // Tết 2025: weekdays 27–31 January off; Saturdays 25 January and 1 February are part
    // of the break. Received Friday 24 January 16:00 → 1 h then Monday 3 February.
    let before_tet = ms(local_minute(2025, 1, 24, 16, 0));
    assert_eq!(
        sat.deadline(before_tet, lead).unwrap().due_ms,
        ms(local_minute(2025, 2, 3, 16, 0))
    );
    // A Saturday reception counts from 07:30 that day.
    let saturday_7am = ms(local_minute(2025, 11, 29, 7, 0));
    assert_eq!(
        sat.clock_start(saturday_7am).unwrap(),
        ms(local_minute(2025, 11, 29, 7, 30))
    );
}
