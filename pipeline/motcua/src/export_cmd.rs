//! `motcua export`: the events of a time range as Parquet files for analysts.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Args;
use motcua_export::{ExportOptions, ExportSummary};
use motcua_runtime::Shutdown;
use motcua_schemas::Topic;

use crate::Common;

/// Where the range's bounds may be written.
const TIME_FORMS: &str = "an RFC 3339 time (2025-11-25T00:00:00+07:00), a UTC date (2025-11-25) or epoch milliseconds";

#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    /// Start of the range, inclusive, by Kafka timestamp: an RFC 3339 time
    /// (2025-11-25T00:00:00+07:00), a date (midnight UTC) or epoch milliseconds.
    #[arg(long, value_parser = parse_instant)]
    from: i64,
    /// End of the range, exclusive (same forms as --from).
    #[arg(long, value_parser = parse_instant)]
    to: i64,
    /// Topics to export, comma-separated (default: every topic of the flow).
    #[arg(long, value_delimiter = ',', value_parser = parse_topic)]
    topics: Vec<Topic>,
    /// Output directory: files go to DIR/topic=<topic>/date=<YYYY-MM-DD>/.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// A topic's rows of one date beyond this go to further files.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    max_rows_per_file: u64,
    /// Print the summary as JSON instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    common: Common,
}

pub(crate) fn parse_instant(s: &str) -> Result<i64, String> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse()
            .map_err(|_| format!("'{s}' is too large for epoch milliseconds"));
    }
    if s.len() == 10 {
        return crate::portal_json::parse_date(s)
            .map(|days| i64::from(days) * 86_400_000)
            .map_err(|_| format!("'{s}' is not {TIME_FORMS}"));
    }
    crate::portal_json::parse_rfc3339(s).map_err(|_| format!("'{s}' is not {TIME_FORMS}"))
}

fn parse_topic(s: &str) -> Result<Topic, String> {
    s.trim().parse()
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub(crate) fn utc(ms: i64) -> String {
    let rem = ms.rem_euclid(86_400_000);
    format!(
        "{}T{:02}:{:02}:{:02}.{:03}Z",
        motcua_export::utc_date(ms),
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000
    )
}

pub(crate) async fn run(args: ExportArgs) -> Result<ExitCode> {
    if args.to <= args.from {
        bail!(
            "--to {} is not after --from {}: the range is from (inclusive) to (exclusive)",
            utc(args.to),
            utc(args.from)
        );
    }
    let shutdown = Shutdown::on_signals();
    let cfg = args.common.load()?;
    let opts = ExportOptions {
        from_ms: args.from,
        to_ms: args.to,
        topics: if args.topics.is_empty() {
            Topic::ALL.to_vec()
        } else {
            args.topics.clone()
        },
        out_dir: args.out.clone(),
        max_rows_per_file: usize::try_from(args.max_rows_per_file).unwrap_or(usize::MAX),
    };
    let codec = motcua_wiring::schemas::codec_once(&cfg).await?;
    let mut interrupted = shutdown.clone();
    let summary = tokio::select! {
        r = motcua_export::export(&cfg.kafka, &codec, &opts) => r?,
        _ = interrupted.wait() => bail!(
            "interrupted: files completed so far stay, the one being written was removed; export the same range again to complete it"
        ),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print_summary(&summary, &opts);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_summary(s: &ExportSummary, opts: &ExportOptions) {
    println!(
        "motcua export {} … {} → {}",
        utc(s.from_ms),
        utc(s.to_ms),
        opts.out_dir.display()
    );
    for t in &s.topics {
        if !t.exists {
            println!("  {:<28} not on the cluster", t.topic);
            continue;
        }
        if t.rows.is_empty() {
            println!("  {:<28} no rows in the range", t.topic);
        }
        for (i, (date, rows)) in t.rows.iter().enumerate() {
            let name = if i == 0 { t.topic.as_str() } else { "" };
            println!("  {name:<28} {date}  {rows:>10} rows");
        }
        if !t.skipped.is_empty() {
            let reasons: Vec<String> = t.skipped.iter().map(|(code, n)| format!("{code} {n}")).collect();
            println!("  {:<28} skipped: {}", "", reasons.join(", "));
        }
        if t.before_range > 0 {
            println!(
                "  {:<28} {} read with timestamps before the range, not exported",
                "", t.before_range
            );
        }
    }
    let files: Vec<_> = s.files().collect();
    println!(
        "  {} rows, {} messages skipped, {} files",
        s.rows(),
        s.skipped(),
        files.len()
    );
    for f in files {
        println!("    {}", f.display());
    }
    for f in s.topics.iter().flat_map(|t| &t.removed) {
        println!("    removed {} (an earlier export of this range)", f.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_in_every_form() {
        assert_eq!(parse_instant("1764036000000"), Ok(1_764_036_000_000));
        assert_eq!(parse_instant("2025-11-25"), Ok(1_764_028_800_000));
        assert_eq!(parse_instant("2025-11-25T09:00:00+07:00"), Ok(1_764_036_000_000));
        assert_eq!(utc(1_764_036_000_000), "2025-11-25T02:00:00.000Z");
        for bad in ["yesterday", "2025-13-01", "2025-11-25 9h", "", "99999999999999999999"] {
            assert!(parse_instant(bad).is_err(), "{bad}");
        }
    }
}
