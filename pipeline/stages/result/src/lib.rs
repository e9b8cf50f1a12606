//! The result stage: when the back office decides, the result document is issued to the
//! applicant's e-wallet — referenced `issuer-doctype-docid`, its SHA-256 and an Ed25519
//! signature anyone can verify with the published public key — and the dossier is
//! marked early / on time / late against its due time (`dossier.completed`, status 10
//! "result returned").
//!
//! The document and the signed record are delivered through a [`WalletGateway`] first;
//! `dossier.completed` goes out only once the wallet acknowledged, with its receipt id. A
//! wallet that is down or full does not hold the others up: the decision is parked in the
//! store (then its offset may be committed) and the stage's timer delivers it again with
//! growing delays; past `escalate_after`, or at once when the wallet refuses (an owner it
//! does not know), an officer is told with a status event while the timer keeps trying.
//! Every acknowledged delivery is recorded (who, what, when, receipt).
//! The back-office simulator that decides routed dossiers lives in `motcua-simulators`.

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use motcua_reference::civil;
use motcua_schemas::{
    derived_event_id, AnyEvent, Decision, DossierCompleted, DossierDecided, DossierStatus, DossierStatusChanged,
    ResultDocument, Timeliness,
};
use sha2::{Digest, Sha256};

mod deliver;
pub mod record;
pub mod telemetry;

pub use deliver::{DeliverySettings, ResultStage};
pub use motcua_outward::WalletGateway;

pub use record::{canonical_json, verify_record, Jwk, Jwks, RecordError, VerifiedRecord};

pub const STAGE: &str = motcua_schemas::component::RESULT;

/// The issuing authority's signing key.
#[derive(Debug, Clone)]
pub struct Signer25519 {
    key: SigningKey,
    key_id: String,
}

impl Signer25519 {
    /// From a 32-byte seed in hex (keep it in a secret store).
    pub fn from_hex_seed(hex: &str, key_id: &str) -> Result<Self, String> {
        let bytes =
            hex::decode(hex.trim()).map_err(|_| "the signing key must be 64 hex digits (a 32-byte seed)".to_owned())?;
        let seed: [u8; 32] = bytes
            .try_into()
            .map_err(|_| "the signing key must be 64 hex digits (a 32-byte seed)".to_owned())?;
        Ok(Self {
            key: SigningKey::from_bytes(&seed),
            key_id: key_id.to_owned(),
        })
    }

    /// A key derived from a label, for demos and tests only.
    pub fn insecure_demo(label: &str) -> Self {
        let seed: [u8; 32] = Sha256::digest(format!("motcua demo signing key {label}").as_bytes()).into();
        Self {
            key: SigningKey::from_bytes(&seed),
            key_id: format!("demo-{label}"),
        }
    }

    pub fn public_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    pub fn public_key_hex(&self) -> String {
        hex::encode(self.key.verifying_key().as_bytes())
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }
}

/// Early: decided on a day before the due day; on time: by the due time; late: after it.
pub fn timeliness(decided_at: i64, due_at: i64) -> Timeliness {
    if decided_at > due_at {
        Timeliness::Late
    } else if civil::vn_day(decided_at) < civil::vn_day(due_at) {
        Timeliness::Early
    } else {
        Timeliness::OnTime
    }
}

/// The result document: its canonical text (what is hashed and signed).
pub fn document_text(d: &DossierDecided, reference: &str) -> String {
    let decision = match d.decision {
        Decision::Approved => "APPROVED",
        Decision::Refused => "REFUSED",
    };
    format!(
        "motcua-result-v1\nreference={reference}\ndossier_code={}\nprocedure={}\nauthority={}\ndecision={decision}\ndecided_at={}\nholder={}\n",
        d.dossier_code,
        d.procedure_code,
        d.competent_unit_code,
        d.decided_at,
        d.applicant_citizen_id.as_deref().or(d.applicant_tax_code.as_deref()).unwrap_or("-"),
    )
}

/// A decided dossier's result, ready to deliver: the document, the signed record and
/// the events that announce it once the wallet has acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    /// The document's bytes (its canonical text).
    pub document: Vec<u8>,
    pub completed: DossierCompleted,
    pub status: DossierStatusChanged,
}

impl Issued {
    /// The wallet's idempotency key: one per dossier and document, the same on every
    /// attempt, so a resend is never filed twice.
    pub fn idempotency_key(&self) -> String {
        format!(
            "{}.{}",
            self.completed.dossier_id, self.completed.result_document.sha256
        )
    }

    /// What the wallet is sent.
    pub fn delivery(&self) -> motcua_outward::WalletDelivery {
        let c = &self.completed;
        motcua_outward::WalletDelivery {
            owner: c.wallet_owner.clone(),
            idempotency_key: self.idempotency_key(),
            dossier_code: c.dossier_code.clone(),
            document: self.document.clone(),
            document_sha256: c.result_document.sha256.clone(),
            signed_record: c.signed_record.clone().unwrap_or_default(),
            record_signature: c.record_signature.clone().unwrap_or_default(),
        }
    }

    /// The events announcing the delivery the wallet acknowledged with `receipt_id` at
    /// `delivered_at`.
    pub fn delivered(mut self, receipt_id: &str, delivered_at: i64) -> Vec<AnyEvent> {
        self.completed.wallet_receipt_id = Some(receipt_id.to_owned());
        self.completed.delivered_at = delivered_at;
        self.status.occurred_at = delivered_at;
        vec![self.completed.into(), self.status.into()]
    }
}

/// Signs decided dossiers' results.
#[derive(Debug, Clone)]
pub struct Issuer {
    signer: Signer25519,
}

impl Issuer {
    pub fn new(signer: Signer25519) -> Self {
        Self { signer }
    }

    pub fn signer(&self) -> &Signer25519 {
        &self.signer
    }

    /// The result of `d`, signed at `signed_at` (the stage passes the decision's time: the
    /// same decision then gives the same record byte for byte, however often it comes,
    /// and the wallet sees one document). Fails only for a decision whose times cannot be
    /// written as JCS integers.
    pub fn issue(&self, d: &DossierDecided, signed_at: i64) -> Result<Issued, RecordError> {
        let doctype = match d.decision {
            Decision::Approved => "KQ",
            Decision::Refused => "TC",
        };
        let reference = format!("{}-{doctype}-{}", d.competent_unit_code, d.dossier_code);
        let text = document_text(d, &reference);
        let digest = Sha256::digest(text.as_bytes());
        let signature = self.signer.key.sign(&digest);
        let owner = d
            .applicant_citizen_id
            .clone()
            .or_else(|| d.applicant_tax_code.clone())
            .unwrap_or_else(|| d.dossier_id.clone());
        let timeliness = timeliness(d.decided_at, d.due_at);
        // The signed record: what a wallet, the national portal or a court checks, from
        // the event alone, against the issuer's JWK Set. No personal data: the holder is
        // bound through the document's hash.
        let record = canonical_json(&serde_json::json!({
            "format": "motcua-result-record/1",
            "issuer": d.competent_unit_code,
            "kid": self.signer.key_id,
            "dossier_code": d.dossier_code,
            "procedure_code": d.procedure_code,
            "decision": match d.decision {
                Decision::Approved => "approved",
                Decision::Refused => "refused",
            },
            "decided_at": d.decided_at,
            "due_at": d.due_at,
            "signed_at": signed_at,
            "timeliness": match timeliness {
                Timeliness::Early => "early",
                Timeliness::OnTime => "on_time",
                Timeliness::Late => "late",
            },
            "documents": [{"reference": reference, "sha256": hex::encode(digest)}],
        }))?;
        let record_signature = self.signer.key.sign(record.as_bytes()).to_bytes().to_vec();
        let completed = DossierCompleted {
            event_id: derived_event_id(&d.event_id, STAGE, "completed"),
            causation_id: d.event_id.clone(),
            dossier_id: d.dossier_id.clone(),
            dossier_code: d.dossier_code.clone(),
            procedure_code: d.procedure_code.clone(),
            competent_unit_code: d.competent_unit_code.clone(),
            decision: d.decision,
            result_document: ResultDocument {
                uri: format!("wallet://{owner}/{reference}"),
                reference,
                sha256: hex::encode(digest),
                signature: signature.to_bytes().to_vec(),
                signing_key_id: self.signer.key_id.clone(),
            },
            wallet_owner: owner,
            received_at: d.received_at,
            due_at: d.due_at,
            delivered_at: signed_at,
            timeliness,
            traceparent: d.traceparent.clone(),
            signed_record: Some(record),
            record_signature: Some(record_signature),
            wallet_receipt_id: None,
        };
        let status = DossierStatusChanged::caused_by(d, STAGE, "status", DossierStatus::ResultReturned, signed_at)
            .with_reasons(d.reasons.clone());
        Ok(Issued {
            document: text.into_bytes(),
            completed,
            status,
        })
    }
}

/// Checks a delivered result: the document's hash and the signature over it.
pub fn verify_result(key: &VerifyingKey, doc: &ResultDocument, text: &str) -> bool {
    let digest = Sha256::digest(text.as_bytes());
    if hex::encode(digest) != doc.sha256 {
        return false;
    }
    let Ok(bytes) = <[u8; 64]>::try_from(doc.signature.as_slice()) else {
        return false;
    };
    key.verify_strict(&digest, &ed25519_dalek::Signature::from_bytes(&bytes))
        .is_ok()
}

#[cfg(test)]
mod tests;
