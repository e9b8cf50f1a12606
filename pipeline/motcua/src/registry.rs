//! Registry commands: the simulator and the replica loader.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use motcua_reference::Reference;
use motcua_registries::sql::SqlRegistries;
use motcua_simulators::registries::{self as sim, Faults, Outage};
use motcua_simulators::world::World;

#[derive(Debug, Args)]
pub(crate) struct WorldArgs {
    /// 2-digit province code whose people, parcels and businesses the world holds.
    #[arg(long, default_value = "22")]
    province: String,
    /// Seed of the world (use the same for `motcua generate --world-citizens`).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Citizens in the world (parcels: half as many; businesses: a twentieth).
    #[arg(long, default_value_t = 1_000_000)]
    citizens: u64,
}

impl WorldArgs {
    fn world(&self) -> Result<World> {
        let reference = Reference::embedded()?;
        World::for_province(&reference.units, &self.province, self.seed, self.citizens).with_context(|| {
            format!(
                "no world for province '{}' with {} citizens (the province must exist; 1 ≤ citizens ≤ 63,000,000)",
                self.province, self.citizens
            )
        })
    }
}

#[derive(Debug, Args)]
pub(crate) struct SimArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8088")]
    listen: SocketAddr,
    #[command(flatten)]
    world: WorldArgs,
    /// Median latency of every answer, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// 99th-percentile latency (log-normal between median and p99); defaults to the median.
    #[arg(long)]
    latency_p99_ms: Option<u64>,
    /// Share of requests answered 503 (0.0–1.0).
    #[arg(long, default_value_t = 0.0)]
    error_rate: f64,
    /// An outage window START+DURATION in seconds after start (repeatable), e.g. 30+10.
    #[arg(long, value_parser = Outage::parse)]
    outage: Vec<Outage>,
}

pub(crate) async fn simulate(args: SimArgs) -> Result<ExitCode> {
    let faults = Faults {
        latency_ms: args.latency_ms,
        latency_p99_ms: args.latency_p99_ms.unwrap_or(args.latency_ms),
        error_rate: args.error_rate,
        outages: args.outage,
        down: false,
    };
    faults.validate().map_err(anyhow::Error::msg)?;
    let world = args.world.world()?;
    println!(
        "registry simulator on http://{} — province {}, seed {}, {} citizens, {} parcels, {} businesses",
        args.listen, args.world.province, world.seed, world.citizens, world.parcels, world.businesses
    );
    sim::serve(args.listen, world, faults)
        .await
        .with_context(|| format!("cannot serve on {}", args.listen))?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Subcommand)]
pub(crate) enum RegistryCommand {
    /// Create the replica's tables and load a synthetic world into them (idempotent).
    Load {
        /// PostgreSQL URL of the replica.
        #[arg(long)]
        database_url: String,
        #[command(flatten)]
        world: WorldArgs,
        /// Rows per INSERT.
        #[arg(long, default_value_t = 10_000)]
        batch: usize,
    },
}

pub(crate) async fn admin(command: RegistryCommand) -> Result<ExitCode> {
    match command {
        RegistryCommand::Load {
            database_url,
            world,
            batch,
        } => {
            if !database_url.starts_with("postgres") {
                bail!("--database-url must be a postgres:// URL (the replica lives in PostgreSQL)");
            }
            let w = world.world()?;
            let sql = SqlRegistries::connect(&database_url)
                .await
                .with_context(|| format!("connecting to {}", motcua_store::redact(&database_url)))?;
            let stats = motcua_simulators::replica::load_world(&sql, &w, batch).await?;
            let secs = stats.elapsed.as_secs_f64();
            let rows = stats.citizens + stats.parcels + stats.businesses;
            println!(
                "loaded {} citizens, {} parcels, {} businesses in {:.1} s ({:.0} rows/s)",
                stats.citizens,
                stats.parcels,
                stats.businesses,
                secs,
                rows as f64 / secs.max(1e-3)
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
