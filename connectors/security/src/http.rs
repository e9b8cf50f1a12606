//! The one way motcua builds an HTTP client to an outside service (the registry gateway,
//! and the next ones): with an `https://` URL, TLS verified against the configured CA only
//! (or the system's CAs), our certificate for mutual TLS, no redirects and never a
//! plaintext request; credentials (a bearer token, or a user and password for basic
//! authentication) from files or the environment, marked sensitive, and refused over
//! `http://`.

use std::time::Duration;

use crate::{invalid, Result, Secret, SecretSource, TlsFiles};

/// Credentials sent with every request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum HttpAuth {
    #[default]
    None,
    /// `Authorization: Bearer <token>`.
    Bearer(SecretSource),
    /// `Authorization: Basic …` (RFC 7617).
    Basic { user: String, password: SecretSource },
}

/// How to reach one outside HTTP service. `what` names its configuration section in
/// errors (`registries.http`).
#[derive(Debug, Clone)]
pub struct HttpClientSettings<'a> {
    pub what: &'a str,
    pub base_url: &'a str,
    pub tls: &'a TlsFiles,
    pub auth: HttpAuth,
    pub timeout: Duration,
    pub max_idle_per_host: usize,
}

/// Builds the client (see the module documentation).
pub fn http_client(s: &HttpClientSettings<'_>) -> Result<reqwest::Client> {
    let what = s.what;
    let https = s.base_url.starts_with("https://");
    if !https && !s.base_url.starts_with("http://") {
        return Err(invalid(
            what,
            format!("base_url '{}' must start with https:// or http://", s.base_url),
        ));
    }
    let credentials = match &s.auth {
        HttpAuth::None => None,
        HttpAuth::Bearer(token) => token
            .read(&format!("{what}.token"))?
            .map(|t| Secret::new(format!("Bearer {}", t.expose()))),
        HttpAuth::Basic { user, password } => {
            let password = password.read(&format!("{what}.password"))?.ok_or_else(|| {
                invalid(
                    what,
                    "basic authentication needs a password (password_file or password_env)",
                )
            })?;
            Some(Secret::new(format!(
                "Basic {}",
                base64(format!("{user}:{}", password.expose()).as_bytes())
            )))
        }
    };
    if !https && (*s.tls != TlsFiles::default() || credentials.is_some()) {
        return Err(invalid(
            what,
            format!(
                "base_url '{}' is not https://, but TLS files or credentials are configured: refusing to send them unencrypted",
                s.base_url
            ),
        ));
    }
    s.tls.validate(&format!("{what}.tls"))?;
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .timeout(s.timeout)
        .pool_max_idle_per_host(s.max_idle_per_host)
        .redirect(reqwest::redirect::Policy::none())
        .https_only(https);
    if let Some(pem) = s.tls.ca_pem(&format!("{what}.tls"))? {
        let ca =
            reqwest::Certificate::from_pem(&pem).map_err(|e| invalid(&format!("{what}.tls.ca_file"), e.to_string()))?;
        b = b.tls_built_in_root_certs(false).add_root_certificate(ca);
    }
    if let Some(pem) = s.tls.identity_pem(&format!("{what}.tls"))? {
        let id = reqwest::Identity::from_pem(&pem)
            .map_err(|e| invalid(&format!("{what}.tls.cert_file/key_file"), e.to_string()))?;
        b = b.identity(id);
    }
    if let Some(credentials) = credentials {
        let mut value = reqwest::header::HeaderValue::from_str(credentials.expose())
            .map_err(|_| invalid(what, "the credentials are not a valid header value"))?;
        value.set_sensitive(true);
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::AUTHORIZATION, value);
        b = b.default_headers(headers);
    }
    b.build().map_err(|e| {
        let cause = std::error::Error::source(&e)
            .map(|c| format!(": {c}"))
            .unwrap_or_default();
        invalid(what, format!("cannot build the HTTP client: {e}{cause}"))
    })
}

/// Standard base64 with padding (RFC 4648), for basic authentication.
fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings<'a>(base_url: &'a str, tls: &'a TlsFiles, auth: HttpAuth) -> HttpClientSettings<'a> {
        HttpClientSettings {
            what: "svc",
            base_url,
            tls,
            auth,
            timeout: Duration::from_secs(1),
            max_idle_per_host: 1,
        }
    }

    #[test]
    fn base64_is_rfc_4648() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("user:pass", "dXNlcjpwYXNz"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded, "{plain}");
        }
    }

    #[test]
    fn credentials_or_tls_files_are_never_sent_over_plain_http() {
        let none = TlsFiles::default();
        std::env::set_var("MOTCUA_SECURITY_HTTP_TEST_TOKEN", "t0ken");
        let bearer = HttpAuth::Bearer(SecretSource::new(None, Some("MOTCUA_SECURITY_HTTP_TEST_TOKEN".into())));
        let e = http_client(&settings("http://gateway", &none, bearer.clone())).expect_err("plaintext");
        assert!(e.to_string().contains("refusing to send them unencrypted"), "{e}");
        assert!(!e.to_string().contains("t0ken"), "{e}");
        assert!(http_client(&settings("https://gateway", &none, bearer)).is_ok());
        assert!(http_client(&settings("http://gateway", &none, HttpAuth::None)).is_ok());
        let e = http_client(&settings("ftp://gateway", &none, HttpAuth::None)).expect_err("scheme");
        assert!(e.to_string().contains("https://"), "{e}");
        let basic = HttpAuth::Basic {
            user: "u".into(),
            password: SecretSource::default(),
        };
        let e = http_client(&settings("https://gateway", &none, basic)).expect_err("no password");
        assert!(e.to_string().contains("needs a password"), "{e}");
    }
}
