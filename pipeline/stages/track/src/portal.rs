//! What the projection knows of each dossier's status changes, for reconciling the
//! national portal with it (`motcua portal reconcile`).

use sqlx::Row;

use crate::{Result, Track};

/// One dossier as the projection holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectedDossier {
    pub dossier_id: String,
    pub dossier_code: String,
    pub procedure_code: Option<String>,
    pub competent_unit: Option<String>,
    pub due_at: Option<i64>,
    /// Its current national status code and when it was reached.
    pub status_code: Option<i32>,
    pub status_at: Option<i64>,
    /// Its status events from reception on, oldest first (before reception a dossier has
    /// no code, and the portal does not hear of it).
    pub changes: Vec<ProjectedChange>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectedChange {
    pub event_id: String,
    pub status_code: i32,
    pub occurred_at: i64,
    /// The procedure, unit and due time the status event announced; `None` when it was
    /// projected before they were kept (migration 2008).
    pub announced: Option<AnnouncedWith>,
}

/// What a status event announced besides its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnouncedWith {
    pub procedure_code: Option<String>,
    pub unit_code: Option<String>,
    pub due_at: Option<i64>,
}

impl Track {
    /// Dossiers with a code, in code order, after `after_code`: at most `limit`.
    pub async fn projected_dossiers(&self, after_code: &str, limit: i64) -> Result<Vec<ProjectedDossier>> {
        let db = self.db();
        let sql = "SELECT dossier_id, dossier_code, procedure_code, competent_unit, due_at, status_code, status_at, \
                   received_at FROM track_dossiers WHERE dossier_code IS NOT NULL AND dossier_code > $1 \
                   ORDER BY dossier_code LIMIT $2";
        let rows: Vec<(ProjectedDossier, Option<i64>)> = on_db!(db, |p| sqlx::query(sql)
            .bind(after_code)
            .bind(limit)
            .fetch_all(p)
            .await?
            .iter()
            .map(|r| {
                (
                    ProjectedDossier {
                        dossier_id: r.get("dossier_id"),
                        dossier_code: r.get("dossier_code"),
                        procedure_code: r.get("procedure_code"),
                        competent_unit: r.get("competent_unit"),
                        due_at: r.get("due_at"),
                        status_code: r.get("status_code"),
                        status_at: r.get("status_at"),
                        changes: Vec::new(),
                    },
                    r.get("received_at"),
                )
            })
            .collect());
        let history =
            "SELECT event_id, status_code, occurred_at, procedure_code, unit_code, due_at FROM track_history \
                       WHERE dossier_id = $1 AND event = 'dossier.status' AND status_code IS NOT NULL \
                       AND occurred_at >= $2 ORDER BY occurred_at, event_id";
        let mut out = Vec::with_capacity(rows.len());
        for (mut d, received_at) in rows {
            d.changes = on_db!(db, |p| sqlx::query(history)
                .bind(&d.dossier_id)
                .bind(received_at.unwrap_or(i64::MIN))
                .fetch_all(p)
                .await?
                .iter()
                .map(|r| {
                    let with = AnnouncedWith {
                        procedure_code: r.get("procedure_code"),
                        unit_code: r.get("unit_code"),
                        due_at: r.get("due_at"),
                    };
                    // Every status after reception names its procedure: none named means
                    // the row predates migration 2008.
                    let kept = with.procedure_code.is_some() || with.unit_code.is_some() || with.due_at.is_some();
                    ProjectedChange {
                        event_id: r.get("event_id"),
                        status_code: r.get("status_code"),
                        occurred_at: r.get("occurred_at"),
                        announced: kept.then_some(with),
                    }
                })
                .collect());
            out.push(d);
        }
        Ok(out)
    }
}
