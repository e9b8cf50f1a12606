//! The signed result record and the issuer's JWK Set.
//!
//! The record is RFC 8785 (JSON Canonicalization Scheme) JSON: object members sorted,
//! no whitespace, integers as plain numbers, strings escaped as ECMAScript's
//! `JSON.stringify` does. Its fields are ASCII keys, ASCII or UTF-8 strings and
//! integers below 2^53 — the subset where `serde_json`'s compact output of a
//! `BTreeMap`-ordered value *is* the JCS form (checked by [`canonical_json`]), so no
//! float formatting is ever needed. The Ed25519 signature is over the record's exact
//! bytes; a verifier needs only the event and the JWK Set (`/.well-known/jwks.json`).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::{Signature, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Why a record could not be produced or does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("not canonical JSON: {0}")]
    NotCanonical(String),
    #[error("no key {0:?} in the JWK Set")]
    UnknownKey(String),
    #[error("key {kid:?} was not valid at {at_s} (valid {from}..{until})")]
    OutsideValidity {
        kid: String,
        at_s: i64,
        from: String,
        until: String,
    },
    #[error("the signature does not verify")]
    BadSignature,
    #[error("the JWK Set is not valid: {0}")]
    BadJwks(String),
}

const MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;

/// The JCS form of `value`, refusing what our records never hold and JCS would need more
/// care for (floats, integers beyond ±2^53, non-ASCII member names).
pub fn canonical_json(value: &Value) -> Result<String, RecordError> {
    check_canonical_subset(value)?;
    // serde_json's map is a BTreeMap (no `preserve_order` feature in this workspace):
    // members come out sorted by their UTF-8 bytes, which for ASCII names is the
    // UTF-16 order JCS asks for.
    serde_json::to_string(value).map_err(|e| RecordError::NotCanonical(e.to_string()))
}

fn check_canonical_subset(value: &Value) -> Result<(), RecordError> {
    match value {
        Value::Number(n) => match n.as_i64() {
            Some(i) if (-MAX_SAFE_INTEGER..=MAX_SAFE_INTEGER).contains(&i) => Ok(()),
            _ => Err(RecordError::NotCanonical(format!("{n} is not an integer below 2^53"))),
        },
        Value::Array(items) => items.iter().try_for_each(check_canonical_subset),
        Value::Object(members) => members.iter().try_for_each(|(k, v)| {
            if k.is_ascii() {
                check_canonical_subset(v)
            } else {
                Err(RecordError::NotCanonical(format!("member name {k:?} is not ASCII")))
            }
        }),
        Value::Null | Value::Bool(_) | Value::String(_) => Ok(()),
    }
}

/// One public key of the issuer, as a JWK (RFC 8037 OKP/Ed25519), with its validity as
/// NumericDates (seconds since the epoch, as in JWT): `nbf` from, `exp` until.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    pub kty: String,
    pub crv: String,
    pub x: String,
    pub kid: String,
    #[serde(rename = "use")]
    pub use_: String,
    pub alg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
}

impl Jwk {
    pub fn ed25519(key: &VerifyingKey, kid: &str, nbf: Option<i64>, exp: Option<i64>) -> Self {
        Self {
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            x: URL_SAFE_NO_PAD.encode(key.as_bytes()),
            kid: kid.into(),
            use_: "sig".into(),
            alg: "EdDSA".into(),
            nbf,
            exp,
        }
    }

    pub fn verifying_key(&self) -> Result<VerifyingKey, RecordError> {
        if self.kty != "OKP" || self.crv != "Ed25519" {
            return Err(RecordError::BadJwks(format!(
                "key {:?} is not an Ed25519 OKP key",
                self.kid
            )));
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(&self.x)
            .map_err(|_| RecordError::BadJwks(format!("key {:?}: x is not base64url", self.kid)))?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| RecordError::BadJwks(format!("key {:?}: x is not 32 bytes", self.kid)))?;
        VerifyingKey::from_bytes(&bytes)
            .map_err(|_| RecordError::BadJwks(format!("key {:?}: not a valid point", self.kid)))
    }

    /// Whether the key may have signed at `at_s` (seconds since the epoch).
    pub fn valid_at(&self, at_s: i64) -> bool {
        self.nbf.is_none_or(|f| f <= at_s) && self.exp.is_none_or(|u| at_s < u)
    }
}

/// The issuer's JWK Set: every key that signed results still to be verified.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

impl Jwks {
    pub fn parse(text: &str) -> Result<Self, RecordError> {
        let set: Jwks = serde_json::from_str(text).map_err(|e| RecordError::BadJwks(e.to_string()))?;
        let mut seen = std::collections::HashSet::new();
        for k in &set.keys {
            k.verifying_key()?;
            if !seen.insert(&k.kid) {
                return Err(RecordError::BadJwks(format!("key id {:?} appears twice", k.kid)));
            }
        }
        Ok(set)
    }

    pub fn key(&self, kid: &str) -> Option<&Jwk> {
        self.keys.iter().find(|k| k.kid == kid)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// What a verified record says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedRecord {
    pub kid: String,
    pub record: Value,
}

/// Verifies a record as a third party would: canonical bytes, a known key valid when the
/// record was signed (`signed_at`, ms), and the signature over the exact bytes.
pub fn verify_record(jwks: &Jwks, record: &str, signature: &[u8]) -> Result<VerifiedRecord, RecordError> {
    let value: Value = serde_json::from_str(record).map_err(|e| RecordError::NotCanonical(e.to_string()))?;
    if canonical_json(&value)? != record {
        return Err(RecordError::NotCanonical(
            "the bytes are not the record's canonical form".into(),
        ));
    }
    let kid = value["kid"].as_str().unwrap_or_default().to_owned();
    let jwk = jwks.key(&kid).ok_or_else(|| RecordError::UnknownKey(kid.clone()))?;
    let at_s = value["signed_at"].as_i64().unwrap_or(i64::MIN) / 1_000;
    if !jwk.valid_at(at_s) {
        let show = |v: Option<i64>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
        return Err(RecordError::OutsideValidity {
            kid,
            at_s,
            from: show(jwk.nbf),
            until: show(jwk.exp),
        });
    }
    let signature = Signature::from_slice(signature).map_err(|_| RecordError::BadSignature)?;
    jwk.verifying_key()?
        .verify_strict(record.as_bytes(), &signature)
        .map_err(|_| RecordError::BadSignature)?;
    Ok(VerifiedRecord { kid, record: value })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_json_sorts_members_and_leaves_no_whitespace() {
        let v = json!({"b": [3, {"z": "é\n\"", "a": null}], "a": true, "A": -5});
        assert_eq!(
            canonical_json(&v).expect("canonical"),
            r#"{"A":-5,"a":true,"b":[3,{"a":null,"z":"é\n\""}]}"#
        );
        // RFC 8785's own control-character rule: lowercase \u00XX.
        assert_eq!(canonical_json(&json!("\u{1f}")).expect("canonical"), r#""\u001f""#);
        assert!(canonical_json(&json!({"x": 1.5})).is_err(), "floats are refused");
        assert!(canonical_json(&json!({"x": 1_i64 << 54})).is_err(), "beyond 2^53");
        assert!(canonical_json(&json!({"é": 1})).is_err(), "non-ASCII member names");
    }

    #[test]
    fn a_jwk_set_round_trips_and_bad_keys_are_explained() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key();
        let set = Jwks {
            keys: vec![Jwk::ed25519(&key, "k1", Some(10), Some(20))],
        };
        let parsed = Jwks::parse(&set.to_json()).expect("parses");
        assert_eq!(parsed, set);
        assert_eq!(parsed.key("k1").map(|k| k.verifying_key()), Some(Ok(key)));
        assert!(parsed
            .key("k1")
            .is_some_and(|k| k.valid_at(10) && !k.valid_at(20) && !k.valid_at(9)));
        let twice = Jwks {
            keys: vec![set.keys[0].clone(), set.keys[0].clone()],
        };
        assert!(Jwks::parse(&twice.to_json()).is_err());
        let mut short = set.keys[0].clone();
        short.x = "AAAA".into();
        assert!(Jwks::parse(&Jwks { keys: vec![short] }.to_json()).is_err());
    }
}
