//! Fixtures shared by the track tests: whole dossier lives as events, a migrated scratch
//! PostgreSQL database, and row snapshots to compare projections.
#![allow(dead_code, unreachable_pub)]

use motcua_schemas::*;
use sqlx::PgPool;

/// 2025-11-25 09:00 in Hà Nội (a Tuesday).
pub const NOW: i64 = 1_764_036_000_000;
pub const MIN: i64 = 60_000;
pub const HOUR: i64 = 3_600_000;
pub const DAY: i64 = 24 * HOUR;

/// One dossier's life, for building its events.
#[derive(Debug, Clone)]
pub struct Life {
    pub id: String,
    pub code: String,
    pub receiving_unit: String,
    pub competent_unit: String,
    pub procedure: String,
    pub channel: Channel,
    pub submitted_at: i64,
    pub due_at: i64,
    /// Result delivered at, and how it compares with the due time.
    pub done: Option<(i64, Timeliness)>,
    /// Pauses of the legal clock the routing gave back: (from, to, paused working ms).
    pub pauses: Vec<(i64, i64, i64)>,
}

impl Life {
    pub fn new(n: u32, submitted_at: i64) -> Self {
        Self {
            id: format!("dossier-{n}"),
            code: format!("H22.06652-251125-{n:04}"),
            receiving_unit: "06652".into(),
            competent_unit: "06652".into(),
            procedure: "1.004227".into(),
            channel: Channel::Online,
            submitted_at,
            due_at: submitted_at + 10 * DAY,
            done: None,
            pauses: Vec::new(),
        }
    }

    /// The token printed on this dossier's receipt.
    pub fn lookup_token(&self) -> String {
        let n: String = self.id.chars().filter(char::is_ascii_digit).collect();
        format!("7KQ2-M90D-1XYZ-{:0>4}", n)
    }

    pub fn received_at(&self) -> i64 {
        self.submitted_at + MIN
    }

    pub fn routed_at(&self) -> i64 {
        self.submitted_at + 30 * MIN
    }

    fn dossier(&self) -> Dossier {
        let mut d = samples::dossier();
        d.dossier_id = self.id.clone();
        d.receiving_unit_code = self.receiving_unit.clone();
        d.procedure_code = self.procedure.clone();
        d.channel = self.channel;
        d.submitted_at = self.submitted_at;
        d
    }

    fn procedure(&self) -> ProcedureSummary {
        let mut p = samples::procedure();
        p.code = self.procedure.clone();
        p
    }

    pub fn submitted(&self) -> AnyEvent {
        DossierSubmitted {
            event_id: format!("{}-submitted", self.id),
            dossier: self.dossier(),
            published_at: self.submitted_at,
            traceparent: None,
        }
        .into()
    }

    pub fn accepted(&self) -> AnyEvent {
        DossierAccepted {
            event_id: format!("{}-accepted", self.id),
            causation_id: format!("{}-submitted", self.id),
            dossier_code: self.code.clone(),
            receiving_agency_code: format!("H22.{}", self.receiving_unit),
            received_at: self.received_at(),
            procedure: self.procedure(),
            dossier: self.dossier(),
            traceparent: None,
        }
        .into()
    }

    pub fn status(&self, kind: &str, status: DossierStatus, stage: &str, at: i64, due: Option<i64>) -> AnyEvent {
        DossierStatusChanged {
            event_id: format!("{}-status-{kind}", self.id),
            causation_id: None,
            dossier_id: self.id.clone(),
            dossier_code: Some(self.code.clone()),
            status,
            status_code: status.code(),
            procedure_code: Some(self.procedure.clone()),
            stage: stage.into(),
            reasons: if status == DossierStatus::SupplementRequested {
                vec![Reason {
                    code: "MISSING_DOCUMENT".into(),
                    message: "Thiếu bản sao giấy chứng nhận".into(),
                }]
            } else {
                vec![]
            },
            unit_code: Some(self.competent_unit.clone()),
            due_at: due,
            occurred_at: at,
            traceparent: None,
            // Intake's "received" status carries the citizen's lookup token.
            lookup_token: (status == DossierStatus::Received && stage == "intake").then(|| self.lookup_token()),
        }
        .into()
    }

    pub fn verified(&self) -> AnyEvent {
        DossierVerified {
            event_id: format!("{}-verified", self.id),
            causation_id: format!("{}-accepted", self.id),
            dossier_code: self.code.clone(),
            received_at: self.received_at(),
            procedure: self.procedure(),
            dossier: self.dossier(),
            checks: vec![],
            verified_at: self.submitted_at + 5 * MIN,
            traceparent: None,
        }
        .into()
    }

    pub fn payment_requested(&self) -> AnyEvent {
        PaymentRequested {
            event_id: format!("{}-bill", self.id),
            causation_id: format!("{}-verified", self.id),
            dossier_id: self.id.clone(),
            dossier_code: self.code.clone(),
            bill_reference: format!("BILL-{}", self.id),
            fee_vnd: 100_000,
            charge_vnd: 0,
            amount_vnd: 100_000,
            payer_name: "Nguyễn Thị Hương".into(),
            description: "Lệ phí".into(),
            issued_at: self.submitted_at + 10 * MIN,
            expires_at: self.submitted_at + DAY,
            traceparent: None,
        }
        .into()
    }

    pub fn paid(&self) -> AnyEvent {
        DossierPaid {
            event_id: format!("{}-paid", self.id),
            causation_id: format!("{}-bill", self.id),
            dossier_code: self.code.clone(),
            received_at: self.received_at(),
            procedure: self.procedure(),
            dossier: self.dossier(),
            bill_reference: Some(format!("BILL-{}", self.id)),
            amount_vnd: 100_000,
            paid_at: self.submitted_at + 20 * MIN,
            traceparent: None,
        }
        .into()
    }

    pub fn routed(&self) -> AnyEvent {
        DossierRouted {
            event_id: format!("{}-routed", self.id),
            causation_id: format!("{}-paid", self.id),
            dossier_code: self.code.clone(),
            received_at: self.received_at(),
            procedure: self.procedure(),
            dossier: self.dossier(),
            competent_unit_code: self.competent_unit.clone(),
            competent_unit_name: "UBND phường".into(),
            desk: "LAND-1".into(),
            transferred: self.competent_unit != self.receiving_unit,
            due_at: self.due_at,
            routed_at: self.routed_at(),
            traceparent: None,
            calendar_version: Some("sha256:test-calendar".into()),
            clock_pauses: self
                .pauses
                .iter()
                .map(|&(from_at, to_at, paused_working_ms)| ClockPause {
                    step: "verify".into(),
                    from_at,
                    to_at,
                    paused_working_ms,
                })
                .collect(),
        }
        .into()
    }

    pub fn decided(&self, at: i64) -> AnyEvent {
        DossierDecided {
            event_id: format!("{}-decided", self.id),
            dossier_id: self.id.clone(),
            dossier_code: self.code.clone(),
            procedure_code: self.procedure.clone(),
            competent_unit_code: self.competent_unit.clone(),
            decision: Decision::Approved,
            reasons: vec![],
            decided_by: "officer-1".into(),
            applicant_citizen_id: Some("022090001234".into()),
            applicant_tax_code: None,
            received_at: self.received_at(),
            due_at: self.due_at,
            decided_at: at,
            traceparent: None,
            appraised_at: Some(at - 3_600_000),
        }
        .into()
    }

    pub fn completed(&self, at: i64, timeliness: Timeliness) -> AnyEvent {
        DossierCompleted {
            event_id: format!("{}-completed", self.id),
            causation_id: format!("{}-decided", self.id),
            dossier_id: self.id.clone(),
            dossier_code: self.code.clone(),
            procedure_code: self.procedure.clone(),
            competent_unit_code: self.competent_unit.clone(),
            decision: Decision::Approved,
            result_document: ResultDocument {
                reference: "H22-GCN-000001".into(),
                sha256: "00".repeat(32),
                signature: vec![1, 2, 3],
                signing_key_id: "k1".into(),
                uri: "wallet://x".into(),
            },
            wallet_owner: "022090001234".into(),
            received_at: self.received_at(),
            due_at: self.due_at,
            delivered_at: at,
            timeliness,
            traceparent: None,
            signed_record: None,
            record_signature: None,
            wallet_receipt_id: None,
        }
        .into()
    }

    /// Every event of the life so far, in the order the stages produce them.
    pub fn events(&self) -> Vec<AnyEvent> {
        let mut v = vec![
            self.submitted(),
            self.accepted(),
            self.status("received", DossierStatus::Received, "intake", self.received_at(), None),
            self.verified(),
            self.payment_requested(),
            self.status(
                "bill",
                DossierStatus::FinancialObligationRequested,
                "payment",
                self.submitted_at + 10 * MIN,
                None,
            ),
            self.paid(),
            self.routed(),
            self.status(
                "processing",
                DossierStatus::Processing,
                "route",
                self.routed_at(),
                Some(self.due_at),
            ),
        ];
        if let Some((at, t)) = self.done {
            v.push(self.decided(at - HOUR));
            v.push(self.completed(at, t));
        }
        v
    }
}

/// A fresh database with the projection's migrations applied.
pub async fn database() -> PgPool {
    database_with_url().await.0
}

/// A migrated scratch database and its URL (to open other pools on it).
pub async fn database_with_url() -> (PgPool, String) {
    let url = motcua_store::testing::scratch_postgres_url().await;
    let track = motcua_track::Track::connect(&url).await.expect("connect + migrate");
    (track.postgres().expect("postgres").clone(), url)
}

/// The whole projection as text, to compare two databases or two moments.
pub async fn snapshot(pool: &PgPool) -> (Vec<String>, Vec<String>) {
    let dossiers: Vec<(String,)> =
        sqlx::query_as("SELECT (to_jsonb(d) - 'warned_due_at')::text FROM track_dossiers d ORDER BY dossier_id")
            .fetch_all(pool)
            .await
            .expect("dossiers");
    let history: Vec<(String,)> = sqlx::query_as("SELECT to_jsonb(h)::text FROM track_history h ORDER BY event_id")
        .fetch_all(pool)
        .await
        .expect("history");
    (
        dossiers.into_iter().map(|r| r.0).collect(),
        history.into_iter().map(|r| r.0).collect(),
    )
}

pub fn refs(events: &[AnyEvent]) -> Vec<&AnyEvent> {
    events.iter().collect()
}
