//! Who may ask the status API what: operators' API keys (roles and unit scope, stored
//! as digests in a key file) and per-client rate limits.
//!
//! The key file (TOML), written by `motcua api-key add`:
//!
//! ```toml
//! [[key]]
//! id = "province-office"     # names the key in logs and rate limits, never secret
//! role = "province"          # every unit
//! digest = "sha256:…"        # of the key; the key itself is shown once, when made
//!
//! [[key]]
//! id = "commune-06652"
//! role = "unit"              # only dossiers received at or assigned to `unit`
//! unit = "06652"
//! digest = "sha256:…"
//! ```

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use motcua_security::access::{api_key_matches, is_api_key_digest};
use serde::Deserialize;

/// What an operator's key lets them see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// The whole deployment (the province).
    All,
    /// Dossiers received at or assigned to this unit, and this unit's figures.
    Unit(String),
}

impl Scope {
    /// Whether a dossier received at `receiving` and assigned to `competent` is in scope.
    pub fn sees_dossier(&self, receiving: Option<&str>, competent: Option<&str>) -> bool {
        match self {
            Scope::All => true,
            Scope::Unit(u) => receiving == Some(u.as_str()) || competent == Some(u.as_str()),
        }
    }

    /// Whether the figures of `unit` are in scope.
    pub fn sees_unit(&self, unit: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Unit(u) => u == unit,
        }
    }
}

/// An authenticated operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    pub key_id: String,
    pub scope: Scope,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Province,
    Unit,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    id: String,
    role: Role,
    #[serde(default)]
    unit: Option<String>,
    digest: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    #[serde(default)]
    key: Vec<KeyEntry>,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read the API key file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the API key file {path} is not valid: {detail}")]
    Invalid { path: String, detail: String },
}

/// The operators' keys (digests only).
#[derive(Debug, Clone, Default)]
pub struct ApiKeys {
    keys: Vec<(KeyEntry, Scope)>,
}

impl ApiKeys {
    /// No keys: every operator endpoint answers 401.
    pub fn none() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Reads and checks a key file (see the module documentation).
    pub fn load(path: &Path) -> Result<Self, KeyFileError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| KeyFileError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::parse(&text).map_err(|detail| KeyFileError::Invalid { path: shown, detail })
    }

    /// Parses key file text; the error says which entry is wrong and why.
    pub fn parse(text: &str) -> Result<Self, String> {
        let file: KeyFile = toml::from_str(text).map_err(|e| e.message().to_owned())?;
        let mut seen = HashSet::new();
        let mut keys = Vec::with_capacity(file.key.len());
        for (i, k) in file.key.into_iter().enumerate() {
            let at = format!("key #{} ({:?})", i + 1, k.id);
            if k.id.is_empty()
                || k.id.len() > 64
                || !k.id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            {
                return Err(format!("{at}: id must be 1-64 letters, digits, '.', '_' or '-'"));
            }
            if !seen.insert(k.id.clone()) {
                return Err(format!("{at}: id appears twice"));
            }
            if !is_api_key_digest(&k.digest) {
                return Err(format!(
                    "{at}: digest must be sha256:<64 lowercase hex digits> (motcua api-key add writes it)"
                ));
            }
            let scope = match (k.role, &k.unit) {
                (Role::Province, None) => Scope::All,
                (Role::Province, Some(_)) => return Err(format!("{at}: a province key has no unit")),
                (Role::Unit, Some(u))
                    if !u.is_empty() && u.len() <= 16 && u.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.') =>
                {
                    Scope::Unit(u.clone())
                }
                (Role::Unit, _) => return Err(format!("{at}: a unit key needs unit = \"<unit code>\"")),
            };
            keys.push((k, scope));
        }
        Ok(Self { keys })
    }

    /// The operator whose key this is. Every stored digest is compared (in constant time
    /// each), so the answer takes as long for the first key as for none.
    pub fn authenticate(&self, presented: &str) -> Option<Operator> {
        let mut found = None;
        for (k, scope) in &self.keys {
            if api_key_matches(presented, &k.digest) && found.is_none() {
                found = Some(Operator {
                    key_id: k.id.clone(),
                    scope: scope.clone(),
                });
            }
        }
        found
    }
}

/// A sustained rate and the burst allowed above it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub per_minute: u32,
    pub burst: u32,
}

/// Whom a rate limit counts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Client {
    /// Callers without a key, by address.
    Address(IpAddr),
    /// Callers whose address is unknown (not served by [`crate::api::serve`]): one shared
    /// bucket, so they cannot escape the limit.
    UnknownAddress,
    /// Operators, by key id.
    Key(String),
}

/// Token buckets per client. Bounded: when full, buckets that have refilled (idle
/// clients) are dropped; if every bucket is busy, new clients are refused until some
/// refill, so a flood from many addresses cannot grow memory without bound.
#[derive(Debug)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<Client, Bucket>>,
    max_clients: usize,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// When a limited client may try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub Duration);

impl RateLimiter {
    pub fn new(max_clients: usize) -> Self {
        Self {
            buckets: Mutex::new(HashMap::new()),
            max_clients: max_clients.max(1),
        }
    }

    /// Takes one request from `client`'s bucket.
    pub fn check(&self, client: &Client, rate: Rate) -> Result<(), RetryAfter> {
        self.check_at(client, rate, Instant::now())
    }

    fn check_at(&self, client: &Client, rate: Rate, now: Instant) -> Result<(), RetryAfter> {
        let per_second = f64::from(rate.per_minute.max(1)) / 60.0;
        let capacity = f64::from(rate.burst.max(1));
        let refill =
            |b: &Bucket| (b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * per_second).min(capacity);
        let mut buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !buckets.contains_key(client) && buckets.len() >= self.max_clients {
            buckets.retain(|_, b| refill(b) < capacity);
            if buckets.len() >= self.max_clients {
                return Err(RetryAfter(Duration::from_secs(1)));
            }
        }
        let bucket = buckets.entry(client.clone()).or_insert(Bucket {
            tokens: capacity,
            at: now,
        });
        let tokens = refill(bucket);
        if tokens >= 1.0 {
            *bucket = Bucket {
                tokens: tokens - 1.0,
                at: now,
            };
            Ok(())
        } else {
            *bucket = Bucket { tokens, at: now };
            let wait = (1.0 - tokens) / per_second;
            Err(RetryAfter(Duration::from_secs_f64(wait.max(0.001))))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

    #[test]
    fn a_key_file_gives_each_key_its_scope_and_wrong_entries_are_explained() {
        let key = motcua_security::access::new_api_key();
        let digest = motcua_security::access::api_key_digest(&key);
        let keys = ApiKeys::parse(&format!(
            "[[key]]\nid = \"commune\"\nrole = \"unit\"\nunit = \"06652\"\ndigest = \"{digest}\"\n\
             [[key]]\nid = \"province\"\nrole = \"province\"\ndigest = \"{DIGEST}\"\n"
        ))
        .expect("valid");
        assert_eq!(keys.len(), 2);
        let op = keys.authenticate(&key).expect("the commune's key");
        assert_eq!(op.key_id, "commune");
        assert_eq!(op.scope, Scope::Unit("06652".into()));
        assert!(keys.authenticate("motcua_wrong").is_none());
        assert!(keys.authenticate("").is_none());

        for (text, says) in [
            (format!("[[key]]\nid = \"a\"\nrole = \"unit\"\ndigest = \"{DIGEST}\""), "needs unit"),
            (format!("[[key]]\nid = \"a\"\nrole = \"province\"\nunit = \"1\"\ndigest = \"{DIGEST}\""), "has no unit"),
            ("[[key]]\nid = \"a\"\nrole = \"province\"\ndigest = \"plain-key\"".to_owned(), "sha256:"),
            (format!("[[key]]\nid = \"a b\"\nrole = \"province\"\ndigest = \"{DIGEST}\""), "id must be"),
            (format!("[[key]]\nid = \"a\"\nrole = \"admin\"\ndigest = \"{DIGEST}\""), "admin"),
            (format!("[[key]]\nid = \"a\"\nrole = \"province\"\ndigest = \"{DIGEST}\"\nsecret = 1"), "secret"),
            (
                format!("[[key]]\nid = \"a\"\nrole = \"province\"\ndigest = \"{DIGEST}\"\n[[key]]\nid = \"a\"\nrole = \"province\"\ndigest = \"{DIGEST}\""),
                "twice",
            ),
        ] {
            let e = ApiKeys::parse(&text).expect_err(&text);
            assert!(e.contains(says), "{text}: {e}");
        }
    }

    #[test]
    fn a_unit_scope_sees_its_own_dossiers_and_figures_only() {
        let unit = Scope::Unit("06652".into());
        assert!(unit.sees_dossier(Some("06652"), None));
        assert!(unit.sees_dossier(Some("H22.TTHC"), Some("06652")));
        assert!(!unit.sees_dossier(Some("06658"), Some("06658")));
        assert!(!unit.sees_unit("06658"));
        assert!(Scope::All.sees_dossier(None, None));
    }

    #[test]
    fn a_bucket_allows_its_burst_then_the_rate_and_each_client_has_its_own() {
        let limiter = RateLimiter::new(100);
        let rate = Rate {
            per_minute: 60,
            burst: 3,
        };
        let a = Client::Address([10, 0, 0, 1].into());
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check_at(&a, rate, t0).is_ok());
        }
        let RetryAfter(wait) = limiter.check_at(&a, rate, t0).expect_err("burst used up");
        assert!(wait <= Duration::from_secs(1), "{wait:?}");
        assert!(
            limiter.check_at(&Client::Key("k".into()), rate, t0).is_ok(),
            "another client"
        );
        assert!(
            limiter.check_at(&a, rate, t0 + Duration::from_millis(1_001)).is_ok(),
            "refilled one per second"
        );
        assert!(limiter.check_at(&a, rate, t0 + Duration::from_millis(1_002)).is_err());
    }

    #[test]
    fn the_limiter_stays_bounded_and_drops_idle_clients_first() {
        let limiter = RateLimiter::new(2);
        let rate = Rate {
            per_minute: 60,
            burst: 1,
        };
        let t0 = Instant::now();
        let ip = |n: u8| Client::Address([10, 0, 0, n].into());
        assert!(limiter.check_at(&ip(1), rate, t0).is_ok());
        assert!(limiter.check_at(&ip(2), rate, t0).is_ok());
        assert!(limiter.check_at(&ip(3), rate, t0).is_err(), "full of busy clients");
        // Two seconds on, both have refilled: they make room.
        assert!(limiter.check_at(&ip(3), rate, t0 + Duration::from_secs(2)).is_ok());
        assert!(limiter.buckets.lock().expect("lock").len() <= 2);
    }
}
