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
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use crate::faults::FaultInjector;
use crate::http::error;
use crate::world::World;
use motcua_registries::{Business, Citizen, Parcel};

pub use crate::faults::{Faults, Outage};

#[derive(Debug, Default, Serialize)]
pub struct Stats {
    pub ok: u64,
    pub not_found: u64,
    pub faulted: u64,
}

struct Sim {
    world: World,
    faults: FaultInjector,
    ok: AtomicU64,
    not_found: AtomicU64,
}

type Shared = Arc<Sim>;

/// Builds the simulator's router (serve it with [`serve`] or in a test).
pub fn router(world: World, faults: Faults) -> Router {
    let seed = world.seed;
    let sim = Arc::new(Sim {
        world,
        faults: FaultInjector::new(faults, seed),
        ok: AtomicU64::new(0),
        not_found: AtomicU64::new(0),
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
    crate::http::spawn(router(world, faults)).await
}

/// Applies latency and faults; `Some(response)` when the request must fail.
async fn fault(sim: &Sim) -> Option<Response> {
    sim.faults
        .fails()
        .await
        .then(|| error(StatusCode::SERVICE_UNAVAILABLE, "unavailable"))
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
    Json(sim.faults.get())
}

async fn put_faults(State(sim): State<Shared>, Json(f): Json<Faults>) -> Response {
    match sim.faults.set(f) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(serde_json::json!({ "error": e })),
        )
            .into_response(),
    }
}

async fn stats(State(sim): State<Shared>) -> Json<Stats> {
    Json(Stats {
        ok: sim.ok.load(Ordering::Relaxed),
        not_found: sim.not_found.load(Ordering::Relaxed),
        faulted: sim.faults.faulted(),
    })
}
