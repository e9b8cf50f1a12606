//! The status API (axum): dossier status and history, statistics, unit load, and the
//! OpenAPI document. Errors are JSON: `{"error": {"code": "...", "message": "..."}}`.
//!
//! Times are given twice: `*_ms` (ms since the epoch, as in the events) and an ISO 8601
//! string in Vietnam's time (UTC+7).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::time::{format_local, parse_instant};
use crate::ProjectionDb;
use motcua_schemas::DossierStatus;

/// The clock of the API (overdue and due-soon are relative to it).
pub type Now = Arc<dyn Fn() -> i64 + Send + Sync>;

#[derive(Clone)]
struct AppState {
    db: ProjectionDb,
    now: Now,
}

/// The API over a migrated PostgreSQL projection, on the system clock.
pub fn router(pool: PgPool) -> Router {
    router_with_clock(pool, Arc::new(crate::now_ms))
}

/// The API with a given clock (tests, replays).
pub fn router_with_clock(pool: PgPool, now: Now) -> Router {
    router_over(ProjectionDb::Postgres(pool), now)
}

/// The API over either projection database (the embedded demo serves it from SQLite).
pub fn router_over(db: ProjectionDb, now: Now) -> Router {
    Router::new()
        .route("/dossiers/{code}", get(dossier))
        .route("/stats", get(stats))
        .route("/units/{code}/load", get(unit_load))
        .route("/openapi.json", get(openapi))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint") })
        .with_state(AppState { db, now })
}

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        tracing::error!(error = %e, "status API database error");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the projection database is unavailable",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"error": {"code": self.code, "message": self.message}})),
        )
            .into_response()
    }
}

type ApiResult = Result<Json<Value>, ApiError>;

fn ts(ms: Option<i64>) -> Value {
    ms.map_or(Value::Null, |m| Value::String(format_local(m)))
}

fn status_name(code: Option<i32>) -> Value {
    code.and_then(DossierStatus::from_code)
        .map_or(Value::Null, |s| Value::String(s.as_str().to_owned()))
}

fn is_open(code: Option<i32>) -> bool {
    code.and_then(DossierStatus::from_code)
        .is_some_and(DossierStatus::is_open)
}

#[derive(Debug, sqlx::FromRow)]
struct DossierRow {
    dossier_id: String,
    dossier_code: Option<String>,
    procedure_code: Option<String>,
    receiving_unit: Option<String>,
    competent_unit: Option<String>,
    channel: Option<String>,
    submitted_at: Option<i64>,
    received_at: Option<i64>,
    due_at: Option<i64>,
    decided_at: Option<i64>,
    decision: Option<String>,
    completed_at: Option<i64>,
    timeliness: Option<String>,
    status_code: Option<i32>,
    status_at: Option<i64>,
}

#[derive(Debug, sqlx::FromRow)]
struct HistoryRow {
    event_id: String,
    event: String,
    status_code: Option<i32>,
    stage: String,
    /// JSON text (the column is JSONB on PostgreSQL, TEXT on SQLite).
    reasons: String,
    occurred_at: i64,
}

const DOSSIER_COLUMNS: &str = "dossier_id, dossier_code, procedure_code, receiving_unit, competent_unit, channel,
    submitted_at, received_at, due_at, decided_at, decision, completed_at, timeliness, status_code, status_at";

/// `GET /dossiers/{code}`: by dossier code, or by dossier id.
async fn dossier(State(s): State<AppState>, Path(code): Path<String>) -> ApiResult {
    let by_code =
        format!("SELECT {DOSSIER_COLUMNS} FROM track_dossiers WHERE dossier_code = $1 ORDER BY received_at LIMIT 1");
    let by_code: Option<DossierRow> = on_db!(&s.db, |p| sqlx::query_as(&by_code)
        .bind(&code)
        .fetch_optional(p)
        .await?);
    let by_id = format!("SELECT {DOSSIER_COLUMNS} FROM track_dossiers WHERE dossier_id = $1");
    let row = match by_code {
        Some(r) => r,
        None => on_db!(&s.db, |p| sqlx::query_as(&by_id).bind(&code).fetch_optional(p).await?).ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "dossier_not_found",
                format!("no dossier with code {code}"),
            )
        })?,
    };
    let history_sql =
        "SELECT event_id, event, status_code, stage, CAST(reasons AS TEXT) AS reasons, occurred_at FROM track_history
         WHERE dossier_id = $1 ORDER BY occurred_at, event_id";
    let history: Vec<HistoryRow> = on_db!(&s.db, |p| sqlx::query_as(history_sql)
        .bind(&row.dossier_id)
        .fetch_all(p)
        .await?);
    let now = (s.now)();
    let overdue = is_open(row.status_code) && row.due_at.is_some_and(|d| d < now);
    let history: Vec<Value> = history
        .into_iter()
        .map(|h| {
            json!({
                "event_id": h.event_id,
                "event": h.event,
                "status": status_name(h.status_code),
                "status_code": h.status_code,
                "stage": h.stage,
                "reasons": serde_json::from_str::<Value>(&h.reasons).unwrap_or_else(|_| json!([])),
                "occurred_at": format_local(h.occurred_at),
                "occurred_at_ms": h.occurred_at,
            })
        })
        .collect();
    Ok(Json(json!({
        "dossier_id": row.dossier_id,
        "dossier_code": row.dossier_code,
        "procedure_code": row.procedure_code,
        "receiving_unit": row.receiving_unit,
        "competent_unit": row.competent_unit,
        "channel": row.channel,
        "status": status_name(row.status_code),
        "status_code": row.status_code,
        "status_at": ts(row.status_at),
        "status_at_ms": row.status_at,
        "submitted_at": ts(row.submitted_at),
        "submitted_at_ms": row.submitted_at,
        "received_at": ts(row.received_at),
        "received_at_ms": row.received_at,
        "due_at": ts(row.due_at),
        "due_at_ms": row.due_at,
        "decided_at": ts(row.decided_at),
        "decided_at_ms": row.decided_at,
        "decision": row.decision,
        "completed_at": ts(row.completed_at),
        "completed_at_ms": row.completed_at,
        "overdue": overdue,
        "timeliness": row.timeliness,
        "history": history,
    })))
}

fn params(q: &HashMap<String, String>, allowed: &[&str]) -> Result<(), ApiError> {
    let mut unknown: Vec<&str> = q.keys().map(String::as_str).filter(|k| !allowed.contains(k)).collect();
    unknown.sort_unstable();
    match unknown.first() {
        Some(k) => Err(ApiError::bad_request(format!(
            "unknown query parameter {k:?} (allowed: {})",
            allowed.join(", ")
        ))),
        None => Ok(()),
    }
}

fn instant(q: &HashMap<String, String>, name: &str, end_of_day: bool) -> Result<Option<i64>, ApiError> {
    q.get(name)
        .map(|v| {
            parse_instant(v, end_of_day).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "{name}={v:?} is not a date (YYYY-MM-DD, Vietnam time) or milliseconds since the epoch"
                ))
            })
        })
        .transpose()
}

fn code_param<'a>(q: &'a HashMap<String, String>, name: &str) -> Result<Option<&'a str>, ApiError> {
    match q.get(name).map(String::as_str) {
        Some("") => Err(ApiError::bad_request(format!("{name} must not be empty"))),
        Some(v) if v.len() > 64 || v.chars().any(char::is_control) => {
            Err(ApiError::bad_request(format!("{name} is not a valid code")))
        }
        other => Ok(other),
    }
}

#[derive(Debug, sqlx::FromRow)]
struct StatsRow {
    received: i64,
    received_online: i64,
    early: i64,
    on_time: i64,
    late: i64,
    avg_processing_ms: Option<f64>,
}

/// `GET /stats?unit=&procedure=&from=&to=`: dossiers received in `[from, to)` (by
/// reception time), dossiers completed in `[from, to)` (by completion time). `unit`
/// matches the receiving or the competent unit.
async fn stats(State(s): State<AppState>, Query(q): Query<HashMap<String, String>>) -> ApiResult {
    params(&q, &["unit", "procedure", "from", "to"])?;
    let unit = code_param(&q, "unit")?;
    let procedure = code_param(&q, "procedure")?;
    let from = instant(&q, "from", false)?;
    let to = instant(&q, "to", true)?;
    if let (Some(f), Some(t)) = (from, to) {
        if f >= t {
            return Err(ApiError::bad_request("from must be before to"));
        }
    }
    let stats_sql = "SELECT
            count(*) FILTER (WHERE received_at >= $3 AND received_at < $4) AS received,
            count(*) FILTER (WHERE received_at >= $3 AND received_at < $4 AND channel = 'online') AS received_online,
            count(*) FILTER (WHERE completed_at >= $3 AND completed_at < $4 AND timeliness = 'early') AS early,
            count(*) FILTER (WHERE completed_at >= $3 AND completed_at < $4 AND timeliness = 'on_time') AS on_time,
            count(*) FILTER (WHERE completed_at >= $3 AND completed_at < $4 AND timeliness = 'late') AS late,
            CAST(avg(completed_at - received_at) FILTER (WHERE completed_at >= $3 AND completed_at < $4) AS DOUBLE PRECISION)
                AS avg_processing_ms
         FROM track_dossiers
         WHERE (CAST($1 AS TEXT) IS NULL OR receiving_unit = $1 OR competent_unit = $1)
           AND (CAST($2 AS TEXT) IS NULL OR procedure_code = $2)";
    let row: StatsRow = on_db!(&s.db, |p| sqlx::query_as(stats_sql)
        .bind(unit)
        .bind(procedure)
        .bind(from.unwrap_or(i64::MIN))
        .bind(to.unwrap_or(i64::MAX))
        .fetch_one(p)
        .await?);
    let completed = row.early + row.on_time + row.late;
    let ratio = |n: i64, d: i64| {
        if d == 0 {
            Value::Null
        } else {
            json!(n as f64 / d as f64)
        }
    };
    Ok(Json(json!({
        "unit": unit,
        "procedure": procedure,
        "from": ts(from),
        "to": ts(to),
        "received": row.received,
        "received_online": row.received_online,
        "completed": completed,
        "completed_early": row.early,
        "completed_on_time": row.on_time,
        "completed_late": row.late,
        "on_time_rate": ratio(row.early + row.on_time, completed),
        "online_rate": ratio(row.received_online, row.received),
        "average_processing_ms": row.avg_processing_ms.map(|v| v.round() as i64),
        "average_processing_hours": row.avg_processing_ms.map(|v| (v / 36_000.0).round() / 100.0),
    })))
}

#[derive(Debug, sqlx::FromRow)]
struct LoadRow {
    status_code: i32,
    open: i64,
    overdue: i64,
    due_soon: i64,
}

/// `GET /units/{code}/load?hours=`: open dossiers at the unit (its competent unit, or its
/// receiving unit until routed), those overdue, and those due within `hours` (wall-clock,
/// default 8).
async fn unit_load(
    State(s): State<AppState>,
    Path(code): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    params(&q, &["hours"])?;
    let hours: i64 = match q.get("hours") {
        None => 8,
        Some(h) => h
            .parse()
            .ok()
            .filter(|h| (1..=24 * 365).contains(h))
            .ok_or_else(|| ApiError::bad_request(format!("hours={h:?} must be a whole number from 1 to 8760")))?,
    };
    let now = (s.now)();
    static LOAD_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "SELECT status_code,
                count(*) AS open,
                count(*) FILTER (WHERE due_at < $2) AS overdue,
                count(*) FILTER (WHERE due_at >= $2 AND due_at < $3) AS due_soon
         FROM track_dossiers
         WHERE COALESCE(competent_unit, receiving_unit) = $1 AND status_code IN ({open})
         GROUP BY status_code ORDER BY status_code",
            open = crate::projection::sql_codes(DossierStatus::is_open)
        )
    });
    let load_sql = LOAD_SQL.as_str();
    let rows: Vec<LoadRow> = on_db!(&s.db, |p| sqlx::query_as(load_sql)
        .bind(&code)
        .bind(now)
        .bind(now + hours * 3_600_000)
        .fetch_all(p)
        .await?);
    let by_status: serde_json::Map<String, Value> = rows
        .iter()
        .map(|r| {
            let name = DossierStatus::from_code(r.status_code).map_or("unknown", DossierStatus::as_str);
            (name.to_owned(), json!(r.open))
        })
        .collect();
    Ok(Json(json!({
        "unit": code,
        "at": format_local(now),
        "open": rows.iter().map(|r| r.open).sum::<i64>(),
        "overdue": rows.iter().map(|r| r.overdue).sum::<i64>(),
        "due_soon": rows.iter().map(|r| r.due_soon).sum::<i64>(),
        "due_soon_hours": hours,
        "open_by_status": by_status,
    })))
}

async fn openapi() -> Json<Value> {
    Json(openapi_document())
}

/// The OpenAPI 3 document of this API.
pub fn openapi_document() -> Value {
    let error = json!({"$ref": "#/components/schemas/Error"});
    let err = |d: &str| json!({"description": d, "content": {"application/json": {"schema": error}}});
    let time = json!({"type": ["string", "null"], "format": "date-time", "description": "ISO 8601, UTC+7"});
    let ms = json!({"type": ["integer", "null"], "description": "ms since the Unix epoch"});
    let instant_param = |name: &str, d: &str| {
        json!({"name": name, "in": "query", "required": false, "description": d,
               "schema": {"type": "string", "examples": ["2025-11-25", "1764036000000"]}})
    };
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "motcua status API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Status and history of administrative-procedure dossiers, statistics and unit load, from the track stage's projection. Status codes are the national public service portal's (1 registered … 10 result returned). Overdue is derived from the due time at request time."
        },
        "paths": {
            "/dossiers/{code}": {"get": {
                "summary": "A dossier's current status, due time and full history",
                "parameters": [{"name": "code", "in": "path", "required": true,
                    "description": "dossier code (<agency>-<YYMMDD>-<NNNN>) or dossier id",
                    "schema": {"type": "string"}}],
                "responses": {
                    "200": {"description": "the dossier", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Dossier"}}}},
                    "404": err("no dossier with this code (code dossier_not_found)"),
                    "503": err("the projection database is unavailable")
                }
            }},
            "/stats": {"get": {
                "summary": "Received and completed dossiers, on-time and online rates, average processing time",
                "parameters": [
                    {"name": "unit", "in": "query", "required": false, "description": "receiving or competent unit code", "schema": {"type": "string"}},
                    {"name": "procedure", "in": "query", "required": false, "description": "procedure code", "schema": {"type": "string"}},
                    instant_param("from", "start of the period (inclusive); a date is its midnight in UTC+7"),
                    instant_param("to", "end of the period (exclusive); a date includes that whole day")
                ],
                "responses": {
                    "200": {"description": "statistics", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Stats"}}}},
                    "400": err("unknown parameter, bad date, or from not before to (code bad_request)"),
                    "503": err("the projection database is unavailable")
                }
            }},
            "/units/{code}/load": {"get": {
                "summary": "Open, overdue and soon-due dossiers of a unit",
                "parameters": [
                    {"name": "code", "in": "path", "required": true, "description": "unit code", "schema": {"type": "string"}},
                    {"name": "hours", "in": "query", "required": false, "description": "due-soon window in hours (default 8)", "schema": {"type": "integer", "minimum": 1, "maximum": 8760}}
                ],
                "responses": {
                    "200": {"description": "the unit's load", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/UnitLoad"}}}},
                    "400": err("bad parameter (code bad_request)"),
                    "503": err("the projection database is unavailable")
                }
            }},
            "/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI 3.1 document"}}}}
        },
        "components": {"schemas": {
            "Error": {"type": "object", "required": ["error"], "properties": {"error": {
                "type": "object", "required": ["code", "message"],
                "properties": {"code": {"type": "string", "enum": ["bad_request", "dossier_not_found", "not_found", "unavailable"]}, "message": {"type": "string"}}}}},
            "HistoryEntry": {"type": "object", "properties": {
                "event_id": {"type": "string"},
                "event": {"type": "string", "description": "topic of the event, e.g. dossier.routed"},
                "status": {"type": ["string", "null"]},
                "status_code": {"type": ["integer", "null"], "minimum": 1, "maximum": 10},
                "stage": {"type": "string"},
                "reasons": {"type": "array", "items": {"type": "object", "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}},
                "occurred_at": time, "occurred_at_ms": ms}},
            "Dossier": {"type": "object", "properties": {
                "dossier_id": {"type": "string"}, "dossier_code": {"type": ["string", "null"]},
                "procedure_code": {"type": ["string", "null"]}, "receiving_unit": {"type": ["string", "null"]},
                "competent_unit": {"type": ["string", "null"]},
                "channel": {"type": ["string", "null"], "enum": ["online", "counter", "postal", null]},
                "status": {"type": ["string", "null"]}, "status_code": {"type": ["integer", "null"], "minimum": 1, "maximum": 10},
                "status_at": time, "status_at_ms": ms, "submitted_at": time, "submitted_at_ms": ms,
                "received_at": time, "received_at_ms": ms, "due_at": time, "due_at_ms": ms,
                "decided_at": time, "decided_at_ms": ms, "decision": {"type": ["string", "null"], "enum": ["approved", "refused", null]},
                "completed_at": time, "completed_at_ms": ms,
                "overdue": {"type": "boolean", "description": "still open and past its due time"},
                "timeliness": {"type": ["string", "null"], "enum": ["early", "on_time", "late", null]},
                "history": {"type": "array", "items": {"$ref": "#/components/schemas/HistoryEntry"}}}},
            "Stats": {"type": "object", "properties": {
                "unit": {"type": ["string", "null"]}, "procedure": {"type": ["string", "null"]},
                "from": time, "to": time,
                "received": {"type": "integer"}, "received_online": {"type": "integer"},
                "completed": {"type": "integer"}, "completed_early": {"type": "integer"},
                "completed_on_time": {"type": "integer"}, "completed_late": {"type": "integer"},
                "on_time_rate": {"type": ["number", "null"], "description": "(early + on time) / completed"},
                "online_rate": {"type": ["number", "null"], "description": "online / received"},
                "average_processing_ms": {"type": ["integer", "null"]},
                "average_processing_hours": {"type": ["number", "null"], "description": "completion − reception, wall-clock"}}},
            "UnitLoad": {"type": "object", "properties": {
                "unit": {"type": "string"}, "at": time,
                "open": {"type": "integer"}, "overdue": {"type": "integer"}, "due_soon": {"type": "integer"},
                "due_soon_hours": {"type": "integer"},
                "open_by_status": {"type": "object", "additionalProperties": {"type": "integer"}}}}
        }}
    })
}
