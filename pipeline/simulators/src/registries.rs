//! The registry simulator: a real HTTP server answering the gateway API from a synthetic
//! world, with injected faults (latency, errors, outages) — the stand-in for the national
//! databases we do not control, for tests, the demo and load runs.
//!
//! API (JSON):
//! - `GET /v1/citizens/{citizen_id}` → a [`Citizen`]
//! - `GET /v1/parcels/{unit_code}/{map_sheet}/{parcel_number}` → a [`Parcel`]
//! - `GET /v1/enterprises/{tax_code}` → a [`Business`]
//! - 404 `{"error": "not_found"}`; 503 `{"error": "unavailable"}` while faulty
//! - `GET /admin/faults`, `PUT /admin/faults` (a [`Faults`] document): change faults live
//! - `GET /admin/stats`: requests served, by outcome

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::world::World;
use motcua_registries::{Business, Citizen, Parcel};

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

#[derive(Debug, Default, Serialize)]
pub struct Stats {
    pub ok: u64,
    pub not_found: u64,
    pub faulted: u64,
}

struct Sim {
    world: World,
    faults: RwLock<Faults>,
    started: Instant,
    requests: AtomicU64,
    ok: AtomicU64,
    not_found: AtomicU64,
    faulted: AtomicU64,
    seed: u64,
}

type Shared = Arc<Sim>;

/// Builds the simulator's router (serve it with [`serve`] or in a test).
pub fn router(world: World, faults: Faults) -> Router {
    let seed = world.seed;
    let sim = Arc::new(Sim {
        world,
        faults: RwLock::new(faults),
        started: Instant::now(),
        requests: AtomicU64::new(0),
        ok: AtomicU64::new(0),
        not_found: AtomicU64::new(0),
        faulted: AtomicU64::new(0),
        seed,
    });
    Router::new()
        .route("/v1/citizens/{citizen_id}", get(citizen))
        .route("/v1/parcels/{unit_code}/{map_sheet}/{parcel_number}", get(parcel))
        .route("/v1/enterprises/{tax_code}", get(enterprise))
        .route("/admin/faults", get(get_faults).put(put_faults))
        .route("/admin/stats", get(stats))
        .with_state(sim)
}

/// The simulator behind a gateway that wants `Authorization: Bearer <token>` on every
/// request (401 otherwise), as the national gateway does.
pub fn with_bearer_token(router: Router, token: String) -> Router {
    let expected: Arc<str> = Arc::from(format!("Bearer {token}"));
    router.layer(axum::middleware::from_fn(
        move |request: axum::extract::Request, next: axum::middleware::Next| {
            let expected = expected.clone();
            async move {
                let given = request
                    .headers()
                    .get(axum::http::header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok());
                if given != Some(&*expected) {
                    return error(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED");
                }
                next.run(request).await
            }
        },
    ))
}

/// Serves the simulator on `addr` until the future is dropped.
pub async fn serve(addr: SocketAddr, world: World, faults: Faults) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, router(world, faults)).await
}

/// Starts the simulator on an ephemeral localhost port; returns its base URL.
pub async fn spawn(world: World, faults: Faults) -> std::io::Result<(String, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = router(world, faults);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((format!("http://{addr}"), task))
}

fn error(status: StatusCode, code: &str) -> Response {
    (status, Json(serde_json::json!({ "error": code }))).into_response()
}

/// Applies latency and faults; `Some(response)` when the request must fail.
async fn fault(sim: &Sim) -> Option<Response> {
    let n = sim.requests.fetch_add(1, Ordering::Relaxed);
    let (delay, failed) = {
        let f = sim.faults.read().unwrap_or_else(|p| p.into_inner());
        let mut rng = rand::rngs::SmallRng::seed_from_u64(sim.seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let now = sim.started.elapsed().as_secs_f64();
        let in_outage = f
            .outages
            .iter()
            .any(|o| now >= o.start_s && now < o.start_s + o.duration_s);
        (f.latency(&mut rng), f.down || in_outage || rng.gen_bool(f.error_rate))
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if failed {
        sim.faulted.fetch_add(1, Ordering::Relaxed);
        return Some(error(StatusCode::SERVICE_UNAVAILABLE, "unavailable"));
    }
    None
}

fn answer<T: Serialize>(sim: &Sim, found: Option<T>) -> Response {
    match found {
        Some(v) => {
            sim.ok.fetch_add(1, Ordering::Relaxed);
            Json(v).into_response()
        }
        None => {
            sim.not_found.fetch_add(1, Ordering::Relaxed);
            error(StatusCode::NOT_FOUND, "not_found")
        }
    }
}

async fn citizen(State(sim): State<Shared>, Path(id): Path<String>) -> Response {
    if let Some(r) = fault(&sim).await {
        return r;
    }
    answer::<Citizen>(&sim, sim.world.citizen_by_id(&id))
}

async fn parcel(State(sim): State<Shared>, Path((unit, sheet, number)): Path<(String, i32, i32)>) -> Response {
    if let Some(r) = fault(&sim).await {
        return r;
    }
    answer::<Parcel>(&sim, sim.world.parcel_at(&unit, sheet, number))
}

async fn enterprise(State(sim): State<Shared>, Path(tax_code): Path<String>) -> Response {
    if let Some(r) = fault(&sim).await {
        return r;
    }
    answer::<Business>(&sim, sim.world.business_by_tax_code(&tax_code))
}

async fn get_faults(State(sim): State<Shared>) -> Json<Faults> {
    Json(sim.faults.read().unwrap_or_else(|p| p.into_inner()).clone())
}

async fn put_faults(State(sim): State<Shared>, Json(f): Json<Faults>) -> Response {
    if let Err(e) = f.validate() {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(serde_json::json!({ "error": e })),
        )
            .into_response();
    }
    *sim.faults.write().unwrap_or_else(|p| p.into_inner()) = f;
    StatusCode::NO_CONTENT.into_response()
}

async fn stats(State(sim): State<Shared>) -> Json<Stats> {
    Json(Stats {
        ok: sim.ok.load(Ordering::Relaxed),
        not_found: sim.not_found.load(Ordering::Relaxed),
        faulted: sim.faulted.load(Ordering::Relaxed),
    })
}
