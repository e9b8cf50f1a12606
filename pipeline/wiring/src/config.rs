//! Worker configuration: a TOML file, then `MOTCUA_<SECTION>__<KEY>` environment
//! variables, then command-line flags. Every key is typed and unknown keys are refused,
//! so a typo fails at start-up instead of being silently ignored.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use motcua_kafka::KafkaConfig;
use motcua_runtime::RuntimeConfig;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub kafka: KafkaConfig,
    pub database: DatabaseConfig,
    pub runtime: RuntimeSection,
    pub metrics: MetricsConfig,
    pub reference: ReferenceConfig,
    pub registries: RegistriesConfig,
    pub intake: IntakeConfig,
    pub verify: VerifyConfig,
    pub routing: RoutingConfig,
    pub result: ResultConfig,
    pub portal: PortalConfig,
    pub track: TrackConfig,
    pub schema_registry: SchemaRegistryConfig,
    /// Limits at the door: what a decoded input may hold before a stage acts on it.
    pub limits: motcua_schemas::Limits,
}

/// The track stage's status API and deadline warnings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrackConfig {
    /// Address of the status API (`/lookup`, `/dossiers/{code}`, `/stats`,
    /// `/units/{code}/load`, `/openapi.json`); empty to disable.
    pub api_listen: String,
    /// Operators' API keys (digests; `motcua api-key add` writes the file). Without it
    /// every operator endpoint answers 401 and only citizens' lookups work.
    pub api_keys_file: Option<PathBuf>,
    /// Requests without a key (citizens' lookups), per client address.
    pub api_public_requests_per_minute: u32,
    pub api_public_burst: u32,
    /// Requests with a key, per key.
    pub api_operator_requests_per_minute: u32,
    pub api_operator_burst: u32,
    /// A request that takes longer (reading its body included) is answered 503.
    pub api_request_timeout_ms: u64,
    /// Time a client has to send its request head (slow clients are disconnected).
    pub api_header_timeout_ms: u64,
    /// Connections open at once; more wait in the listen backlog.
    pub api_max_connections: usize,
    /// The API's own database connections (apart from the projection's writers).
    pub api_db_connections: u32,
    /// Every API statement is cancelled after this long (PostgreSQL).
    pub api_statement_timeout_ms: u64,
    /// The result signers' JWK Set, served at `/.well-known/jwks.json` (none: 404).
    pub jwks_file: Option<PathBuf>,
    /// Reverse proxies (IP addresses) whose `X-Forwarded-For` names the client for rate
    /// limits; without them, every client behind a proxy shares the proxy's budget.
    pub api_trusted_proxies: Vec<std::net::IpAddr>,
    /// Warn when a dossier has at most this many working hours left.
    pub warn_within_working_hours: u32,
    /// Warn when a step of the internal process has spent this share of its budget
    /// (0 < share ≤ 1; budgets from routing.steps_file).
    pub step_warn_share: f64,
    /// The pipeline's store, when the projection has a database of its own
    /// (`database.url`): track records its warnings there as owed until acknowledged, so
    /// no stage ends a dossier while one is on its way. Default: `database.url`.
    pub store_url: Option<String>,
}

impl Default for TrackConfig {
    fn default() -> Self {
        let api = motcua_track::api::ApiOptions::default();
        let serve = motcua_track::api::ServeLimits::default();
        let reader = motcua_track::ReaderOptions::default();
        Self {
            api_listen: "0.0.0.0:8080".to_owned(),
            api_keys_file: None,
            api_public_requests_per_minute: api.public_rate.per_minute,
            api_public_burst: api.public_rate.burst,
            api_operator_requests_per_minute: api.operator_rate.per_minute,
            api_operator_burst: api.operator_rate.burst,
            api_request_timeout_ms: api.request_timeout.as_millis() as u64,
            api_header_timeout_ms: serve.header_timeout.as_millis() as u64,
            api_max_connections: serve.max_connections,
            api_db_connections: reader.connections,
            api_statement_timeout_ms: reader.statement_timeout.as_millis() as u64,
            jwks_file: None,
            api_trusted_proxies: Vec::new(),
            warn_within_working_hours: 8,
            step_warn_share: 0.8,
            store_url: None,
        }
    }
}

impl TrackConfig {
    /// The status API's options, its key file read and checked.
    pub fn api_options(&self) -> Result<motcua_track::api::ApiOptions> {
        use motcua_track::access::{ApiKeys, Rate};
        let keys = match &self.api_keys_file {
            Some(f) => ApiKeys::load(f).map_err(|e| anyhow::anyhow!("track.api_keys_file: {e}"))?,
            None => ApiKeys::none(),
        };
        Ok(motcua_track::api::ApiOptions {
            keys,
            public_rate: Rate {
                per_minute: self.api_public_requests_per_minute,
                burst: self.api_public_burst,
            },
            operator_rate: Rate {
                per_minute: self.api_operator_requests_per_minute,
                burst: self.api_operator_burst,
            },
            request_timeout: Duration::from_millis(self.api_request_timeout_ms),
            jwks: match &self.jwks_file {
                Some(f) => Some(
                    crate::keys::read_jwks(f)
                        .map_err(|e| anyhow::anyhow!("track.jwks_file: {e:#}"))?
                        .to_json(),
                ),
                None => None,
            },
            trusted_proxies: self.api_trusted_proxies.clone(),
            ..motcua_track::api::ApiOptions::default()
        })
    }

    pub fn serve_limits(&self) -> motcua_track::api::ServeLimits {
        motcua_track::api::ServeLimits {
            header_timeout: Duration::from_millis(self.api_header_timeout_ms),
            max_connections: self.api_max_connections,
        }
    }

    pub fn reader_options(&self) -> motcua_track::ReaderOptions {
        motcua_track::ReaderOptions {
            connections: self.api_db_connections,
            statement_timeout: Duration::from_millis(self.api_statement_timeout_ms),
        }
    }

    fn validate(&self) -> Result<()> {
        for (key, v) in [
            (
                "api_public_requests_per_minute",
                u64::from(self.api_public_requests_per_minute),
            ),
            ("api_public_burst", u64::from(self.api_public_burst)),
            (
                "api_operator_requests_per_minute",
                u64::from(self.api_operator_requests_per_minute),
            ),
            ("api_operator_burst", u64::from(self.api_operator_burst)),
            ("api_request_timeout_ms", self.api_request_timeout_ms),
            ("api_header_timeout_ms", self.api_header_timeout_ms),
            ("api_max_connections", self.api_max_connections as u64),
            ("api_db_connections", u64::from(self.api_db_connections)),
            ("api_statement_timeout_ms", self.api_statement_timeout_ms),
        ] {
            if v == 0 {
                bail!("track.{key} must be greater than 0");
            }
        }
        if !(self.step_warn_share > 0.0 && self.step_warn_share <= 1.0) {
            bail!(
                "track.step_warn_share = {} must be a share of the budget, greater than 0 and at most 1 (0.8: warn with a fifth left)",
                self.step_warn_share
            );
        }
        Ok(())
    }
}

/// A Confluent-compatible Schema Registry. Without `url`, schema ids come from the
/// table compiled into the binary (`schemas/schema-ids.csv`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchemaRegistryConfig {
    /// e.g. `https://schema-registry.example.gov.vn:8081`.
    pub url: Option<String>,
    /// Register this build's schemas at start-up (the registry answers the existing id
    /// for a schema it holds and refuses an incompatible one). Off: only look them up, and
    /// refuse to start if one is missing (`motcua schemas register` is then a deploy step).
    pub auto_register: bool,
    pub timeout_ms: u64,
    /// While the registry cannot be reached at start-up the worker waits, retrying with
    /// backoff up to this interval, instead of exiting (no crash loop).
    pub startup_retry_max_ms: u64,
    /// TLS to an `https://` registry: `ca_file`, and `cert_file` + `key_file` for mutual TLS.
    pub tls: motcua_security::TlsFiles,
    /// Basic authentication (Confluent's `basic.auth.user.info`): the user, and the
    /// password from a file or an environment variable.
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    pub password_env: Option<String>,
    /// Or a bearer token, from a file or an environment variable.
    pub token_file: Option<PathBuf>,
    pub token_env: Option<String>,
}

impl Default for SchemaRegistryConfig {
    fn default() -> Self {
        Self {
            url: None,
            auto_register: true,
            timeout_ms: 5_000,
            startup_retry_max_ms: 30_000,
            tls: motcua_security::TlsFiles::default(),
            username: None,
            password_file: None,
            password_env: None,
            token_file: None,
            token_env: None,
        }
    }
}

impl SchemaRegistryConfig {
    /// The client's settings, or `None` without a registry.
    pub fn client(&self) -> Result<Option<motcua_schema_registry::RegistryConfig>> {
        let Some(url) = self.url.as_deref().filter(|u| !u.is_empty()) else {
            return Ok(None);
        };
        let password = motcua_security::SecretSource::new(self.password_file.clone(), self.password_env.clone());
        let token = motcua_security::SecretSource::new(self.token_file.clone(), self.token_env.clone());
        let auth = match (&self.username, password.is_set(), token.is_set()) {
            (_, _, true) if self.username.is_some() || password.is_set() => {
                bail!("schema_registry: set either username + password_file/password_env (basic) or token_file/token_env (bearer), not both")
            }
            (None, false, false) => motcua_security::http::HttpAuth::None,
            (None, false, true) => motcua_security::http::HttpAuth::Bearer(token),
            (Some(user), true, false) => motcua_security::http::HttpAuth::Basic {
                user: user.clone(),
                password,
            },
            _ => bail!("schema_registry: basic authentication needs both username and password_file (or password_env)"),
        };
        if self.timeout_ms == 0 || self.startup_retry_max_ms == 0 {
            bail!("schema_registry.timeout_ms and schema_registry.startup_retry_max_ms must be > 0");
        }
        Ok(Some(motcua_schema_registry::RegistryConfig {
            url: url.to_owned(),
            tls: self.tls.clone(),
            auth,
            timeout: Duration::from_millis(self.timeout_ms),
        }))
    }
}

/// The result stage: its signing key, the e-wallet gateway it delivers to, and how
/// undelivered results are retried.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResultConfig {
    /// File holding the Ed25519 seed (64 hex digits); `motcua result-key` makes one.
    pub signing_key_file: Option<PathBuf>,
    /// Published with the public key, so wallets know which key signed.
    pub signing_key_id: String,
    /// The issuer's JWK Set (`motcua result-key --jwks`): when set, the stage refuses to
    /// start with a key that is not published there under signing_key_id, or not valid now.
    pub jwks_file: Option<PathBuf>,
    /// The e-wallet gateway (`base_url` is required to run the stage).
    pub wallet: motcua_outward::http::HttpConfig,
    /// First retry of a result the wallet did not take, and the longest wait between two.
    pub first_retry_ms: u64,
    pub max_retry_ms: u64,
    /// A result undelivered this long after its decision is handed to an officer (the
    /// timer keeps trying).
    pub escalate_after_s: u64,
    /// How often the timer looks for due deliveries.
    pub retry_poll_ms: u64,
}

impl Default for ResultConfig {
    fn default() -> Self {
        let p = motcua_resilience::ParkPolicy::default();
        Self {
            signing_key_file: None,
            signing_key_id: String::new(),
            jwks_file: None,
            wallet: motcua_outward::http::HttpConfig::default(),
            first_retry_ms: p.first_delay.as_millis() as u64,
            max_retry_ms: p.max_delay.as_millis() as u64,
            escalate_after_s: 3_600,
            retry_poll_ms: 500,
        }
    }
}

impl ResultConfig {
    pub fn delivery(&self) -> motcua_result::DeliverySettings {
        motcua_result::DeliverySettings {
            policy: motcua_resilience::ParkPolicy {
                first_delay: Duration::from_millis(self.first_retry_ms),
                max_delay: Duration::from_millis(self.max_retry_ms),
                escalate_after: Duration::from_secs(self.escalate_after_s),
            },
            poll: Duration::from_millis(self.retry_poll_ms.max(1)),
            ..motcua_result::DeliverySettings::default()
        }
    }
}

/// The National Public Service Portal the portal-sync stage pushes status changes to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PortalConfig {
    /// The portal's API (`base_url` is required to run portal-sync).
    pub http: motcua_outward::http::HttpConfig,
    /// How long portal-sync holds a batch while the portal is down, retrying, before the
    /// worker exits for its supervisor to restart it (nothing is lost either way). The
    /// stage's consumer may go this long without polling (its `max.poll.interval.ms` is
    /// raised to match), so a rebalance of its group waits for the portal too.
    pub outage_budget_s: u64,
}

impl Default for PortalConfig {
    fn default() -> Self {
        Self {
            http: motcua_outward::http::HttpConfig::default(),
            outage_budget_s: 3_600,
        }
    }
}

/// Routing data that replaces the compiled-in files; reloaded while the route stage runs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingConfig {
    pub departments_file: Option<PathBuf>,
    pub desks_file: Option<PathBuf>,
    pub holidays_file: Option<PathBuf>,
    /// Step budgets of the procedures' internal processes (format of
    /// pipeline/domain/routing/data/procedure-steps.csv).
    pub steps_file: Option<PathBuf>,
    /// Centers with working hours of their own, e.g. open on Saturday mornings (format of
    /// pipeline/domain/routing/data/unit-hours.csv).
    pub unit_hours_file: Option<PathBuf>,
    /// Working hours, e.g. "07:00-11:30,13:30-17:00".
    pub working_hours: String,
    /// How often the files are checked for changes (SIGHUP reloads at once); 0 = only SIGHUP.
    pub reload_check_s: u64,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        Self {
            departments_file: None,
            desks_file: None,
            holidays_file: None,
            steps_file: None,
            unit_hours_file: None,
            working_hours: "07:00-11:30,13:30-17:00".to_owned(),
            reload_check_s: 10,
        }
    }
}

impl RoutingConfig {
    pub fn files(&self) -> Result<motcua_routing::RoutingFiles> {
        let working_hours = motcua_routing::WorkingHours::parse(&self.working_hours)
            .map_err(|e| anyhow::anyhow!("routing.working_hours = '{}': {e}", self.working_hours))?;
        Ok(motcua_routing::RoutingFiles {
            departments: self.departments_file.clone(),
            desks: self.desks_file.clone(),
            holidays: self.holidays_file.clone(),
            steps: self.steps_file.clone(),
            unit_hours: self.unit_hours_file.clone(),
            working_hours,
        })
    }
}

/// Which registries the verify stage asks, and where lookups are audited.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RegistriesConfig {
    pub mode: RegistryMode,
    pub http: motcua_registries::http::HttpConfig,
    /// PostgreSQL URL of the registry replica (mode = "sql"); database.url when absent.
    pub sql_url: Option<String>,
    pub audit: AuditTarget,
}

#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RegistryMode {
    /// The national data-exchange gateway over HTTP (`registries.http`).
    #[default]
    Http,
    /// A PostgreSQL replica of the registries.
    Sql,
}

#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AuditTarget {
    /// The `registry_audit` table when database.url is PostgreSQL, the log otherwise.
    #[default]
    Auto,
    /// The `registry_audit` table: the complete audit (who, what, when, outcome).
    Database,
    /// A trail in the log, subjects masked (the embedded demo); not a complete audit.
    Log,
}

/// Supplements: how long a dossier waits for the citizen's papers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IntakeConfig {
    /// Working days (on the routing calendar) after a supplement request with no
    /// supplement, after which the dossier is stopped (status 8, SUPPLEMENT_NOT_RECEIVED).
    pub supplement_wait_working_days: u32,
    /// How often unanswered requests are looked for.
    pub supplement_check_s: u64,
}

impl Default for IntakeConfig {
    fn default() -> Self {
        Self {
            supplement_wait_working_days: 15,
            supplement_check_s: 60,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VerifyConfig {
    /// First retry of a dossier whose registry was unavailable.
    pub first_retry_ms: u64,
    pub max_retry_ms: u64,
    /// A dossier parked this long is escalated to an officer.
    pub escalate_after_s: u64,
    /// How often the retrier looks for due dossiers.
    pub retry_poll_ms: u64,
}

impl Default for VerifyConfig {
    fn default() -> Self {
        let p = motcua_verify::RetryPolicy::default();
        Self {
            first_retry_ms: p.first_delay.as_millis() as u64,
            max_retry_ms: p.max_delay.as_millis() as u64,
            escalate_after_s: p.escalate_after.as_secs(),
            retry_poll_ms: 500,
        }
    }
}

impl VerifyConfig {
    pub fn policy(&self) -> motcua_verify::RetryPolicy {
        motcua_verify::RetryPolicy {
            first_delay: Duration::from_millis(self.first_retry_ms),
            max_delay: Duration::from_millis(self.max_retry_ms),
            escalate_after: Duration::from_secs(self.escalate_after_s),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `postgres://user:pass@host/db` in production; `sqlite://file.db` (embedded) by default.
    pub url: String,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://motcua.db".to_owned(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeSection {
    pub max_batch: usize,
    pub linger_ms: u64,
    pub max_in_flight: usize,
    pub drain_timeout_ms: u64,
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
    pub retry_budget_ms: u64,
    /// How long a starting worker waits for the brokers to answer before it exits with
    /// the reason (unreachable, TLS refused, authentication failed).
    pub connect_timeout_ms: u64,
    /// Replica name in client ids and logs; defaults to host name + pid.
    pub instance_id: Option<String>,
    /// Static group membership (`group.instance.id` = `instance_id`, else the host name —
    /// a Kubernetes pod's name): a worker restarted under the same name takes its
    /// partitions back at once instead of after the dead member's session timeout. The
    /// cost: a worker that leaves for good keeps its partitions idle until that timeout
    /// (static members do not leave the group on shutdown). Off by default.
    pub static_membership: bool,
}

impl Default for RuntimeSection {
    fn default() -> Self {
        let d = RuntimeConfig::new(KafkaConfig::default());
        Self {
            max_batch: d.max_batch,
            linger_ms: d.linger.as_millis() as u64,
            max_in_flight: d.max_in_flight,
            drain_timeout_ms: d.drain_timeout.as_millis() as u64,
            retry_initial_ms: d.retry_initial.as_millis() as u64,
            retry_max_ms: d.retry_max.as_millis() as u64,
            retry_budget_ms: d.retry_budget.as_millis() as u64,
            connect_timeout_ms: d.connect_timeout.as_millis() as u64,
            instance_id: None,
            static_membership: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Address of the Prometheus endpoint (`/metrics`); empty to disable.
    pub listen: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:9464".to_owned(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ReferenceConfig {
    /// Newer administrative-units CSV; the compiled-in 2025 list when absent.
    pub units_file: Option<PathBuf>,
    /// Newer procedure catalog CSV; the compiled-in catalog when absent.
    pub procedures_file: Option<PathBuf>,
}

const ENV_PREFIX: &str = "MOTCUA_";

impl Config {
    /// Loads `file` (if any), applies `MOTCUA_<SECTION>__<KEY>` variables, validates.
    pub fn load(file: Option<&Path>) -> Result<Self> {
        let mut table = match file {
            Some(p) => {
                let text =
                    std::fs::read_to_string(p).with_context(|| format!("cannot read config file {}", p.display()))?;
                text.parse::<toml::Table>()
                    .with_context(|| format!("config file {} is not valid TOML", p.display()))?
            }
            None => toml::Table::new(),
        };
        for (k, v) in std::env::vars() {
            let Some(rest) = k.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            // Only SECTION__KEY variables are configuration (MOTCUA_TEST_… and the like are not).
            if !rest.contains("__") {
                continue;
            }
            set_path(&mut table, &rest.to_ascii_lowercase(), &v)
                .with_context(|| format!("environment variable {k}"))?;
        }
        let origin = file.map_or_else(
            || "environment".to_owned(),
            |p| format!("{} / environment", p.display()),
        );
        let cfg: Config = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| anyhow::anyhow!("invalid configuration ({origin}): {}", e.message()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<()> {
        self.kafka.validate()?;
        if self.runtime.max_batch == 0 || self.runtime.max_batch > 10_000 {
            bail!(
                "runtime.max_batch = {} must be between 1 and 10000",
                self.runtime.max_batch
            );
        }
        if self.runtime.max_in_flight < self.runtime.max_batch {
            bail!(
                "runtime.max_in_flight = {} must be at least runtime.max_batch = {}",
                self.runtime.max_in_flight,
                self.runtime.max_batch
            );
        }
        if self.runtime.static_membership
            && self.runtime.instance_id.is_none()
            && std::env::var("HOSTNAME").map_or(true, |h| h.is_empty())
        {
            bail!(
                "runtime.static_membership needs a name that survives a restart: set runtime.instance_id \
                 (for example the pod's name) or HOSTNAME"
            );
        }
        if !self.metrics.listen.is_empty() {
            self.metrics_addr()?;
        }
        let l = &self.limits;
        if l.max_message_bytes == 0 || l.max_identifier_bytes == 0 || l.min_timestamp_ms >= l.max_timestamp_ms {
            bail!(
                "limits: max_message_bytes and max_identifier_bytes must be > 0, and min_timestamp_ms below max_timestamp_ms"
            );
        }
        if l.output_room_bytes >= self.kafka.max_message_bytes() {
            bail!(
                "limits.output_room_bytes ({}) must be below the producer's message.max.bytes ({}): no message from a portal would fit",
                l.output_room_bytes,
                self.kafka.max_message_bytes()
            );
        }
        self.routing.files()?;
        self.track.validate()?;
        self.schema_registry.client()?;
        if self.registries.audit == AuditTarget::Database && !self.database.url.starts_with("postgres") {
            bail!(
                "registries.audit = \"database\" needs a PostgreSQL database.url; use \"log\" with the embedded store"
            );
        }
        let i = &self.intake;
        if !(1..=365).contains(&i.supplement_wait_working_days) || i.supplement_check_s == 0 {
            bail!(
                "intake.supplement_wait_working_days = {} must be between 1 and 365, and intake.supplement_check_s > 0",
                i.supplement_wait_working_days
            );
        }
        if self.verify.first_retry_ms == 0 || self.verify.max_retry_ms < self.verify.first_retry_ms {
            bail!("verify.first_retry_ms must be > 0 and verify.max_retry_ms at least as large");
        }
        if self.result.first_retry_ms == 0 || self.result.max_retry_ms < self.result.first_retry_ms {
            bail!("result.first_retry_ms must be > 0 and result.max_retry_ms at least as large");
        }
        if !(1..=86_400).contains(&self.portal.outage_budget_s) {
            bail!(
                "portal.outage_budget_s = {} must be between 1 and 86400 (a day)",
                self.portal.outage_budget_s
            );
        }
        if !(self.database.url.starts_with("sqlite:") || self.database.url.starts_with("postgres")) {
            bail!(
                "database.url = '{}' must start with postgres:// (production) or sqlite:// (embedded)",
                motcua_store::redact(&self.database.url)
            );
        }
        Ok(())
    }

    pub fn metrics_addr(&self) -> Result<Option<SocketAddr>> {
        if self.metrics.listen.is_empty() {
            return Ok(None);
        }
        self.metrics.listen.parse().map(Some).with_context(|| {
            format!(
                "metrics.listen = '{}' is not an address like 0.0.0.0:9464",
                self.metrics.listen
            )
        })
    }

    pub fn runtime(&self) -> RuntimeConfig {
        let mut r = RuntimeConfig::new(self.kafka.clone());
        let s = &self.runtime;
        r.max_batch = s.max_batch;
        r.linger = Duration::from_millis(s.linger_ms);
        r.max_in_flight = s.max_in_flight;
        r.drain_timeout = Duration::from_millis(s.drain_timeout_ms);
        r.retry_initial = Duration::from_millis(s.retry_initial_ms);
        r.retry_max = Duration::from_millis(s.retry_max_ms);
        r.retry_budget = Duration::from_millis(s.retry_budget_ms);
        r.connect_timeout = Duration::from_millis(s.connect_timeout_ms);
        if let Some(id) = &s.instance_id {
            r.instance_id = id.clone();
        }
        if s.static_membership {
            // `validate` made sure one of the two is there.
            r.group_instance_id = s.instance_id.clone().or_else(|| std::env::var("HOSTNAME").ok());
        }
        r.limits = self.limits.clone();
        r
    }
}

/// Sets `section__key[__subkey]` in the table; values that parse as integers or booleans
/// become those, anything else a string (serde then checks the type).
fn set_path(table: &mut toml::Table, path: &str, value: &str) -> Result<()> {
    let parts: Vec<&str> = path.split("__").collect();
    if parts.iter().any(|p| p.is_empty()) {
        bail!("'{path}' has an empty section or key");
    }
    let mut t = table;
    for p in &parts[..parts.len() - 1] {
        let entry = t
            .entry((*p).to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        t = match entry {
            toml::Value::Table(t) => t,
            _ => bail!("'{p}' is a value, not a section"),
        };
    }
    // librdkafka properties are strings, whatever they look like.
    let raw_string = parts.len() == 3 && parts[0] == "kafka" && (parts[1] == "consumer" || parts[1] == "producer");
    let v = if raw_string {
        toml::Value::String(value.to_owned())
    } else if let Ok(i) = value.parse::<i64>() {
        toml::Value::Integer(i)
    } else if let Ok(b) = value.parse::<bool>() {
        toml::Value::Boolean(b)
    } else {
        toml::Value::String(value.to_owned())
    };
    t.insert(parts[parts.len() - 1].to_owned(), v);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config> {
        let table: toml::Table = text.parse()?;
        let cfg: Config = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| anyhow::anyhow!("{}", e.message()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The documented example configuration is a valid configuration.
    #[test]
    fn the_example_config_in_deploy_loads() {
        let cfg = parse(include_str!("../../../deploy/motcua.toml")).expect("deploy/motcua.toml");
        assert_eq!(cfg.registries.http.max_attempts, 3);
        assert_eq!(cfg.routing.reload_check_s, 10);
        // The documented limits are the defaults.
        assert_eq!(cfg.limits, motcua_schemas::Limits::default());
    }

    #[test]
    fn schema_registry_credentials_are_one_kind_and_complete() {
        let none = parse("").expect("no registry");
        assert!(none.schema_registry.client().expect("ok").is_none());
        let basic =
            parse("[schema_registry]\nurl = \"https://sr:8081\"\nusername = \"u\"\npassword_env = \"SR_PASSWORD\"\n")
                .expect("basic");
        let client = basic.schema_registry.client().expect("ok").expect("configured");
        assert!(matches!(client.auth, motcua_security::http::HttpAuth::Basic { .. }));
        let both = parse(
            "[schema_registry]\nurl = \"https://sr:8081\"\nusername = \"u\"\npassword_env = \"P\"\ntoken_env = \"T\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(both.contains("not both"), "{both}");
        let half = parse("[schema_registry]\nurl = \"https://sr:8081\"\nusername = \"u\"\n")
            .unwrap_err()
            .to_string();
        assert!(half.contains("needs both username and password"), "{half}");
        let typo = parse("[schema_registry]\nurll = \"x\"\n").unwrap_err().to_string();
        assert!(typo.contains("unknown field `urll`"), "{typo}");
    }

    #[test]
    fn unknown_keys_are_refused_with_their_name() {
        let e = parse("[kafka]\nbrokrs = \"x:1\"\n").unwrap_err().to_string();
        assert!(e.contains("unknown field `brokrs`"), "{e}");
        let e = parse("[kafkaa]\n").unwrap_err().to_string();
        assert!(e.contains("unknown field `kafkaa`"), "{e}");
    }

    #[test]
    fn values_are_typed_and_checked() {
        let e = parse("[runtime]\nmax_batch = \"many\"\n").unwrap_err().to_string();
        assert!(e.contains("invalid type"), "{e}");
        let e = parse("[runtime]\nmax_batch = 0\n").unwrap_err().to_string();
        assert!(e.contains("max_batch = 0 must be between 1 and 10000"), "{e}");
        let e = parse("[metrics]\nlisten = \"nowhere\"\n").unwrap_err().to_string();
        assert!(e.contains("not an address"), "{e}");
        let cfg =
            parse("[kafka]\nbrokers = \"k1:9092,k2:9092\"\n[database]\nurl = \"postgres://u@h/db\"\n").expect("valid");
        assert_eq!(cfg.kafka.brokers, "k1:9092,k2:9092");
    }

    #[test]
    fn static_membership_joins_under_the_configured_name() {
        let dynamic = parse("[runtime]\ninstance_id = \"intake-0\"\n").expect("valid");
        assert_eq!(dynamic.runtime().group_instance_id, None);
        let fixed = parse("[runtime]\ninstance_id = \"intake-0\"\nstatic_membership = true\n").expect("valid");
        let r = fixed.runtime();
        assert_eq!(
            (r.group_instance_id.as_deref(), r.instance_id.as_str()),
            (Some("intake-0"), "intake-0")
        );
    }

    #[test]
    fn env_paths_nest_and_type() {
        let mut t = toml::Table::new();
        set_path(&mut t, "kafka__brokers", "a:1").expect("set");
        set_path(&mut t, "runtime__max_batch", "42").expect("set");
        set_path(&mut t, "kafka__consumer__fetch.min.bytes", "1000").expect("set");
        let cfg: Config = toml::Value::Table(t).try_into().expect("typed");
        assert_eq!(cfg.kafka.brokers, "a:1");
        assert_eq!(cfg.runtime.max_batch, 42);
        // librdkafka properties stay strings even when they look like numbers.
        assert_eq!(
            cfg.kafka.consumer.get("fetch.min.bytes").map(String::as_str),
            Some("1000")
        );
        assert!(set_path(&mut toml::Table::new(), "kafka____x", "1").is_err());
    }
}
