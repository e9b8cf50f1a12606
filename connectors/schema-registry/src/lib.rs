//! A client of a Confluent-compatible Schema Registry, written against Confluent's REST
//! API (v1) documentation: subjects follow the TopicNameStrategy (`<topic>-value`);
//! `register` returns the registry's id for a schema (the same id again for a schema
//! it already holds), `schema` resolves a writer id (`GET /schemas/ids/{id}`, cached:
//! an id never changes meaning), and compatibility is set and checked per subject.
//! Connections are built the one way outward HTTP clients are
//! ([`motcua_security::http`]): TLS, basic or bearer credentials.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use motcua_security::http::{http_client, HttpAuth, HttpClientSettings};
use motcua_security::TlsFiles;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

pub mod testing;
mod worker;
pub use worker::{find_in, same_schema, IdPolicy, StartupError};

/// The media type of the REST API's requests and answers.
const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("schema registry client: {0}")]
    Client(#[from] motcua_security::Error),
    #[error("schema registry at {url} unreachable: {reason}")]
    Unreachable { url: String, reason: String },
    /// The registry answered with an error (`error_code` as the REST API defines them,
    /// e.g. 409 incompatible, 40401 subject not found, 40403 schema not found).
    #[error("schema registry: {message} (HTTP {status}, error code {error_code})")]
    Api {
        status: u16,
        error_code: i64,
        message: String,
    },
    #[error("schema registry: unexpected answer to {what}: {detail}")]
    Unexpected { what: String, detail: String },
}

impl Error {
    /// Whether the registry was not reached (down, or the network), as opposed to an
    /// answer: a worker may wait and retry the first, never the second.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Error::Unreachable { .. }) || matches!(self, Error::Api { status, .. } if *status >= 500)
    }

    /// The registry refused the schema as incompatible with what the subject holds.
    pub fn is_incompatible(&self) -> bool {
        matches!(self, Error::Api { status: 409, .. })
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Compatibility levels of the REST API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compatibility {
    Backward,
    BackwardTransitive,
    Forward,
    ForwardTransitive,
    Full,
    FullTransitive,
    None,
}

impl Compatibility {
    pub fn as_str(self) -> &'static str {
        match self {
            Compatibility::Backward => "BACKWARD",
            Compatibility::BackwardTransitive => "BACKWARD_TRANSITIVE",
            Compatibility::Forward => "FORWARD",
            Compatibility::ForwardTransitive => "FORWARD_TRANSITIVE",
            Compatibility::Full => "FULL",
            Compatibility::FullTransitive => "FULL_TRANSITIVE",
            Compatibility::None => "NONE",
        }
    }
}

/// Where the registry is and how to authenticate.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    pub url: String,
    pub tls: TlsFiles,
    pub auth: HttpAuth,
    pub timeout: Duration,
}

impl RegistryConfig {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            tls: TlsFiles::default(),
            auth: HttpAuth::None,
            timeout: Duration::from_secs(5),
        }
    }
}

/// The client. Cheap to clone; clones share the id cache.
#[derive(Debug, Clone)]
pub struct SchemaRegistry {
    http: reqwest::Client,
    base: String,
    by_id: Arc<Mutex<HashMap<u32, Arc<str>>>>,
}

impl SchemaRegistry {
    pub fn new(cfg: &RegistryConfig) -> Result<Self> {
        let http = http_client(&HttpClientSettings {
            what: "schema_registry",
            base_url: &cfg.url,
            tls: &cfg.tls,
            auth: cfg.auth.clone(),
            timeout: cfg.timeout,
            max_idle_per_host: 4,
        })?;
        Ok(Self {
            http,
            base: cfg.url.trim_end_matches('/').to_owned(),
            by_id: Arc::default(),
        })
    }

    /// Registers `schema` under `subject` (or finds it there) and returns its id. A schema
    /// the subject's compatibility level refuses is [`Error::is_incompatible`].
    pub async fn register(&self, subject: &str, schema: &str) -> Result<u32> {
        let answer: Value = self
            .send(
                "register",
                self.http
                    .post(self.url(&["subjects", subject, "versions"]))
                    .json(&json!({"schema": schema})),
            )
            .await?;
        let id = id_of(&answer, "register")?;
        self.remember(id, schema);
        Ok(id)
    }

    /// The schema of writer id `id` (cached: an id never changes meaning).
    pub async fn schema(&self, id: u32) -> Result<Arc<str>> {
        if let Some(s) = self.cached(id) {
            return Ok(s);
        }
        let answer: Value = self
            .send(
                "schema by id",
                self.http.get(self.url(&["schemas", "ids", &id.to_string()])),
            )
            .await?;
        let schema = answer["schema"].as_str().ok_or_else(|| Error::Unexpected {
            what: "schema by id".into(),
            detail: "no schema string".into(),
        })?;
        Ok(self.remember(id, schema))
    }

    /// A schema already fetched or registered by this client, without asking.
    pub fn cached(&self, id: u32) -> Option<Arc<str>> {
        self.by_id
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&id)
            .cloned()
    }

    /// Sets the compatibility level of `subject`.
    pub async fn set_compatibility(&self, subject: &str, level: Compatibility) -> Result<()> {
        let _: Value = self
            .send(
                "set compatibility",
                self.http
                    .put(self.url(&["config", subject]))
                    .json(&json!({"compatibility": level.as_str()})),
            )
            .await?;
        Ok(())
    }

    /// The compatibility level `subject` is checked with: its own, or the registry's
    /// default when it has none (40408).
    pub async fn compatibility(&self, subject: &str) -> Result<String> {
        let level = |v: &Value| {
            v["compatibilityLevel"]
                .as_str()
                .or_else(|| v["compatibility"].as_str())
                .map(str::to_owned)
        };
        match self
            .send::<Value>("get compatibility", self.http.get(self.url(&["config", subject])))
            .await
        {
            Ok(v) if level(&v).is_some() => return Ok(level(&v).unwrap_or_default()),
            Ok(_)
            | Err(Error::Api {
                error_code: 40408 | 40401 | 404,
                ..
            }) => {}
            Err(e) => return Err(e),
        }
        let global: Value = self
            .send("get compatibility", self.http.get(self.url(&["config"])))
            .await?;
        level(&global).ok_or_else(|| Error::Unexpected {
            what: "get compatibility".into(),
            detail: "no compatibilityLevel".into(),
        })
    }

    /// Whether `schema` may be registered under `subject` (against the versions its level
    /// compares with), and the registry's explanations when not. A subject with no
    /// version yet accepts anything.
    pub async fn check_compatibility(&self, subject: &str, schema: &str) -> Result<(bool, Vec<String>)> {
        let answer = self
            .send::<Value>(
                "check compatibility",
                self.http
                    .post(self.url(&["compatibility", "subjects", subject, "versions", "latest"]))
                    .query(&[("verbose", "true")])
                    .json(&json!({"schema": schema})),
            )
            .await;
        let answer = match answer {
            Err(Error::Api {
                error_code: 40401 | 40402,
                ..
            }) => return Ok((true, Vec::new())),
            other => other?,
        };
        let ok = answer["is_compatible"].as_bool().ok_or_else(|| Error::Unexpected {
            what: "check compatibility".into(),
            detail: "no is_compatible".into(),
        })?;
        let messages = answer["messages"]
            .as_array()
            .map(|m| m.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        Ok((ok, messages))
    }

    pub async fn subjects(&self) -> Result<Vec<String>> {
        self.send("list subjects", self.http.get(self.url(&["subjects"]))).await
    }

    /// The version numbers of `subject` (none: an empty list).
    pub async fn versions(&self, subject: &str) -> Result<Vec<u32>> {
        match self
            .send(
                "list versions",
                self.http.get(self.url(&["subjects", subject, "versions"])),
            )
            .await
        {
            Err(Error::Api { error_code: 40401, .. }) => Ok(Vec::new()),
            other => other,
        }
    }

    /// Version `version` of `subject`: (id, schema).
    pub async fn version(&self, subject: &str, version: u32) -> Result<(u32, Arc<str>)> {
        let answer: Value = self
            .send(
                "get version",
                self.http
                    .get(self.url(&["subjects", subject, "versions", &version.to_string()])),
            )
            .await?;
        let id = id_of(&answer, "get version")?;
        let schema = answer["schema"].as_str().ok_or_else(|| Error::Unexpected {
            what: "get version".into(),
            detail: "no schema string".into(),
        })?;
        Ok((id, self.remember(id, schema)))
    }

    fn remember(&self, id: u32, schema: &str) -> Arc<str> {
        let mut cache = self.by_id.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        cache.entry(id).or_insert_with(|| Arc::from(schema)).clone()
    }

    /// `base/seg/seg…`, each segment percent-encoded (subjects hold dots, and could hold more).
    fn url(&self, segments: &[&str]) -> String {
        let mut url = self.base.clone();
        for s in segments {
            url.push('/');
            for b in s.bytes() {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    url.push(b as char);
                } else {
                    url.push_str(&format!("%{b:02X}"));
                }
            }
        }
        url
    }

    async fn send<T: DeserializeOwned>(&self, what: &str, request: reqwest::RequestBuilder) -> Result<T> {
        let response = request
            .header(reqwest::header::ACCEPT, CONTENT_TYPE)
            .send()
            .await
            .map_err(|e| Error::Unreachable {
                url: self.base.clone(),
                reason: e.without_url().to_string(),
            })?;
        let status = response.status().as_u16();
        let body = response.bytes().await.map_err(|e| Error::Unreachable {
            url: self.base.clone(),
            reason: e.without_url().to_string(),
        })?;
        if !(200..300).contains(&status) {
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            return Err(Error::Api {
                status,
                error_code: v["error_code"].as_i64().unwrap_or(i64::from(status)),
                message: v["message"]
                    .as_str()
                    .unwrap_or("(no message)")
                    .chars()
                    .take(500)
                    .collect(),
            });
        }
        serde_json::from_slice(&body).map_err(|e| Error::Unexpected {
            what: what.to_owned(),
            detail: e.to_string(),
        })
    }
}

fn id_of(answer: &Value, what: &str) -> Result<u32> {
    answer["id"]
        .as_u64()
        .and_then(|id| u32::try_from(id).ok())
        .ok_or_else(|| Error::Unexpected {
            what: what.into(),
            detail: "no schema id".into(),
        })
}
