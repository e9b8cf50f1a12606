//! Faults the simulators of the outside world inject (latency, errors, outage windows, a
//! manual "down" switch), shared by every simulator that answers over HTTP.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// Faults injected into every answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Faults {
    /// Median response latency.
    pub latency_ms: u64,
    /// 99th percentile latency (log-normal distribution between the two); equal to the
    /// median for a fixed latency.
    pub latency_p99_ms: u64,
    /// Share of requests answered 503 (0.0–1.0).
    pub error_rate: f64,
    /// Outage windows, in seconds since the simulator started: every request inside one
    /// gets a 503 (after the latency).
    pub outages: Vec<Outage>,
    /// A manual switch: while true, every request gets a 503.
    pub down: bool,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            latency_ms: 0,
            latency_p99_ms: 0,
            error_rate: 0.0,
            outages: Vec::new(),
            down: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outage {
    pub start_s: f64,
    pub duration_s: f64,
}

impl Outage {
    /// Parses `START+DURATION` in seconds, e.g. `30+10`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let err = || format!("outage '{s}' must be START+DURATION in seconds, e.g. 30+10");
        let (a, b) = s.split_once('+').ok_or_else(err)?;
        let start_s: f64 = a.trim().trim_end_matches('s').parse().map_err(|_| err())?;
        let duration_s: f64 = b.trim().trim_end_matches('s').parse().map_err(|_| err())?;
        if start_s < 0.0 || duration_s <= 0.0 {
            return Err(err());
        }
        Ok(Self { start_s, duration_s })
    }
}

impl Faults {
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.error_rate) {
            return Err(format!("error rate {} must be between 0 and 1", self.error_rate));
        }
        if self.latency_p99_ms < self.latency_ms {
            return Err(format!(
                "p99 latency {} ms is below the median {} ms",
                self.latency_p99_ms, self.latency_ms
            ));
        }
        Ok(())
    }

    fn latency(&self, rng: &mut impl Rng) -> Duration {
        if self.latency_ms == 0 {
            return Duration::ZERO;
        }
        let median = self.latency_ms as f64;
        // Log-normal: ln(latency) ~ N(ln(median), sigma), p99 = median * e^(2.326 sigma).
        let sigma = (self.latency_p99_ms as f64 / median).ln() / 2.326;
        let normal: f64 = {
            // Box-Muller from two uniforms.
            let (u1, u2): (f64, f64) = (rng.gen_range(f64::EPSILON..1.0), rng.gen());
            (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
        };
        Duration::from_secs_f64(median * (sigma * normal).exp() / 1000.0)
    }
}

/// The faults of one simulator, changeable while it runs, applied per request with a
/// seeded random stream (the same seed fails the same requests).
#[derive(Debug)]
pub struct FaultInjector {
    faults: RwLock<Faults>,
    started: Instant,
    requests: AtomicU64,
    faulted: AtomicU64,
    seed: u64,
}

impl FaultInjector {
    pub fn new(faults: Faults, seed: u64) -> Self {
        Self {
            faults: RwLock::new(faults),
            started: Instant::now(),
            requests: AtomicU64::new(0),
            faulted: AtomicU64::new(0),
            seed,
        }
    }

    pub fn get(&self) -> Faults {
        self.faults.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces the faults (refused, with the reason, when they are not valid).
    pub fn set(&self, faults: Faults) -> Result<(), String> {
        faults.validate()?;
        *self.faults.write().unwrap_or_else(|p| p.into_inner()) = faults;
        Ok(())
    }

    /// Requests failed so far.
    pub fn faulted(&self) -> u64 {
        self.faulted.load(Ordering::Relaxed)
    }

    /// A uniform draw in [0, 1) from this request's random stream (for a simulator's own
    /// faults, e.g. a lost acknowledgement).
    pub fn draw(&self, salt: u64) -> f64 {
        let n = self.requests.load(Ordering::Relaxed);
        rand::rngs::SmallRng::seed_from_u64(self.seed ^ salt ^ n.wrapping_mul(0x2545_F491_4F6C_DD1D)).gen()
    }

    /// Waits the request's latency; whether the request must fail (an error, an outage
    /// window, or the switch down). Outages and the switch are read once the latency has
    /// passed, when the answer is given: a request that arrived just before the switch
    /// went down is not filed after it.
    pub async fn fails(&self) -> bool {
        let n = self.requests.fetch_add(1, Ordering::Relaxed);
        let (delay, error) = {
            let f = self.faults.read().unwrap_or_else(|p| p.into_inner());
            let mut rng = rand::rngs::SmallRng::seed_from_u64(self.seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            (f.latency(&mut rng), rng.gen_bool(f.error_rate))
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let failed = error || {
            let f = self.faults.read().unwrap_or_else(|p| p.into_inner());
            let now = self.started.elapsed().as_secs_f64();
            f.down
                || f.outages
                    .iter()
                    .any(|o| now >= o.start_s && now < o.start_s + o.duration_s)
        };
        if failed {
            self.faulted.fetch_add(1, Ordering::Relaxed);
        }
        failed
    }
}

/// A simulator's fault document as JSON: its own fields are taken out with [`take`], the
/// rest must be the common [`Faults`] ([`common`]) — so a field neither knows is refused
/// (serde's `flatten` would let it through).
pub type FaultDocument = serde_json::Map<String, serde_json::Value>;

/// Takes a simulator's own field out of its fault document.
pub fn take<T: serde::de::DeserializeOwned>(doc: &mut FaultDocument, key: &str) -> Result<Option<T>, String> {
    doc.remove(key)
        .map(|v| serde_json::from_value(v).map_err(|e| format!("{key}: {e}")))
        .transpose()
}

/// The common faults: what is left of a fault document once the simulator's own fields
/// are taken out (unknown fields refused).
pub fn common(doc: FaultDocument) -> Result<Faults, String> {
    serde_json::from_value(serde_json::Value::Object(doc)).map_err(|e| e.to_string())
}
