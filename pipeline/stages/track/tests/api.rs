//! The status API over real PostgreSQL and real HTTP, checked field by field against a
//! small hand-counted fixture.

mod common;

use std::sync::Arc;

use common::*;
use motcua_schemas::{AnyEvent, Channel, Timeliness};
use motcua_security::access::{api_key_digest, new_api_key};
use motcua_track::access::{ApiKeys, Rate};
use motcua_track::api::{self, ApiOptions, ServeLimits};
use motcua_track::{ProjectionDb, ReaderOptions, Track};
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
    // Dossier 2 waited 7 working hours for a supplement.
    v[1].pauses = vec![(NOW - 14 * DAY, NOW - 13 * DAY, 7 * HOUR)];
    v[5].competent_unit = "H22.STNMT".into();
    v[6].receiving_unit = "07000".into();
    v[6].competent_unit = "07000".into();
    v
}

/// The API under test, and keys of each kind of operator.
struct Api {
    base: String,
    client: reqwest::Client,
    /// The province's key (every unit): what `get` sends.
    province: String,
    /// A key of unit 06652.
    commune: String,
}

impl Api {
    async fn get(&self, path: &str) -> (u16, Value) {
        self.get_as(path, Some(&self.province)).await
    }

    async fn get_as(&self, path: &str, key: Option<&str>) -> (u16, Value) {
        let mut r = self.client.get(format!("{}{path}", self.base));
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        answer(r, path).await
    }

    async fn lookup(&self, code: &str, token: &str) -> (u16, Value) {
        let r = self
            .client
            .post(format!("{}/lookup", self.base))
            .json(&json!({"dossier_code": code, "lookup_token": token}));
        answer(r, "/lookup").await
    }
}

async fn answer(r: reqwest::RequestBuilder, path: &str) -> (u16, Value) {
    let r = r.send().await.expect("request");
    let status = r.status().as_u16();
    assert_eq!(
        r.headers().get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/json"),
        "{path}"
    );
    (status, r.json().await.expect("json body"))
}

/// A key file with a province key and a key of unit 06652; the keys themselves.
fn keys() -> (ApiKeys, String, String) {
    let (province, commune) = (new_api_key(), new_api_key());
    let file = format!(
        "[[key]]\nid = \"province\"\nrole = \"province\"\ndigest = \"{}\"\n\n\
         [[key]]\nid = \"commune-06652\"\nrole = \"unit\"\nunit = \"06652\"\ndigest = \"{}\"\n",
        api_key_digest(&province),
        api_key_digest(&commune)
    );
    (ApiKeys::parse(&file).expect("key file"), province, commune)
}

/// Generous limits: these tests are about answers, not floods.
fn roomy(keys: ApiKeys) -> ApiOptions {
    let lots = Rate {
        per_minute: 1_000_000,
        burst: 100_000,
    };
    ApiOptions {
        keys,
        public_rate: lots,
        operator_rate: lots,
        ..ApiOptions::default()
    }
}

async fn serve() -> Api {
    serve_from(Track::new(database().await)).await
}

async fn serve_from(track: Track) -> Api {
    let events: Vec<AnyEvent> = fixture().iter().flat_map(Life::events).collect();
    track.apply(&refs(&events)).await.expect("fixture");
    let (keys, province, commune) = keys();
    let (base, _) = start(track.db().clone(), roomy(keys), ServeLimits::default()).await;
    Api {
        base,
        client: reqwest::Client::new(),
        province,
        commune,
    }
}

async fn start(db: ProjectionDb, options: ApiOptions, limits: ServeLimits) -> (String, std::net::SocketAddr) {
    let app = api::router(db, options, Arc::new(|| NOW));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { api::serve(listener, app, limits).await.expect("serve") });
    (format!("http://{addr}"), addr)
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
    assert_eq!(d["paused_working_ms"], 7 * HOUR, "the pause its routing gave back");
    assert_eq!(d["calendar_version"], "sha256:test-calendar");
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
        json!({"error": {"code": "dossier_not_found", "message": "no dossier with this code"}})
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

/// The figures by definition (docs/statistics.md), counted by hand from the fixture: a
/// dossier is received at its receiving unit by reception time and resolved at its
/// deciding unit by decision time (an hour before delivery here).
#[tokio::test]
async fn statistics_match_the_hand_count() {
    let api = serve().await;
    let (status, s) = api.get("/stats").await;
    assert_eq!(status, 200, "{s}");
    assert_eq!(s["received"], 7);
    assert_eq!(s["received_online"], 5);
    assert_eq!(s["rejected_at_reception"], 0);
    assert_eq!(s["resolved"], 4);
    assert_eq!(s["resolved_early"], 1);
    assert_eq!(s["resolved_on_time"], 2);
    assert_eq!(s["resolved_late"], 1);
    assert_eq!(s["on_time_rate"], 0.75);
    assert_eq!(s["online_rate"], 5.0 / 7.0);
    // Dossier 2 waited 7 working hours for a supplement.
    assert_eq!(
        (s["resolved_paused"].clone(), s["paused_working_hours"].clone()),
        (json!(1), json!(7.0))
    );
    // Open now: 4 (overdue by an hour), 5 and 7.
    assert_eq!((s["pending"].clone(), s["overdue"].clone()), (json!(3), json!(1)));
    assert_eq!((s["withdrawn"].clone(), s["stopped"].clone()), (json!(0), json!(0)));
    // (8 + 12 + 9 + 10) days / 4, each less the hour before delivery and the minute
    // between submission and reception.
    assert_eq!(s["average_processing_ms"], 39 * DAY / 4 - HOUR - MIN);
    assert_eq!(s["average_processing_hours"], 232.98);

    // November: dossier 6 (received 10-16, decided 10-26) drops out.
    let (_, s) = api.get("/stats?from=2025-11-01&to=2025-11-30").await;
    assert_eq!(s["from"], "2025-11-01T00:00:00+07:00");
    assert_eq!(s["to"], "2025-12-01T00:00:00+07:00");
    assert_eq!(s["received"], 6);
    assert_eq!(s["received_online"], 4);
    assert_eq!(
        (&s["resolved_early"], &s["resolved_on_time"], &s["resolved_late"]),
        (&json!(1), &json!(1), &json!(1))
    );
    assert_eq!(s["on_time_rate"], 2.0 / 3.0);
    assert_eq!(s["online_rate"], 4.0 / 6.0);
    assert_eq!(s["average_processing_ms"], 29 * DAY / 3 - HOUR - MIN);

    // One unit and one procedure: received there 1, 2, 4, 6; decided there 1 and 2 (6
    // was handed to the department, and counts there, once).
    let (_, s) = api.get("/stats?unit=06652&procedure=1.004227").await;
    assert_eq!(
        (s["received"].clone(), s["received_online"].clone()),
        (json!(4), json!(3))
    );
    assert_eq!(s["resolved"], 2);
    assert_eq!(s["on_time_rate"], 0.5);
    let (_, s) = api.get("/stats?unit=H22.STNMT").await;
    assert_eq!(
        (s["received"].clone(), s["resolved_on_time"].clone()),
        (json!(0), json!(1))
    );
    assert_eq!(s["on_time_rate"], 1.0);
    // A field: the fixture's procedures are all of the sample's field.
    let (_, s) = api.get("/stats?field=CONSTRUCTION").await;
    assert_eq!((s["received"].clone(), s["resolved"].clone()), (json!(0), json!(0)));
    // As of a past instant: what was known then (dossier 7 not yet received, 3 not yet
    // decided).
    let (_, s) = api.get(&format!("/stats?as_of={}", NOW - 2 * DAY + 30 * MIN)).await;
    assert_eq!((s["received"].clone(), s["resolved"].clone()), (json!(6), json!(3)));
    assert_eq!(s["pending"], 3, "{s}");
    // Nothing matches: rates are null, not NaN.
    let (_, s) = api.get(&format!("/stats?procedure={B}&from={}", NOW)).await;
    assert_eq!((s["received"].clone(), s["resolved"].clone()), (json!(0), json!(0)));
    assert_eq!(
        (s["on_time_rate"].clone(), s["online_rate"].clone()),
        (Value::Null, Value::Null)
    );
    assert_eq!(s["average_processing_ms"], Value::Null);
}

/// The periodic report over the API is the fold over the same events (motcua-stats),
/// row for row, as of now and as of a past instant.
#[tokio::test]
async fn the_report_equals_the_fold_over_the_events() {
    let api = serve().await;
    let mut ledger = motcua_stats::Ledger::new();
    for life in fixture() {
        for e in life.events() {
            ledger.apply(&e);
        }
    }
    // The same log replayed into an empty projection, backwards and twice over (order
    // and redelivery must not matter), in batches of five.
    let replayed = Track::new(database().await);
    let mut log: Vec<AnyEvent> = fixture().iter().flat_map(Life::events).collect();
    log.reverse();
    log.extend(log.clone());
    for batch in log.chunks(5) {
        replayed.apply(&refs(batch)).await.expect("replay");
    }
    let (keys, province, _) = keys();
    let (replay_base, _) = start(replayed.db().clone(), roomy(keys), ServeLimits::default()).await;
    for as_of in [NOW, NOW - 2 * DAY - 30 * MIN, NOW - 25 * DAY] {
        let (status, report) = api.get(&format!("/stats/report?as_of={as_of}")).await;
        assert_eq!(status, 200, "{report}");
        assert_eq!(report, ledger.report(as_of).to_json(), "as of {as_of}");
        let replay: Value = api
            .client
            .get(format!("{replay_base}/stats/report?as_of={as_of}"))
            .bearer_auth(&province)
            .send()
            .await
            .expect("replay report")
            .json()
            .await
            .expect("json");
        assert_eq!(replay, report, "replayed, as of {as_of}");
    }
    assert!(
        ledger.report(NOW).totals().resolved == 4,
        "not vacuous: the fixture resolves four dossiers"
    );
    let csv = api
        .client
        .get(format!("{}/stats/report?format=csv", api.base))
        .bearer_auth(&api.province)
        .send()
        .await
        .expect("csv");
    assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
    assert_eq!(csv.text().await.expect("body"), ledger.report(NOW).to_csv());
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
        [
            "/at-risk",
            "/bottlenecks",
            "/console/",
            "/dossiers/{code}",
            "/load",
            "/lookup",
            "/openapi.json",
            "/pipeline",
            "/stats",
            "/stats/report",
            "/units/{code}/forecast",
            "/units/{code}/load"
        ]
    );
    for operator_path in [
        "/at-risk",
        "/bottlenecks",
        "/load",
        "/pipeline",
        "/dossiers/{code}",
        "/stats",
        "/stats/report",
        "/units/{code}/forecast",
        "/units/{code}/load",
    ] {
        let get = &doc["paths"][operator_path]["get"];
        assert_eq!(get["security"], json!([{"apiKey": []}]), "{operator_path}");
        assert!(get["responses"]["401"].is_object(), "{operator_path}");
    }
    let (status, _) = api.get_as("/openapi.json", None).await;
    assert_eq!(status, 200, "the document itself is public");
    assert!(doc["paths"]["/dossiers/{code}"]["get"]["responses"]["404"].is_object());
    // Every $ref resolves.
    let text = doc.to_string();
    for r in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = r.split('"').next().expect("name");
        assert!(doc["components"]["schemas"][name].is_object(), "{name}");
    }
}

/// Four weeks of Monday mornings (three submissions at 08:1x, five the last week) and two
/// this Monday: the forecast learns the hour, shows this week against it, and is checked
/// on the last week held back (by hand: smoothed 3, 3, 3 → 3, then 0.3 × 5 + 0.7 × 3 = 3.6).
#[tokio::test]
async fn a_center_s_demand_forecast_is_learnt_from_its_weeks_and_checked_on_the_last() {
    let track = Track::new(database().await);
    let monday = NOW - DAY - 9 * HOUR; // Monday 24 Nov 2025 00:00, Hà Nội
    let mut lives = Vec::new();
    let mut n = 100;
    for week in 1..=4i64 {
        for k in 0..if week == 1 { 5 } else { 3 } {
            lives.push(Life::new(n, monday - week * 7 * DAY + 8 * HOUR + 10 * MIN + k * MIN));
            n += 1;
        }
    }
    for k in 0..2 {
        lives.push(Life::new(n, monday + 8 * HOUR + 5 * MIN + k * MIN));
        n += 1;
    }
    // A center that opened this week: no whole week to learn from.
    let mut newcomer = Life::new(n, monday + 9 * HOUR);
    newcomer.receiving_unit = "07001".into();
    lives.push(newcomer);
    let events: Vec<AnyEvent> = lives.iter().flat_map(Life::events).collect();
    track.apply(&refs(&events)).await.expect("history");
    let (keys, province, commune) = keys();
    let (base, _) = start(track.db().clone(), roomy(keys), ServeLimits::default()).await;
    let api = Api {
        base,
        client: reqwest::Client::new(),
        province,
        commune,
    };
    let (status, f) = api.get("/units/06652/forecast?hours=24&weeks=4").await;
    assert_eq!(status, 200, "{f}");
    assert_eq!((f["weeks"].clone(), f["alpha"].clone()), (json!(4), json!(0.3)));
    let next = f["next"].as_array().expect("next");
    assert_eq!(next.len(), 24);
    assert_eq!(next[0], json!({"start": "2025-11-25T09:00:00+07:00", "expected": 0.0}));
    let this_week = f["this_week"].as_array().expect("this week");
    assert_eq!(this_week.len(), 24 + 9, "Monday and Tuesday until 09:00");
    assert_eq!(
        this_week[8],
        json!({"start": "2025-11-24T08:00:00+07:00", "expected": 3.6, "actual": 2})
    );
    assert_eq!(
        f["held_back"],
        json!({
            "week_start": "2025-11-17T00:00:00+07:00",
            "mae_per_hour": 0.012,
            "naive_mae_per_hour": 0.012,
            "actual_total": 5,
            "forecast_total": 3.0
        })
    );
    // Next Monday 08:00 is forecast at 3.6 too.
    let (_, week) = api.get("/units/06652/forecast?hours=168&weeks=4").await;
    let monday_eight = week["next"]
        .as_array()
        .expect("next")
        .iter()
        .find(|h| h["start"] == "2025-12-01T08:00:00+07:00")
        .cloned();
    assert_eq!(
        monday_eight,
        Some(json!({"start": "2025-12-01T08:00:00+07:00", "expected": 3.6}))
    );
    // Asked for twelve weeks, it learns from the four the center has: the weeks before
    // its first dossier are not weeks without demand.
    let (_, twelve) = api.get("/units/06652/forecast?hours=24").await;
    assert_eq!(
        (twelve["weeks"].clone(), twelve["held_back"].clone()),
        (json!(4), f["held_back"].clone())
    );
    let (status, e) = api.get("/units/07000/forecast").await;
    assert_eq!((status, e["error"]["code"].clone()), (404, json!("no_history")), "{e}");
    let (status, e) = api.get("/units/07001/forecast").await;
    assert_eq!(
        (status, e["error"]["message"].as_str()),
        (404, Some("no whole week of history to learn from yet")),
        "{e}"
    );
    for bad in ["hours=0", "weeks=105", "hours=x", "other=1"] {
        let (status, _) = api.get(&format!("/units/06652/forecast?{bad}")).await;
        assert_eq!(status, 400, "{bad}");
    }
    let (status, _) = api.get_as("/units/07000/forecast", Some(&api.commune)).await;
    assert_eq!(status, 403, "a unit's key sees its own unit only");
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
            "/stats?as_of=2025-11-01&field=CERTIFICATION",
            "/stats/report",
            "/stats/report?as_of=2025-10-31",
            "/units/06652/load",
            "/units/06652/load?hours=48",
            "/units/06652/forecast?weeks=4",
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
    assert_eq!(stats["resolved"], 4, "{stats}");
}

/// Operators: without a key nothing but the OpenAPI document; a unit's key sees its unit's
/// dossiers and figures, nothing else.
#[tokio::test]
async fn operators_need_a_key_and_a_unit_key_sees_its_own_unit_only() {
    let api = serve().await;
    for path in [
        "/dossiers/H22.06652-251125-0002",
        "/dossiers/dossier-2",
        "/stats",
        "/units/06652/load",
    ] {
        for key in [None, Some("motcua_0000"), Some(""), Some(&api.province[..20])] {
            let (status, e) = api.get_as(path, key).await;
            assert_eq!(status, 401, "{path} with {key:?}: {e}");
            assert_eq!(e["error"]["code"], "unauthenticated", "{path}");
            assert!(!e.to_string().contains("dossier-2"), "a refusal tells nothing: {e}");
        }
    }
    let r = api
        .client
        .get(format!("{}/stats", api.base))
        .header("authorization", "Basic YWRtaW46YWRtaW4=")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(
        r.headers().get("www-authenticate").and_then(|v| v.to_str().ok()),
        Some("Bearer realm=\"motcua\"")
    );

    let commune = Some(api.commune.as_str());
    // Its own dossier (received at 06652), and one transferred away from it (6: 06652 → STNMT).
    for code in ["H22.06652-251125-0002", "H22.06652-251125-0006"] {
        let (status, d) = api.get_as(&format!("/dossiers/{code}"), commune).await;
        assert_eq!(status, 200, "{code}: {d}");
        assert!(d["history"].as_array().is_some_and(|h| !h.is_empty()));
    }
    // Dossier 7 belongs to unit 07000: exactly the answer for a dossier that does not exist.
    let (status, other) = api.get_as("/dossiers/H22.06652-251125-0007", commune).await;
    let (_, missing) = api.get_as("/dossiers/H22.06652-251125-9999", commune).await;
    assert_eq!((status, &other), (404, &missing));
    let (status, _) = api.get("/dossiers/H22.06652-251125-0007").await;
    assert_eq!(status, 200, "the province sees it");

    // Figures: its unit by default, as the province sees them for that unit.
    let (status, own) = api.get_as("/stats", commune).await;
    assert_eq!(status, 200, "{own}");
    let (_, as_province) = api.get("/stats?unit=06652").await;
    assert_eq!(own, as_province);
    let (_, all) = api.get("/stats").await;
    assert_ne!(own["received"], all["received"], "not the whole province's");
    for path in ["/stats?unit=07000", "/units/07000/load"] {
        let (status, e) = api.get_as(path, commune).await;
        assert_eq!(
            (status, e["error"]["code"].as_str()),
            (403, Some("forbidden")),
            "{path}: {e}"
        );
    }
    let (status, _) = api.get_as("/units/06652/load", commune).await;
    assert_eq!(status, 200);
}

/// Citizens: the code and the receipt's token give the status, dates and next step —
/// no history, no units, no reasons; without the token the API reveals nothing, not
/// even whether the code exists.
#[tokio::test]
async fn a_citizen_with_the_receipt_s_token_is_answered_and_codes_cannot_be_enumerated() {
    let api = serve().await;
    let lives = fixture();
    let four = &lives[3];
    // Typed as a person would: lower case, no hyphens, O for 0.
    let typed = four.lookup_token().to_lowercase().replace('-', "").replace('0', "o");
    let (status, d) = api.lookup(&four.code, &typed).await;
    assert_eq!(status, 200, "{d}");
    let mut fields: Vec<&str> = d.as_object().expect("object").keys().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "completed_at",
            "completed_at_ms",
            "decided_at",
            "decided_at_ms",
            "decision",
            "dossier_code",
            "due_at",
            "due_at_ms",
            "next_step",
            "overdue",
            "procedure_code",
            "received_at",
            "received_at_ms",
            "status",
            "status_at",
            "status_at_ms",
            "status_code",
            "steps",
        ]
    );
    assert_eq!(d["dossier_code"], four.code.as_str());
    assert_eq!(d["status"], "processing");
    assert_eq!(d["due_at_ms"], four.due_at);
    assert_eq!(d["overdue"], true);
    assert_eq!(d["next_step"]["code"], "AWAIT_RESULT");
    let (_, done) = api.lookup(&lives[1].code, &lives[1].lookup_token()).await;
    assert_eq!(
        (done["status_code"].clone(), done["decision"].clone()),
        (json!(10), json!("approved"))
    );

    // Every code of the fixture and some that do not exist, with no token, a wrong one,
    // another dossier's: one and the same answer.
    let refused = json!({"error": {"code": "dossier_not_found", "message": "no dossier with this code"}});
    let mut tries = 0;
    for life in &lives {
        for token in [
            "",
            "7KQ2-M90D-1XYZ-9999",
            &lives[0].lookup_token(),
            "not a token at all",
        ] {
            if token == life.lookup_token() {
                continue;
            }
            let (status, e) = api.lookup(&life.code, token).await;
            assert_eq!((status, &e), (404, &refused), "{} with {token:?}", life.code);
            tries += 1;
        }
    }
    for code in ["H22.06652-251125-0099", "", &"9".repeat(500)] {
        let (status, e) = api.lookup(code, &four.lookup_token()).await;
        assert_eq!((status, &e), (404, &refused), "{code}");
    }
    assert!(tries >= 27, "{tries}");
    // Not a lookup request: 400, and nothing about dossiers.
    for body in [
        json!({"dossier_code": four.code}),
        json!({"dossier_code": four.code, "lookup_token": 1}),
        json!([1]),
    ] {
        let r = api
            .client
            .post(format!("{}/lookup", api.base))
            .json(&body)
            .send()
            .await
            .expect("post");
        assert_eq!(r.status().as_u16(), 400, "{body}");
    }
    let r = api
        .client
        .post(format!("{}/lookup", api.base))
        .header("content-type", "application/json")
        .body(vec![b' '; 64 * 1024])
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 413, "a body beyond 4 KiB is refused");
}

/// A flood from one address is answered 429 while another client is still served, and a
/// flood that does reach the database goes through the API's own small pool: the
/// projection keeps writing meanwhile.
#[tokio::test]
async fn a_flood_is_rate_limited_per_client_and_cannot_stall_the_projection() {
    let (pool, url) = database_with_url().await;
    let track = Track::new(pool.clone());
    let events: Vec<AnyEvent> = fixture().iter().flat_map(Life::events).collect();
    track.apply(&refs(&events)).await.expect("fixture");
    let reader = track
        .reader(
            &url,
            ReaderOptions {
                connections: 2,
                statement_timeout: std::time::Duration::from_millis(500),
            },
        )
        .await
        .expect("reader pool");
    let ProjectionDb::Postgres(reader_pool) = &reader else {
        panic!("a PostgreSQL reader")
    };
    // The reader cancels long statements and cannot write.
    let slow = sqlx::query("SELECT pg_sleep(3)").execute(reader_pool).await;
    assert!(
        slow.as_ref()
            .err()
            .is_some_and(|e| e.to_string().contains("statement timeout")),
        "{slow:?}"
    );
    let write = sqlx::query("DELETE FROM track_dossiers").execute(reader_pool).await;
    assert!(
        write
            .as_ref()
            .err()
            .is_some_and(|e| e.to_string().contains("read-only")),
        "{write:?}"
    );

    // 1. Rate limits: one address gets its burst, then 429 with Retry-After.
    let (keys, province, _) = keys();
    let options = ApiOptions {
        keys: keys.clone(),
        public_rate: Rate {
            per_minute: 60,
            burst: 20,
        },
        ..ApiOptions::default()
    };
    let (base, _) = start(reader.clone(), options, ServeLimits::default()).await;
    let client = reqwest::Client::new();
    let life = &fixture()[3];
    let flood = (0..400).map(|_| {
        let (client, base) = (client.clone(), base.clone());
        let body = json!({"dossier_code": life.code, "lookup_token": life.lookup_token()});
        async move {
            let r = client
                .post(format!("{base}/lookup"))
                .json(&body)
                .send()
                .await
                .expect("post");
            (r.status().as_u16(), r.headers().contains_key("retry-after"))
        }
    });
    let answers = futures::future::join_all(flood).await;
    let ok = answers.iter().filter(|(s, _)| *s == 200).count();
    let limited = answers.iter().filter(|(s, r)| *s == 429 && *r).count();
    assert_eq!(ok + limited, 400, "only answers and 429s with Retry-After: {answers:?}");
    assert!(
        (20..=30).contains(&ok),
        "the burst of 20 and what refilled meanwhile: {ok}"
    );
    let r = client
        .get(format!("{base}/stats"))
        .bearer_auth(&province)
        .send()
        .await
        .expect("stats");
    assert_eq!(r.status().as_u16(), 200, "another client is still served");

    // 2. A flood the limits let through (generous limits) keeps to the reader's two
    // connections, and the projection writes as usual meanwhile.
    let lots = Rate {
        per_minute: 10_000_000,
        burst: 1_000_000,
    };
    let options = ApiOptions {
        keys,
        public_rate: lots,
        operator_rate: lots,
        ..ApiOptions::default()
    };
    let (base, _) = start(reader.clone(), options, ServeLimits::default()).await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flooders: Vec<_> = (0..32)
        .map(|_| {
            let (client, base, province, stop) = (client.clone(), base.clone(), province.clone(), stop.clone());
            tokio::spawn(async move {
                let mut answered = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let r = client.get(format!("{base}/stats")).bearer_auth(&province).send().await;
                    answered += u32::from(r.is_ok_and(|r| r.status().is_success()));
                }
                answered
            })
        })
        .collect();
    let mut slowest = std::time::Duration::ZERO;
    let mut most_api_connections = 0i64;
    for n in 0..100u32 {
        let mut life = Life::new(1_000 + n, NOW - DAY);
        life.code = format!("H22.06652-251124-{:04}", 1_000 + n);
        let batch = life.events();
        let t = std::time::Instant::now();
        track
            .apply(&refs(&batch))
            .await
            .expect("the projection writes during the flood");
        slowest = slowest.max(t.elapsed());
        let api_connections: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'motcua-status-api'",
        )
        .fetch_one(&pool)
        .await
        .expect("pg_stat_activity");
        most_api_connections = most_api_connections.max(api_connections);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut answered = 0;
    for f in flooders {
        answered += f.await.expect("flooder");
    }
    assert!(answered > 100, "the flood was real: {answered} answers");
    assert!(
        most_api_connections <= 2,
        "the API kept to its pool: {most_api_connections}"
    );
    assert!(most_api_connections >= 1, "the flood went through the reader pool");
    assert!(
        slowest < std::time::Duration::from_secs(2),
        "a projection batch took {slowest:?} during the flood"
    );
    let written: i64 = sqlx::query_scalar("SELECT count(*) FROM track_dossiers")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(written, 107);
}

/// Slow clients: one that never finishes its request head is disconnected after the
/// header timeout; one that never finishes its body gets 503 after the request timeout.
#[tokio::test]
async fn slow_clients_are_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let track = Track::new(database().await);
    let options = ApiOptions {
        request_timeout: std::time::Duration::from_millis(800),
        ..ApiOptions::default()
    };
    let limits = ServeLimits {
        header_timeout: std::time::Duration::from_millis(800),
        ..ServeLimits::default()
    };
    let (base, addr) = start(track.db().clone(), options, limits).await;

    let mut slowloris = tokio::net::TcpStream::connect(addr).await.expect("connect");
    slowloris
        .write_all(b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    let t = std::time::Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), slowloris.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the connection was not closed");
    assert!(t.elapsed() < std::time::Duration::from_secs(5), "{:?}", t.elapsed());

    let mut slow_body = tokio::net::TcpStream::connect(addr).await.expect("connect");
    slow_body
        .write_all(b"POST /lookup HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"dossier")
        .await
        .expect("write");
    let mut answer = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(10), slow_body.read_to_end(&mut answer))
        .await
        .expect("answered in time")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("\"timeout\""), "{answer}");

    // Meanwhile everyone else is served.
    let r = reqwest::get(format!("{base}/openapi.json")).await.expect("get");
    assert_eq!(r.status().as_u16(), 200);
}

/// The result signers' keys are public, at the well-known address.
#[tokio::test]
async fn the_jwk_set_is_served_to_anyone_when_configured() {
    let track = Track::new(database().await);
    let set = r#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"k1","use":"sig","alg":"EdDSA"}]}"#;
    let options = ApiOptions {
        jwks: Some(set.to_owned()),
        ..ApiOptions::default()
    };
    let (base, _) = start(track.db().clone(), options, ServeLimits::default()).await;
    let r = reqwest::get(format!("{base}/.well-known/jwks.json"))
        .await
        .expect("get");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        r.headers().get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/jwk-set+json")
    );
    assert_eq!(r.text().await.expect("body"), set);
    let (base, _) = start(track.db().clone(), ApiOptions::default(), ServeLimits::default()).await;
    let r = reqwest::get(format!("{base}/.well-known/jwks.json"))
        .await
        .expect("get");
    assert_eq!(r.status().as_u16(), 404);
}

/// Dossier 4 is past its due time; its unit apologises and gives a new date: it is
/// tracked against that date (not overdue, not in the unit's overdue count), the legal
/// due time stays, and the history shows the apology.
#[tokio::test]
async fn a_new_appointment_moves_the_date_a_dossier_is_tracked_against() {
    let track = Track::new(database().await);
    let reappointed: AnyEvent = motcua_schemas::DossierReappointed {
        event_id: "dossier-4-reappointed".into(),
        dossier_id: "dossier-4".into(),
        dossier_code: "H22.06652-251125-0004".into(),
        competent_unit_code: "06652".into(),
        reason_code: "FIELD_VERIFICATION_NEEDED".into(),
        apology_reference: "06652-XL-0004".into(),
        previous_due_at: NOW - HOUR,
        new_due_at: NOW + 2 * DAY,
        issued_by: "officer-1".into(),
        issued_at: NOW - 2 * HOUR,
        traceparent: None,
    }
    .into();
    // Applied before the rest of the dossier's life: the projection does not mind.
    track.apply(&[&reappointed]).await.expect("applied");
    let api = serve_from(track).await;
    let (status, d) = api.get("/dossiers/dossier-4").await;
    assert_eq!(status, 200, "{d}");
    assert_eq!(d["due_at_ms"], NOW - HOUR, "the legal due time stays");
    assert_eq!(d["appointment_due_at_ms"], NOW + 2 * DAY);
    assert_eq!(d["overdue"], false, "tracked against the new date");
    let h = d["history"].as_array().expect("history");
    let apology = h
        .iter()
        .find(|e| e["event"] == "dossier.reappointed")
        .expect("the apology in the history");
    assert_eq!(apology["stage"], "backoffice");
    assert_eq!(apology["reasons"][0]["code"], "FIELD_VERIFICATION_NEEDED");
    let (_, l) = api.get("/units/06652/load").await;
    assert_eq!((l["open"].clone(), l["overdue"].clone()), (json!(2), json!(0)));
}

/// With the calendar, a dossier's answer shows each step's working time against the
/// budget of its procedure (1.004227: 3 working days, the default plan).
#[tokio::test]
async fn a_dossier_s_steps_against_their_budgets() {
    let track = Track::new(database().await);
    let events: Vec<AnyEvent> = fixture().iter().flat_map(Life::events).collect();
    track.apply(&refs(&events)).await.expect("fixture");
    let (keys, province, _) = keys();
    let reference = motcua_reference::Reference::embedded().expect("reference");
    let tables = motcua_routing::RoutingTables::embedded(&reference).expect("tables");
    let calendar = tables.calendar().clone();
    let mut options = roomy(keys);
    options.steps = Some(Arc::new(tables));
    let (base, _) = start(track.db().clone(), options, ServeLimits::default()).await;
    let d: Value = reqwest::Client::new()
        .get(format!("{base}/dossiers/H22.06652-251125-0002"))
        .bearer_auth(&province)
        .send()
        .await
        .expect("dossier")
        .json()
        .await
        .expect("json");
    let steps = d["steps"].as_array().expect("steps");
    let names: Vec<&str> = steps.iter().filter_map(|s| s["step"].as_str()).collect();
    assert_eq!(names, ["reception", "verification", "appraisal", "approval", "result"]);
    let budgets: Vec<i64> = steps.iter().filter_map(|s| s["budget_ms"].as_i64()).collect();
    assert_eq!(budgets, [4_320_000, 8_640_000, 51_840_000, 12_960_000, 8_640_000]);
    // Received 1 min after submission, verified 4 min later; a finished dossier has no
    // current step.
    assert_eq!(steps[0]["working_ms"], MIN);
    assert_eq!(steps[1]["working_ms"], 4 * MIN, "{d}");
    assert!(steps.iter().all(|s| s["current"] == false), "{d}");
    // The supplement wait (day -14 to day -13) falls in appraisal and is not counted.
    let work = |a: i64, b: i64| calendar.working_ms_between(a, b).expect("in range");
    let verified = NOW - 15 * DAY + 5 * MIN;
    let appraised = NOW - 3 * DAY - 2 * HOUR;
    let waited = work(NOW - 14 * DAY, NOW - 13 * DAY);
    assert!(waited > 0);
    assert_eq!(steps[2]["working_ms"], work(verified, appraised) - waited, "{d}");
    // Without the calendar: no steps (and the rest as before).
    let api = serve().await;
    let (_, d) = api.get("/dossiers/H22.06652-251125-0002").await;
    assert!(d["steps"].is_null());
}

/// The API with the calendar (step budgets) and, if given, the pipeline's operations.
async fn serve_with(operations: Option<Arc<dyn motcua_track::ops::Operations>>) -> Api {
    let track = Track::new(database().await);
    let events: Vec<AnyEvent> = fixture().iter().flat_map(Life::events).collect();
    track.apply(&refs(&events)).await.expect("fixture");
    let (keys, province, commune) = keys();
    let reference = motcua_reference::Reference::embedded().expect("reference");
    let options = ApiOptions {
        steps: Some(Arc::new(
            motcua_routing::RoutingTables::embedded(&reference).expect("tables"),
        )),
        operations,
        ..roomy(keys)
    };
    let (base, _) = start(track.db().clone(), options, ServeLimits::default()).await;
    Api {
        base,
        client: reqwest::Client::new(),
        province,
        commune,
    }
}

#[tokio::test]
async fn the_load_of_every_center_and_the_dossiers_at_risk() {
    let api = serve().await;
    let (status, l) = api.get("/load").await;
    assert_eq!(status, 200, "{l}");
    // Open: #4 (overdue by 1 h) and #5 (due in 3 h) at 06652, #7 at 07000; busiest first.
    assert_eq!(
        (l["open"].as_i64(), l["overdue"].as_i64(), l["due_soon"].as_i64()),
        (Some(3), Some(1), Some(1))
    );
    let units: Vec<(&str, i64)> = l["units"]
        .as_array()
        .expect("units")
        .iter()
        .map(|u| (u["unit"].as_str().expect("unit"), u["open"].as_i64().expect("open")))
        .collect();
    assert_eq!(units[..2], [("06652", 2), ("07000", 1)], "{l}");
    // A unit's key sees its own unit only.
    let (status, own) = api.get_as("/load", Some(&api.commune)).await;
    assert_eq!(
        (status, own["open"].as_i64(), own["unit"].as_str()),
        (200, Some(2), Some("06652"))
    );
    assert_eq!(api.get_as("/load?unit=07000", Some(&api.commune)).await.0, 403);
    assert_eq!(api.get_as("/load", None).await.0, 401);
    assert_eq!(api.get("/load?hours=0").await.0, 400);

    // At risk within 8 h: #4 (overdue) then #5, with the step each is in.
    let (status, r) = api.get("/at-risk").await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(
        (r["at_risk"].as_i64(), r["overdue"].as_i64(), r["due_soon"].as_i64()),
        (Some(2), Some(1), Some(1))
    );
    let listed: Vec<(&str, bool, &str)> = r["dossiers"]
        .as_array()
        .expect("dossiers")
        .iter()
        .map(|d| {
            (
                d["dossier_code"].as_str().expect("code"),
                d["overdue"].as_bool().expect("overdue"),
                d["step"].as_str().expect("step"),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            ("H22.06652-251125-0004", true, "appraisal"),
            ("H22.06652-251125-0005", false, "appraisal")
        ]
    );
    // Ten days ahead takes #7 too; 07000's key-less view of another unit is refused.
    assert_eq!(api.get("/at-risk?hours=300").await.1["at_risk"], 3);
    assert_eq!(api.get("/at-risk?unit=07000").await.1["at_risk"], 0);
    assert_eq!(api.get_as("/at-risk?unit=07000", Some(&api.commune)).await.0, 403);
    assert_eq!(
        api.get("/at-risk?limit=1").await.1["dossiers"].as_array().map(Vec::len),
        Some(1)
    );
}

#[tokio::test]
async fn bottlenecks_by_step_procedure_and_unit() {
    assert_eq!(
        serve().await.get("/bottlenecks").await.1["error"]["code"],
        "not_configured",
        "no calendar, no working hours"
    );
    let api = serve_with(None).await;
    let (status, b) = api.get("/bottlenecks").await;
    assert_eq!(status, 200, "{b}");
    // Received in the last 30 days: all but #6.
    assert_eq!(b["dossiers"], 6);
    let step = |name: &str| {
        b["steps"]
            .as_array()
            .expect("steps")
            .iter()
            .find(|s| s["step"] == name)
            .cloned()
            .expect(name)
    };
    assert_eq!(step("reception")["finished"], 6);
    // #1–#3 decided (no appraisal boundary of their own: appraisal runs to the decision);
    // #4, #5 and #7 are in appraisal now.
    assert_eq!(
        (
            step("appraisal")["finished"].as_u64(),
            step("appraisal")["running"].as_u64()
        ),
        (Some(3), Some(3))
    );
    assert_eq!(step("result")["finished"], 3);
    let group = |list: &str, code: &str| {
        b[list]
            .as_array()
            .expect(list)
            .iter()
            .find(|g| g["code"] == code)
            .cloned()
            .unwrap_or_else(|| panic!("{list} {code}: {b}"))
    };
    // 06652: #1–#5; #2 late, #4 overdue. Listed first: it misses most.
    let u = group("units", "06652");
    assert_eq!(
        (
            u["received"].as_u64(),
            u["resolved"].as_u64(),
            u["late"].as_u64(),
            u["overdue"].as_u64(),
            u["missed"].as_u64()
        ),
        (Some(5), Some(3), Some(1), Some(1), Some(2))
    );
    assert_eq!(b["units"][0]["code"], "06652");
    assert_eq!(group("units", "07000")["missed"], 0);
    let p = group("procedures", "1.004227");
    assert_eq!((p["received"].as_u64(), p["missed"].as_u64()), (Some(4), Some(2)));
    assert_eq!(group("procedures", B)["missed"], 0);
    // A unit's key: its own unit only (07000's #7 left out).
    let (_, own) = api.get_as("/bottlenecks", Some(&api.commune)).await;
    assert_eq!(
        (own["dossiers"].as_u64(), own["unit"].as_str()),
        (Some(5), Some("06652"))
    );
    // A period that holds only #6.
    // The citizen sees the steps too (on the calendar): #4 is in appraisal.
    let four = &fixture()[3];
    let (_, d) = api.lookup(&four.code, &four.lookup_token()).await;
    let steps: Vec<(&str, bool)> = d["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| (s["step"].as_str().expect("step"), s["current"] == true))
        .collect();
    assert_eq!(
        steps,
        [
            ("reception", false),
            ("verification", false),
            ("appraisal", true),
            ("approval", false),
            ("result", false)
        ]
    );
    let (_, old) = api.get("/bottlenecks?from=2025-10-01&to=2025-10-31").await;
    assert_eq!(old["dossiers"], 1, "{old}");
    assert_eq!(api.get("/bottlenecks?from=2025-11-01&to=2025-10-01").await.0, 400);
}

/// The pipeline as a test sets it: the lag of two stages, one dead letter, and a waiting
/// list that cannot be read.
struct Pipeline;

impl motcua_track::ops::Operations for Pipeline {
    fn lag(&self) -> motcua_track::ops::OpsFuture<'_, Vec<motcua_track::ops::StageLag>> {
        Box::pin(async {
            Ok(vec![
                motcua_track::ops::StageLag {
                    stage: "intake".into(),
                    committed: 10,
                    lag: 0,
                },
                motcua_track::ops::StageLag {
                    stage: "verify".into(),
                    committed: 7,
                    lag: 3,
                },
            ])
        })
    }

    fn dead_letters(
        &self,
        since_ms: i64,
        latest: usize,
    ) -> motcua_track::ops::OpsFuture<'_, motcua_track::ops::DeadLetters> {
        Box::pin(async move {
            assert_eq!((since_ms, latest), (NOW - DAY, 20), "the last 24 hours, the newest 20");
            Ok(motcua_track::ops::DeadLetters {
                since_ms,
                total: 1,
                by_cause: vec![motcua_track::ops::DeadLetterCause {
                    reason_code: "BAD_MAGIC_BYTE".into(),
                    origin_topic: "dossier.submitted".into(),
                    stage: "intake".into(),
                    count: 1,
                }],
                latest: vec![motcua_track::ops::DeadLetterLine {
                    id: "0:7".into(),
                    failed_at_ms: NOW - HOUR,
                    origin_topic: "dossier.submitted".into(),
                    stage: "intake".into(),
                    reason_code: "BAD_MAGIC_BYTE".into(),
                    replay_count: 0,
                }],
            })
        })
    }

    fn waiting(&self, _limit: i64) -> motcua_track::ops::OpsFuture<'_, motcua_track::ops::Waiting> {
        Box::pin(async { Err("the store is unreachable".to_owned()) })
    }
}

#[tokio::test]
async fn the_pipeline_s_lag_dead_letters_and_waiting_dossiers_for_the_province() {
    assert_eq!(
        serve().await.get("/pipeline").await.1["error"]["code"],
        "not_configured"
    );
    let api = serve_with(Some(Arc::new(Pipeline))).await;
    let (status, p) = api.get("/pipeline").await;
    assert_eq!(status, 200, "{p}");
    assert_eq!(p["lag"][1], json!({"stage": "verify", "committed": 7, "lag": 3}));
    assert_eq!(p["dead_letters"]["total"], 1);
    // Every instant also in Vietnam time.
    assert_eq!(p["dead_letters"]["latest"][0]["failed_at"], "2025-11-25T08:00:00+07:00");
    assert_eq!(p["dead_letters"]["since"], "2025-11-24T09:00:00+07:00");
    // A part that cannot be read says why; the others still answer.
    assert_eq!(p["waiting"]["unavailable"], "the store is unreachable");
    // The pipeline is the province's: a unit's key is refused.
    assert_eq!(api.get_as("/pipeline", Some(&api.commune)).await.0, 403);
    assert_eq!(api.get_as("/pipeline", None).await.0, 401);
}

#[tokio::test]
async fn the_console_is_served_with_a_strict_content_security_policy() {
    let api = serve().await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let root = client.get(format!("{}/", api.base)).send().await.expect("GET /");
    assert!(root.status().is_redirection());
    assert_eq!(root.headers()["location"], "/console/");
    for (path, kind) in [
        ("/console/", "text/html"),
        ("/console/console.js", "text/javascript"),
        ("/console/console.css", "text/css"),
    ] {
        let r = client.get(format!("{}{path}", api.base)).send().await.expect(path);
        assert_eq!(r.status(), 200, "{path}");
        let h = r.headers();
        assert!(h["content-type"].to_str().expect("type").starts_with(kind), "{path}");
        let csp = h["content-security-policy"].to_str().expect("csp");
        assert!(
            csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
            "{csp}"
        );
        assert_eq!(h["x-content-type-options"], "nosniff");
        let body = r.text().await.expect("body");
        if path == "/console/" {
            // No inline script or handler: the policy would block it.
            assert!(
                !body.contains("<script>") && !body.contains(" onclick="),
                "inline script"
            );
            assert!(body.contains("<script src=\"console.js\" defer></script>"));
        }
    }
    for missing in [
        "/console/other.js",
        "/console/..%2Fsrc%2Flib.rs",
        "/console/index.html.bak",
    ] {
        let r = client
            .get(format!("{}{missing}", api.base))
            .send()
            .await
            .expect(missing);
        assert_eq!(r.status(), 404, "{missing}");
    }
}
