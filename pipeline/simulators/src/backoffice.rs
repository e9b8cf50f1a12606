//! The back-office simulator (`motcua backoffice-sim`): the officers who decide routed
//! dossiers, as a stage. Each dossier's fate is drawn from its id (so a redelivery decides
//! the same): processing takes a share of the legal time (a few run late); some need a
//! supplement first — the officers publish `dossier.supplement-requested` and wait:
//! intake records the wait and tells the citizen, and the citizen's supplement brings the
//! dossier back as a new `dossier.routed` with the pause and a later due time, which they
//! then decide; most are approved. Of the dossiers that will be late, some get a new
//! appointment first: a written apology and a new date (`dossier.reappointed`), by which
//! they are then decided — still late by the legal due time.

use motcua_runtime::{Envelope, Outcome, Stage, StageError};
use motcua_schemas::{
    derived_event_id, AnyEvent, ApplicantKind, Decision, DossierDecided, DossierReappointed, DossierRouted,
    DossierSupplementRequested, Reason,
};
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};

pub const STAGE: &str = motcua_schemas::component::BACKOFFICE;

#[derive(Debug, Clone)]
pub struct BackOfficeConfig {
    /// Share of dossiers that need a supplement before the decision.
    pub supplement_rate: f64,
    /// Share decided after their due time.
    pub late_rate: f64,
    /// Share refused.
    pub refusal_rate: f64,
    /// Share of the late dossiers given a new appointment before their due time.
    pub reappoint_rate: f64,
}

impl Default for BackOfficeConfig {
    fn default() -> Self {
        Self {
            supplement_rate: 0.08,
            late_rate: 0.03,
            refusal_rate: 0.05,
            reappoint_rate: 0.5,
        }
    }
}

#[derive(Debug)]
pub struct BackOffice {
    cfg: BackOfficeConfig,
}

impl BackOffice {
    pub fn new(cfg: BackOfficeConfig) -> Self {
        Self { cfg }
    }

    /// What the officers do with one routed dossier: ask for papers (and wait), or
    /// process it to its decision.
    pub fn decide(&self, r: &DossierRouted) -> Vec<AnyEvent> {
        let seed: [u8; 32] = Sha256::digest(r.dossier.dossier_id.as_bytes()).into();
        let mut rng = rand::rngs::StdRng::from_seed(seed);
        // Officers work once the papers are complete: from the end of the last wait for
        // the citizen (the due time already includes it), else from reception.
        let start = r.clock_pauses.iter().map(|p| p.to_at).fold(r.received_at, i64::max);
        let span = (r.due_at - start).max(60_000);
        let asked_before = r.clock_pauses.iter().any(|p| p.step == STAGE);
        if rng.gen_bool(self.cfg.supplement_rate) && !asked_before {
            // Asked at a quarter of the time; the dossier comes back with the papers.
            return vec![DossierSupplementRequested {
                event_id: derived_event_id(&r.event_id, STAGE, "supplement-requested"),
                dossier_id: r.dossier.dossier_id.clone(),
                dossier_code: r.dossier_code.clone(),
                competent_unit_code: r.competent_unit_code.clone(),
                reasons: vec![Reason {
                    code: "SUPPLEMENT_REQUESTED_BY_OFFICER".into(),
                    message: "Cán bộ yêu cầu bổ sung bản sao giấy tờ".into(),
                }],
                requested_by: format!("{}/{}", r.competent_unit_code, r.desk),
                requested_at: start + span / 4,
                traceparent: r.traceparent.clone(),
            }
            .into()];
        }
        let due = r.due_at;
        let mut events = Vec::new();
        let late = rng.gen_bool(self.cfg.late_rate);
        let share: f64 = if late {
            rng.gen_range(1.05..1.6)
        } else {
            rng.gen_range(0.2..0.98)
        };
        let decided_at = start + (span as f64 * share) as i64;
        if late && rng.gen_bool(self.cfg.reappoint_rate) {
            // The apology goes out before the due time; the new date is the day after
            // the decision will be made.
            let issued_at = (due - (due - start) / 10).max(start);
            events.push(
                DossierReappointed {
                    event_id: derived_event_id(&r.event_id, STAGE, "reappointed"),
                    dossier_id: r.dossier.dossier_id.clone(),
                    dossier_code: r.dossier_code.clone(),
                    competent_unit_code: r.competent_unit_code.clone(),
                    reason_code: "WORKLOAD_EXCEEDED".into(),
                    apology_reference: format!(
                        "{}/XL-{}",
                        r.competent_unit_code,
                        &r.event_id[..8.min(r.event_id.len())]
                    ),
                    previous_due_at: due,
                    new_due_at: decided_at.max(due) + 86_400_000,
                    issued_by: format!("{}/{}", r.competent_unit_code, r.desk),
                    issued_at,
                    traceparent: r.traceparent.clone(),
                }
                .into(),
            );
        }
        let refused = rng.gen_bool(self.cfg.refusal_rate);
        let reasons = if refused {
            vec![Reason {
                code: "NOT_ELIGIBLE".into(),
                message: "Hồ sơ không đủ điều kiện theo quy định".into(),
            }]
        } else {
            Vec::new()
        };
        // The approval (reading and signing) takes the last 10–25 % of the processing.
        let approval = ((decided_at - start).max(0) as f64 * rng.gen_range(0.10..0.25)) as i64;
        let applicant = &r.dossier.applicant;
        events.push(
            DossierDecided {
                event_id: derived_event_id(&r.event_id, STAGE, "decided"),
                dossier_id: r.dossier.dossier_id.clone(),
                dossier_code: r.dossier_code.clone(),
                procedure_code: r.procedure.code.clone(),
                competent_unit_code: r.competent_unit_code.clone(),
                decision: if refused { Decision::Refused } else { Decision::Approved },
                reasons,
                decided_by: format!("{}/{}", r.competent_unit_code, r.desk),
                applicant_citizen_id: applicant.citizen_id.clone(),
                applicant_tax_code: (applicant.kind == ApplicantKind::Business)
                    .then(|| applicant.tax_code.clone())
                    .flatten(),
                received_at: r.received_at,
                due_at: due,
                decided_at,
                traceparent: r.traceparent.clone(),
                appraised_at: Some(decided_at - approval),
            }
            .into(),
        );
        events
    }
}

impl Stage for BackOffice {
    type Input = DossierRouted;

    fn name(&self) -> &'static str {
        STAGE
    }

    async fn handle_batch(&self, batch: &[Envelope<DossierRouted>]) -> Result<Vec<Outcome>, StageError> {
        Ok(batch.iter().map(|e| Outcome::Emit(self.decide(&e.event))).collect())
    }
}
