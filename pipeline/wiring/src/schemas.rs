//! The codec a worker runs with: the compiled-in id table, or — with
//! `[schema_registry]` configured — the registry's ids for this build's schemas, every
//! version the registry holds for our subjects, and the registry as the source of writer
//! schemas published after the worker started.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use motcua_runtime::Shutdown;
use motcua_schema_registry::{IdPolicy, SchemaRegistry, StartupError};
use motcua_schemas::{Codec, SchemaSet};
use tracing::{info, warn};

use crate::Config;

/// The subject of a topic's values as deployed (TopicNameStrategy: `<topic>-value`, with
/// the deployment's topic prefix).
pub fn subject(cfg: &Config, topic: motcua_schemas::Topic) -> String {
    format!("{}-value", cfg.kafka.topic(topic))
}

/// The configured registry client, if any.
pub fn registry(cfg: &Config) -> Result<Option<SchemaRegistry>> {
    let Some(client) = cfg.schema_registry.client()? else {
        return Ok(None);
    };
    Ok(Some(
        SchemaRegistry::new(&client).context("schema_registry: cannot build the client")?,
    ))
}

/// Builds the worker's codec. A registry that cannot be reached is waited for (retrying
/// with backoff, logging each attempt) rather than a reason to exit: a worker that exits
/// would only be restarted into the same wait. `Ok(None)`: shutdown requested meanwhile.
/// A registry that refuses this build's schemas is an error naming the subject.
pub async fn codec(cfg: &Config, shutdown: &Shutdown) -> Result<Option<Codec>> {
    build(cfg, Some(shutdown)).await
}

/// The codec for a one-shot command (`publish`, `export`): a registry that cannot be
/// reached is an error at once, not a wait.
pub async fn codec_once(cfg: &Config) -> Result<Codec> {
    build(cfg, None)
        .await?
        .context("stopped while reaching the schema registry")
}

async fn build(cfg: &Config, shutdown: Option<&Shutdown>) -> Result<Option<Codec>> {
    let embedded = SchemaSet::embedded()?;
    let Some(registry) = registry(cfg)? else {
        return Ok(Some(Codec::new(embedded)));
    };
    let url = cfg.schema_registry.url.clone().unwrap_or_default();
    let policy = if cfg.schema_registry.auto_register {
        IdPolicy::Register
    } else {
        IdPolicy::LookUp
    };
    let max_wait = Duration::from_millis(cfg.schema_registry.startup_retry_max_ms);
    let mut wait = Duration::from_millis(500).min(max_wait);
    let mut shutdown = shutdown.cloned();
    for attempt in 1u64.. {
        match registry.worker_schemas(&embedded, |t| subject(cfg, t), policy).await {
            Ok(set) => {
                info!(registry = %url, schemas = set.len(), "schema ids from the schema registry");
                return Ok(Some(Codec::new(set).with_writer_schemas(Arc::new(registry))));
            }
            Err(e) if e.is_unreachable() => {
                // Only a worker waits; a one-shot command reports it at once.
                let Some(shutdown) = shutdown.as_mut() else {
                    return Err(anyhow::Error::new(e).context(format!("schema registry at {url}")));
                };
                warn!(
                    registry = %url,
                    attempt,
                    retry_in_ms = wait.as_millis() as u64,
                    error = %e,
                    "schema registry not reachable; the worker waits for it (no messages are read meanwhile)"
                );
                tokio::select! {
                    _ = shutdown.wait() => return Ok(None),
                    _ = tokio::time::sleep(wait) => {}
                }
                wait = (wait * 2).min(max_wait);
            }
            Err(e @ (StartupError::Incompatible { .. } | StartupError::NotRegistered { .. })) => bail!("{e}"),
            Err(e) => return Err(anyhow::Error::new(e).context(format!("schema registry at {url}"))),
        }
    }
    unreachable!("the attempts never run out")
}
