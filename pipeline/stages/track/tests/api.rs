//! The status API over real PostgreSQL and real HTTP, checked field by field against a
//! small hand-counted fixture.

mod common;

use std::sync::Arc;

use common::*;
use motcua_schemas::{AnyEvent, Channel, Timeliness};
use motcua_track::Track;
use serde_json::{json, Value};

const B: &str = "2.000001";

/// Seven dossiers; the API's clock is NOW (2025-11-25 09:00, UTC+7).
///
/// | # | received   | unit (recv → competent) | procedure | channel | outcome                  |
/// |---|------------|-------------------------|-----------|---------|--------------------------|
/// | 1 | 11-05      | 06652                   | 1.004227  | online  | early, 8 d after recept. |
/// | 2 | 11-10      | 06652                   | 1.004227  | counter | late, 12 d               |
/// | 3 | 11-15      | 06652                   | 2.000001  | online  | on time, 9 d             |
/// | 4 | 11-16      | 06652                   | 1.004227  | online  | open, overdue by 1 h     |
/// | 5 | 11-23      | 06652                   | 2.000001  | postal  | open, due in 3 h         |
/// | 6 | 10-16      | 06652 → H22.STNMT       | 1.004227  | online  | on time (10-26), 10 d    |
/// | 7 | 11-24      | 07000                   | 1.004227  | online  | open, due in 10 d        |
fn fixture() -> Vec<Life> {
    let mk = |n, submitted: i64, procedure: &str, channel, due: i64, done: Option<(i64, Timeliness)>| {
        let mut l = Life::new(n, submitted);
        l.procedure = procedure.into();
        l.channel = channel;
        l.due_at = due;
        l.done = done;
        l
    };
    let mut v = vec![
        mk(
            1,
            NOW - 20 * DAY,
            "1.004227",
            Channel::Online,
            NOW - 10 * DAY,
            Some((NOW - 12 * DAY, Timeliness::Early)),
        ),
        mk(
            2,
            NOW - 15 * DAY,
            "1.004227",
            Channel::Counter,
            NOW - 5 * DAY,
            Some((NOW - 3 * DAY, Timeliness::Late)),
        ),
        mk(
            3,
            NOW - 10 * DAY,
            B,
            Channel::Online,
            NOW + DAY,
            Some((NOW - DAY, Timeliness::OnTime)),
        ),
        mk(4, NOW - 9 * DAY, "1.004227", Channel::Online, NOW - HOUR, None),
        mk(5, NOW - 2 * DAY, B, Channel::Postal, NOW + 3 * HOUR, None),
        mk(
            6,
            NOW - 40 * DAY,
            "1.004227",
            Channel::Online,
            NOW - 25 * DAY,
            Some((NOW - 30 * DAY, Timeliness::OnTime)),
        ),
        mk(7, NOW - DAY, "1.004227", Channel::Online, NOW + 10 * DAY, None),
    ];
    v[5].competent_unit = "H22.STNMT".into();
    v[6].receiving_unit = "07000".into();
    v[6].competent_unit = "07000".into();
    v
}

struct Api {
    base: String,
    client: reqwest::Client,
}

impl Api {
    async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        assert_eq!(
            r.headers().get("content-type").and_then(|v| v.to_str().ok()),
            Some("application/json"),
            "{path}"
        );
        (status, r.json().await.expect("json body"))
    }
}

async fn serve() -> Api {
    serve_from(Track::new(database().await)).await
}

async fn serve_from(track: Track) -> Api {
    let events: Vec<AnyEvent> = fixture().iter().flat_map(Life::events).collect();
    track.apply(&refs(&events)).await.expect("fixture");
    let app = motcua_track::api::router_over(track.db().clone(), Arc::new(|| NOW));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    Api {
        base: format!("http://{addr}"),
        client: reqwest::Client::new(),
    }
}

#[tokio::test]
async fn a_dossier_field_by_field() {
    let api = serve().await;
    let (status, d) = api.get("/dossiers/H22.06652-251125-0002").await;
    assert_eq!(status, 200, "{d}");
    let received = NOW - 15 * DAY + MIN;
    assert_eq!(d["dossier_id"], "dossier-2");
    assert_eq!(d["dossier_code"], "H22.06652-251125-0002");
    assert_eq!(d["procedure_code"], "1.004227");
    assert_eq!(d["receiving_unit"], "06652");
    assert_eq!(d["competent_unit"], "06652");
    assert_eq!(d["channel"], "counter");
    assert_eq!(d["status"], "result_returned");
    assert_eq!(d["status_code"], 10);
    assert_eq!(d["status_at"], "2025-11-22T09:00:00+07:00");
    assert_eq!(d["submitted_at"], "2025-11-10T09:00:00+07:00");
    assert_eq!(d["received_at"], "2025-11-10T09:01:00+07:00");
    assert_eq!(d["received_at_ms"], received);
    assert_eq!(d["due_at"], "2025-11-20T09:00:00+07:00");
    assert_eq!(d["due_at_ms"], NOW - 5 * DAY);
    assert_eq!(d["decided_at"], "2025-11-22T08:00:00+07:00");
    assert_eq!(d["decision"], "approved");
    assert_eq!(d["completed_at"], "2025-11-22T09:00:00+07:00");
    assert_eq!(d["completed_at_ms"], NOW - 3 * DAY);
    assert_eq!(d["overdue"], false, "closed dossiers are not overdue");
    assert_eq!(d["timeliness"], "late");
    let h = d["history"].as_array().expect("history");
    let summary: Vec<(&str, Value, &str)> = h
        .iter()
        .map(|e| {
            (
                e["event"].as_str().expect("event"),
                e["status_code"].clone(),
                e["stage"].as_str().expect("stage"),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("dossier.submitted", json!(1), "portal"),
            ("dossier.accepted", json!(2), "intake"),
            ("dossier.status", json!(2), "intake"),
            ("dossier.verified", Value::Null, "verify"),
            ("payment.requested", json!(6), "payment"),
            ("dossier.status", json!(6), "payment"),
            ("dossier.paid", Value::Null, "payment"),
            ("dossier.routed", json!(4), "route"),
            ("dossier.status", json!(4), "route"),
            ("dossier.decided", json!(9), "backoffice"),
            ("dossier.completed", json!(10), "result"),
        ]
    );
    assert_eq!(
        h[0],
        json!({
            "event_id": "dossier-2-submitted",
            "event": "dossier.submitted",
            "status": "registered",
            "status_code": 1,
            "stage": "portal",
            "reasons": [],
            "occurred_at": "2025-11-10T09:00:00+07:00",
            "occurred_at_ms": NOW - 15 * DAY,
        })
    );
    assert_eq!(h[10]["status"], "result_returned");

    // By dossier id too; an open dossier past its due time is overdue.
    let (status, d) = api.get("/dossiers/dossier-4").await;
    assert_eq!(status, 200);
    assert_eq!(d["status"], "processing");
    assert_eq!(d["status_code"], 4);
    assert_eq!(d["overdue"], true);
    assert_eq!(d["timeliness"], Value::Null);
    assert_eq!(d["completed_at"], Value::Null);
    assert_eq!(d["history"].as_array().map(Vec::len), Some(9));
    let (_, d) = api.get("/dossiers/dossier-5").await;
    assert_eq!(d["overdue"], false);
}

#[tokio::test]
async fn unknown_dossiers_and_bad_requests_are_json_errors() {
    let api = serve().await;
    let (status, e) = api.get("/dossiers/H22.99999-251125-0001").await;
    assert_eq!(status, 404);
    assert_eq!(
        e,
        json!({"error": {"code": "dossier_not_found", "message": "no dossier with code H22.99999-251125-0001"}})
    );
    for path in [
        "/stats?from=2025-13-01",
        "/stats?to=yesterday",
        "/stats?from=2025-11-30&to=2025-11-01",
        "/stats?unit=",
        "/stats?region=22",
        "/units/06652/load?hours=abc",
        "/units/06652/load?hours=0",
    ] {
        let (status, e) = api.get(path).await;
        assert_eq!(status, 400, "{path}: {e}");
        assert_eq!(e["error"]["code"], "bad_request", "{path}");
        assert!(e["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{path}");
    }
    let (status, e) = api.get("/nothing/here").await;
    assert_eq!(status, 404);
    assert_eq!(e["error"]["code"], "not_found");
}

#[tokio::test]
async fn statistics_match_the_hand_count() {
    let api = serve().await;
    let (status, s) = api.get("/stats").await;
    assert_eq!(status, 200, "{s}");
    assert_eq!(s["received"], 7);
    assert_eq!(s["received_online"], 5);
    assert_eq!(s["completed"], 4);
    assert_eq!(s["completed_early"], 1);
    assert_eq!(s["completed_on_time"], 2);
    assert_eq!(s["completed_late"], 1);
    assert_eq!(s["on_time_rate"], 0.75);
    assert_eq!(s["online_rate"], 5.0 / 7.0);
    // (8 + 12 + 9 + 10) days / 4, each less the minute between submission and reception.
    assert_eq!(s["average_processing_ms"], 39 * DAY / 4 - MIN);
    assert_eq!(s["average_processing_hours"], 233.98);

    // November: dossier 6 (received and completed in October) drops out.
    let (_, s) = api.get("/stats?from=2025-11-01&to=2025-11-30").await;
    assert_eq!(s["from"], "2025-11-01T00:00:00+07:00");
    assert_eq!(s["to"], "2025-12-01T00:00:00+07:00");
    assert_eq!(s["received"], 6);
    assert_eq!(s["received_online"], 4);
    assert_eq!(
        (&s["completed_early"], &s["completed_on_time"], &s["completed_late"]),
        (&json!(1), &json!(1), &json!(1))
    );
    assert_eq!(s["on_time_rate"], 2.0 / 3.0);
    assert_eq!(s["online_rate"], 4.0 / 6.0);
    assert_eq!(s["average_processing_ms"], 29 * DAY / 3 - MIN);

    // One unit (receiving or competent) and one procedure.
    let (_, s) = api.get("/stats?unit=06652&procedure=1.004227").await;
    assert_eq!(
        (s["received"].clone(), s["received_online"].clone()),
        (json!(4), json!(3))
    );
    assert_eq!(s["completed"], 3);
    assert_eq!(s["on_time_rate"], 2.0 / 3.0);
    let (_, s) = api.get("/stats?unit=H22.STNMT").await;
    assert_eq!(
        (s["received"].clone(), s["completed_on_time"].clone()),
        (json!(1), json!(1))
    );
    assert_eq!(s["on_time_rate"], 1.0);
    // Nothing matches: rates are null, not NaN.
    let (_, s) = api.get(&format!("/stats?procedure={B}&from={}", NOW)).await;
    assert_eq!((s["received"].clone(), s["completed"].clone()), (json!(0), json!(0)));
    assert_eq!(
        (s["on_time_rate"].clone(), s["online_rate"].clone()),
        (Value::Null, Value::Null)
    );
    assert_eq!(s["average_processing_ms"], Value::Null);
}

#[tokio::test]
async fn unit_load_and_openapi() {
    let api = serve().await;
    let (status, l) = api.get("/units/06652/load").await;
    assert_eq!(status, 200, "{l}");
    assert_eq!(
        l,
        json!({
            "unit": "06652",
            "at": "2025-11-25T09:00:00+07:00",
            "open": 2,
            "overdue": 1,
            "due_soon": 1,
            "due_soon_hours": 8,
            "open_by_status": {"processing": 2},
        })
    );
    let (_, l) = api.get("/units/06652/load?hours=2").await;
    assert_eq!((l["open"].clone(), l["due_soon"].clone()), (json!(2), json!(0)));
    let (_, l) = api.get("/units/07000/load").await;
    assert_eq!(
        (l["open"].clone(), l["overdue"].clone(), l["due_soon"].clone()),
        (json!(1), json!(0), json!(0))
    );
    let (_, l) = api.get("/units/H22.STNMT/load").await;
    assert_eq!(l["open"], 0);

    let (status, doc) = api.get("/openapi.json").await;
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    let paths: Vec<&String> = doc["paths"].as_object().expect("paths").keys().collect();
    assert_eq!(
        paths,
        ["/dossiers/{code}", "/openapi.json", "/stats", "/units/{code}/load"]
    );
    assert!(doc["paths"]["/dossiers/{code}"]["get"]["responses"]["404"].is_object());
    // Every $ref resolves.
    let text = doc.to_string();
    for r in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = r.split('"').next().expect("name");
        assert!(doc["components"]["schemas"][name].is_object(), "{name}");
    }
}

/// The embedded demo serves the API from SQLite: every answer, byte for byte the JSON
/// PostgreSQL's gives.
#[tokio::test]
async fn the_api_over_sqlite_answers_exactly_as_over_postgres() {
    let pg = serve().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite = Track::connect(&format!("sqlite://{}", dir.path().join("t.db").display()))
        .await
        .expect("sqlite projection");
    let lite = serve_from(sqlite).await;
    let mut paths: Vec<String> = (1..=7).map(|n| format!("/dossiers/H22.06652-251125-{n:04}")).collect();
    paths.extend(
        [
            "/dossiers/dossier-3",
            "/dossiers/nope",
            "/stats",
            "/stats?unit=06652",
            "/stats?unit=H22.STNMT",
            "/stats?procedure=2.000001&from=2025-11-01&to=2025-11-30",
            "/stats?from=2025-11-20",
            "/stats?from=yesterday",
            "/units/06652/load",
            "/units/06652/load?hours=48",
            "/units/07000/load",
        ]
        .map(String::from),
    );
    for path in &paths {
        let (a, b) = (pg.get(path).await, lite.get(path).await);
        assert_eq!(a, b, "{path}");
    }
    // Not vacuous: the answers carry the fixture.
    let (_, stats) = lite.get("/stats").await;
    assert_eq!(stats["completed"], 4, "{stats}");
}
