#!/usr/bin/env bash
# What a dossier costs: each stage's CPU per message next to raw Rust and Python Kafka
# loops, on one broker in one run (benches/benches/cost.rs says how it measures).
#
#   benches/cost.sh                               # 5,000 dossiers, 2 rounds
#   benches/cost.sh --dossiers 20000 --rounds 3   # arguments go to the harness
#
# Prepares what the harness needs — the release `motcua` binary, the pinned Python
# client (the tests' virtualenv), a scratch PostgreSQL cluster (unless
# MOTCUA_BENCH_DATABASE_URL names one) — runs it, stops what it started.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
log() { printf '\n== %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
# shellcheck source=tests/lib/services.sh
. "$root/tests/lib/services.sh"

work=$(mktemp -d /tmp/motcua-cost.XXXXXX)
chmod 755 "$work"
cleanup() {
  stop_postgres "$work/pg"
  rm -rf "$work"
}
trap cleanup EXIT

python_env
export MOTCUA_BENCH_PYTHON="$py_env/bin/python"
if [ -z "${MOTCUA_BENCH_DATABASE_URL:-}" ]; then
  port=${MOTCUA_BENCH_PG_PORT:-55498}
  start_postgres "$work/pg" "$port"
  export MOTCUA_BENCH_DATABASE_URL="postgres://motcua@127.0.0.1:$port/postgres"
fi

log "building motcua (release)"
cargo build --release --locked -p motcua
log "running the harness"
cargo bench --locked -p motcua-benches --bench cost -- "$@"
