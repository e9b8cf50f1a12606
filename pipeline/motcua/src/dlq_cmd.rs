//! `motcua dlq list | show | replay | replays`: dead letters for operators.

use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use motcua_dlq::{Entry, Filter, Outcome, ReplayOptions};

use crate::export_cmd::{parse_instant, utc};
use crate::Common;

#[derive(Debug, Subcommand)]
pub(crate) enum DlqCommand {
    /// List dead letters (oldest first): id (partition:offset), time, stage, reason code,
    /// origin, key and replay count. No message content.
    List {
        #[command(flatten)]
        filter: FilterArgs,
        /// Show at most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[command(flatten)]
        common: Common,
    },
    /// One dead letter in full: reason, origin, the original's headers and size; with
    /// --payload also the original message decoded (it may hold personal data).
    Show {
        /// The dead letter's id, `partition:offset` (as `list` prints it).
        id: String,
        /// Print the original message decoded as JSON.
        #[arg(long)]
        payload: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Publish dead letters back to their topics, original bytes and headers, with a
    /// replay-count header one higher. A message replayed --max-replays times already is
    /// parked (not replayed); a dead letter replayed before is not replayed again. Each
    /// replay is recorded in the database: who (--by), when, what and why (--why).
    Replay {
        /// Only these dead letters (`partition:offset`); with none, every one the filters
        /// match.
        ids: Vec<String>,
        #[command(flatten)]
        filter: FilterArgs,
        /// Say what would be replayed; publish and record nothing.
        #[arg(long)]
        dry_run: bool,
        /// Replay at most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Park, instead of replaying, a message already replayed this many times.
        #[arg(long, default_value_t = 3)]
        max_replays: u32,
        /// Who replays (your operator account).
        #[arg(long)]
        by: String,
        /// Why: the fix that makes the replay worth it.
        #[arg(long)]
        why: String,
        #[command(flatten)]
        common: Common,
    },
    /// The audit of replays, newest first.
    Replays {
        #[arg(long, default_value_t = 100)]
        limit: i64,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Debug, Args)]
pub(crate) struct FilterArgs {
    /// Only this reason code (e.g. BAD_MAGIC_BYTE).
    #[arg(long)]
    reason: Option<String>,
    /// Only dead letters of this origin topic (e.g. dossier.submitted).
    #[arg(long)]
    topic: Option<String>,
    /// Only those this stage dead-lettered.
    #[arg(long)]
    stage: Option<String>,
    /// Dead-lettered at or after: RFC 3339, a UTC date or epoch milliseconds.
    #[arg(long, value_parser = parse_instant)]
    since: Option<i64>,
    /// Dead-lettered before (same forms as --since).
    #[arg(long, value_parser = parse_instant)]
    until: Option<i64>,
    /// Only this dossier (the original message's key).
    #[arg(long)]
    dossier: Option<String>,
}

impl FilterArgs {
    fn filter(&self) -> Filter {
        Filter {
            reason_code: self.reason.clone(),
            origin_topic: self.topic.clone(),
            stage: self.stage.clone(),
            since_ms: self.since,
            until_ms: self.until,
            dossier: self.dossier.clone(),
        }
    }
}

fn parse_id(id: &str) -> Result<(i32, i64)> {
    id.split_once(':')
        .and_then(|(p, o)| Some((p.trim().parse().ok()?, o.trim().parse().ok()?)))
        .with_context(|| format!("'{id}' is not a dead letter id: partition:offset, as `motcua dlq list` prints it"))
}

async fn read(common: &Common, filter: Filter) -> Result<(motcua_wiring::config::Config, Vec<Entry>)> {
    let cfg = common.load()?;
    let codec = motcua_wiring::schemas::codec_once(&cfg).await?;
    let kafka = cfg.kafka.clone();
    let entries = tokio::task::spawn_blocking(move || {
        let stop = Arc::new(AtomicBool::new(false));
        motcua_dlq::list(&kafka, &codec, &filter, &stop)
    })
    .await
    .context("the reading task")?
    .context("reading the dead letters")?;
    Ok((cfg, entries))
}

fn line(e: &Entry) -> String {
    let d = &e.dead_letter;
    format!(
        "{:<10} {}  {:<7} {:<30} {}/{}/{}  {}  replays {}{}",
        e.id(),
        utc(d.failed_at),
        d.stage,
        d.reason_code,
        d.origin_topic,
        d.origin_partition,
        d.origin_offset,
        e.key().unwrap_or_else(|| "-".to_owned()),
        e.replay_count(),
        if e.truncated { "  (truncated)" } else { "" }
    )
}

pub(crate) async fn run(command: DlqCommand) -> Result<ExitCode> {
    match command {
        DlqCommand::List { filter, limit, common } => {
            let (_, entries) = read(&common, filter.filter()).await?;
            println!(
                "{:<10} {:<24}  {:<7} {:<30} origin  key  replays",
                "id", "dead-lettered (UTC)", "stage", "reason"
            );
            for e in entries.iter().take(limit) {
                println!("{}", line(e));
            }
            println!(
                "{} dead letters match{}",
                entries.len(),
                if entries.len() > limit {
                    format!(" ({limit} shown)")
                } else {
                    String::new()
                }
            );
            Ok(ExitCode::SUCCESS)
        }
        DlqCommand::Show { id, payload, common } => {
            let wanted = parse_id(&id)?;
            let (cfg, entries) = read(&common, Filter::default()).await?;
            let Some(e) = entries.iter().find(|e| (e.partition, e.offset) == wanted) else {
                bail!(
                    "no dead letter {id} in {}",
                    cfg.kafka.topic(motcua_schemas::Topic::DeadLetter)
                );
            };
            let d = &e.dead_letter;
            println!("dead letter {}", e.id());
            println!("  stage        {}", d.stage);
            println!("  reason       {} — {}", d.reason_code, d.reason);
            println!(
                "  origin       {} partition {} offset {}",
                d.origin_topic, d.origin_partition, d.origin_offset
            );
            println!("  at           {}", utc(d.failed_at));
            println!("  key          {}", e.key().unwrap_or_else(|| "-".to_owned()));
            println!(
                "  value        {} bytes kept{}",
                d.origin_value.as_ref().map_or(0, Vec::len),
                if e.truncated { " (a prefix: not replayable)" } else { "" }
            );
            println!("  replays      {}", e.replay_count());
            for (k, v) in &e.origin_headers {
                println!(
                    "  header       {k} = {}",
                    v.as_deref().map(String::from_utf8_lossy).unwrap_or_default()
                );
            }
            if payload {
                let codec = motcua_wiring::schemas::codec_once(&cfg).await?;
                let topic = cfg.kafka.topic_of(&d.origin_topic);
                match (topic, d.origin_value.as_deref()) {
                    (Some(t), Some(v)) => match motcua_schemas::AnyEvent::decode(&codec, t, v) {
                        Ok(event) => println!(
                            "{}",
                            serde_json::to_string_pretty(&motcua_schemas::dictionary::event_json(&event))?
                        ),
                        Err(err) => println!("  the original does not decode: {err}"),
                    },
                    _ => println!("  no original value of a known topic to decode"),
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        DlqCommand::Replay {
            ids,
            filter,
            dry_run,
            limit,
            max_replays,
            by,
            why,
            common,
        } => {
            if by.trim().is_empty() || why.trim().is_empty() {
                bail!("--by and --why must say who replays and why: they are recorded");
            }
            let wanted: Vec<(i32, i64)> = ids.iter().map(|i| parse_id(i)).collect::<Result<_>>()?;
            let (cfg, mut entries) = read(&common, filter.filter()).await?;
            if !wanted.is_empty() {
                entries.retain(|e| wanted.contains(&(e.partition, e.offset)));
                if entries.len() < wanted.len() {
                    bail!(
                        "only {} of the {} ids are dead letters matching the filters",
                        entries.len(),
                        wanted.len()
                    );
                }
            }
            let store = crate::open_store(&cfg).await?;
            let opts = ReplayOptions {
                dry_run,
                limit,
                max_replays,
                by,
                why,
                now_ms: motcua_reference::civil::now_ms(),
            };
            let outcomes = motcua_dlq::replay(&cfg.kafka, &store, &entries, &opts).await?;
            store.close().await;
            let mut counts = std::collections::BTreeMap::<&str, usize>::new();
            for (e, o) in entries.iter().zip(&outcomes) {
                let (what, detail) = match o {
                    Outcome::Replayed {
                        partition,
                        offset,
                        count,
                    } => (
                        "replayed",
                        format!("→ {} {partition}:{offset}, replay {count}", e.dead_letter.origin_topic),
                    ),
                    Outcome::WouldReplay { count } => ("would replay", format!("replay {count} (dry run)")),
                    Outcome::Parked { count } => ("parked", format!("replayed {count} times already")),
                    Outcome::AlreadyDone(r) => (
                        "already done",
                        format!("{} by {} at {}", r.outcome, r.replayed_by, utc(r.replayed_at_ms)),
                    ),
                    Outcome::Unreplayable(why) => ("not replayable", (*why).to_owned()),
                    Outcome::NotThisTime => ("over --limit", String::new()),
                };
                *counts.entry(what).or_default() += 1;
                println!("{:<10} {:<14} {:<30} {detail}", e.id(), what, e.dead_letter.reason_code);
            }
            let summary: Vec<String> = counts.iter().map(|(k, v)| format!("{v} {k}")).collect();
            println!(
                "{}",
                if summary.is_empty() {
                    "no dead letters match".to_owned()
                } else {
                    summary.join(", ")
                }
            );
            Ok(ExitCode::SUCCESS)
        }
        DlqCommand::Replays { limit, common } => {
            let (_, store) = common.store().await?;
            for r in store.dlq_replays(limit).await? {
                println!(
                    "{}  {:<8} {}:{:<8} {} {}/{}/{} → {}  by {}: {}",
                    utc(r.replayed_at_ms),
                    r.outcome,
                    r.dlq_partition,
                    r.dlq_offset,
                    r.reason_code,
                    r.origin_topic,
                    r.origin_partition,
                    r.origin_offset,
                    match (r.new_partition, r.new_offset) {
                        (Some(p), Some(o)) => format!("{p}:{o}, replay {}", r.replay_count),
                        _ => "-".to_owned(),
                    },
                    r.replayed_by,
                    r.why
                );
            }
            store.close().await;
            Ok(ExitCode::SUCCESS)
        }
    }
}
