//! The pieces that keep a slow or failing outside system (a national registry, the
//! e-wallet gateway, the national portal) from hurting us: a circuit breaker, a TTL cache
//! and jittered backoff. The breaker and the cache take the current instant as an
//! argument, so they are tested without sleeping.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A delay drawn uniformly from zero to `ceiling` ("full jitter"): the retries of many
/// workers spread over the window instead of arriving together.
pub fn full_jitter(ceiling: Duration) -> Duration {
    use rand::Rng;
    let ms = ceiling.as_millis().min(u128::from(u64::MAX)) as u64;
    Duration::from_millis(rand::thread_rng().gen_range(0..=ms))
}

/// How work parked while an outside system is down is tried again: delays doubling from
/// `first_delay` up to `max_delay`, and past `escalate_after` parked, a person is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParkPolicy {
    pub first_delay: Duration,
    pub max_delay: Duration,
    pub escalate_after: Duration,
}

impl Default for ParkPolicy {
    fn default() -> Self {
        Self {
            first_delay: Duration::from_secs(5),
            max_delay: Duration::from_secs(300),
            escalate_after: Duration::from_secs(4 * 3600),
        }
    }
}

impl ParkPolicy {
    /// The delay before the next attempt, after `attempts` of them.
    pub fn delay(&self, attempts: i32) -> Duration {
        let factor = 1u32 << attempts.clamp(0, 16);
        (self.first_delay * factor).min(self.max_delay)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

#[derive(Debug)]
struct BreakerInner {
    consecutive_failures: u32,
    open_until: Option<Instant>,
    probing: bool,
}

/// Opens after `threshold` consecutive failures; stays open for `open_for`, then lets one
/// probe through (half-open): its success closes the breaker, its failure re-opens it.
#[derive(Debug)]
pub struct CircuitBreaker {
    threshold: u32,
    open_for: Duration,
    inner: Mutex<BreakerInner>,
}

impl CircuitBreaker {
    pub fn new(threshold: u32, open_for: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            open_for,
            inner: Mutex::new(BreakerInner {
                consecutive_failures: 0,
                open_until: None,
                probing: false,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BreakerInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn state(&self, now: Instant) -> BreakerState {
        let s = self.lock();
        match s.open_until {
            None => BreakerState::Closed,
            Some(until) if now < until => BreakerState::Open,
            Some(_) => BreakerState::HalfOpen,
        }
    }

    /// May a request go out now?
    pub fn allow(&self, now: Instant) -> bool {
        let mut s = self.lock();
        match s.open_until {
            None => true,
            Some(until) if now < until => false,
            Some(_) if s.probing => false,
            Some(_) => {
                s.probing = true;
                true
            }
        }
    }

    /// Returns true when this success closed an open (probing) breaker.
    pub fn on_success(&self) -> bool {
        let mut s = self.lock();
        let was_open = s.open_until.is_some();
        s.consecutive_failures = 0;
        s.open_until = None;
        s.probing = false;
        was_open
    }

    /// Returns true when this failure opened the breaker.
    pub fn on_failure(&self, now: Instant) -> bool {
        let mut s = self.lock();
        s.consecutive_failures += 1;
        let reopen = s.probing || (s.open_until.is_none() && s.consecutive_failures >= self.threshold);
        s.probing = false;
        if reopen {
            s.open_until = Some(now + self.open_for);
        }
        reopen
    }
}

/// A bounded cache whose entries expire after `ttl`.
#[derive(Debug)]
pub struct TtlCache<V> {
    ttl: Duration,
    capacity: usize,
    map: Mutex<HashMap<String, (Instant, V)>>,
}

impl<V: Clone> TtlCache<V> {
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            ttl,
            capacity,
            map: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, V)>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, key: &str, now: Instant) -> Option<V> {
        let mut m = self.lock();
        match m.get(key) {
            Some((expires, v)) if now < *expires => Some(v.clone()),
            Some(_) => {
                m.remove(key);
                None
            }
            None => None,
        }
    }

    pub fn put(&self, key: String, value: V, now: Instant) {
        if self.capacity == 0 || self.ttl.is_zero() {
            return;
        }
        let mut m = self.lock();
        if m.len() >= self.capacity && !m.contains_key(&key) {
            m.retain(|_, (expires, _)| now < *expires);
            if m.len() >= self.capacity {
                // Still full of live entries: drop the one closest to expiry.
                if let Some(k) = m.iter().min_by_key(|(_, (e, _))| *e).map(|(k, _)| k.clone()) {
                    m.remove(&k);
                }
            }
        }
        m.insert(key, (now + self.ttl, value));
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaker_opens_after_consecutive_failures_and_recovers_through_one_probe() {
        let b = CircuitBreaker::new(3, Duration::from_secs(10));
        let t0 = Instant::now();
        assert!(b.allow(t0));
        assert!(!b.on_failure(t0));
        b.on_success(); // a success resets the count
        assert!(!b.on_failure(t0));
        assert!(!b.on_failure(t0));
        assert!(b.on_failure(t0), "third consecutive failure opens");
        assert_eq!(b.state(t0), BreakerState::Open);
        assert!(!b.allow(t0 + Duration::from_secs(9)));
        let later = t0 + Duration::from_secs(10);
        assert_eq!(b.state(later), BreakerState::HalfOpen);
        assert!(b.allow(later), "one probe");
        assert!(!b.allow(later), "only one probe at a time");
        assert!(b.on_failure(later), "a failed probe re-opens");
        assert!(!b.allow(later + Duration::from_secs(1)));
        let again = later + Duration::from_secs(10);
        assert!(b.allow(again));
        b.on_success();
        assert_eq!(b.state(again), BreakerState::Closed);
        assert!(b.allow(again));
    }

    #[test]
    fn parked_work_waits_longer_each_time_up_to_the_ceiling() {
        let p = ParkPolicy {
            first_delay: Duration::from_secs(5),
            max_delay: Duration::from_secs(60),
            escalate_after: Duration::from_secs(600),
        };
        let delays: Vec<u64> = (0..6).map(|a| p.delay(a).as_secs()).collect();
        assert_eq!(delays, [5, 10, 20, 40, 60, 60]);
        assert_eq!(p.delay(-3).as_secs(), 5);
        assert_eq!(p.delay(1_000).as_secs(), 60);
    }

    #[test]
    fn full_jitter_stays_within_its_ceiling() {
        let ceiling = Duration::from_millis(50);
        let draws: Vec<Duration> = (0..200).map(|_| full_jitter(ceiling)).collect();
        assert!(draws.iter().all(|d| *d <= ceiling));
        assert!(draws.iter().any(|d| *d != draws[0]), "the delays vary");
        assert_eq!(full_jitter(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn cache_entries_expire_and_capacity_is_bounded() {
        let c = TtlCache::new(Duration::from_secs(5), 2);
        let t0 = Instant::now();
        c.put("a".into(), 1, t0);
        assert_eq!(c.get("a", t0 + Duration::from_secs(4)), Some(1));
        assert_eq!(c.get("a", t0 + Duration::from_secs(5)), None, "expired");
        c.put("a".into(), 1, t0);
        c.put("b".into(), 2, t0 + Duration::from_secs(1));
        c.put("c".into(), 3, t0 + Duration::from_secs(2));
        assert_eq!(c.len(), 2);
        assert_eq!(
            c.get("a", t0 + Duration::from_secs(2)),
            None,
            "the entry closest to expiry was dropped"
        );
        assert_eq!(c.get("c", t0 + Duration::from_secs(2)), Some(3));
    }
}
