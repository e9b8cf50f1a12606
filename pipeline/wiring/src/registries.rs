//! The registries a verify worker asks, built from its configuration.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use motcua_registries::any::AnyRegistries;
use motcua_registries::audit::{AuditSink, PgAuditLog, TracingAudit};
use motcua_registries::http::HttpRegistries;
use motcua_registries::sql::SqlRegistries;

use crate::config::{AuditTarget, Config, RegistryMode};

/// The registries a verify worker asks, as configured.
pub async fn from_config(cfg: &Config) -> Result<AnyRegistries> {
    let r = &cfg.registries;
    match r.mode {
        RegistryMode::Sql => {
            let url = r.sql_url.as_deref().unwrap_or(&cfg.database.url);
            if !url.starts_with("postgres") {
                bail!("registries.mode = \"sql\" needs a PostgreSQL replica: set registries.sql_url");
            }
            Ok(AnyRegistries::Sql(
                SqlRegistries::connect(url)
                    .await
                    .context("connecting to the registry replica")?,
            ))
        }
        RegistryMode::Http => {
            let audit: Arc<dyn AuditSink> = match (r.audit, cfg.database.url.starts_with("postgres")) {
                (AuditTarget::Log, _) | (AuditTarget::Auto, false) => Arc::new(TracingAudit),
                (AuditTarget::Database | AuditTarget::Auto, true) => {
                    let pool = sqlx::PgPool::connect(&cfg.database.url)
                        .await
                        .context("connecting the audit log")?;
                    PgAuditLog::migrate(&pool).await.context("audit log migrations")?;
                    Arc::new(PgAuditLog::start(pool, Duration::from_millis(200)))
                }
                (AuditTarget::Database, false) => bail!("registries.audit = \"database\" needs PostgreSQL"),
            };
            Ok(AnyRegistries::Http(HttpRegistries::new(r.http.clone(), audit)?))
        }
    }
}
