//! Secrets and TLS files for motcua's connections (Kafka, the registry gateway, the
//! simulators that stand in for outside systems).
//!
//! A secret comes from a file (a mounted Kubernetes secret) or an environment variable,
//! never from the configuration file itself, and never shows in `Debug` output, logs or
//! error messages.

pub mod access;
pub mod http;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: {detail}")]
    Invalid { what: String, detail: String },
    #[error("{what}: cannot read {path}: {source}")]
    Read {
        what: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn invalid(what: &str, detail: impl Into<String>) -> Error {
    Error::Invalid {
        what: what.to_owned(),
        detail: detail.into(),
    }
}

/// A password, token or key passphrase. Its `Debug` and `Display` say only that it is
/// there; [`Secret::expose`] is the one way to the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(redacted)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(redacted)")
    }
}

/// Where a secret is read from: `file` or `env` (exactly one). In a configuration it is
/// written as `<name>_file` / `<name>_env` keys (see [`SecretSource::new`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecretSource {
    pub file: Option<PathBuf>,
    pub env: Option<String>,
}

impl SecretSource {
    pub fn new(file: Option<PathBuf>, env: Option<String>) -> Self {
        Self { file, env }
    }

    pub fn is_set(&self) -> bool {
        self.file.is_some() || self.env.is_some()
    }

    /// Reads the secret (`what` names it in errors: `kafka.sasl.password`). A file's
    /// trailing line break is not part of it. `Ok(None)` when neither source is set.
    pub fn read(&self, what: &str) -> Result<Option<Secret>> {
        let value = match (&self.file, &self.env) {
            (None, None) => return Ok(None),
            (Some(_), Some(_)) => {
                return Err(invalid(
                    what,
                    "give it in a file or in an environment variable, not both",
                ))
            }
            (Some(path), None) => std::fs::read_to_string(path)
                .map_err(|source| Error::Read {
                    what: what.to_owned(),
                    path: path.clone(),
                    source,
                })?
                .trim_end_matches(['\n', '\r'])
                .to_owned(),
            (None, Some(var)) => {
                std::env::var(var).map_err(|_| invalid(what, format!("environment variable {var} is not set")))?
            }
        };
        if value.is_empty() {
            return Err(invalid(what, "is empty"));
        }
        Ok(Some(Secret(value)))
    }
}

/// The TLS files of one kind of connection: whom to trust, and who we are (for mutual
/// TLS). Paths to PEM files; checked at start-up, read by the client library.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsFiles {
    /// CA certificate(s) the server's certificate must chain to; none: the system's.
    pub ca_file: Option<PathBuf>,
    /// Our certificate chain, for servers that ask for one (mutual TLS).
    pub cert_file: Option<PathBuf>,
    /// The private key of `cert_file`.
    pub key_file: Option<PathBuf>,
}

impl TlsFiles {
    /// Checks that each file given is a readable PEM file and that a certificate comes
    /// with its key. `what` names the section in errors (`kafka.tls`).
    pub fn validate(&self, what: &str) -> Result<()> {
        if self.cert_file.is_some() != self.key_file.is_some() {
            return Err(invalid(
                what,
                "cert_file and key_file go together (mutual TLS needs both)",
            ));
        }
        for (key, path) in [
            ("ca_file", &self.ca_file),
            ("cert_file", &self.cert_file),
            ("key_file", &self.key_file),
        ] {
            if let Some(p) = path {
                check_pem(&format!("{what}.{key}"), p)?;
            }
        }
        Ok(())
    }

    /// The client identity (certificate chain then key, PEM), when configured.
    pub fn identity_pem(&self, what: &str) -> Result<Option<Vec<u8>>> {
        match (&self.cert_file, &self.key_file) {
            (Some(c), Some(k)) => {
                let mut pem = read(&format!("{what}.cert_file"), c)?;
                pem.push(b'\n');
                pem.extend(read(&format!("{what}.key_file"), k)?);
                Ok(Some(pem))
            }
            _ => Ok(None),
        }
    }

    /// The CA file's contents, when configured.
    pub fn ca_pem(&self, what: &str) -> Result<Option<Vec<u8>>> {
        self.ca_file
            .as_deref()
            .map(|p| read(&format!("{what}.ca_file"), p))
            .transpose()
    }
}

fn read(what: &str, path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Read {
        what: what.to_owned(),
        path: path.to_owned(),
        source,
    })
}

fn check_pem(what: &str, path: &Path) -> Result<()> {
    let bytes = read(what, path)?;
    if !bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        return Err(invalid(what, format!("{} is not a PEM file", path.display())));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_shows_in_debug_or_display() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?} {s}").contains("hunter2"));
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn a_secret_comes_from_a_file_without_its_line_break_or_from_the_environment() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("password");
        std::fs::write(&f, "s3cret\n").expect("write");
        let from_file = SecretSource::new(Some(f.clone()), None).read("x").expect("read");
        assert_eq!(from_file.as_ref().map(Secret::expose), Some("s3cret"));
        let var = "MOTCUA_SECURITY_TEST_SECRET";
        std::env::set_var(var, "from-env");
        let from_env = SecretSource::new(None, Some(var.into())).read("x").expect("read");
        assert_eq!(from_env.as_ref().map(Secret::expose), Some("from-env"));
        assert_eq!(SecretSource::default().read("x").expect("none"), None);
    }

    #[test]
    fn a_missing_empty_or_doubly_given_secret_is_explained_without_its_value() {
        let dir = tempfile::tempdir().expect("tempdir");
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").expect("write");
        let cases = [
            (SecretSource::new(Some(dir.path().join("nope")), None), "cannot read"),
            (SecretSource::new(Some(empty.clone()), None), "is empty"),
            (
                SecretSource::new(None, Some("MOTCUA_SECURITY_TEST_UNSET".into())),
                "is not set",
            ),
            (SecretSource::new(Some(empty), Some("X".into())), "not both"),
        ];
        for (source, expected) in cases {
            let e = source.read("kafka.sasl.password").unwrap_err().to_string();
            assert!(e.starts_with("kafka.sasl.password") && e.contains(expected), "{e}");
        }
    }

    #[test]
    fn tls_files_must_be_pem_and_a_certificate_needs_its_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pem = dir.path().join("ca.pem");
        std::fs::write(&pem, "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n").expect("write");
        let not_pem = dir.path().join("ca.der");
        std::fs::write(&not_pem, [0x30, 0x82, 0x01]).expect("write");
        let ok = TlsFiles {
            ca_file: Some(pem.clone()),
            ..TlsFiles::default()
        };
        ok.validate("kafka.tls").expect("valid");
        let e = TlsFiles {
            ca_file: Some(not_pem),
            ..TlsFiles::default()
        }
        .validate("kafka.tls")
        .unwrap_err()
        .to_string();
        assert!(e.contains("kafka.tls.ca_file") && e.contains("not a PEM file"), "{e}");
        let e = TlsFiles {
            cert_file: Some(pem),
            ..TlsFiles::default()
        }
        .validate("kafka.tls")
        .unwrap_err()
        .to_string();
        assert!(e.contains("go together"), "{e}");
    }

    #[test]
    fn unknown_tls_keys_are_refused() {
        let e = toml::from_str::<TlsFiles>("ca = \"x\"").unwrap_err().to_string();
        assert!(e.contains("unknown field"), "{e}");
    }
}
