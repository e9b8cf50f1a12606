//! The HTTP gateway client against the registry simulator, a real HTTP server on
//! localhost, with faults injected; audit records land in a real PostgreSQL.

use std::sync::Arc;
use std::time::Duration;

use motcua_reference::AdminUnits;
use motcua_registries::audit::PgAuditLog;
use motcua_registries::http::{HttpConfig, HttpRegistries};
use motcua_registries::{BusinessRegistry, Error, LandRegistry, Lookup, PopulationRegistry};
use motcua_simulators::registries::{self as sim, Faults};
use motcua_simulators::world::World;

const LOOKUP: Lookup<'static> = Lookup {
    caller: "verify/test",
    dossier_id: "dossier-42",
};

fn world() -> World {
    let units = AdminUnits::embedded().expect("units");
    World::for_province(&units, "22", 11, 50_000).expect("world")
}

async fn audit_log() -> (PgAuditLog, sqlx::PgPool) {
    let url = motcua_store::testing::scratch_postgres_url().await;
    let pool = sqlx::PgPool::connect(&url).await.expect("pg");
    PgAuditLog::migrate(&pool).await.expect("migrate");
    (PgAuditLog::start(pool.clone(), Duration::from_millis(50)), pool)
}

fn config(base_url: String) -> HttpConfig {
    HttpConfig {
        base_url,
        timeout_ms: 1_000,
        backoff_initial_ms: 5,
        backoff_max_ms: 20,
        ..HttpConfig::default()
    }
}

async fn put_faults(base: &str, f: &Faults) {
    let r = reqwest::Client::new()
        .put(format!("{base}/admin/faults"))
        .json(f)
        .send()
        .await
        .expect("admin");
    assert_eq!(r.status(), 204);
}

async fn faulted(base: &str) -> u64 {
    let v: serde_json::Value = reqwest::get(format!("{base}/admin/stats"))
        .await
        .expect("stats")
        .json()
        .await
        .expect("json");
    v["faulted"].as_u64().expect("faulted")
}

#[tokio::test]
async fn lookups_match_the_world_and_every_one_is_audited() {
    let w = world();
    let (base, _server) = sim::spawn(w.clone(), Faults::default()).await.expect("simulator");
    let (audit, pool) = audit_log().await;
    let http = HttpRegistries::new(config(base), Arc::new(audit.clone())).expect("client");

    let c = w.citizen(123);
    assert_eq!(
        http.citizen(&LOOKUP, &c.citizen_id).await.expect("citizen"),
        Some(c.clone())
    );
    let p = w.parcel(456);
    assert_eq!(
        http.parcel(&LOOKUP, &p.unit_code, p.map_sheet, p.parcel_number)
            .await
            .expect("parcel"),
        Some(p)
    );
    let b = (0..50).find_map(|k| w.business(k)).expect("business");
    assert_eq!(http.business(&LOOKUP, &b.tax_code).await.expect("business"), Some(b));
    assert_eq!(http.citizen(&LOOKUP, "022090999999").await.expect("not found"), None);
    // Served from the cache the second time, and audited as such.
    assert_eq!(
        http.citizen(&LOOKUP, &c.citizen_id).await.expect("cached"),
        Some(c.clone())
    );

    audit.flush().await;
    let rows: Vec<(String, String, String, String, bool)> =
        sqlx::query_as("SELECT registry, subject, outcome, dossier_id, cached FROM registry_audit ORDER BY id")
            .fetch_all(&pool)
            .await
            .expect("audit rows");
    assert_eq!(rows.len(), 5, "{rows:?}");
    assert_eq!(
        rows[0],
        (
            "population".into(),
            c.citizen_id.clone(),
            "found".into(),
            "dossier-42".into(),
            false
        )
    );
    assert_eq!(rows[1].0, "land");
    assert_eq!(rows[2].0, "business");
    assert_eq!(rows[3].2, "not_found");
    assert_eq!(
        rows[4],
        (
            "population".into(),
            c.citizen_id,
            "found".into(),
            "dossier-42".into(),
            true
        )
    );
    let callers: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM registry_audit WHERE caller = 'verify/test'")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(callers, 5);
}

#[tokio::test]
async fn retries_ride_through_a_30_percent_error_rate() {
    let w = world();
    let faults = Faults {
        error_rate: 0.3,
        ..Faults::default()
    };
    let (base, _server) = sim::spawn(w.clone(), faults).await.expect("simulator");
    let (audit, _pool) = audit_log().await;
    let cfg = HttpConfig {
        max_attempts: 10,
        breaker_failures: 1_000,
        cache_ttl_s: 0,
        ..config(base.clone())
    };
    let http = HttpRegistries::new(cfg, Arc::new(audit)).expect("client");
    // Sequential lookups: the simulator's fault sequence is then deterministic.
    for i in 0..200 {
        let c = w.citizen(i * 17);
        assert_eq!(
            http.citizen(&LOOKUP, &c.citizen_id).await.expect("retried to success"),
            Some(c)
        );
    }
    let injected = faulted(&base).await;
    assert!(injected > 30, "the simulator injected only {injected} errors");
    let [(_, population), ..] = http.stats();
    assert_eq!(
        population.requests,
        200 + injected,
        "one extra request per injected error"
    );
}

#[tokio::test]
async fn the_circuit_opens_on_an_outage_and_recovers_after_it() {
    let w = world();
    let (base, _server) = sim::spawn(w.clone(), Faults::default()).await.expect("simulator");
    let (audit, _pool) = audit_log().await;
    let cfg = HttpConfig {
        max_attempts: 1,
        breaker_failures: 3,
        breaker_open_ms: 300,
        ..config(base.clone())
    };
    let http = HttpRegistries::new(cfg, Arc::new(audit)).expect("client");
    let c = w.citizen(7);
    put_faults(
        &base,
        &Faults {
            down: true,
            ..Faults::default()
        },
    )
    .await;
    for _ in 0..3 {
        let e = http.citizen(&LOOKUP, &c.citizen_id).await.expect_err("outage");
        assert!(e.is_retryable(), "{e}");
    }
    // Open: failing fast, without reaching the registry.
    let before = faulted(&base).await;
    for _ in 0..20 {
        let e = http.citizen(&LOOKUP, &c.citizen_id).await.expect_err("open circuit");
        assert!(
            matches!(&e, Error::Unavailable { reason, .. } if reason.contains("circuit open")),
            "{e}"
        );
    }
    assert_eq!(faulted(&base).await, before, "an open circuit sends nothing");
    // The registry comes back; after the open period one probe closes the circuit.
    put_faults(&base, &Faults::default()).await;
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(
        http.citizen(&LOOKUP, &c.citizen_id).await.expect("recovered"),
        Some(c.clone())
    );
    assert_eq!(
        http.citizen(&LOOKUP, &w.citizen(8).citizen_id).await.expect("closed"),
        Some(w.citizen(8))
    );
    let [(_, population), ..] = http.stats();
    assert_eq!(population.breaker_rejections, 20);
}

#[tokio::test]
async fn the_cache_serves_repeat_lookups_and_reports_its_hit_rate() {
    let w = world();
    let (base, _server) = sim::spawn(w.clone(), Faults::default()).await.expect("simulator");
    let (audit, _pool) = audit_log().await;
    let http = HttpRegistries::new(config(base), Arc::new(audit)).expect("client");
    for _round in 0..4 {
        for i in 0..50 {
            let c = w.citizen(i);
            assert_eq!(http.citizen(&LOOKUP, &c.citizen_id).await.expect("lookup"), Some(c));
        }
    }
    let [(_, population), ..] = http.stats();
    assert_eq!(population.requests, 50, "only the first round reaches the registry");
    assert_eq!(population.cache_hits, 150);
    assert!((population.hit_rate() - 0.75).abs() < 1e-9);
}

/// A failed call's error goes into logs and the escalation reason: it must not carry the
/// citizen ID or tax code that was in the request's URL.
#[tokio::test]
async fn a_failed_call_s_error_does_not_carry_the_identifier_looked_up() {
    let (audit, _pool) = audit_log().await;
    // Nothing listens there: the connection is refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let cfg = HttpConfig {
        max_attempts: 1,
        ..config(format!("http://127.0.0.1:{port}"))
    };
    let http = HttpRegistries::new(cfg, Arc::new(audit)).expect("client");
    let citizen_id = "022090001234";
    let e = http.citizen(&LOOKUP, citizen_id).await.expect_err("refused");
    let chain = motcua_runtime::error_chain(&e);
    assert!(chain.contains("request failed"), "{chain}");
    assert!(!chain.contains(citizen_id), "{chain}");
    let e = http.business(&LOOKUP, "0101234567").await.expect_err("refused");
    assert!(!motcua_runtime::error_chain(&e).contains("0101234567"), "{e}");
}
