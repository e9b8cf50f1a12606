//! The status API (axum), for two audiences:
//!
//! - *citizens* (`POST /lookup`): the dossier code **and** the lookup token printed on the
//!   receipt; the answer holds the status, dates, due time and next step — nothing the
//!   registries said, no history. A wrong token and an unknown code get the same answer,
//!   so codes (a daily sequence per agency) cannot be enumerated;
//! - *operators* (`/dossiers/{code}`, `/stats`, `/units/{code}/load`): an API key
//!   (`Authorization: Bearer …`, see [`crate::access`]); a unit's key sees its unit only.
//!
//! Every request is rate-limited per client (per key for operators, per address for the
//! rest) and bounded in time; errors are JSON: `{"error": {"code": "...", "message": "..."}}`.
//! Times are given twice: `*_ms` (ms since the epoch, as in the events) and an ISO 8601
//! string in Vietnam's time (UTC+7).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::access::{ApiKeys, Client, Operator, Rate, RateLimiter, RetryAfter, Scope};
use crate::stats::StatsFilter;
use crate::time::{format_local, parse_instant};
use crate::ProjectionDb;
use motcua_schemas::{DossierStatus, ProcedureField};

pub use crate::serve::{serve, ServeLimits};

/// The clock of the API (overdue and due-soon are relative to it).
pub type Now = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Now {
    Arc::new(crate::now_ms)
}

/// Who may ask what, and how often.
#[derive(Debug, Clone)]
pub struct ApiOptions {
    /// Operators' keys; none: every operator endpoint answers 401.
    pub keys: ApiKeys,
    /// Requests without a key (citizens' lookups), per client address.
    pub public_rate: Rate,
    /// Requests with a key, per key.
    pub operator_rate: Rate,
    /// A request (reading its body included) that takes longer is answered 503.
    pub request_timeout: Duration,
    /// Clients the rate limiter tracks at once (memory stays bounded under a flood).
    pub max_clients: usize,
    /// The result signers' JWK Set (JSON), served at `/.well-known/jwks.json`.
    pub jwks: Option<String>,
    /// Reverse proxies whose `X-Forwarded-For` is believed: behind them, a client is the
    /// rightmost forwarded address that is not itself a trusted proxy.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// The calendar and step budgets: a dossier's answer then shows the working time of
    /// each step against its budget.
    pub steps: Option<Arc<dyn crate::steps::StepClock>>,
    /// The pipeline's lag, dead letters and parked dossiers (`GET /pipeline`); `None`:
    /// that endpoint answers 503 `not_configured`.
    pub operations: Option<Arc<dyn crate::ops::Operations>>,
}

impl Default for ApiOptions {
    fn default() -> Self {
        Self {
            keys: ApiKeys::none(),
            public_rate: Rate {
                per_minute: 30,
                burst: 10,
            },
            operator_rate: Rate {
                per_minute: 600,
                burst: 100,
            },
            request_timeout: Duration::from_secs(5),
            max_clients: 100_000,
            jwks: None,
            trusted_proxies: Vec::new(),
            steps: None,
            operations: None,
        }
    }
}

#[derive(Clone)]
struct AppState {
    db: ProjectionDb,
    now: Now,
    options: Arc<ApiOptions>,
    limiter: Arc<RateLimiter>,
}

/// The largest request body (a lookup is two short strings).
const MAX_BODY_BYTES: usize = 4 * 1024;

/// The API over a projection database (PostgreSQL, or SQLite for the embedded demo).
/// Serve it with [`serve`], which gives each request its client's address.
pub fn router(db: impl Into<ProjectionDb>, options: ApiOptions, now: Now) -> Router {
    let state = AppState {
        db: db.into(),
        now,
        limiter: Arc::new(RateLimiter::new(options.max_clients)),
        options: Arc::new(options),
    };
    Router::new()
        .route("/lookup", post(lookup))
        .route("/dossiers/{code}", get(dossier))
        .route("/stats", get(stats))
        .route("/stats/report", get(stats_report))
        .route("/units/{code}/load", get(unit_load))
        .route("/units/{code}/forecast", get(unit_forecast))
        .route("/load", get(load))
        .route("/at-risk", get(at_risk))
        .route("/bottlenecks", get(bottlenecks))
        .route("/pipeline", get(pipeline))
        .route("/", get(|| async { axum::response::Redirect::to("/console/") }))
        .route("/console", get(|| async { axum::response::Redirect::to("/console/") }))
        .route("/console/", get(|| crate::console::page("index.html")))
        .route(
            "/console/{file}",
            get(|Path(file): Path<String>| crate::console::page_owned(file)),
        )
        .route("/openapi.json", get(openapi))
        .route("/.well-known/jwks.json", get(jwks))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint") })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(state.clone(), admit))
        .with_state(state)
}

/// Every request: who is asking (an operator's key, or nobody), the rate limit of that
/// client, and the time limit of the answer.
async fn admit(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    let by_address = match crate::serve::peer(&parts) {
        Some(peer) => Client::Address(client_address(peer.ip(), &parts.headers, &s.options.trusted_proxies)),
        None => Client::UnknownAddress,
    };
    let limit = |client: &Client, rate: Rate| s.limiter.check(client, rate).map_err(ApiError::too_many_requests);
    let admitted = match bearer(&parts.headers) {
        Err(e) => Err(e),
        Ok(None) => limit(&by_address, s.options.public_rate),
        Ok(Some(key)) => match s.options.keys.authenticate(key) {
            Some(op) => limit(&Client::Key(op.key_id.clone()), s.options.operator_rate).map(|()| {
                parts.extensions.insert(op);
            }),
            // Guessing keys costs the guesser's address its public budget.
            None => limit(&by_address, s.options.public_rate)
                .and(Err(ApiError::unauthenticated("this API key is not valid"))),
        },
    };
    if let Err(e) = admitted {
        return e.into_response();
    }
    let timeout = s.options.request_timeout;
    match tokio::time::timeout(timeout, next.run(Request::from_parts(parts, body))).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!("the request took longer than {} ms", timeout.as_millis()),
        )
        .into_response(),
    }
}

/// The client's address: the peer's, unless the peer is a trusted proxy; then the
/// rightmost `X-Forwarded-For` entry that is not a trusted proxy (entries left of it are
/// whatever the client claimed, and cannot be believed).
fn client_address(peer: std::net::IpAddr, headers: &HeaderMap, trusted: &[std::net::IpAddr]) -> std::net::IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    forwarded
        .iter()
        .rev()
        .filter_map(|a| a.parse::<std::net::IpAddr>().ok())
        .find(|a| !trusted.contains(a))
        .unwrap_or(peer)
}

/// The key of `Authorization: Bearer <key>`, if the header is there.
fn bearer(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(v) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    v.to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(|k| Some(k.trim()))
        .ok_or_else(|| ApiError::unauthenticated("the Authorization header must be 'Bearer <API key>'"))
}

/// Operator endpoints take an [`Operator`]: without a valid key, 401.
impl<S: Send + Sync> FromRequestParts<S> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, ApiError> {
        parts.extensions.get::<Operator>().cloned().ok_or_else(|| {
            ApiError::unauthenticated("this endpoint needs an operator's API key (Authorization: Bearer …)")
        })
    }
}

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after: Option<Duration>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    fn unauthenticated(message: &str) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }

    fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    fn too_many_requests(RetryAfter(wait): RetryAfter) -> Self {
        Self {
            retry_after: Some(wait),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_requests",
                "too many requests from this client; try again later",
            )
        }
    }

    /// The one answer for "no such dossier" and "not yours to see".
    fn dossier_not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "dossier_not_found", "no dossier with this code")
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
        let mut response = (
            self.status,
            Json(json!({"error": {"code": self.code, "message": self.message}})),
        )
            .into_response();
        let headers = response.headers_mut();
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"motcua\""),
            );
        }
        if let Some(wait) = self.retry_after {
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
        }
        response
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behind_a_trusted_proxy_the_client_is_the_rightmost_untrusted_forwarded_address() {
        let proxy: std::net::IpAddr = [10, 0, 0, 1].into();
        let inner: std::net::IpAddr = [10, 0, 0, 2].into();
        let client: std::net::IpAddr = [203, 0, 113, 7].into();
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("198.51.100.9, 203.0.113.7, 10.0.0.2"),
        );
        assert_eq!(
            client_address(proxy, &h, &[proxy, inner]),
            client,
            "the spoofable left part is ignored"
        );
        assert_eq!(
            client_address(client, &h, &[proxy]),
            client,
            "an untrusted peer is itself"
        );
        assert_eq!(
            client_address(proxy, &HeaderMap::new(), &[proxy]),
            proxy,
            "no header: the proxy"
        );
        let mut junk = HeaderMap::new();
        junk.insert("x-forwarded-for", HeaderValue::from_static("not an address"));
        assert_eq!(client_address(proxy, &junk, &[proxy]), proxy);
    }
}

#[derive(Debug, sqlx::FromRow)]
struct DossierRow {
    dossier_id: String,
    dossier_code: Option<String>,
    competent_unit: Option<String>,
    channel: Option<String>,
    due_at: Option<i64>,
    decision: Option<String>,
    timeliness: Option<String>,
    status_code: Option<i32>,
    status_at: Option<i64>,
    paused_working_ms: Option<i64>,
    calendar_version: Option<String>,
    appointment_due_at: Option<i64>,
    /// Procedure, receiving unit and the steps' boundaries.
    #[sqlx(flatten)]
    b: crate::steps::Boundaries,
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

/// A dossier row selected `WHERE` the suffix says (by code, or by id), built once.
fn dossier_sql(filter: &str) -> String {
    format!(
        "SELECT dossier_id, dossier_code, competent_unit, channel, due_at, decision, timeliness, status_code,
                status_at, paused_working_ms, calendar_version, appointment_due_at, {}
         FROM track_dossiers WHERE {filter}",
        crate::steps::BOUNDARY_COLUMNS
    )
}
static DOSSIER_BY_CODE: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| dossier_sql("dossier_code = $1 ORDER BY received_at LIMIT 1"));
static DOSSIER_BY_ID: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| dossier_sql("dossier_id = $1"));

/// `GET /dossiers/{code}` (operators): by dossier code, or by dossier id, with the full
/// history. A dossier outside the operator's unit is "not found", like a missing one.
async fn dossier(State(s): State<AppState>, op: Operator, Path(code): Path<String>) -> ApiResult {
    let by_code: Option<DossierRow> = on_db!(&s.db, |p| sqlx::query_as(DOSSIER_BY_CODE.as_str())
        .bind(&code)
        .fetch_optional(p)
        .await?);
    let row = match by_code {
        Some(r) => r,
        None => on_db!(&s.db, |p| sqlx::query_as(DOSSIER_BY_ID.as_str())
            .bind(&code)
            .fetch_optional(p)
            .await?)
        .ok_or_else(ApiError::dossier_not_found)?,
    };
    if !op
        .scope
        .sees_dossier(row.b.receiving_unit.as_deref(), row.competent_unit.as_deref())
    {
        return Err(ApiError::dossier_not_found());
    }
    let history_sql =
        "SELECT event_id, event, status_code, stage, CAST(reasons AS TEXT) AS reasons, occurred_at FROM track_history
         WHERE dossier_id = $1 ORDER BY occurred_at, event_id";
    let history: Vec<HistoryRow> = on_db!(&s.db, |p| sqlx::query_as(history_sql)
        .bind(&row.dossier_id)
        .fetch_all(p)
        .await?);
    let now = (s.now)();
    // Tracked against a new appointment once one was given (never earlier than the due).
    let tracked_due = row.due_at.map(|d| row.appointment_due_at.map_or(d, |a| a.max(d)));
    let overdue = is_open(row.status_code) && tracked_due.is_some_and(|d| d < now);
    let steps = steps_json(&s, &row.b, is_open(row.status_code), now);
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
        "procedure_code": row.b.procedure_code,
        "receiving_unit": row.b.receiving_unit,
        "competent_unit": row.competent_unit,
        "channel": row.channel,
        "status": status_name(row.status_code),
        "status_code": row.status_code,
        "status_at": ts(row.status_at),
        "status_at_ms": row.status_at,
        "submitted_at": ts(row.b.submitted_at),
        "submitted_at_ms": row.b.submitted_at,
        "received_at": ts(row.b.received_at),
        "received_at_ms": row.b.received_at,
        "due_at": ts(row.due_at),
        "due_at_ms": row.due_at,
        "decided_at": ts(row.b.decided_at),
        "decided_at_ms": row.b.decided_at,
        "decision": row.decision,
        "completed_at": ts(row.b.completed_at),
        "completed_at_ms": row.b.completed_at,
        "overdue": overdue,
        "timeliness": row.timeliness,
        "paused_working_ms": row.paused_working_ms,
        "appointment_due_at": ts(row.appointment_due_at),
        "appointment_due_at_ms": row.appointment_due_at,
        "calendar_version": row.calendar_version,
        "steps": steps,
        "history": history,
    })))
}

/// The internal process's steps of a dossier (start, end, working time against the
/// budget; the current one marked), when the API runs with the calendar.
fn steps_json(s: &AppState, b: &crate::steps::Boundaries, open: bool, now: i64) -> Option<Vec<Value>> {
    let clock = s.options.steps.as_ref()?;
    let current = if open { b.current() } else { None };
    Some(
        b.times(open.then_some(now), clock.as_ref())
            .into_iter()
            .map(|t| {
                json!({
                    "step": t.step,
                    "current": current.is_some_and(|c| c.as_str() == t.step),
                    "started_at": ts(t.started_at_ms),
                    "started_at_ms": t.started_at_ms,
                    "ended_at": ts(t.ended_at_ms),
                    "ended_at_ms": t.ended_at_ms,
                    "working_ms": t.working_ms,
                    "budget_ms": t.budget_ms,
                    "over_budget": t.over_budget,
                })
            })
            .collect(),
    )
}

/// A citizen's lookup: the code on the receipt and the token printed next to it.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct LookupRequest {
    dossier_code: String,
    lookup_token: String,
}

#[derive(Debug, sqlx::FromRow)]
struct CitizenRow {
    dossier_code: Option<String>,
    due_at: Option<i64>,
    decision: Option<String>,
    status_code: Option<i32>,
    status_at: Option<i64>,
    lookup_digest: Option<String>,
    /// Procedure and the steps' boundaries (the receiving center's calendar counts).
    #[sqlx(flatten)]
    b: crate::steps::Boundaries,
}

static CITIZEN_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT dossier_code, due_at, decision, status_code, status_at, lookup_digest, {}
         FROM track_dossiers WHERE dossier_code = $1 ORDER BY received_at LIMIT 1",
        crate::steps::BOUNDARY_COLUMNS
    )
});

/// `POST /lookup` (citizens): `{"dossier_code": …, "lookup_token": …}` in the body, so the
/// token never sits in a URL or an access log. Unknown code and wrong token get the same
/// 404 after the same work.
async fn lookup(State(s): State<AppState>, body: Result<Json<LookupRequest>, JsonRejection>) -> ApiResult {
    let Json(req) = body.map_err(|e| {
        let (status, code) = match e.status() {
            StatusCode::PAYLOAD_TOO_LARGE => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            _ => (StatusCode::BAD_REQUEST, "bad_request"),
        };
        ApiError::new(
            status,
            code,
            format!(
                "the body must be {{\"dossier_code\": \"…\", \"lookup_token\": \"…\"}}: {}",
                e.body_text()
            ),
        )
    })?;
    let row: Option<CitizenRow> = if req.dossier_code.len() <= 64 {
        let sql = CITIZEN_SQL.as_str();
        on_db!(&s.db, |p| sqlx::query_as(sql)
            .bind(&req.dossier_code)
            .fetch_optional(p)
            .await?)
    } else {
        None
    };
    let stored = row.as_ref().and_then(|r| r.lookup_digest.as_deref());
    let matched = motcua_security::access::lookup_token_matches(&req.lookup_token, stored);
    let row = row.filter(|_| matched).ok_or_else(ApiError::dossier_not_found)?;
    let now = (s.now)();
    let (step, step_text) = next_step(row.status_code);
    let open = is_open(row.status_code);
    let b = &row.b;
    Ok(Json(json!({
        "dossier_code": row.dossier_code,
        "procedure_code": b.procedure_code,
        "status": status_name(row.status_code),
        "status_code": row.status_code,
        "status_at": ts(row.status_at),
        "status_at_ms": row.status_at,
        "received_at": ts(b.received_at),
        "received_at_ms": b.received_at,
        "due_at": ts(row.due_at),
        "due_at_ms": row.due_at,
        "overdue": open && row.due_at.is_some_and(|d| d < now),
        "decided_at": ts(b.decided_at),
        "decided_at_ms": b.decided_at,
        "decision": row.decision,
        "completed_at": ts(b.completed_at),
        "completed_at_ms": b.completed_at,
        "next_step": {"code": step, "message": step_text},
        "steps": steps_json(&s, b, open, now),
    })))
}

/// What the citizen does or waits for next, by status (a code portals can translate, and
/// the one-stop center's wording).
fn next_step(status: Option<i32>) -> (&'static str, &'static str) {
    match status.and_then(DossierStatus::from_code) {
        None | Some(DossierStatus::Registered) => ("AWAIT_RECEPTION", "Hồ sơ đang chờ tiếp nhận"),
        Some(DossierStatus::Received) => ("AWAIT_PROCESSING", "Hồ sơ đã được tiếp nhận và đang được kiểm tra"),
        Some(DossierStatus::RejectedAtReception) => (
            "SEE_RECEPTION_NOTICE",
            "Hồ sơ không được tiếp nhận; xem thông báo của bộ phận một cửa",
        ),
        Some(DossierStatus::Processing) => ("AWAIT_RESULT", "Hồ sơ đang được giải quyết; chờ kết quả trước hạn trả"),
        Some(DossierStatus::SupplementRequested) => {
            ("SUPPLEMENT", "Cần bổ sung hồ sơ theo thông báo của bộ phận một cửa")
        }
        Some(DossierStatus::FinancialObligationRequested) => {
            ("PAY_FEES", "Cần nộp phí, lệ phí để hồ sơ được giải quyết")
        }
        Some(DossierStatus::Withdrawn) => ("NONE", "Hồ sơ đã được rút"),
        Some(DossierStatus::ProcessingStopped) => (
            "SEE_RECEPTION_NOTICE",
            "Hồ sơ đã dừng xử lý; xem thông báo của bộ phận một cửa",
        ),
        Some(DossierStatus::Completed) => (
            "COLLECT_RESULT",
            "Đã có kết quả; nhận kết quả tại bộ phận một cửa hoặc ví điện tử",
        ),
        Some(DossierStatus::ResultReturned) => ("NONE", "Đã trả kết quả"),
    }
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

/// A whole-number query parameter from 1 to `max`, `default` when absent.
fn whole_number(q: &HashMap<String, String>, name: &str, default: i64, max: i64) -> Result<i64, ApiError> {
    match q.get(name) {
        None => Ok(default),
        Some(v) => v
            .parse()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| ApiError::bad_request(format!("{name}={v:?} must be a whole number from 1 to {max}"))),
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

impl From<crate::Error> for ApiError {
    fn from(e: crate::Error) -> Self {
        match e {
            crate::Error::Database(e) => e.into(),
            other => {
                tracing::error!(error = %other, "status API error");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error")
            }
        }
    }
}

/// The filter of `/stats` and `/stats/report`: `unit`, `procedure`, `field`, `from`, `to`
/// (each figure by its own time) and `as_of` (default now). A unit's key gets its own
/// unit's figures (`unit` absent or its own unit); another unit is 403.
fn stats_filter(
    s: &AppState,
    op: &Operator,
    q: &HashMap<String, String>,
    extra: &[&str],
) -> Result<StatsFilter, ApiError> {
    let mut allowed = vec!["unit", "procedure", "field", "from", "to", "as_of"];
    allowed.extend_from_slice(extra);
    params(q, &allowed)?;
    let unit = scoped_unit(op, q)?;
    let field = match code_param(q, "field")? {
        None => None,
        Some(f) => match ProcedureField::ALL.into_iter().find(|x| x.as_str() == f) {
            Some(x) => Some(x.as_str().to_owned()),
            None if f == "UNKNOWN" => Some(f.to_owned()),
            None => {
                let known: Vec<&str> = ProcedureField::ALL.iter().map(|x| x.as_str()).collect();
                return Err(ApiError::bad_request(format!(
                    "field={f:?} is not a field (one of {}, UNKNOWN)",
                    known.join(", ")
                )));
            }
        },
    };
    let from = instant(q, "from", false)?;
    let to = instant(q, "to", true)?;
    if let (Some(f), Some(t)) = (from, to) {
        if f >= t {
            return Err(ApiError::bad_request("from must be before to"));
        }
    }
    Ok(StatsFilter {
        as_of: instant(q, "as_of", true)?.unwrap_or_else(|| (s.now)()),
        from,
        to,
        unit,
        procedure: code_param(q, "procedure")?.map(str::to_owned),
        field,
    })
}

/// `GET /stats`: the province's figures by definition (docs/statistics.md) added up over
/// the filter: received (at the receiving unit, by reception time), rejected at
/// reception, resolved early / on time / late against the legal due time (at the
/// deciding unit, by decision time), withdrawn, stopped, paused, reappointed, and the
/// backlog (pending and overdue as of `as_of`).
async fn stats(State(s): State<AppState>, op: Operator, Query(q): Query<HashMap<String, String>>) -> ApiResult {
    let filter = stats_filter(&s, &op, &q, &[])?;
    let figures = crate::stats::figures(&s.db, &filter).await?;
    let t = figures.report.totals();
    let (pending, overdue) = figures
        .report
        .backlog
        .values()
        .fold((0, 0), |(p, o), b| (p + b.pending, o + b.overdue));
    let average = (t.resolved > 0).then(|| figures.resolved_processing_ms as f64 / t.resolved as f64);
    Ok(Json(json!({
        "unit": filter.unit,
        "procedure": filter.procedure,
        "field": filter.field,
        "from": ts(filter.from),
        "to": ts(filter.to),
        "as_of": format_local(filter.as_of),
        "received": t.received,
        "received_online": t.received_online,
        "rejected_at_reception": t.rejected_at_reception,
        "resolved": t.resolved,
        "resolved_early": t.resolved_early,
        "resolved_on_time": t.resolved_on_time,
        "resolved_late": t.resolved_late,
        "on_time_rate": t.on_time_rate(),
        "online_rate": t.online_rate(),
        "withdrawn": t.withdrawn,
        "stopped": t.stopped,
        "resolved_paused": t.resolved_paused,
        "paused_working_hours": (t.paused_working_ms as f64 / 36_000.0).round() / 100.0,
        "resolved_reappointed": t.resolved_reappointed,
        "pending": pending,
        "overdue": overdue,
        "average_processing_ms": average.map(|v| v.round() as i64),
        "average_processing_hours": average.map(|v| (v / 36_000.0).round() / 100.0),
    })))
}

/// `GET /stats/report?format=json|csv`: the periodic report — one row per month, unit,
/// procedure and field, the backlog as of `as_of` — in the shape `motcua-stats` writes
/// from the event log (`format: motcua-statistics/1`).
async fn stats_report(
    State(s): State<AppState>,
    op: Operator,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let filter = stats_filter(&s, &op, &q, &["format"])?;
    let csv = match q.get("format").map(String::as_str) {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => return Err(ApiError::bad_request(format!("format={other:?} must be json or csv"))),
    };
    let figures = crate::stats::figures(&s.db, &filter).await?;
    Ok(if csv {
        (
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            figures.report.to_csv(),
        )
            .into_response()
    } else {
        Json(figures.report.to_json()).into_response()
    })
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
    op: Operator,
    Path(code): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    if !op.scope.sees_unit(&code) {
        return Err(ApiError::forbidden("this API key sees its own unit's load only"));
    }
    params(&q, &["hours"])?;
    let hours = whole_number(&q, "hours", 8, 24 * 365)?;
    let now = (s.now)();
    static LOAD_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "SELECT status_code,
                count(*) AS open,
                count(*) FILTER (WHERE {tracked} < $2) AS overdue,
                count(*) FILTER (WHERE {tracked} >= $2 AND {tracked} < $3) AS due_soon
         FROM track_dossiers
         WHERE COALESCE(competent_unit, receiving_unit) = $1 AND status_code IN ({open})
         GROUP BY status_code ORDER BY status_code",
            open = crate::projection::sql_codes(DossierStatus::is_open),
            tracked = crate::projection::TRACKED_DUE
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

/// The smoothing weight of the newest week in the demand forecast.
const FORECAST_ALPHA: f64 = 0.3;

/// `GET /units/{code}/forecast?hours=&weeks=`: submissions the receiving center should
/// expect per hour from now on, this week's hours so far against what came, and the
/// method's error on the last whole week held back (`motcua_stats::forecast`). It learns
/// from at most `weeks` whole weeks, starting with the first week the center received in.
async fn unit_forecast(
    State(s): State<AppState>,
    op: Operator,
    Path(code): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    if !op.scope.sees_unit(&code) {
        return Err(ApiError::forbidden("this API key sees its own unit's forecast only"));
    }
    params(&q, &["hours", "weeks"])?;
    let hours = whole_number(&q, "hours", 48, 24 * 14)?;
    let weeks = whole_number(&q, "weeks", 12, 104)?;
    let now = (s.now)();
    let (current, _) = motcua_stats::forecast::week_and_slot(now);
    let first_week = current - weeks;
    let since = motcua_stats::forecast::week_start_ms(first_week);
    let received: Vec<i64> = on_db!(&s.db, |p| {
        sqlx::query_scalar(
        "SELECT received_at FROM track_dossiers WHERE receiving_unit = $1 AND received_at >= $2 AND received_at < $3"
    )
    .bind(&code)
    .bind(since)
    .bind(now)
    .fetch_all(p)
    .await?
    });
    if received.is_empty() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_history",
            "this center received no dossier in the weeks asked for",
        ));
    }
    // Learn from the first week the center has history in: weeks before it opened (or
    // before the projection began) are not weeks with no demand.
    let first_week = received
        .iter()
        .map(|t| motcua_stats::forecast::week_and_slot(*t).0)
        .min()
        .map_or(first_week, |w| w.max(first_week));
    if first_week >= current {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_history",
            "no whole week of history to learn from yet",
        ));
    }
    let Some(f) = motcua_stats::forecast::forecast(&received, first_week, now, hours as usize, FORECAST_ALPHA) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_history",
            "no whole week of history to learn from yet",
        ));
    };
    let hour = |h: &motcua_stats::forecast::HourForecast| {
        let mut v = json!({"start": format_local(h.start_ms), "expected": (h.expected * 100.0).round() / 100.0});
        if let Some(a) = h.actual {
            v["actual"] = json!(a);
        }
        v
    };
    Ok(Json(json!({
        "unit": code,
        "at": format_local(now),
        "method": "seasonal by weekday and hour (Vietnam time), exponential smoothing per hour of the week",
        "alpha": f.alpha,
        "weeks": f.weeks,
        "next": f.next.iter().map(hour).collect::<Vec<_>>(),
        "this_week": f.this_week.iter().map(hour).collect::<Vec<_>>(),
        "held_back": f.held_back.map(|e| json!({
            "week_start": format_local(e.week_start_ms),
            "mae_per_hour": (e.mae_per_hour * 1000.0).round() / 1000.0,
            "naive_mae_per_hour": (e.naive_mae_per_hour * 1000.0).round() / 1000.0,
            "actual_total": e.actual_total,
            "forecast_total": (e.forecast_total * 10.0).round() / 10.0,
        })),
    })))
}

/// The unit an operator's listing is limited to: `unit` if given (403 outside a unit
/// key's own), else a unit key's own unit, else none (the province).
fn scoped_unit(op: &Operator, q: &HashMap<String, String>) -> Result<Option<String>, ApiError> {
    match (code_param(q, "unit")?, &op.scope) {
        (unit, Scope::All) => Ok(unit.map(str::to_owned)),
        (None, Scope::Unit(own)) => Ok(Some(own.clone())),
        (Some(u), scope) if scope.sees_unit(u) => Ok(Some(u.to_owned())),
        (Some(_), _) => Err(ApiError::forbidden("this API key sees its own unit only")),
    }
}

#[derive(Debug, sqlx::FromRow)]
struct UnitLoadRow {
    unit: String,
    open: i64,
    overdue: i64,
    due_soon: i64,
}

#[derive(Debug, sqlx::FromRow)]
struct ArrivalRow {
    unit: String,
    last_hour: i64,
    today: i64,
}

/// Midnight (Vietnam time, UTC+7) of the day `ms` falls in.
fn local_midnight(ms: i64) -> i64 {
    const DAY: i64 = 86_400_000;
    const OFFSET: i64 = 7 * 3_600_000;
    (ms + OFFSET).div_euclid(DAY) * DAY - OFFSET
}

/// `GET /load?hours=&unit=`: the live load of every center — open dossiers at each unit
/// (its competent unit, or its receiving center until routed), overdue and due within
/// `hours`, and what each receiving center took in the last hour and since midnight.
async fn load(State(s): State<AppState>, op: Operator, Query(q): Query<HashMap<String, String>>) -> ApiResult {
    params(&q, &["hours", "unit"])?;
    let hours = whole_number(&q, "hours", 8, 24 * 365)?;
    let unit = scoped_unit(&op, &q)?;
    let now = (s.now)();
    static OPEN_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "SELECT COALESCE(competent_unit, receiving_unit) AS unit,
                count(*) AS open,
                count(*) FILTER (WHERE {tracked} < $2) AS overdue,
                count(*) FILTER (WHERE {tracked} >= $2 AND {tracked} < $3) AS due_soon
             FROM track_dossiers
             WHERE status_code IN ({open}) AND COALESCE(competent_unit, receiving_unit) IS NOT NULL
               AND ($1 IS NULL OR COALESCE(competent_unit, receiving_unit) = $1)
             GROUP BY COALESCE(competent_unit, receiving_unit)",
            open = crate::projection::sql_codes(DossierStatus::is_open),
            tracked = crate::projection::TRACKED_DUE
        )
    });
    const ARRIVALS_SQL: &str = "SELECT receiving_unit AS unit,
            count(*) FILTER (WHERE received_at >= $2) AS last_hour,
            count(*) FILTER (WHERE received_at >= $3) AS today
        FROM track_dossiers
        WHERE received_at >= $4 AND received_at <= $5 AND receiving_unit IS NOT NULL
          AND ($1 IS NULL OR receiving_unit = $1)
        GROUP BY receiving_unit";
    let open_sql = OPEN_SQL.as_str();
    let open: Vec<UnitLoadRow> = on_db!(&s.db, |p| sqlx::query_as(open_sql)
        .bind(unit.as_deref())
        .bind(now)
        .bind(now + hours * 3_600_000)
        .fetch_all(p)
        .await?);
    let (hour_ago, midnight) = (now - 3_600_000, local_midnight(now));
    let arrivals: Vec<ArrivalRow> = on_db!(&s.db, |p| sqlx::query_as(ARRIVALS_SQL)
        .bind(unit.as_deref())
        .bind(hour_ago)
        .bind(midnight)
        .bind(hour_ago.min(midnight))
        .bind(now)
        .fetch_all(p)
        .await?);
    let mut units: std::collections::BTreeMap<String, Value> = std::collections::BTreeMap::new();
    let blank = || json!({"open": 0, "overdue": 0, "due_soon": 0, "received_last_hour": 0, "received_today": 0});
    for r in &open {
        let u = units.entry(r.unit.clone()).or_insert_with(blank);
        u["open"] = json!(r.open);
        u["overdue"] = json!(r.overdue);
        u["due_soon"] = json!(r.due_soon);
    }
    for a in arrivals {
        let u = units.entry(a.unit).or_insert_with(blank);
        u["received_last_hour"] = json!(a.last_hour);
        u["received_today"] = json!(a.today);
    }
    let mut rows: Vec<Value> = units
        .into_iter()
        .map(|(code, mut v)| {
            v["unit"] = json!(code);
            v
        })
        .collect();
    // The busiest first.
    rows.sort_by_key(|v| std::cmp::Reverse((v["open"].as_i64(), v["received_today"].as_i64())));
    let total = |k: &str| rows.iter().filter_map(|v| v[k].as_i64()).sum::<i64>();
    Ok(Json(json!({
        "at": format_local(now),
        "unit": unit,
        "due_soon_hours": hours,
        "open": total("open"),
        "overdue": total("overdue"),
        "due_soon": total("due_soon"),
        "received_last_hour": total("received_last_hour"),
        "received_today": total("received_today"),
        "units": rows,
    })))
}

#[derive(Debug, sqlx::FromRow)]
struct AtRiskRow {
    dossier_code: Option<String>,
    competent_unit: Option<String>,
    status_code: Option<i32>,
    tracked_due: i64,
    #[sqlx(flatten)]
    b: crate::steps::Boundaries,
}

/// `GET /at-risk?hours=&limit=&unit=`: open dossiers whose clock runs (not those waiting
/// for the citizen's papers: their due time moves) past their due time or due within
/// `hours` of wall-clock time (default 8), soonest first, with the step each is in.
async fn at_risk(State(s): State<AppState>, op: Operator, Query(q): Query<HashMap<String, String>>) -> ApiResult {
    params(&q, &["hours", "limit", "unit"])?;
    let hours = whole_number(&q, "hours", 8, 24 * 365)?;
    let limit = whole_number(&q, "limit", 50, 1_000)?;
    let unit = scoped_unit(&op, &q)?;
    let now = (s.now)();
    static SQL: std::sync::LazyLock<(String, String)> = std::sync::LazyLock::new(|| {
        let from = format!(
            "FROM track_dossiers
             WHERE status_code IN ({running}) AND {tracked} < $2
               AND ($1 IS NULL OR receiving_unit = $1 OR competent_unit = $1)",
            running = crate::projection::sql_codes(|s| s.is_open() && s != DossierStatus::SupplementRequested),
            tracked = crate::projection::TRACKED_DUE
        );
        (
            format!(
                "SELECT dossier_code, competent_unit, status_code, {tracked} AS tracked_due, {b} {from}
                 ORDER BY {tracked}, dossier_code LIMIT $3",
                tracked = crate::projection::TRACKED_DUE,
                b = crate::steps::BOUNDARY_COLUMNS
            ),
            format!(
                "SELECT count(*) AS at_risk, count(*) FILTER (WHERE {tracked} < $3) AS overdue {from}",
                tracked = crate::projection::TRACKED_DUE
            ),
        )
    });
    let horizon = now + hours * 3_600_000;
    let rows: Vec<AtRiskRow> = on_db!(&s.db, |p| sqlx::query_as(SQL.0.as_str())
        .bind(unit.as_deref())
        .bind(horizon)
        .bind(limit)
        .fetch_all(p)
        .await?);
    let (total, overdue): (i64, i64) = on_db!(&s.db, |p| sqlx::query_as(SQL.1.as_str())
        .bind(unit.as_deref())
        .bind(horizon)
        .bind(now)
        .fetch_one(p)
        .await?);
    let dossiers: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "dossier_code": r.dossier_code,
                "procedure_code": r.b.procedure_code,
                "unit": r.competent_unit.as_deref().or(r.b.receiving_unit.as_deref()),
                "status": status_name(r.status_code),
                "status_code": r.status_code,
                "step": r.b.current().map(|c| c.as_str()),
                "due_at": format_local(r.tracked_due),
                "due_at_ms": r.tracked_due,
                "overdue": r.tracked_due < now,
            })
        })
        .collect();
    Ok(Json(json!({
        "at": format_local(now),
        "unit": unit,
        "hours": hours,
        "at_risk": total,
        "overdue": overdue,
        "due_soon": total - overdue,
        "dossiers": dossiers,
    })))
}

/// `GET /bottlenecks?from=&to=&unit=&top=`: where time is spent and deadlines are missed
/// over the dossiers received in the period (default the last 30 days), by step, by
/// procedure and by unit (definitions: [`crate::bottlenecks`]).
async fn bottlenecks(State(s): State<AppState>, op: Operator, Query(q): Query<HashMap<String, String>>) -> ApiResult {
    params(&q, &["from", "to", "unit", "top"])?;
    let Some(clock) = s.options.steps.clone() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_configured",
            "the API runs without the calendar and step budgets",
        ));
    };
    let now = (s.now)();
    let to = instant(&q, "to", true)?.unwrap_or(now + 1);
    let from = instant(&q, "from", false)?.unwrap_or(to - 30 * 86_400_000);
    if from >= to {
        return Err(ApiError::bad_request("from must be before to"));
    }
    let filter = crate::bottlenecks::BottleneckFilter {
        from_ms: from,
        to_ms: to,
        unit: scoped_unit(&op, &q)?,
        now_ms: now,
        top: whole_number(&q, "top", 10, 1_000)? as usize,
    };
    let b = crate::bottlenecks::bottlenecks(&s.db, clock.as_ref(), &filter).await?;
    let mut v = json!(b);
    v["from"] = json!(format_local(from));
    v["to"] = json!(format_local(to));
    v["unit"] = json!(filter.unit);
    v["at"] = json!(format_local(now));
    Ok(Json(v))
}

/// `GET /pipeline` (the province's keys): every stage's consumer lag, the dead letters of
/// the last 24 hours by cause and the newest of them, and the dossiers parked behind a
/// registry or waiting for an officer. Each part that cannot be read says why instead.
async fn pipeline(State(s): State<AppState>, op: Operator, Query(q): Query<HashMap<String, String>>) -> ApiResult {
    params(&q, &[])?;
    if op.scope != Scope::All {
        return Err(ApiError::forbidden("the pipeline's state is for the province's keys"));
    }
    let Some(ops) = s.options.operations.clone() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_configured",
            "this API is served without access to the pipeline (lag, dead letters, parked dossiers)",
        ));
    };
    let now = (s.now)();
    let (lag, dead, waiting) = tokio::join!(ops.lag(), ops.dead_letters(now - 86_400_000, 20), ops.waiting(20));
    let part = |r: Result<Value, String>| r.unwrap_or_else(|e| json!({"unavailable": e}));
    let with_times = |mut v: Value| {
        // Each `*_ms` instant also as Vietnam time, like the rest of the API.
        add_local_times(&mut v);
        v
    };
    Ok(Json(json!({
        "at": format_local(now),
        "lag": part(lag.map(|l| json!(l))),
        "dead_letters": part(dead.map(|d| with_times(json!(d)))),
        "waiting": part(waiting.map(|w| with_times(json!(w)))),
    })))
}

/// Adds `x` next to every `x_ms` number, in Vietnam time.
fn add_local_times(v: &mut Value) {
    match v {
        Value::Object(m) => {
            let extra: Vec<(String, Value)> = m
                .iter()
                .filter_map(|(k, x)| Some((k.strip_suffix("_ms")?.to_owned(), x.as_i64()?)))
                .map(|(k, ms)| (k, json!(format_local(ms))))
                .collect();
            for x in m.values_mut() {
                add_local_times(x);
            }
            m.extend(extra);
        }
        Value::Array(a) => a.iter_mut().for_each(add_local_times),
        _ => {}
    }
}

/// `GET /.well-known/jwks.json`: the keys results are signed with (public).
async fn jwks(State(s): State<AppState>) -> Result<Response, ApiError> {
    match &s.options.jwks {
        Some(set) => Ok((
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/jwk-set+json"),
            )],
            set.clone(),
        )
            .into_response()),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no JWK Set is configured (track.jwks_file)",
        )),
    }
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
    let stats_params = json!([
        {"name": "unit", "in": "query", "required": false, "description": "unit code: each figure at its own unit (received: receiving, resolved: deciding); a unit's key: its own, the default", "schema": {"type": "string"}},
        {"name": "procedure", "in": "query", "required": false, "description": "procedure code", "schema": {"type": "string"}},
        {"name": "field", "in": "query", "required": false, "description": "procedure field", "schema": {"type": "string", "enum": ["LAND", "RESIDENCE", "CERTIFICATION", "CIVIL_STATUS", "BUSINESS", "CONSTRUCTION", "UNKNOWN"]}},
        instant_param("from", "start of the period (inclusive), each figure by its own time; a date is its midnight in UTC+7"),
        instant_param("to", "end of the period (exclusive); a date includes that whole day"),
        instant_param("as_of", "facts after this instant are left out (default now; a date: its end)")
    ]);
    let mut report_params = stats_params.clone();
    report_params.as_array_mut().expect("parameters").push(
        json!({"name": "format", "in": "query", "required": false, "schema": {"type": "string", "enum": ["json", "csv"], "default": "json"}}),
    );
    let operator = |mut responses: Value| {
        let r = responses.as_object_mut().expect("responses object");
        r.insert(
            "401".into(),
            err("no API key, or not a valid one (code unauthenticated)"),
        );
        r.insert(
            "429".into(),
            err("too many requests from this key (code too_many_requests; see Retry-After)"),
        );
        responses
    };
    let lookup_request = json!({"type": "object", "required": ["dossier_code", "lookup_token"], "additionalProperties": false, "properties": {
                "dossier_code": {"type": "string", "examples": ["H22.06652-251125-0001"]},
                "lookup_token": {"type": "string", "description": "as printed on the receipt; case, spaces and hyphens do not matter", "examples": ["7KQ2-M90D-1XYZ-0AB1"]}}});
    let citizen_dossier = json!({"type": "object", "properties": {
                "dossier_code": {"type": ["string", "null"]}, "procedure_code": {"type": ["string", "null"]},
                "status": {"type": ["string", "null"]}, "status_code": {"type": ["integer", "null"], "minimum": 1, "maximum": 10},
                "status_at": time, "status_at_ms": ms, "received_at": time, "received_at_ms": ms,
                "due_at": time, "due_at_ms": ms, "overdue": {"type": "boolean"},
                "decided_at": time, "decided_at_ms": ms, "decision": {"type": ["string", "null"], "enum": ["approved", "refused", null]},
                "completed_at": time, "completed_at_ms": ms,
                "next_step": {"type": "object", "properties": {
                    "code": {"type": "string", "enum": ["AWAIT_RECEPTION", "AWAIT_PROCESSING", "SEE_RECEPTION_NOTICE", "AWAIT_RESULT", "SUPPLEMENT", "PAY_FEES", "COLLECT_RESULT", "NONE"]},
                    "message": {"type": "string"}}},
                "steps": {"type": ["array", "null"], "description": "the internal process's steps, as for operators (null when the API runs without the calendar)", "items": {"type": "object"}}}});
    let paths = json!({
        "/lookup": {"post": {
            "summary": "A citizen's dossier: status, dates, due time and next step",
            "description": "Needs no key: the dossier code and the lookup token printed on the receipt. An unknown code and a wrong token get the same 404.",
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/LookupRequest"}}}},
            "responses": {
                "200": {"description": "the dossier", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CitizenDossier"}}}},
                "400": err("the body is not a lookup request (code bad_request)"),
                "413": err("the body is larger than 4 KiB (code payload_too_large)"),
                "404": err("no dossier with this code and token (code dossier_not_found)"),
                "429": err("too many requests from this address (code too_many_requests; see Retry-After)"),
                "503": err("the projection database is unavailable, or the request took too long")
            }
        }},
        "/dossiers/{code}": {"get": {
            "summary": "A dossier's current status, due time and full history (operators)",
            "security": [{"apiKey": []}],
            "parameters": [{"name": "code", "in": "path", "required": true,
                "description": "dossier code (<agency>-<YYMMDD>-<NNNN>) or dossier id",
                "schema": {"type": "string"}}],
            "responses": operator(json!({
                "200": {"description": "the dossier", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Dossier"}}}},
                "404": err("no dossier with this code, or not one of this key's unit (code dossier_not_found)"),
                "503": err("the projection database is unavailable")
            }))
        }},
        "/stats": {"get": {
            "summary": "The province's figures by definition (docs/statistics.md), added up over the filter (operators)",
            "security": [{"apiKey": []}],
            "parameters": stats_params.clone(),
            "responses": operator(json!({
                "200": {"description": "statistics", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Stats"}}}},
                "400": err("unknown parameter, bad date or field, or from not before to (code bad_request)"),
                "403": err("another unit than this key's (code forbidden)"),
                "503": err("the projection database is unavailable")
            }))
        }},
        "/stats/report": {"get": {
            "summary": "The periodic report: one row per month, unit, procedure and field, and the backlog as of as_of (operators)",
            "security": [{"apiKey": []}],
            "parameters": report_params,
            "responses": operator(json!({
                "200": {"description": "the report (format motcua-statistics/1), or its CSV", "content": {
                    "application/json": {"schema": {"type": "object", "required": ["format", "as_of", "totals", "rows", "backlog"]}},
                    "text/csv": {"schema": {"type": "string"}}}},
                "400": err("unknown parameter, bad date, field or format (code bad_request)"),
                "403": err("another unit than this key's (code forbidden)"),
                "503": err("the projection database is unavailable")
            }))
        }},
        "/units/{code}/forecast": {"get": {
            "summary": "Submissions the receiving center should expect per hour (operators): seasonal by weekday and hour with exponential smoothing (alpha 0.3) over the last weeks, this week so far against what came, and the error on the last whole week held back next to the seasonal-naive forecast's",
            "security": [{"apiKey": []}],
            "parameters": [
                {"name": "code", "in": "path", "required": true, "description": "receiving center code", "schema": {"type": "string"}},
                {"name": "hours", "in": "query", "required": false, "description": "hours to forecast from the current one (default 48)", "schema": {"type": "integer", "minimum": 1, "maximum": 336}},
                {"name": "weeks", "in": "query", "required": false, "description": "whole weeks of history to learn from (default 12)", "schema": {"type": "integer", "minimum": 1, "maximum": 104}}
            ],
            "responses": operator(json!({
                "200": {"description": "the forecast", "content": {"application/json": {"schema": {"type": "object", "properties": {
                    "unit": {"type": "string"}, "at": {"type": "string"}, "method": {"type": "string"},
                    "alpha": {"type": "number"}, "weeks": {"type": "integer"},
                    "next": {"type": "array", "items": {"type": "object", "properties": {"start": {"type": "string"}, "expected": {"type": "number"}}}},
                    "this_week": {"type": "array", "items": {"type": "object", "properties": {"start": {"type": "string"}, "expected": {"type": "number"}, "actual": {"type": "integer"}}}},
                    "held_back": {"type": ["object", "null"], "properties": {"week_start": {"type": "string"}, "mae_per_hour": {"type": "number"}, "naive_mae_per_hour": {"type": "number"}, "actual_total": {"type": "integer"}, "forecast_total": {"type": "number"}}}
                }}}}},
                "400": err("bad parameter (code bad_request)"),
                "403": err("another unit than this key's (code forbidden)"),
                "404": err("no whole week of history yet (code no_history)"),
                "503": err("the projection database is unavailable")
            }))
        }},
        "/units/{code}/load": {"get": {
            "summary": "Open, overdue and soon-due dossiers of a unit (operators)",
            "security": [{"apiKey": []}],
            "parameters": [
                {"name": "code", "in": "path", "required": true, "description": "unit code", "schema": {"type": "string"}},
                {"name": "hours", "in": "query", "required": false, "description": "due-soon window in hours (default 8)", "schema": {"type": "integer", "minimum": 1, "maximum": 8760}}
            ],
            "responses": operator(json!({
                "200": {"description": "the unit's load", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/UnitLoad"}}}},
                "400": err("bad parameter (code bad_request)"),
                "403": err("another unit than this key's (code forbidden)"),
                "503": err("the projection database is unavailable")
            }))
        }},
        "/load": {"get": {
            "summary": "The live load of every center (operators): open dossiers at each unit (its competent unit, or its receiving center until routed), overdue and due within `hours`, and what each receiving center took in the last hour and since midnight (UTC+7); busiest first",
            "security": [{"apiKey": []}],
            "parameters": [
                {"name": "hours", "in": "query", "required": false, "description": "due-soon window in hours (default 8)", "schema": {"type": "integer", "minimum": 1, "maximum": 8760}},
                {"name": "unit", "in": "query", "required": false, "description": "one unit (a unit's key: its own, the default)", "schema": {"type": "string"}}
            ],
            "responses": operator(json!({
                "200": {"description": "the load", "content": {"application/json": {"schema": {"type": "object", "properties": {
                    "at": time, "unit": {"type": ["string", "null"]}, "due_soon_hours": {"type": "integer"},
                    "open": {"type": "integer"}, "overdue": {"type": "integer"}, "due_soon": {"type": "integer"},
                    "received_last_hour": {"type": "integer"}, "received_today": {"type": "integer"},
                    "units": {"type": "array", "items": {"type": "object", "properties": {
                        "unit": {"type": "string"}, "open": {"type": "integer"}, "overdue": {"type": "integer"}, "due_soon": {"type": "integer"},
                        "received_last_hour": {"type": "integer"}, "received_today": {"type": "integer"}}}}}}}}},
                "400": err("bad parameter (code bad_request)"),
                "403": err("another unit than this key's (code forbidden)"),
                "503": err("the projection database is unavailable")
            }))
        }},
        "/at-risk": {"get": {
            "summary": "Dossiers at risk (operators): open, their clock running (not waiting for the citizen's papers), past their due time or due within `hours` of wall-clock time; soonest first, with the step each is in",
            "security": [{"apiKey": []}],
            "parameters": [
                {"name": "hours", "in": "query", "required": false, "description": "window in hours (default 8)", "schema": {"type": "integer", "minimum": 1, "maximum": 8760}},
                {"name": "limit", "in": "query", "required": false, "description": "dossiers listed (default 50)", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
                {"name": "unit", "in": "query", "required": false, "description": "received at or assigned to this unit (a unit's key: its own, the default)", "schema": {"type": "string"}}
            ],
            "responses": operator(json!({
                "200": {"description": "the dossiers at risk", "content": {"application/json": {"schema": {"type": "object", "properties": {
                    "at": time, "unit": {"type": ["string", "null"]}, "hours": {"type": "integer"},
                    "at_risk": {"type": "integer", "description": "all of them (the list stops at limit)"}, "overdue": {"type": "integer"}, "due_soon": {"type": "integer"},
                    "dossiers": {"type": "array", "items": {"type": "object", "properties": {
                        "dossier_code": {"type": ["string", "null"]}, "procedure_code": {"type": ["string", "null"]}, "unit": {"type": ["string", "null"]},
                        "status": {"type": ["string", "null"]}, "status_code": {"type": ["integer", "null"]},
                        "step": {"type": ["string", "null"], "enum": ["reception", "verification", "appraisal", "approval", "result", null]},
                        "due_at": time, "due_at_ms": ms, "overdue": {"type": "boolean"}}}}}}}}},
                "400": err("bad parameter (code bad_request)"),
                "403": err("another unit than this key's (code forbidden)"),
                "503": err("the projection database is unavailable")
            }))
        }},
        "/bottlenecks": {"get": {
            "summary": "Where time is spent and deadlines are missed (operators), over the dossiers received in the period: per step of the internal process (finished: count, average working hours, over budget; running now: count, over budget), and the procedures and units that missed most deadlines (late = decided after the due time; overdue = open past it), each with its slowest step",
            "security": [{"apiKey": []}],
            "parameters": [
                instant_param("from", "first reception instant (default: 30 days before to)"),
                instant_param("to", "reception before this instant (default now; a date includes that whole day)"),
                {"name": "unit", "in": "query", "required": false, "description": "received at or assigned to this unit (a unit's key: its own, the default)", "schema": {"type": "string"}},
                {"name": "top", "in": "query", "required": false, "description": "procedures and units listed (default 10)", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}}
            ],
            "responses": operator(json!({
                "200": {"description": "the figures", "content": {"application/json": {"schema": {"type": "object", "properties": {
                    "from": time, "to": time, "at": time, "unit": {"type": ["string", "null"]}, "dossiers": {"type": "integer"},
                    "steps": {"type": "array", "items": {"type": "object", "properties": {
                        "step": {"type": "string"}, "finished": {"type": "integer"}, "average_working_hours": {"type": ["number", "null"]},
                        "finished_over_budget": {"type": "integer"}, "running": {"type": "integer"}, "running_over_budget": {"type": "integer"}}}},
                    "procedures": {"type": "array", "items": {"$ref": "#/components/schemas/Bottleneck"}},
                    "units": {"type": "array", "items": {"$ref": "#/components/schemas/Bottleneck"}}}}}}},
                "400": err("bad parameter, or from not before to (code bad_request)"),
                "403": err("another unit than this key's (code forbidden)"),
                "503": err("the projection database is unavailable, or the API runs without the calendar (code not_configured)")
            }))
        }},
        "/pipeline": {"get": {
            "summary": "The pipeline's own state (the province's keys): every stage's consumer lag, the dead letters of the last 24 hours by cause and the newest 20 (no content: `motcua dlq show` has it), and the dossiers parked behind a registry or escalated to an officer. A part that cannot be read is {\"unavailable\": why}",
            "security": [{"apiKey": []}],
            "responses": operator(json!({
                "200": {"description": "the pipeline", "content": {"application/json": {"schema": {"type": "object", "properties": {
                    "at": time,
                    "lag": {"oneOf": [{"type": "array", "items": {"type": "object", "properties": {
                        "stage": {"type": "string"}, "committed": {"type": "integer"}, "lag": {"type": "integer"}}}}, {"$ref": "#/components/schemas/Unavailable"}]},
                    "dead_letters": {"oneOf": [{"type": "object", "properties": {
                        "since": time, "since_ms": ms, "total": {"type": "integer"},
                        "by_cause": {"type": "array", "items": {"type": "object", "properties": {
                            "reason_code": {"type": "string"}, "origin_topic": {"type": "string"}, "stage": {"type": "string"}, "count": {"type": "integer"}}}},
                        "latest": {"type": "array", "items": {"type": "object", "properties": {
                            "id": {"type": "string", "description": "partition:offset in the dead-letter topic (motcua dlq replay ID)"},
                            "failed_at": time, "failed_at_ms": ms, "origin_topic": {"type": "string"}, "stage": {"type": "string"},
                            "reason_code": {"type": "string"}, "replay_count": {"type": "integer"}}}}}}, {"$ref": "#/components/schemas/Unavailable"}]},
                    "waiting": {"oneOf": [{"type": "object", "properties": {
                        "parked_total": {"type": "integer"},
                        "parked": {"type": "array", "items": {"type": "object", "properties": {
                            "dossier_code": {"type": "string"}, "parked_at": time, "parked_at_ms": ms, "attempts": {"type": "integer"}, "cause": {"type": "string"}}}},
                        "escalated": {"type": "array", "items": {"type": "object", "properties": {
                            "dossier_code": {"type": "string"}, "escalated_at": time, "escalated_at_ms": ms, "cause": {"type": "string"}}}}}}, {"$ref": "#/components/schemas/Unavailable"}]}
                }}}}},
                "400": err("unknown parameter (code bad_request)"),
                "403": err("a unit's key (code forbidden)"),
                "503": err("the API is served without access to the pipeline (code not_configured)")
            }))
        }},
        "/console/": {"get": {
            "summary": "The console: a page for citizens (lookup by code and token) and operators (the endpoints above, with their key); plain HTML, CSS and JavaScript under a strict Content-Security-Policy",
            "responses": {"200": {"description": "the page", "content": {"text/html": {"schema": {"type": "string"}}}}}
        }},
        "/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI 3.1 document"}}}}
    });
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "motcua status API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Status and history of administrative-procedure dossiers, statistics and unit load, from the track stage's projection. Citizens look their dossier up with its code and the lookup token on their receipt (POST /lookup); everything else needs an operator's API key, and a unit's key sees its unit only. Requests are rate-limited per client (429 with Retry-After) and time-limited (503 timeout). Status codes are the national public service portal's (1 registered … 10 result returned). Overdue is derived from the due time at request time."
        },
        "paths": paths,
        "components": {
          "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer", "description": "an operator's API key (motcua api-key add)"}},
          "schemas": {
            "LookupRequest": lookup_request,
            "CitizenDossier": citizen_dossier,
            "Error": {"type": "object", "required": ["error"], "properties": {"error": {
                "type": "object", "required": ["code", "message"],
                "properties": {"code": {"type": "string", "enum": ["bad_request", "payload_too_large", "unauthenticated", "forbidden", "dossier_not_found", "not_found", "no_history", "not_configured", "too_many_requests", "timeout", "unavailable"]}, "message": {"type": "string"}}}}},
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
                "overdue": {"type": "boolean", "description": "still open and past its due time (a new appointment's date once one was given)"},
                "timeliness": {"type": ["string", "null"], "enum": ["early", "on_time", "late", null]},
                "paused_working_ms": {"type": ["integer", "null"], "description": "working time the legal clock was paused for supplements; the due time includes it"},
                "calendar_version": {"type": ["string", "null"], "description": "content hash (sha256:…) of the holidays and working hours that computed the due time"},
                "steps": {"type": ["array", "null"], "description": "the internal process's steps (reception, verification, appraisal, approval, result): start and end, working time spent (waits for supplements excluded; until now for the current step) and the procedure's budget; null when the API runs without the calendar", "items": {"type": "object"}},
                "appointment_due_at": time, "appointment_due_at_ms": ms,
                "history": {"type": "array", "items": {"$ref": "#/components/schemas/HistoryEntry"}}}},
            "Stats": {"type": "object", "properties": {
                "unit": {"type": ["string", "null"]}, "procedure": {"type": ["string", "null"]},
                "field": {"type": ["string", "null"]}, "from": time, "to": time, "as_of": time,
                "received": {"type": "integer", "description": "received in the period, at the receiving unit"},
                "received_online": {"type": "integer"},
                "rejected_at_reception": {"type": "integer", "description": "refused at the door (status 3), never received"},
                "resolved": {"type": "integer", "description": "results returned, by decision time, at the deciding unit (a dossier handed on counts once)"},
                "resolved_early": {"type": "integer"}, "resolved_on_time": {"type": "integer"}, "resolved_late": {"type": "integer", "description": "against the legal due time, pauses excluded; a new appointment does not make a late dossier on time"},
                "on_time_rate": {"type": ["number", "null"], "description": "(early + on time) / resolved"},
                "online_rate": {"type": ["number", "null"], "description": "online / received"},
                "withdrawn": {"type": "integer"}, "stopped": {"type": "integer"},
                "resolved_paused": {"type": "integer", "description": "resolved dossiers whose clock was paused for a supplement"},
                "paused_working_hours": {"type": "number"},
                "resolved_reappointed": {"type": "integer"},
                "pending": {"type": "integer", "description": "open as of as_of"},
                "overdue": {"type": "integer", "description": "open as of as_of and past the legal due time"},
                "average_processing_ms": {"type": ["integer", "null"]},
                "average_processing_hours": {"type": ["number", "null"], "description": "decision − reception, wall-clock, over resolved dossiers"}}},
            "Unavailable": {"type": "object", "required": ["unavailable"], "properties": {"unavailable": {"type": "string", "description": "why this part cannot be read now"}}},
            "Bottleneck": {"type": "object", "properties": {
                "code": {"type": "string"}, "received": {"type": "integer"}, "resolved": {"type": "integer"},
                "late": {"type": "integer"}, "overdue": {"type": "integer"}, "missed": {"type": "integer", "description": "late + overdue"},
                "steps_over_budget": {"type": "integer"},
                "slowest_step": {"type": ["string", "null"]}, "slowest_step_hours": {"type": ["number", "null"], "description": "its average working hours"}}},
            "UnitLoad": {"type": "object", "properties": {
                "unit": {"type": "string"}, "at": time,
                "open": {"type": "integer"}, "overdue": {"type": "integer"}, "due_soon": {"type": "integer"},
                "due_soon_hours": {"type": "integer"},
                "open_by_status": {"type": "object", "additionalProperties": {"type": "integer"}}}}
        }}
    })
}
