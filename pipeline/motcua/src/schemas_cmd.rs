//! `motcua schemas`: the topics' schemas and a Confluent-compatible Schema Registry.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use apache_avro::schema_compatibility::SchemaCompatibility;
use clap::Subcommand;
use motcua_schema_registry::{find_in, same_schema, Compatibility, SchemaRegistry};
use motcua_schemas::{SchemaSet, SchemaVersion, Topic};
use motcua_wiring::schemas::subject;
use motcua_wiring::Config;

use crate::Common;

/// The level every subject of ours is kept at: a new version reads every earlier one.
const LEVEL: Compatibility = Compatibility::BackwardTransitive;

#[derive(Debug, Subcommand)]
pub(crate) enum SchemasCommand {
    /// Register every committed schema version, oldest first, and set each subject's
    /// compatibility level to BACKWARD_TRANSITIVE.
    ///
    /// A subject the registry does not hold yet is imported: its committed versions
    /// (which motcua checks itself, each reading all earlier ones) are registered in
    /// order, then the level is set. A subject it holds is set to the level first, so
    /// the registry checks every version added to it.
    Register {
        #[command(flatten)]
        common: Common,
    },
    /// Check that a `schemas/` directory (a working tree, before a release) is compatible
    /// with what the registry holds, by Avro's resolution rules and by the registry's own
    /// check: exit status 1 when a schema is incompatible, 2 when only the registry
    /// refuses one that Avro's rules accept.
    Check {
        /// The directory holding `schema-ids.csv` and `avro/` (default: the schemas
        /// built into this binary).
        #[arg(long)]
        dir: Option<PathBuf>,
        #[command(flatten)]
        common: Common,
    },
    /// List the subjects of the flow with their versions, ids and compatibility level
    /// (without a registry: the committed table).
    List {
        #[command(flatten)]
        common: Common,
    },
    /// Print the data dictionary (Markdown) generated from the schemas
    /// (docs/data-dictionary.md is this output).
    Dictionary,
}

pub(crate) async fn run(command: SchemasCommand) -> Result<ExitCode> {
    match command {
        SchemasCommand::Register { common } => register(&common.load()?).await,
        SchemasCommand::Check { dir, common } => check(&common.load()?, dir).await,
        SchemasCommand::List { common } => list(&common.load()?).await,
        SchemasCommand::Dictionary => {
            print!("{}", motcua_schemas::dictionary::markdown());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn registry(cfg: &Config) -> Result<SchemaRegistry> {
    motcua_wiring::schemas::registry(cfg)?
        .context("no schema registry configured: set schema_registry.url (or MOTCUA_SCHEMA_REGISTRY__URL)")
}

/// Each version must read everything written with the versions before it.
fn check_history(history: &[&SchemaVersion]) -> Result<()> {
    for (i, new) in history.iter().enumerate() {
        for old in &history[..i] {
            if let Err(e) = SchemaCompatibility::can_read(&old.schema, &new.schema) {
                bail!(
                    "{} cannot read data written with {}: {e}; a breaking change needs a new topic",
                    new.file,
                    old.file
                );
            }
        }
    }
    Ok(())
}

async fn register(cfg: &Config) -> Result<ExitCode> {
    let registry = registry(cfg)?;
    let embedded = SchemaSet::embedded()?;
    // Per subject: what the registry holds, and whether this is an import (it holds
    // nothing yet).
    let mut subjects = Vec::new();
    for topic in Topic::ALL {
        let subject = subject(cfg, topic);
        check_history(&embedded.history(topic.value_subject().as_str()))?;
        let held = registry.held(&subject).await.context("schema registry")?;
        let level = if held.is_empty() {
            // History is imported as it is: the registry's checks start after it.
            Compatibility::None
        } else {
            LEVEL
        };
        registry
            .set_compatibility(&subject, level)
            .await
            .context("schema registry")?;
        subjects.push((topic, subject, held));
    }
    // In the committed table's id order: a fresh registry (which numbers from 1) then
    // gives every version the id messages written without a registry carry.
    let mut versions: Vec<&SchemaVersion> = Topic::ALL
        .iter()
        .flat_map(|t| embedded.history(t.value_subject().as_str()))
        .collect();
    versions.sort_by_key(|v| v.id);
    let mut differs = Vec::new();
    for v in versions {
        let (_, subject, held) = subjects
            .iter()
            .find(|(t, _, _)| t.value_subject() == v.subject)
            .context("a committed version of a subject that is not a topic")?;
        let (id, what) = match find_in(held, &v.text) {
            Some((id, version)) => (id, format!("already version {version}")),
            None => match registry.register(subject, &v.text).await {
                Ok(id) => (id, "registered".to_owned()),
                Err(e) if e.is_incompatible() => {
                    bail!("the registry refuses {} under {subject}: {e}", v.file)
                }
                Err(e) => return Err(e).context("schema registry"),
            },
        };
        println!("{subject:<32} {:<34} id {id:>5}  {what}", v.file);
        if id != v.id {
            differs.push(format!("{} (committed id {}, registry id {id})", v.file, v.id));
        }
    }
    for (_, subject, held) in &subjects {
        if held.is_empty() {
            registry
                .set_compatibility(subject, LEVEL)
                .await
                .context("schema registry")?;
        }
    }
    println!("compatibility level of every subject: {}", LEVEL.as_str());
    if differs.is_empty() {
        println!("the registry's ids equal the committed table (schemas/schema-ids.csv)");
    } else {
        println!(
            "note: {} ids differ from the committed table; messages written before a registry was \
             configured carry the committed ids and are readable only by workers without a registry:\n  {}",
            differs.len(),
            differs.join("\n  ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn check(cfg: &Config, dir: Option<PathBuf>) -> Result<ExitCode> {
    let registry = registry(cfg)?;
    let tree = match &dir {
        Some(d) => SchemaSet::from_dir(d).with_context(|| format!("reading the schemas in {}", d.display()))?,
        None => SchemaSet::embedded()?,
    };
    let (mut refused, mut disputed) = (0, 0);
    for topic in Topic::ALL {
        let subject = subject(cfg, topic);
        let history = tree.history(topic.value_subject().as_str());
        if let Err(e) = check_history(&history) {
            println!("{subject:<32} INCOMPATIBLE  {e}");
            refused += 1;
            continue;
        }
        let mine = tree.latest(topic);
        let held = registry.held(&subject).await.context("schema registry")?;
        if let Some((id, version)) = find_in(&held, &mine.text) {
            println!(
                "{subject:<32} ok            {} is version {version} (id {id})",
                mine.file
            );
            continue;
        }
        let level = registry.compatibility(&subject).await.context("schema registry")?;
        let by_avro = avro_verdict(&level, &held, &mine.schema);
        let (ok, messages) = registry
            .check_compatibility(&subject, &mine.text)
            .await
            .context("schema registry")?;
        match by_avro {
            Err(e) => {
                refused += 1;
                println!("{subject:<32} INCOMPATIBLE  {} under {level}: {e}", mine.file);
                for m in messages {
                    println!("{:<46}{m}", "");
                }
            }
            Ok(()) if ok => {
                println!(
                    "{subject:<32} ok            {} is compatible ({level}), not registered yet",
                    mine.file
                );
            }
            Ok(()) => {
                disputed += 1;
                println!(
                    "{subject:<32} DISPUTED      {} is compatible under {level} by Avro's resolution rules \
                     (apache-avro), but this registry would refuse it:",
                    mine.file
                );
                for m in messages {
                    println!("{:<46}{m}", "");
                }
            }
        }
    }
    if refused > 0 {
        println!(
            "{refused} subject(s) would refuse these schemas: make the change compatible (add fields with \
             defaults) or publish the breaking version on a new topic"
        );
        return Ok(ExitCode::FAILURE);
    }
    if disputed > 0 {
        println!(
            "{disputed} subject(s): the registry disagrees with Avro's rules (a registry bug, or a level it \
             applies differently); registering there would fail. Exit status 2"
        );
        return Ok(ExitCode::from(2));
    }
    Ok(ExitCode::SUCCESS)
}

/// Whether `new` may follow the versions a subject holds under `level`, by Avro's schema
/// resolution rules: the same rule a registry applies, computed here so a registry's
/// verdict can be checked.
fn avro_verdict(level: &str, held: &[(u32, String, u32, String)], new: &apache_avro::Schema) -> Result<()> {
    let mut olds = Vec::new();
    for (id, _, version, text) in held {
        let old = apache_avro::Schema::parse_str(text)
            .with_context(|| format!("the registry's version {version} (id {id}) is not a schema apache-avro reads"))?;
        olds.push((*version, old));
    }
    olds.sort_by_key(|(v, _)| *v);
    let transitive = level.ends_with("_TRANSITIVE");
    let compared: Vec<&(u32, apache_avro::Schema)> = if transitive {
        olds.iter().collect()
    } else {
        olds.last().into_iter().collect()
    };
    let backward = level.starts_with("BACKWARD") || level.starts_with("FULL");
    let forward = level.starts_with("FORWARD") || level.starts_with("FULL");
    for (version, old) in compared {
        if backward {
            SchemaCompatibility::can_read(old, new)
                .map_err(|e| anyhow::anyhow!("cannot read data written with version {version}: {e}"))?;
        }
        if forward {
            SchemaCompatibility::can_read(new, old)
                .map_err(|e| anyhow::anyhow!("version {version} cannot read data written with it: {e}"))?;
        }
    }
    Ok(())
}

async fn list(cfg: &Config) -> Result<ExitCode> {
    let embedded = SchemaSet::embedded()?;
    let Some(registry) = motcua_wiring::schemas::registry(cfg)? else {
        println!("no schema registry configured: ids from the committed table");
        println!("{:<32} {:>7} {:>9}  file", "subject", "version", "schema id");
        for topic in Topic::ALL {
            for v in embedded.history(topic.value_subject().as_str()) {
                println!("{:<32} {:>7} {:>9}  {}", subject(cfg, topic), v.version, v.id, v.file);
            }
        }
        return Ok(ExitCode::SUCCESS);
    };
    println!(
        "{:<32} {:>7} {:>9}  {:<20} this build",
        "subject", "version", "schema id", "compatibility"
    );
    for topic in Topic::ALL {
        let subject = subject(cfg, topic);
        let level = registry.compatibility(&subject).await.context("schema registry")?;
        let held = registry.held(&subject).await.context("schema registry")?;
        if held.is_empty() {
            println!("{subject:<32} {:>7} {:>9}  {level:<20} not registered", "-", "-");
        }
        let history = embedded.history(topic.value_subject().as_str());
        for (id, _, version, text) in held {
            let ours = history
                .iter()
                .find(|v| same_schema(&v.text, &text))
                .map_or("not in this build".to_owned(), |v| v.file.clone());
            println!("{subject:<32} {version:>7} {id:>9}  {level:<20} {ours}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
