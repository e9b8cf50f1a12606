//! Demand forecast: the submissions a center should expect per hour in the coming days,
//! learnt from its dossier history.
//!
//! **Method** — seasonal by weekday and hour, with exponential smoothing. The history is
//! cut into whole weeks of Vietnam time (Monday 00:00 to Monday 00:00); each of a week's
//! 168 hours is a *slot*. A slot's expected count is the exponentially weighted average
//! of that slot's counts in past weeks: the newest week weighs α, the one before
//! α(1 − α), and so on (simple exponential smoothing per slot, started at the oldest
//! week's count). An hour of the coming days is forecast by its slot's value. Public
//! holidays are not modelled: a holiday week pulls its slots down by α of the drop.
//!
//! **Error, measured on held-back history** — the model is fitted on every week but the
//! last and forecasts the last; the mean absolute error per hour is reported next to the
//! seasonal-naive baseline's (the same hour one week earlier) and the week's totals, so
//! an operator sees whether the smoothing beats the obvious guess.

use motcua_reference::civil::VN_OFFSET_MS;
use serde::Serialize;

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;
const WEEK_MS: i64 = 7 * DAY_MS;
/// Hours in a week: the number of seasonal slots.
pub const SLOTS: usize = 168;
/// 1970-01-01 was a Thursday: Monday-based weeks start 3 days before the epoch (local).
const EPOCH_WEEKDAY: i64 = 3;

/// The Monday-based week (Vietnam time) an instant falls in, and its slot (weekday × 24
/// + hour, Monday 00:00–01:00 is slot 0).
pub fn week_and_slot(epoch_ms: i64) -> (i64, usize) {
    let local = epoch_ms + VN_OFFSET_MS + EPOCH_WEEKDAY * DAY_MS;
    let week = local.div_euclid(WEEK_MS);
    let slot = (local.rem_euclid(WEEK_MS) / HOUR_MS) as usize;
    (week, slot)
}

/// When week `week` starts (epoch ms, UTC).
pub fn week_start_ms(week: i64) -> i64 {
    week * WEEK_MS - EPOCH_WEEKDAY * DAY_MS - VN_OFFSET_MS
}

/// Counts per slot of each whole week before the week of `now_ms`, oldest first, from
/// `first_week` on (weeks without a submission count as zeros).
pub fn weekly_counts(received_ms: &[i64], first_week: i64, now_ms: i64) -> Vec<[u32; SLOTS]> {
    let (current, _) = week_and_slot(now_ms);
    let n = (current - first_week).max(0) as usize;
    let mut weeks = vec![[0u32; SLOTS]; n];
    for &t in received_ms {
        let (w, slot) = week_and_slot(t);
        if w >= first_week && w < current {
            weeks[(w - first_week) as usize][slot] += 1;
        }
    }
    weeks
}

/// The smoothed value of every slot over `weeks` (oldest first); `None` without a week.
pub fn smooth(weeks: &[[u32; SLOTS]], alpha: f64) -> Option<[f64; SLOTS]> {
    let (first, rest) = weeks.split_first()?;
    let mut level = first.map(f64::from);
    for w in rest {
        for (l, &c) in level.iter_mut().zip(w) {
            *l = alpha * f64::from(c) + (1.0 - alpha) * *l;
        }
    }
    Some(level)
}

/// How the method did on the last whole week, held back from the fit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HeldBack {
    /// The held-back week's start (epoch ms).
    pub week_start_ms: i64,
    /// Mean absolute error per hour of the smoothed forecast.
    pub mae_per_hour: f64,
    /// The same for the seasonal-naive forecast (the hour one week earlier).
    pub naive_mae_per_hour: f64,
    pub actual_total: u32,
    pub forecast_total: f64,
}

/// The forecast of one hour.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HourForecast {
    pub start_ms: i64,
    pub expected: f64,
    /// What came, for an hour already over (this week's hours so far).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actual: Option<u32>,
}

/// A center's forecast.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Forecast {
    pub alpha: f64,
    /// Whole weeks of history the forecast is learnt from.
    pub weeks: usize,
    /// This week's hours so far, forecast against what came.
    pub this_week: Vec<HourForecast>,
    /// The hours from now on.
    pub next: Vec<HourForecast>,
    /// `None` with fewer than two whole weeks of history.
    pub held_back: Option<HeldBack>,
}

/// The forecast of the `hours` hours from the hour of `now_ms`, from the submissions
/// received at `received_ms` since the start of week `first_week`; `None` without a whole
/// week of history.
pub fn forecast(received_ms: &[i64], first_week: i64, now_ms: i64, hours: usize, alpha: f64) -> Option<Forecast> {
    let weeks = weekly_counts(received_ms, first_week, now_ms);
    let level = smooth(&weeks, alpha)?;
    let (current, now_slot) = week_and_slot(now_ms);
    let this_start = week_start_ms(current);
    let mut so_far = [0u32; SLOTS];
    for &t in received_ms {
        let (w, slot) = week_and_slot(t);
        if w == current && slot < now_slot {
            so_far[slot] += 1;
        }
    }
    let this_week = (0..now_slot)
        .map(|slot| HourForecast {
            start_ms: this_start + slot as i64 * HOUR_MS,
            expected: level[slot],
            actual: Some(so_far[slot]),
        })
        .collect();
    let hour_start = this_start + now_slot as i64 * HOUR_MS;
    let next = (0..hours)
        .map(|i| {
            let start_ms = hour_start + i as i64 * HOUR_MS;
            HourForecast {
                start_ms,
                expected: level[week_and_slot(start_ms).1],
                actual: None,
            }
        })
        .collect();
    let held_back = (weeks.len() >= 2).then(|| {
        let (last, fit) = weeks.split_last().expect("two weeks");
        let fitted = smooth(fit, alpha).expect("a week");
        let naive = fit.last().expect("a week");
        let mae = |f: &dyn Fn(usize) -> f64| {
            (0..SLOTS).map(|s| (f(s) - f64::from(last[s])).abs()).sum::<f64>() / SLOTS as f64
        };
        HeldBack {
            week_start_ms: week_start_ms(current - 1),
            mae_per_hour: mae(&|s| fitted[s]),
            naive_mae_per_hour: mae(&|s| f64::from(naive[s])),
            actual_total: last.iter().sum(),
            forecast_total: fitted.iter().sum(),
        }
    });
    Some(Forecast {
        alpha,
        weeks: weeks.len(),
        this_week,
        next,
        held_back,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Monday 1 Dec 2025 00:00 in Hà Nội.
    const MONDAY: i64 = 1_764_522_000_000;

    #[test]
    fn weeks_and_slots_are_vietnam_time_from_monday() {
        let (w, slot) = week_and_slot(MONDAY);
        assert_eq!((slot, week_start_ms(w)), (0, MONDAY));
        // Sunday 7 Dec 23:30 Vietnam time is Sunday 16:30 UTC: the week's last slot.
        assert_eq!(week_and_slot(MONDAY + 7 * DAY_MS - HOUR_MS / 2), (w, 167));
        // Tuesday 09:15 → slot 24 + 9.
        assert_eq!(week_and_slot(MONDAY + DAY_MS + 9 * HOUR_MS + 900_000), (w, 33));
        assert_eq!(week_and_slot(MONDAY + 7 * DAY_MS).0, w + 1);
        assert_eq!(week_and_slot(MONDAY - 1), (w - 1, 167));
    }

    #[test]
    fn smoothing_weighs_the_newest_week_alpha_and_the_first_starts_the_level() {
        let mut a = [0u32; SLOTS];
        let mut b = [0u32; SLOTS];
        a[9] = 10;
        b[9] = 20;
        let level = smooth(&[a, b], 0.3).expect("two weeks");
        // 0.3 × 20 + 0.7 × 10 = 13.
        assert!((level[9] - 13.0).abs() < 1e-9, "{}", level[9]);
        assert_eq!(level[10], 0.0);
        assert!(smooth(&[], 0.3).is_none());
    }

    /// Eight weeks of a counter that is busy on weekday mornings (8 to 11 an hour, one
    /// count more every other week) and quiet otherwise; the ninth week so far.
    fn history() -> (Vec<i64>, i64, i64) {
        let (first_week, _) = week_and_slot(MONDAY);
        let mut received = Vec::new();
        for week in 0..9i64 {
            for day in 0..5i64 {
                for hour in 8..11i64 {
                    let n = 8 + hour - 8 + (week % 2);
                    for k in 0..n {
                        received.push(MONDAY + week * WEEK_MS + day * DAY_MS + hour * HOUR_MS + k * 60_000);
                    }
                }
            }
        }
        // Now: the ninth week's Wednesday 10:30.
        let now = MONDAY + 8 * WEEK_MS + 2 * DAY_MS + 10 * HOUR_MS + HOUR_MS / 2;
        (received, first_week, now)
    }

    #[test]
    fn a_weekly_pattern_is_forecast_and_the_held_back_error_is_reported_next_to_the_naive_one() {
        let (received, first_week, now) = history();
        let f = forecast(&received, first_week, now, 48, 0.3).expect("history");
        assert_eq!(f.weeks, 8);
        // Thursday 09:00 (tomorrow) expects about 9 (9 or 10 alternating); Saturday none.
        let thursday_nine = MONDAY + 8 * WEEK_MS + 3 * DAY_MS + 9 * HOUR_MS;
        let h = f
            .next
            .iter()
            .find(|h| h.start_ms == thursday_nine)
            .expect("in the next 48 h");
        assert!((9.0..10.0).contains(&h.expected), "{}", h.expected);
        assert_eq!(f.next.len(), 48);
        assert_eq!(f.next[0].start_ms, now - HOUR_MS / 2, "from the current hour");
        // This week so far: Monday 08:00 came 8 + 0 + 0 = 8 (week 8 is even), forecast near it.
        let monday_eight = &f.this_week[8];
        assert_eq!(monday_eight.actual, Some(8));
        assert!((monday_eight.expected - 8.0).abs() < 1.0);
        // Held back: week 7 (odd: 9, 10, 11 an hour); the smoothed forecast is off by less
        // than a dossier an hour on average, the naive one (last week's 8, 9, 10) by
        // exactly 1 in each of the 15 busy hours.
        let e = f.held_back.expect("eight weeks");
        eprintln!("held back: {e:?}");
        assert_eq!(e.actual_total, 5 * (9 + 10 + 11));
        assert!(
            (e.naive_mae_per_hour - 15.0 / 168.0).abs() < 1e-9,
            "{}",
            e.naive_mae_per_hour
        );
        assert!(e.mae_per_hour < e.naive_mae_per_hour, "{e:?}");
        // Without a whole week there is no forecast; with one, no held-back error.
        assert!(forecast(&received, week_and_slot(now).0, now, 1, 0.3).is_none());
        let one = forecast(&received, week_and_slot(now).0 - 1, now, 1, 0.3).expect("a week");
        assert!(one.held_back.is_none());
    }
}
