//! `motcua portal reconcile`: what the National Public Service Portal holds against the
//! status projection, and the missing status changes re-sent.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;
use motcua_outward::StatusChange;

use crate::Common;

#[derive(Debug, Subcommand)]
pub(crate) enum PortalCommand {
    /// Compare every dossier the portal should know (a code, from the status projection)
    /// with the portal's record, and re-send the status changes it lacks under their own
    /// ids, oldest first: a record lost or deleted at the portal is rebuilt, a change lost
    /// in transit filed. The portal files a change id once, so running it twice is safe.
    Reconcile {
        /// Report the differences, re-send nothing.
        #[arg(long)]
        dry_run: bool,
        /// Start after this dossier code (to resume a long run).
        #[arg(long, default_value = "")]
        after: String,
        /// At most this many dossiers (0: all).
        #[arg(long, default_value_t = 0)]
        limit: u64,
        #[command(flatten)]
        common: Common,
    },
}

/// The changes the portal should hold of one projected dossier: each as its status event
/// announced it (what portal-sync sent); a change projected before the projection kept
/// that, with the dossier's current procedure, agency and due time.
fn expected(d: &motcua_track::portal::ProjectedDossier) -> Vec<StatusChange> {
    d.changes
        .iter()
        .filter_map(|c| {
            let (procedure_code, agency_code, due_at_ms) = match &c.announced {
                Some(a) => (a.procedure_code.clone(), a.unit_code.clone(), a.due_at),
                None => (d.procedure_code.clone(), d.competent_unit.clone(), d.due_at),
            };
            Some(StatusChange {
                change_id: c.event_id.clone(),
                dossier_code: d.dossier_code.clone(),
                status: u8::try_from(c.status_code).ok().filter(|s| (1..=10).contains(s))?,
                changed_at_ms: c.occurred_at,
                procedure_code,
                agency_code,
                due_at_ms,
            })
        })
        .collect()
}

pub(crate) async fn run(command: PortalCommand) -> Result<ExitCode> {
    let PortalCommand::Reconcile {
        dry_run,
        after,
        limit,
        common,
    } = command;
    let cfg = common.load()?;
    let portal = motcua_outward::http::HttpPortal::new("portal.http", cfg.portal.http.clone())
        .context("the national portal (portal.http)")?;
    let track = motcua_track::Track::connect(&cfg.database.url)
        .await
        .with_context(|| format!("opening the projection at {}", motcua_store::redact(&cfg.database.url)))?;
    const PAGE: i64 = 500;
    let mut total = motcua_portal_sync::Reconciled::default();
    let mut cursor = after;
    let mut seen = 0u64;
    loop {
        let page = track.projected_dossiers(&cursor, PAGE).await?;
        let Some(last) = page.last() else { break };
        cursor = last.dossier_code.clone();
        let mut page: Vec<Vec<StatusChange>> = page.iter().map(expected).filter(|c| !c.is_empty()).collect();
        if limit > 0 {
            page.truncate(usize::try_from(limit - seen).unwrap_or(usize::MAX));
        }
        seen += page.len() as u64;
        let r = motcua_portal_sync::reconcile(&portal, &page, dry_run).await;
        total.dossiers += r.dossiers;
        total.in_sync += r.in_sync;
        total.missing_records += r.missing_records;
        total.incomplete_records += r.incomplete_records;
        total.resent += r.resent;
        total.failed.extend(r.failed);
        if limit > 0 && seen >= limit {
            break;
        }
    }
    track.close().await;
    for (code, why) in &total.failed {
        println!("{code:<24} not reconciled: {why}");
    }
    println!(
        "{} dossiers checked: {} in sync, {} missing on the portal, {} missing changes; {} changes {}{}",
        total.dossiers,
        total.in_sync,
        total.missing_records,
        total.incomplete_records,
        total.resent,
        if dry_run {
            "would be re-sent (dry run)"
        } else {
            "re-sent"
        },
        if total.failed.is_empty() {
            String::new()
        } else {
            format!("; {} dossiers not reconciled", total.failed.len())
        }
    );
    Ok(if total.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
