//! The registries through a data-exchange gateway over HTTP/JSON (the API the simulator
//! serves): per-call timeout, retries with jittered backoff, a circuit breaker and a
//! concurrency limit per registry, a TTL cache of found records, and an audit record for
//! every lookup.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use motcua_reference::civil::now_ms;
use motcua_security::{SecretSource, TlsFiles};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use tokio::sync::Semaphore;

use crate::audit::{AuditRecord, AuditSink};
use crate::model::{Business, Citizen, Parcel};
use crate::resilience::{CircuitBreaker, TtlCache};
use crate::telemetry;
use crate::{BusinessRegistry, Error, LandRegistry, Lookup, PopulationRegistry, Result};

/// The `[registries.http]` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Gateway base URL, e.g. `https://ndxp.example.gov.vn/registries`.
    pub base_url: String,
    pub timeout_ms: u64,
    /// Attempts per lookup (1 = no retry).
    pub max_attempts: u32,
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    /// Concurrent requests per registry.
    pub max_concurrency: usize,
    /// How long a found record is reused; 0 disables the cache.
    pub cache_ttl_s: u64,
    pub cache_capacity: usize,
    /// Consecutive failures that open the circuit, and how long it stays open.
    pub breaker_failures: u32,
    pub breaker_open_ms: u64,
    /// TLS to an `https://` gateway: whom to trust (`ca_file`; absent: the system's CAs)
    /// and our certificate for mutual TLS (`cert_file`, `key_file`).
    pub tls: TlsFiles,
    /// A bearer token sent with every request (only over https), from a file or an
    /// environment variable.
    pub token_file: Option<PathBuf>,
    pub token_env: Option<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            base_url: "http://127.0.0.1:8088".to_owned(),
            timeout_ms: 2_000,
            max_attempts: 3,
            backoff_initial_ms: 100,
            backoff_max_ms: 2_000,
            max_concurrency: 32,
            cache_ttl_s: 300,
            cache_capacity: 100_000,
            breaker_failures: 5,
            breaker_open_ms: 10_000,
            tls: TlsFiles::default(),
            token_file: None,
            token_env: None,
        }
    }
}

/// Cache and breaker statistics of one registry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EndpointStats {
    pub requests: u64,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub breaker_rejections: u64,
}

impl EndpointStats {
    pub fn hit_rate(&self) -> f64 {
        let total = self.cache_hits + self.cache_misses;
        if total == 0 {
            0.0
        } else {
            self.cache_hits as f64 / total as f64
        }
    }
}

#[derive(Debug)]
struct Endpoint<V> {
    name: &'static str,
    breaker: CircuitBreaker,
    cache: TtlCache<V>,
    permits: Semaphore,
    requests: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    rejected: AtomicU64,
}

impl<V: Clone> Endpoint<V> {
    fn new(name: &'static str, cfg: &HttpConfig) -> Self {
        Self {
            name,
            breaker: CircuitBreaker::new(cfg.breaker_failures, Duration::from_millis(cfg.breaker_open_ms)),
            cache: TtlCache::new(Duration::from_secs(cfg.cache_ttl_s), cfg.cache_capacity),
            permits: Semaphore::new(cfg.max_concurrency.max(1)),
            requests: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
        }
    }

    fn stats(&self) -> EndpointStats {
        EndpointStats {
            requests: self.requests.load(Ordering::Relaxed),
            cache_hits: self.hits.load(Ordering::Relaxed),
            cache_misses: self.misses.load(Ordering::Relaxed),
            breaker_rejections: self.rejected.load(Ordering::Relaxed),
        }
    }
}

/// The three registries behind one gateway.
#[derive(Debug, Clone)]
pub struct HttpRegistries {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    client: reqwest::Client,
    cfg: HttpConfig,
    population: Endpoint<Citizen>,
    land: Endpoint<Parcel>,
    business: Endpoint<Business>,
    audit: Arc<dyn AuditSink>,
}

/// The gateway client, built the one way outward HTTP clients are
/// ([`motcua_security::http::http_client`]).
fn client(cfg: &HttpConfig) -> std::result::Result<reqwest::Client, String> {
    use motcua_security::http::{http_client, HttpAuth, HttpClientSettings};
    let token = SecretSource::new(cfg.token_file.clone(), cfg.token_env.clone());
    http_client(&HttpClientSettings {
        what: "registries.http",
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
    .map_err(|e| e.to_string())
}

enum Attempt<V> {
    Found(V),
    NotFound,
    Refused(String),
    Failed(String),
}

impl HttpRegistries {
    pub fn new(cfg: HttpConfig, audit: Arc<dyn AuditSink>) -> Result<Self> {
        let client = client(&cfg).map_err(|reason| Error::Refused {
            registry: "gateway",
            reason,
        })?;
        Ok(Self {
            inner: Arc::new(Inner {
                population: Endpoint::new("population", &cfg),
                land: Endpoint::new("land", &cfg),
                business: Endpoint::new("business", &cfg),
                client,
                cfg,
                audit,
            }),
        })
    }

    pub fn stats(&self) -> [(&'static str, EndpointStats); 3] {
        [
            ("population", self.inner.population.stats()),
            ("land", self.inner.land.stats()),
            ("business", self.inner.business.stats()),
        ]
    }

    async fn lookup<V: Clone + DeserializeOwned>(
        &self,
        ep: &Endpoint<V>,
        lookup: &Lookup<'_>,
        key: &str,
        path: &str,
    ) -> Result<Option<V>> {
        let started = Instant::now();
        let audit = |outcome: &'static str, cached: bool, attempts: u32| {
            self.inner.audit.record(AuditRecord {
                at_ms: now_ms(),
                caller: lookup.caller.to_owned(),
                dossier_id: lookup.dossier_id.to_owned(),
                registry: ep.name,
                subject: key.to_owned(),
                outcome,
                cached,
                attempts,
                latency_ms: started.elapsed().as_millis().min(u128::from(u32::MAX)) as u32,
            });
            telemetry::lookup_done(ep.name, outcome);
        };
        if let Some(v) = ep.cache.get(key, started) {
            ep.hits.fetch_add(1, Ordering::Relaxed);
            telemetry::cache_hit(ep.name);
            audit("found", true, 0);
            return Ok(Some(v));
        }
        ep.misses.fetch_add(1, Ordering::Relaxed);
        telemetry::cache_miss(ep.name);

        let cfg = &self.inner.cfg;
        let url = format!("{}{path}", cfg.base_url.trim_end_matches('/'));
        let mut delay = Duration::from_millis(cfg.backoff_initial_ms);
        let mut last = String::new();
        for attempt in 1..=cfg.max_attempts.max(1) {
            if !ep.breaker.allow(Instant::now()) {
                ep.rejected.fetch_add(1, Ordering::Relaxed);
                audit("unavailable", false, attempt - 1);
                return Err(Error::Unavailable {
                    registry: ep.name,
                    reason: if last.is_empty() {
                        "circuit open".to_owned()
                    } else {
                        format!("circuit open after: {last}")
                    },
                });
            }
            let outcome = {
                let _permit = ep.permits.acquire().await.map_err(|_| Error::Unavailable {
                    registry: ep.name,
                    reason: "client shut down".to_owned(),
                })?;
                ep.requests.fetch_add(1, Ordering::Relaxed);
                let t = Instant::now();
                let r = self.attempt::<V>(&url, lookup).await;
                telemetry::request_done(ep.name, t.elapsed());
                r
            };
            match outcome {
                Attempt::Found(v) => {
                    if ep.breaker.on_success() {
                        telemetry::circuit_closed(ep.name);
                    }
                    ep.cache.put(key.to_owned(), v.clone(), Instant::now());
                    audit("found", false, attempt);
                    return Ok(Some(v));
                }
                Attempt::NotFound => {
                    if ep.breaker.on_success() {
                        telemetry::circuit_closed(ep.name);
                    }
                    audit("not_found", false, attempt);
                    return Ok(None);
                }
                Attempt::Refused(reason) => {
                    if ep.breaker.on_success() {
                        telemetry::circuit_closed(ep.name);
                    }
                    audit("refused", false, attempt);
                    return Err(Error::Refused {
                        registry: ep.name,
                        reason,
                    });
                }
                Attempt::Failed(reason) => {
                    if ep.breaker.on_failure(Instant::now()) {
                        telemetry::circuit_opened(ep.name, &reason);
                    }
                    last = reason;
                    if attempt < cfg.max_attempts {
                        tokio::time::sleep(crate::resilience::full_jitter(delay)).await;
                        delay = (delay * 2).min(Duration::from_millis(cfg.backoff_max_ms));
                    }
                }
            }
        }
        audit("unavailable", false, cfg.max_attempts);
        Err(Error::Unavailable {
            registry: ep.name,
            reason: last,
        })
    }

    async fn attempt<V: DeserializeOwned>(&self, url: &str, lookup: &Lookup<'_>) -> Attempt<V> {
        let response = self
            .inner
            .client
            .get(url)
            .header("x-motcua-caller", lookup.caller)
            .header("x-motcua-dossier-id", lookup.dossier_id)
            .send()
            .await;
        let response = match response {
            Ok(r) => r,
            Err(e) if e.is_timeout() => return Attempt::Failed("timed out".to_owned()),
            // Without the URL: it holds the citizen ID or tax code looked up.
            Err(e) => return Attempt::Failed(format!("request failed: {}", e.without_url())),
        };
        let status = response.status();
        if status.is_success() {
            // Read at most MAX_ANSWER_BYTES: a registry that sends more is broken.
            let mut response = response;
            let mut body = Vec::new();
            loop {
                match response.chunk().await {
                    Ok(Some(chunk)) => {
                        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                            return Attempt::Refused(format!("answer larger than {MAX_ANSWER_BYTES} bytes"));
                        }
                        body.extend_from_slice(&chunk);
                    }
                    Ok(None) => break,
                    Err(e) if e.is_timeout() => return Attempt::Failed("timed out reading the body".to_owned()),
                    Err(e) => return Attempt::Failed(format!("reading the body failed: {}", e.without_url())),
                }
            }
            return match parse_answer::<V>(&body) {
                Ok(v) => Attempt::Found(v),
                Err(e) => Attempt::Refused(e),
            };
        }
        match status.as_u16() {
            404 => Attempt::NotFound,
            408 | 429 | 500..=599 => Attempt::Failed(format!("HTTP {status}")),
            _ => Attempt::Refused(format!("HTTP {status}")),
        }
    }
}

/// The largest registry answer read (a person, a parcel or an enterprise is a few KB).
pub const MAX_ANSWER_BYTES: usize = 256 * 1024;

/// Parses a registry's answer body. Never panics, whatever the bytes (fuzzed:
/// `tests/fuzz`); the error says what was wrong without quoting the answer, which holds
/// personal data.
pub fn parse_answer<V: DeserializeOwned>(body: &[u8]) -> std::result::Result<V, String> {
    if body.len() > MAX_ANSWER_BYTES {
        return Err(format!("answer larger than {MAX_ANSWER_BYTES} bytes"));
    }
    serde_json::from_slice(body).map_err(|e| {
        format!(
            "unexpected answer ({:?} at line {} column {})",
            e.classify(),
            e.line(),
            e.column()
        )
    })
}

/// Path segments are plain digits/codes; anything else is percent-encoded.
fn segment(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

impl PopulationRegistry for HttpRegistries {
    async fn citizen(&self, lookup: &Lookup<'_>, citizen_id: &str) -> Result<Option<Citizen>> {
        let path = format!("/v1/citizens/{}", segment(citizen_id));
        self.lookup(&self.inner.population, lookup, citizen_id, &path).await
    }
}

impl LandRegistry for HttpRegistries {
    async fn parcel(
        &self,
        lookup: &Lookup<'_>,
        unit_code: &str,
        map_sheet: i32,
        parcel_number: i32,
    ) -> Result<Option<Parcel>> {
        let key = format!("{unit_code}/{map_sheet}/{parcel_number}");
        let path = format!("/v1/parcels/{}/{map_sheet}/{parcel_number}", segment(unit_code));
        self.lookup(&self.inner.land, lookup, &key, &path).await
    }
}

impl BusinessRegistry for HttpRegistries {
    async fn business(&self, lookup: &Lookup<'_>, tax_code: &str) -> Result<Option<Business>> {
        let path = format!("/v1/enterprises/{}", segment(tax_code));
        self.lookup(&self.inner.business, lookup, tax_code, &path).await
    }
}

#[cfg(test)]
mod fuzz_corpus {
    use super::*;
    use crate::{Business, Citizen, Parcel};

    /// The fuzzer's corpus for registry answers (tests/fuzz/corpus/registry_answer),
    /// replayed: parsed or refused, never a panic; refusals do not quote the answer.
    #[test]
    fn the_registry_answer_fuzz_corpus_replays_without_a_panic() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fuzz/corpus/registry_answer");
        let mut replayed = 0;
        for entry in std::fs::read_dir(&dir).expect("the corpus is committed") {
            let data = std::fs::read(entry.expect("entry").path()).expect("read");
            let _ = parse_answer::<Citizen>(&data);
            let _ = parse_answer::<Parcel>(&data);
            let _ = parse_answer::<Business>(&data);
            replayed += 1;
        }
        assert!(replayed >= 3, "only {replayed} corpus entries");
        // serde_json's own message would quote the value ("invalid type: string ...").
        let body = r#"{"citizen_id": "1", "full_name": "x", "date_of_birth": "Bí Mật"}"#;
        let e = parse_answer::<Citizen>(body.as_bytes()).unwrap_err();
        assert!(!e.contains("Bí Mật"), "{e}");
        assert!(parse_answer::<Citizen>(&vec![b' '; MAX_ANSWER_BYTES + 1]).is_err());
    }
}
