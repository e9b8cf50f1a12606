//! `motcua wallet-sim` and `motcua portal-sim`: the citizens' e-wallet gateway and the
//! National Public Service Portal, simulated over HTTP with injectable faults — stand-ins
//! for the outward systems the result and portal-sync stages deliver to.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use motcua_simulators::faults::{Faults, Outage};

#[derive(Debug, Args)]
pub(crate) struct OutwardSimArgs {
    /// Address to listen on.
    #[arg(long)]
    listen: SocketAddr,
    /// Median latency of every answer, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// 99th-percentile latency; defaults to the median.
    #[arg(long)]
    latency_p99_ms: Option<u64>,
    /// Share of requests answered 503 (0.0–1.0).
    #[arg(long, default_value_t = 0.0)]
    error_rate: f64,
    /// Share of new filings answered 503 although filed (a lost acknowledgement).
    #[arg(long, default_value_t = 0.0)]
    lost_ack_rate: f64,
    /// An outage window START+DURATION in seconds after start (repeatable), e.g. 30+60.
    #[arg(long, value_parser = Outage::parse)]
    outage: Vec<Outage>,
    /// Seed of the injected faults.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Require `Authorization: Bearer <token>` with the token in this file.
    #[arg(long)]
    token_file: Option<std::path::PathBuf>,
}

impl OutwardSimArgs {
    fn faults(&self) -> Result<Faults> {
        let f = Faults {
            latency_ms: self.latency_ms,
            latency_p99_ms: self.latency_p99_ms.unwrap_or(self.latency_ms),
            error_rate: self.error_rate,
            outages: self.outage.clone(),
            down: false,
        };
        f.validate().map_err(anyhow::Error::msg)?;
        if !(0.0..=1.0).contains(&self.lost_ack_rate) {
            anyhow::bail!("--lost-ack-rate {} must be between 0 and 1", self.lost_ack_rate);
        }
        Ok(f)
    }

    async fn serve(&self, what: &str, router: axum::Router) -> Result<ExitCode> {
        let router = match &self.token_file {
            Some(path) => {
                let token = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read --token-file {}", path.display()))?;
                motcua_simulators::registries::with_bearer_token(router, token.trim().to_owned())
            }
            None => router,
        };
        println!(
            "{what} simulator on http://{} (faults: GET/PUT /admin/faults, counts: /admin/stats)",
            self.listen
        );
        let listener = tokio::net::TcpListener::bind(self.listen)
            .await
            .with_context(|| format!("cannot serve on {}", self.listen))?;
        axum::serve(listener, router).await?;
        Ok(ExitCode::SUCCESS)
    }
}

pub(crate) async fn wallet(args: OutwardSimArgs) -> Result<ExitCode> {
    let faults = motcua_simulators::wallet::WalletFaults {
        common: args.faults()?,
        lost_ack_rate: args.lost_ack_rate,
        ..Default::default()
    };
    let router = motcua_simulators::wallet::router(faults, args.seed);
    args.serve("e-wallet gateway", router).await
}

pub(crate) async fn portal(args: OutwardSimArgs) -> Result<ExitCode> {
    let faults = motcua_simulators::national_portal::PortalFaults {
        common: args.faults()?,
        lost_ack_rate: args.lost_ack_rate,
    };
    let router = motcua_simulators::national_portal::router(faults, args.seed);
    args.serve("national portal", router).await
}
