//! `motcua dossiers parked | escalated | verify`: the dossiers waiting on a person or on
//! an outside system, and an officer's manual verification.

use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use motcua_schemas::DossierAccepted;

use crate::export_cmd::utc;
use crate::Common;

#[derive(Debug, Subcommand)]
pub(crate) enum DossiersCommand {
    /// Dossiers parked because an outside system did not answer — verify's (a registry)
    /// and result's (the e-wallet gateway): code, stage, age, attempts and the last error,
    /// oldest first.
    Parked {
        #[arg(long, default_value_t = 100)]
        limit: i64,
        #[command(flatten)]
        common: Common,
    },
    /// Dossiers verify handed to an officer (a registry down too long, or an answer it
    /// cannot judge) that nobody verified yet: code, age, cause, oldest first.
    Escalated {
        #[arg(long, default_value_t = 100)]
        limit: i64,
        #[command(flatten)]
        common: Common,
    },
    /// An officer's manual verification of an escalated dossier: publishes its
    /// `dossier.verified` (each lookup marked SKIPPED / VERIFIED_MANUALLY) so payment and
    /// routing go on, and records who, when and the note.
    Verify {
        /// The dossier code.
        code: String,
        /// The officer's account id.
        #[arg(long)]
        by: String,
        /// What was checked, and how (kept with the record; no personal data).
        #[arg(long)]
        note: String,
        #[command(flatten)]
        common: Common,
    },
}

fn age(now_ms: i64, since_ms: i64) -> String {
    let minutes = (now_ms - since_ms).max(0) / 60_000;
    match minutes {
        m if m < 120 => format!("{m} min"),
        m if m < 48 * 60 => format!("{} h", m / 60),
        m => format!("{} d", m / (24 * 60)),
    }
}

pub(crate) async fn run(command: DossiersCommand) -> Result<ExitCode> {
    let now = motcua_reference::civil::now_ms();
    match command {
        DossiersCommand::Parked { limit, common } => {
            let (cfg, store) = common.store().await?;
            let codec = motcua_wiring::schemas::codec_once(&cfg).await?;
            let parked = store.parked(limit).await?;
            println!(
                "{:<24} {:<7} {:>8} {:>8}  last error",
                "dossier code", "stage", "age", "attempts"
            );
            for p in &parked {
                let code = motcua_wiring::operations::parked_code(&codec, p)
                    .unwrap_or_else(|| format!("(unreadable) {}", p.dossier_id));
                let escalated = if p.escalated_at_ms.is_some() {
                    " (officer told)"
                } else {
                    ""
                };
                println!(
                    "{code:<24} {:<7} {:>8} {:>8}  {}{escalated}",
                    p.lot.stage(),
                    age(now, p.parked_at_ms),
                    p.attempts,
                    p.last_error
                );
            }
            println!("{} parked", parked.len());
            store.close().await;
        }
        DossiersCommand::Escalated { limit, common } => {
            let (_, store) = common.store().await?;
            let escalated = store.escalated(limit).await?;
            println!("{:<24} {:>8}  {:<24}  cause", "dossier code", "age", "escalated (UTC)");
            for e in &escalated {
                println!(
                    "{:<24} {:>8}  {:<24}  {}",
                    e.dossier_code,
                    age(now, e.escalated_at_ms),
                    utc(e.escalated_at_ms),
                    e.reason
                );
            }
            println!("{} escalated, waiting for an officer", escalated.len());
            store.close().await;
        }
        DossiersCommand::Verify { code, by, note, common } => {
            if by.trim().is_empty() || note.trim().is_empty() {
                bail!("--by and --note must say who verified the dossier and how: they are recorded");
            }
            let (cfg, store) = common.store().await?;
            let Some(e) = store.escalation(&code).await? else {
                bail!("{code} was not escalated: only dossiers verify handed to an officer are verified by hand");
            };
            if let (Some(who), Some(at)) = (&e.verified_by, e.verified_at_ms) {
                bail!("{code} was verified by {who} at {} already", utc(at));
            }
            let codec = motcua_wiring::schemas::codec_once(&cfg).await?;
            let accepted: DossierAccepted = codec
                .decode(&e.payload)
                .with_context(|| format!("the stored dossier of {code} does not decode"))?;
            let reference = motcua_reference::Reference::load(
                cfg.reference.units_file.as_deref(),
                cfg.reference.procedures_file.as_deref(),
            )
            .context("loading reference data")?;
            let verified = motcua_verify::manual_verification(&reference, &accepted, now);
            // Published first, recorded after: a failure in between leaves it unrecorded,
            // and verifying again publishes the identical event (same id), which the
            // stages after verify take once.
            let producer: rdkafka::producer::FutureProducer = cfg.kafka.producer_config("motcua-officer").create()?;
            motcua_simulators::publisher::deliver(&producer, &cfg.kafka, &codec, &verified)
                .await
                .context("publishing the verified dossier")?;
            let stored = store.verified_by_hand(&e.dossier_id, &by, &note, now).await?;
            store.close().await;
            if stored.verified_by.as_deref() != Some(by.as_str()) {
                bail!(
                    "{code} was verified meanwhile by {}",
                    stored.verified_by.unwrap_or_default()
                );
            }
            println!(
                "{code} verified by {by}: dossier.verified published ({} lookups marked VERIFIED_MANUALLY)",
                verified.checks.len()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
