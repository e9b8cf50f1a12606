//! Reconciliation: what the portal holds against what it should (every status change the
//! projection recorded from a dossier's reception on), and the missing changes re-sent
//! under their own ids, oldest first.

use motcua_outward::{NationalPortal, StatusChange};

use crate::telemetry;

/// What a reconciliation found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reconciled {
    pub dossiers: u64,
    pub in_sync: u64,
    /// Dossiers the portal had no record of.
    pub missing_records: u64,
    /// Dossiers whose record lacked some changes.
    pub incomplete_records: u64,
    /// Changes re-sent and acknowledged.
    pub resent: u64,
    /// Dossiers that could not be checked or repaired, with why (no personal data: codes
    /// and the portal's error).
    pub failed: Vec<(String, String)>,
}

/// Reconciles each dossier's `expected` changes (one dossier per entry, oldest first, all
/// with the same dossier code). With `dry_run`, only counts.
pub async fn reconcile<P: NationalPortal>(portal: &P, expected: &[Vec<StatusChange>], dry_run: bool) -> Reconciled {
    let mut r = Reconciled::default();
    for changes in expected {
        let Some(code) = changes.first().map(|c| c.dossier_code.clone()) else {
            continue;
        };
        r.dossiers += 1;
        let held = match portal.fetch(&code).await {
            Ok(held) => held,
            Err(e) => {
                r.failed.push((code, e.to_string()));
                continue;
            }
        };
        let (missing, what): (Vec<&StatusChange>, _) = match &held {
            None => (changes.iter().collect(), "missing_record"),
            Some(record) => (
                changes
                    .iter()
                    .filter(|c| !record.change_ids.contains(&c.change_id))
                    .collect(),
                "missing_change",
            ),
        };
        if missing.is_empty() {
            r.in_sync += 1;
            continue;
        }
        if held.is_none() {
            r.missing_records += 1;
        } else {
            r.incomplete_records += 1;
        }
        if dry_run {
            continue;
        }
        for change in missing {
            match portal.push(change).await {
                Ok(_) => {
                    r.resent += 1;
                    telemetry::reconciled(what);
                }
                Err(e) => {
                    r.failed.push((code.clone(), e.to_string()));
                    break;
                }
            }
        }
    }
    r
}
