//! A worker's probes, served next to its Prometheus metrics on `metrics.listen`:
//!
//! - `GET /healthz` — alive: the process serves HTTP (200). Kubernetes restarts a worker
//!   whose liveness probe fails, so nothing slow or external is checked here;
//! - `GET /readyz` — ready: its consumer group is joined, its database answers within a
//!   second, and it is not draining after a SIGTERM (200, else 503); the JSON body says
//!   which check failed, so an operator sees why;
//! - `GET /metrics` — the Prometheus text format.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use futures::future::BoxFuture;
use metrics_exporter_prometheus::PrometheusHandle;
use motcua_runtime::Shutdown;
use serde::Serialize;
use tracing::{error, info};

/// How long the database may take to answer a readiness probe.
const DATABASE_TIMEOUT: Duration = Duration::from_secs(1);

/// A database round trip, as a probe runs it.
pub type DatabaseProbe = Arc<dyn Fn() -> BoxFuture<'static, std::result::Result<(), String>> + Send + Sync>;

/// What a worker's readiness depends on. Cloned into the worker's launch: the runtime
/// sets `joined`, the stage registers its database.
#[derive(Clone)]
pub struct Health {
    joined: Arc<AtomicBool>,
    brokers_down: Arc<AtomicBool>,
    shutdown: Shutdown,
    database: Arc<Mutex<DatabaseCheck>>,
}

/// What `/readyz` knows of the stage's database.
#[derive(Clone, Default)]
enum DatabaseCheck {
    /// Not opened yet (starting).
    #[default]
    Pending,
    /// The stage has none (portal-sync): nothing to wait for.
    NotUsed,
    Probe(DatabaseProbe),
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health")
            .field("joined", &self.joined.load(Ordering::Relaxed))
            .field("draining", &self.shutdown.is_triggered())
            .finish_non_exhaustive()
    }
}

/// The answer of `/readyz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Readiness {
    pub ready: bool,
    pub group_joined: bool,
    /// Whether some Kafka broker answers (false while every connection is down).
    pub brokers_reachable: bool,
    /// `None` before the stage opened its database (starting), and for a stage without one.
    pub database: Option<bool>,
    pub draining: bool,
    /// Why the worker is not ready; no personal data, no connection strings.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
}

impl Health {
    pub fn new(joined: Arc<AtomicBool>, shutdown: Shutdown) -> Self {
        Self {
            joined,
            brokers_down: Arc::default(),
            shutdown,
            database: Arc::default(),
        }
    }

    /// The flag the runtime sets while every broker connection is down.
    pub fn brokers_down(&self) -> Arc<AtomicBool> {
        self.brokers_down.clone()
    }

    /// The flag the runtime sets once the worker is in its consumer group.
    pub fn joined(&self) -> Arc<AtomicBool> {
        self.joined.clone()
    }

    /// The stage's database, probed by `/readyz` from now on.
    pub fn watch_database(&self, probe: DatabaseProbe) {
        *self.database.lock().unwrap_or_else(|p| p.into_inner()) = DatabaseCheck::Probe(probe);
    }

    /// The stage uses no database: readiness is the group and draining alone.
    pub fn without_database(&self) {
        *self.database.lock().unwrap_or_else(|p| p.into_inner()) = DatabaseCheck::NotUsed;
    }

    /// The stage's store.
    pub fn watch_store(&self, store: motcua_store::Store) {
        self.watch_database(Arc::new(move || {
            let store = store.clone();
            Box::pin(async move { store.ping().await.map_err(|e| motcua_runtime::error_chain(&e)) })
        }));
    }

    pub async fn readiness(&self) -> Readiness {
        let group_joined = self.joined.load(Ordering::Relaxed);
        let draining = self.shutdown.is_triggered();
        let probe = self.database.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut reasons = Vec::new();
        let database = match probe {
            DatabaseCheck::Pending => {
                reasons.push("the database is not open yet".to_owned());
                None
            }
            DatabaseCheck::NotUsed => None,
            DatabaseCheck::Probe(probe) => match tokio::time::timeout(DATABASE_TIMEOUT, probe()).await {
                Ok(Ok(())) => Some(true),
                Ok(Err(e)) => {
                    // The error names the database's failure, never its URL (sqlx's
                    // errors do not carry the connection string).
                    reasons.push(format!("the database does not answer: {e}"));
                    Some(false)
                }
                Err(_) => {
                    reasons.push(format!("the database took more than {DATABASE_TIMEOUT:?} to answer"));
                    Some(false)
                }
            },
        };
        let brokers_reachable = !self.brokers_down.load(Ordering::Relaxed);
        if !brokers_reachable {
            reasons.push("no Kafka broker answers (every connection is down); reconnecting".to_owned());
        }
        if !group_joined {
            reasons.push("not (yet) a member of its consumer group".to_owned());
        }
        if draining {
            reasons.push("draining: shutting down after a signal".to_owned());
        }
        Readiness {
            ready: reasons.is_empty(),
            group_joined,
            brokers_reachable,
            database,
            draining,
            reasons,
        }
    }
}

#[derive(Clone)]
struct Served {
    health: Health,
    metrics: PrometheusHandle,
}

async fn healthz() -> &'static str {
    "alive\n"
}

async fn readyz(State(s): State<Served>) -> impl IntoResponse {
    let r = s.health.readiness().await;
    let code = if r.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(r))
}

async fn render_metrics(State(s): State<Served>) -> impl IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
}

/// The probes and metrics router.
pub fn router(health: Health, metrics: PrometheusHandle) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(render_metrics))
        .with_state(Served { health, metrics })
}

/// Installs the Prometheus recorder and serves `/metrics`, `/healthz` and `/readyz` on
/// `addr` until the process ends. Fails at once when the address cannot be bound.
pub async fn serve(addr: SocketAddr, health: Health) -> Result<()> {
    // Histograms as Prometheus histograms (`_bucket` series, what the dashboard's
    // quantiles aggregate across replicas), not per-process summaries: seconds, from a
    // millisecond batch to an hour-long outage.
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets(&[
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0,
        ])
        .context("histogram buckets")?
        .install_recorder()
        .context("installing the Prometheus recorder")?;
    crate::describe_metrics();
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot serve metrics and probes on {addr}"))?;
    // Histograms and summaries are maintained by an upkeep the HTTP listener would run.
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(5));
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    info!(%addr, "Prometheus metrics at /metrics, probes at /healthz and /readyz");
    let app = router(health, handle);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            error!(error = %e, "the metrics and probes server stopped");
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ready_only_when_joined_with_a_database_that_answers_and_not_draining() {
        let joined = Arc::new(AtomicBool::new(false));
        let (stop, shutdown) = Shutdown::channel();
        let health = Health::new(joined.clone(), shutdown);
        let r = health.readiness().await;
        assert!(!r.ready && r.database.is_none() && !r.group_joined, "{r:?}");
        assert_eq!(r.reasons.len(), 2, "{r:?}");

        let dir = tempfile::tempdir().expect("tempdir");
        let store = motcua_store::Store::connect(&format!("sqlite://{}", dir.path().join("h.db").display()))
            .await
            .expect("store");
        health.watch_store(store.clone());
        joined.store(true, Ordering::Relaxed);
        let r = health.readiness().await;
        assert!(r.ready && r.reasons.is_empty(), "{r:?}");

        // A database that hangs is not ready, within the probe's second.
        health.watch_database(Arc::new(|| Box::pin(std::future::pending())));
        let started = std::time::Instant::now();
        let r = health.readiness().await;
        assert_eq!(r.database, Some(false));
        assert!(started.elapsed() < Duration::from_secs(3));
        // A closed pool answers with an error.
        health.watch_store(store.clone());
        store.close().await;
        let r = health.readiness().await;
        assert_eq!((r.ready, r.database), (false, Some(false)), "{r:?}");

        health.watch_database(Arc::new(|| Box::pin(async { Ok(()) })));
        assert!(health.readiness().await.ready);
        stop.send(true).expect("signal");
        let r = health.readiness().await;
        assert!(!r.ready && r.draining, "{r:?}");
    }

    /// portal-sync has no database: before this, its `/readyz` waited for one forever,
    /// and its pods never became ready.
    #[tokio::test]
    async fn a_stage_without_a_database_is_ready_once_joined() {
        let joined = Arc::new(AtomicBool::new(false));
        let (_stop, shutdown) = Shutdown::channel();
        let health = Health::new(joined.clone(), shutdown);
        health.without_database();
        let r = health.readiness().await;
        assert!(!r.ready && r.reasons.len() == 1 && !r.group_joined, "{r:?}");
        joined.store(true, Ordering::Relaxed);
        let r = health.readiness().await;
        assert!(r.ready && r.database.is_none() && r.reasons.is_empty(), "{r:?}");
    }
}
