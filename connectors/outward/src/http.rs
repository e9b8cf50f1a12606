//! The outward systems over HTTP/JSON (the APIs the simulators serve): every call with a
//! timeout, retries with jittered backoff, a circuit breaker and a concurrency limit per
//! system. The client is built the one way outward HTTP clients are
//! ([`motcua_security::http::http_client`]): TLS verified, credentials never over plain
//! HTTP.
//!
//! - wallet: `PUT {base}/v1/owners/{owner}/documents/{idempotency_key}` → 201/200
//!   `{"receipt_id"}`; 507 (wallet full) is "later", 404/409/422 are refusals.
//! - portal: `PUT {base}/v1/dossiers/{code}/status-changes/{change_id}` → 201/200
//!   `{"receipt_id"}`; `GET {base}/v1/dossiers/{code}` → the record, 404 none.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use motcua_resilience::{full_jitter, CircuitBreaker};
use motcua_security::{SecretSource, TlsFiles};
use serde::Deserialize;
use tokio::sync::Semaphore;

use crate::telemetry;
use crate::{Error, NationalPortal, PortalRecord, Receipt, Result, StatusChange, WalletDelivery, WalletGateway};

/// The settings of one outward HTTP system (`[result.wallet]`, `[portal]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Base URL, e.g. `https://vdt.example.gov.vn/api`.
    pub base_url: String,
    pub timeout_ms: u64,
    /// Attempts per call (1 = no retry); a call that still fails is retried later by
    /// its stage (parked, or the batch held).
    pub max_attempts: u32,
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    /// Concurrent requests.
    pub max_concurrency: usize,
    /// Consecutive failures that open the circuit, and how long it stays open.
    pub breaker_failures: u32,
    pub breaker_open_ms: u64,
    /// TLS to an `https://` system: whom to trust (`ca_file`; absent: the system's CAs)
    /// and our certificate for mutual TLS.
    pub tls: TlsFiles,
    /// A bearer token sent with every request (only over https), from a file or an
    /// environment variable.
    pub token_file: Option<PathBuf>,
    pub token_env: Option<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            base_url: String::new(),
            timeout_ms: 5_000,
            max_attempts: 3,
            backoff_initial_ms: 100,
            backoff_max_ms: 2_000,
            max_concurrency: 16,
            breaker_failures: 5,
            breaker_open_ms: 5_000,
            tls: TlsFiles::default(),
            token_file: None,
            token_env: None,
        }
    }
}

/// The largest answer read (a receipt or a portal record is a few KB).
pub const MAX_ANSWER_BYTES: usize = 256 * 1024;

/// An answer the system gave (any HTTP status but a failure's).
struct Answer {
    status: u16,
    body: Vec<u8>,
}

/// One system behind its breaker and concurrency limit.
#[derive(Debug)]
struct Endpoint {
    system: &'static str,
    cfg: HttpConfig,
    client: reqwest::Client,
    breaker: CircuitBreaker,
    permits: Semaphore,
}

impl Endpoint {
    fn new(system: &'static str, what: &str, cfg: HttpConfig) -> Result<Self> {
        use motcua_security::http::{http_client, HttpAuth, HttpClientSettings};
        let refused = |reason: String| Error::Refused {
            system,
            code: "configuration".to_owned(),
            reason,
        };
        if cfg.base_url.is_empty() {
            return Err(refused(format!("{what}.base_url is not set")));
        }
        if cfg.max_attempts == 0 {
            return Err(refused(format!("{what}.max_attempts must be at least 1")));
        }
        let token = SecretSource::new(cfg.token_file.clone(), cfg.token_env.clone());
        let client = http_client(&HttpClientSettings {
            what,
            base_url: &cfg.base_url,
            tls: &cfg.tls,
            auth: if token.is_set() {
                HttpAuth::Bearer(token)
            } else {
                HttpAuth::None
            },
            timeout: Duration::from_millis(cfg.timeout_ms),
            max_idle_per_host: cfg.max_concurrency,
        })
        .map_err(|e| refused(e.to_string()))?;
        Ok(Self {
            system,
            breaker: CircuitBreaker::new(cfg.breaker_failures, Duration::from_millis(cfg.breaker_open_ms)),
            permits: Semaphore::new(cfg.max_concurrency.max(1)),
            client,
            cfg,
        })
    }

    /// Sends the request until the system answers (any status but 408, 429 and 5xx),
    /// at most `max_attempts` times. `path` may hold personal data (an owner): it is
    /// never part of an error.
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<&serde_json::Value>) -> Result<Answer> {
        let url = format!("{}{path}", self.cfg.base_url.trim_end_matches('/'));
        let mut delay = Duration::from_millis(self.cfg.backoff_initial_ms);
        let mut last = String::new();
        for attempt in 1..=self.cfg.max_attempts {
            if !self.breaker.allow(Instant::now()) {
                telemetry::request(self.system, "circuit_open");
                return Err(Error::Unavailable {
                    system: self.system,
                    reason: if last.is_empty() {
                        "circuit open".to_owned()
                    } else {
                        format!("circuit open after: {last}")
                    },
                });
            }
            let outcome = {
                let _permit = self.permits.acquire().await.map_err(|_| Error::Unavailable {
                    system: self.system,
                    reason: "client shut down".to_owned(),
                })?;
                let t = Instant::now();
                let mut request = self.client.request(method.clone(), &url);
                if let Some(body) = body {
                    request = request.json(body);
                }
                let r = attempt_once(request).await;
                telemetry::request_duration(self.system, t.elapsed());
                r
            };
            match outcome {
                Ok(answer) => {
                    telemetry::request(self.system, "answered");
                    if self.breaker.on_success() {
                        telemetry::circuit(self.system, false, "");
                    }
                    return Ok(answer);
                }
                Err(reason) => {
                    telemetry::request(self.system, "failed");
                    if self.breaker.on_failure(Instant::now()) {
                        telemetry::circuit(self.system, true, &reason);
                    }
                    last = reason;
                    if attempt < self.cfg.max_attempts {
                        telemetry::retry(self.system);
                        tokio::time::sleep(full_jitter(delay)).await;
                        delay = (delay * 2).min(Duration::from_millis(self.cfg.backoff_max_ms));
                    }
                }
            }
        }
        Err(Error::Unavailable {
            system: self.system,
            reason: last,
        })
    }

    fn refused(&self, answer: &Answer) -> Error {
        let code = error_code(&answer.body).unwrap_or_else(|| format!("http_{}", answer.status));
        if answer.status == 409 {
            return Error::Conflict {
                system: self.system,
                reason: format!("HTTP 409 {code}"),
            };
        }
        Error::Refused {
            system: self.system,
            reason: format!("HTTP {} {code}", answer.status),
            code,
        }
    }
}

/// One request: an answer, or why there was none (the reason never holds the URL).
async fn attempt_once(request: reqwest::RequestBuilder) -> std::result::Result<Answer, String> {
    let mut response = match request.send().await {
        Ok(r) => r,
        Err(e) if e.is_timeout() => return Err("timed out".to_owned()),
        Err(e) => return Err(format!("request failed: {}", e.without_url())),
    };
    let status = response.status().as_u16();
    if matches!(status, 408 | 429 | 500..=599) && status != 507 {
        return Err(format!("HTTP {status}"));
    }
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                    return Err(format!("answer larger than {MAX_ANSWER_BYTES} bytes"));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(e) if e.is_timeout() => return Err("timed out reading the answer".to_owned()),
            Err(e) => return Err(format!("reading the answer failed: {}", e.without_url())),
        }
    }
    Ok(Answer { status, body })
}

/// The `error` field of a JSON error body, if it is a short code.
fn error_code(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct E {
        error: String,
    }
    let e: E = serde_json::from_slice(body).ok()?;
    let ok =
        !e.error.is_empty() && e.error.len() <= 40 && e.error.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    ok.then_some(e.error)
}

fn receipt(system: &'static str, answer: &Answer) -> Result<Receipt> {
    let mut r: Receipt = serde_json::from_slice(&answer.body).map_err(|_| Error::Unavailable {
        system,
        reason: format!("HTTP {} without a readable receipt", answer.status),
    })?;
    if r.receipt_id.is_empty() || r.receipt_id.len() > 200 {
        return Err(Error::Unavailable {
            system,
            reason: "the receipt id is empty or too long".to_owned(),
        });
    }
    r.duplicate |= answer.status == 200;
    Ok(r)
}

/// Percent-encodes one path segment (an owner, a key or a code may hold any character).
fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The e-wallet gateway over HTTP.
#[derive(Debug, Clone)]
pub struct HttpWallet {
    endpoint: Arc<Endpoint>,
}

impl HttpWallet {
    /// `what` names the configuration section in errors (`result.wallet`).
    pub fn new(what: &str, cfg: HttpConfig) -> Result<Self> {
        Ok(Self {
            endpoint: Arc::new(Endpoint::new(telemetry::WALLET, what, cfg)?),
        })
    }
}

impl WalletGateway for HttpWallet {
    async fn deliver(&self, d: &WalletDelivery) -> Result<Receipt> {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let body = serde_json::json!({
            "dossier_code": d.dossier_code,
            "document_base64": b64.encode(&d.document),
            "document_sha256": d.document_sha256,
            "signed_record": d.signed_record,
            "record_signature": b64.encode(&d.record_signature),
        });
        let path = format!(
            "/v1/owners/{}/documents/{}",
            segment(&d.owner),
            segment(&d.idempotency_key)
        );
        let ep = &self.endpoint;
        let answer = ep.call(reqwest::Method::PUT, &path, Some(&body)).await?;
        match answer.status {
            200 | 201 => receipt(ep.system, &answer),
            // The owner's wallet is full: they may make room; try again later.
            507 => Err(Error::Unavailable {
                system: ep.system,
                reason: "the owner's wallet is full".to_owned(),
            }),
            _ => Err(ep.refused(&answer)),
        }
    }
}

/// The National Public Service Portal over HTTP.
#[derive(Debug, Clone)]
pub struct HttpPortal {
    endpoint: Arc<Endpoint>,
}

impl HttpPortal {
    /// `what` names the configuration section in errors (`portal`).
    pub fn new(what: &str, cfg: HttpConfig) -> Result<Self> {
        Ok(Self {
            endpoint: Arc::new(Endpoint::new(telemetry::PORTAL, what, cfg)?),
        })
    }
}

impl NationalPortal for HttpPortal {
    async fn push(&self, c: &StatusChange) -> Result<Receipt> {
        let body = serde_json::to_value(c).map_err(|e| Error::Refused {
            system: telemetry::PORTAL,
            code: "encoding".to_owned(),
            reason: e.to_string(),
        })?;
        let path = format!(
            "/v1/dossiers/{}/status-changes/{}",
            segment(&c.dossier_code),
            segment(&c.change_id)
        );
        let ep = &self.endpoint;
        let answer = ep.call(reqwest::Method::PUT, &path, Some(&body)).await?;
        match answer.status {
            200 | 201 => receipt(ep.system, &answer),
            _ => Err(ep.refused(&answer)),
        }
    }

    async fn fetch(&self, dossier_code: &str) -> Result<Option<PortalRecord>> {
        #[derive(Deserialize)]
        struct Filed {
            change_id: String,
        }
        #[derive(Deserialize)]
        struct Record {
            dossier_code: String,
            status: u8,
            changed_at_ms: i64,
            changes: Vec<Filed>,
        }
        let ep = &self.endpoint;
        let answer = ep
            .call(
                reqwest::Method::GET,
                &format!("/v1/dossiers/{}", segment(dossier_code)),
                None,
            )
            .await?;
        match answer.status {
            200 => {
                let r: Record = serde_json::from_slice(&answer.body).map_err(|_| Error::Unavailable {
                    system: ep.system,
                    reason: "the portal's record does not parse".to_owned(),
                })?;
                Ok(Some(PortalRecord {
                    dossier_code: r.dossier_code,
                    status: r.status,
                    changed_at_ms: r.changed_at_ms,
                    change_ids: r.changes.into_iter().map(|c| c.change_id).collect(),
                }))
            }
            404 => Ok(None),
            _ => Err(ep.refused(&answer)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_percent_encoded() {
        assert_eq!(segment("H22.06685-261206-0001"), "H22.06685-261206-0001");
        assert_eq!(segment("a/b c"), "a%2Fb%20c");
        assert_eq!(segment("Đ"), "%C4%90");
    }

    #[test]
    fn only_short_codes_are_taken_from_error_bodies() {
        assert_eq!(
            error_code(br#"{"error":"owner_unknown"}"#).as_deref(),
            Some("owner_unknown")
        );
        assert_eq!(error_code(br#"{"error":"079 201 000 123 is unknown"}"#), None);
        assert_eq!(error_code(b"<html>"), None);
    }

    #[test]
    fn a_configuration_without_a_url_or_attempts_is_refused() {
        let e = HttpWallet::new("result.wallet", HttpConfig::default()).unwrap_err();
        assert!(e.to_string().contains("result.wallet.base_url is not set"), "{e}");
        let cfg = HttpConfig {
            base_url: "http://127.0.0.1:1".to_owned(),
            max_attempts: 0,
            ..HttpConfig::default()
        };
        let e = HttpPortal::new("portal", cfg).unwrap_err();
        assert!(e.to_string().contains("portal.max_attempts"), "{e}");
    }
}
