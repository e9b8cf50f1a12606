//! Benchmarks live in `benches/`; see README.md for how to run them and the figures.

/// `--dossiers N` from the command line of a load harness, else `default`.
pub fn dossiers_arg(default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == "--dossiers")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The PostgreSQL server the database harnesses make their scratch databases on:
/// `MOTCUA_BENCH_DATABASE_URL`, default `postgres://motcua@127.0.0.1:55499/postgres`.
pub fn bench_database_server() -> String {
    std::env::var("MOTCUA_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://motcua@127.0.0.1:55499/postgres".to_owned())
}

pub mod harness;
