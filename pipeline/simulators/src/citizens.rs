//! The citizens, simulated (`motcua demo`): they read their dossiers' statuses as a
//! portal shows them and answer through the portal's topics. Asked for papers (status 5,
//! by intake — for itself or the back office — or verify), most bring them some days later — every document the procedure
//! requires — and the rest never come (the dossier is stopped after the wait); a few
//! withdraw their dossier some hours after it was received. Each choice is drawn from the
//! status event's id, so a redelivered status gets the same answer (same event id).
//!
//! Times are simulated: an answer "three days later" carries that time, not the wall
//! clock's, as a portal replaying a day's traffic would.

use motcua_reference::Reference;
use motcua_runtime::{Envelope, Outcome, Stage, StageError};
use motcua_schemas::{
    component, derived_event_id, AnyEvent, Document, DossierStatus, DossierStatusChanged, DossierSupplemented,
    DossierWithdrawn,
};
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// The portal the citizens answer through (the consumer group of the simulator).
pub const STAGE: &str = "citizens";

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

/// What citizens know of themselves that a registry may contradict: their true birth
/// date, by dossier id (the demo's portals note it when a citizen mistypes it).
pub type Memory = Arc<std::sync::Mutex<std::collections::HashMap<String, motcua_schemas::DateDays>>>;

/// How the citizens behave.
#[derive(Debug, Clone)]
pub struct CitizensConfig {
    /// Share of supplement requests answered (the rest never are).
    pub answer_rate: f64,
    /// Answers come after 1 to this many days.
    pub max_answer_days: u32,
    /// Share of received dossiers withdrawn.
    pub withdraw_rate: f64,
    /// Their true birth dates, for answering a registry's disagreement.
    pub memory: Memory,
}

impl Default for CitizensConfig {
    fn default() -> Self {
        Self {
            answer_rate: 0.7,
            max_answer_days: 5,
            withdraw_rate: 0.01,
            memory: Memory::default(),
        }
    }
}

/// What the citizens did (for the demo's report).
#[derive(Debug, Default)]
pub struct CitizensFigures {
    pub supplements: std::sync::atomic::AtomicU64,
    pub ignored_requests: std::sync::atomic::AtomicU64,
    pub withdrawals: std::sync::atomic::AtomicU64,
}

#[derive(Debug)]
pub struct Citizens {
    reference: Arc<Reference>,
    cfg: CitizensConfig,
    figures: Arc<CitizensFigures>,
}

impl Citizens {
    pub fn new(reference: Arc<Reference>, cfg: CitizensConfig) -> Self {
        Self {
            reference,
            cfg,
            figures: Arc::default(),
        }
    }

    pub fn figures(&self) -> Arc<CitizensFigures> {
        self.figures.clone()
    }

    /// What the citizen does on seeing this status.
    pub fn answer(&self, s: &DossierStatusChanged) -> Vec<AnyEvent> {
        use std::sync::atomic::Ordering::Relaxed;
        let seed: [u8; 32] = Sha256::digest(s.event_id.as_bytes()).into();
        let mut rng = rand::rngs::StdRng::from_seed(seed);
        let asked_by_a_step = s.stage == component::INTAKE || s.stage == component::VERIFY;
        match s.status {
            DossierStatus::SupplementRequested if asked_by_a_step => {
                if !rng.gen_bool(self.cfg.answer_rate) {
                    self.figures.ignored_requests.fetch_add(1, Relaxed);
                    return Vec::new();
                }
                let at = s.occurred_at
                    + i64::from(rng.gen_range(1..=self.cfg.max_answer_days.max(1))) * DAY
                    + rng.gen_range(0..8 * HOUR);
                let documents = s
                    .procedure_code
                    .as_deref()
                    .and_then(|p| self.reference.catalog.get(p))
                    .map(|p| {
                        p.required_documents
                            .iter()
                            .map(|kind| Document {
                                kind: kind.clone(),
                                uri: format!("s3://portal-supplements/{}/{kind}.pdf", s.dossier_id),
                                sha256: hex::encode(Sha256::digest(format!("{}{kind}", s.event_id).as_bytes())),
                                digitized: true,
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                // Asked about their birth date, they give the right one.
                let birth_date_asked = s.reasons.iter().any(|r| r.code == "BIRTH_DATE_MISMATCH");
                let date_of_birth = if birth_date_asked {
                    self.cfg.memory.lock().ok().and_then(|m| m.get(&s.dossier_id).copied())
                } else {
                    None
                };
                self.figures.supplements.fetch_add(1, Relaxed);
                vec![DossierSupplemented {
                    event_id: derived_event_id(&s.event_id, STAGE, "supplemented"),
                    dossier_id: s.dossier_id.clone(),
                    dossier_code: s.dossier_code.clone(),
                    portal: "dichvucong".to_owned(),
                    documents,
                    form_fields: Default::default(),
                    land_parcels: None,
                    residence_unit_code: None,
                    full_name: None,
                    date_of_birth,
                    supplemented_at: at,
                    published_at: at,
                    traceparent: s.traceparent.clone(),
                }
                .into()]
            }
            DossierStatus::Received if s.stage == component::INTAKE && rng.gen_bool(self.cfg.withdraw_rate) => {
                let at = s.occurred_at + rng.gen_range(HOUR..3 * DAY);
                self.figures.withdrawals.fetch_add(1, Relaxed);
                vec![DossierWithdrawn {
                    event_id: derived_event_id(&s.event_id, STAGE, "withdrawn"),
                    dossier_id: s.dossier_id.clone(),
                    dossier_code: s.dossier_code.clone(),
                    portal: "dichvucong".to_owned(),
                    reason_code: Some("CHANGED_MIND".to_owned()),
                    withdrawn_at: at,
                    published_at: at,
                    traceparent: s.traceparent.clone(),
                }
                .into()]
            }
            _ => Vec::new(),
        }
    }
}

impl Stage for Citizens {
    type Input = DossierStatusChanged;

    fn name(&self) -> &'static str {
        STAGE
    }

    async fn handle_batch(&self, batch: &[Envelope<DossierStatusChanged>]) -> Result<Vec<Outcome>, StageError> {
        Ok(batch.iter().map(|e| Outcome::Emit(self.answer(&e.event))).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use motcua_schemas::{samples, DossierStatusChanged, Reason};

    fn status(n: u32, stage: &str, status: DossierStatus, reason: &str) -> DossierStatusChanged {
        let mut s = DossierStatusChanged::new(format!("status-{n}"), stage, &format!("dossier-{n}"), status, 1_000);
        s.procedure_code = Some(samples::procedure().code);
        s.reasons = vec![Reason {
            code: reason.to_owned(),
            message: String::new(),
        }];
        s
    }

    fn citizens(answer_rate: f64, withdraw_rate: f64) -> Citizens {
        let reference = Arc::new(Reference::embedded().expect("reference"));
        Citizens::new(
            reference,
            CitizensConfig {
                answer_rate,
                withdraw_rate,
                ..Default::default()
            },
        )
    }

    #[test]
    fn requests_are_answered_days_later_the_same_way_every_time_or_never() {
        let c = citizens(0.7, 0.0);
        let mut answered = 0;
        for n in 0..400 {
            let s = status(
                n,
                component::VERIFY,
                DossierStatus::SupplementRequested,
                "NAME_MISMATCH",
            );
            let first = c.answer(&s);
            assert_eq!(first, c.answer(&s), "a redelivered status gets the same answer");
            if let [AnyEvent::Supplemented(x)] = first.as_slice() {
                answered += 1;
                assert!(x.supplemented_at >= s.occurred_at + DAY && x.supplemented_at < s.occurred_at + 6 * DAY);
                assert_eq!(x.published_at, x.supplemented_at);
                assert!(!x.documents.is_empty(), "the procedure's papers");
                assert_eq!(x.date_of_birth, None, "not asked about it");
            } else {
                assert!(first.is_empty(), "{first:?}");
            }
        }
        assert!((240..=320).contains(&answered), "about 70 % of 400: {answered}");
        // Track's statuses (deadline warnings repeat the current status) are not requests.
        let warning = status(1, component::TRACK, DossierStatus::SupplementRequested, "DEADLINE_SOON");
        assert!(citizens(1.0, 1.0).answer(&warning).is_empty());
    }

    #[test]
    fn a_birth_date_the_registry_doubts_is_corrected_from_memory_and_some_withdraw() {
        let c = citizens(1.0, 1.0);
        c.cfg.memory.lock().expect("memory").insert("dossier-7".into(), 12_345);
        let asked = status(
            7,
            component::VERIFY,
            DossierStatus::SupplementRequested,
            "BIRTH_DATE_MISMATCH",
        );
        let answer = c.answer(&asked);
        let [AnyEvent::Supplemented(x)] = answer.as_slice() else {
            panic!("an answer")
        };
        assert_eq!(x.date_of_birth, Some(12_345));
        let received = status(8, component::INTAKE, DossierStatus::Received, "");
        let withdrawal = c.answer(&received);
        let [AnyEvent::Withdrawn(w)] = withdrawal.as_slice() else {
            panic!("a withdrawal")
        };
        assert!(w.withdrawn_at > received.occurred_at && w.dossier_id == "dossier-8");
    }
}
