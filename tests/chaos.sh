#!/usr/bin/env bash
# The chaos harness against your own cluster (issue 33): every motcua role as a process
# over your Kafka and PostgreSQL, portals re-sending submissions, failing registries,
# wallets and portal, citizens, and one process SIGKILLed every 2 s; checked with a
# client we did not write (see tests/chaos.rs for the faults and the checks).
#
#   tests/chaos.sh --brokers HOST:PORT --database postgres://USER@HOST:PORT/DB \
#                  [--dossiers N] [--seed S]
#
# The brokers' plaintext listener; topics are created under a fresh prefix and deleted
# afterwards; the database is used to create a scratch database of its own. A failing
# run prints its seed: the same seed replays the same schedule of faults and kills.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
log() { printf '\n== %s\n' "$*"; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
. tests/lib/services.sh

brokers="" database="" dossiers=20000 seed=1
while [ $# -gt 0 ]; do
  case "$1" in
    --brokers) brokers=$2; shift 2 ;;
    --database) database=$2; shift 2 ;;
    --dossiers) dossiers=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    *) echo "unknown argument $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done
if [ -z "$brokers" ] || [ -z "$database" ]; then
  echo "usage: $0 --brokers HOST:PORT --database postgres://… [--dossiers N] [--seed S]" >&2
  exit 2
fi

python_env
export MOTCUA_TEST_PYTHON="$py_env/bin/python"
export MOTCUA_TEST_KAFKA="$brokers" MOTCUA_TEST_DATABASE_URL="$database"
export MOTCUA_CHAOS_DOSSIERS="$dossiers" MOTCUA_CHAOS_SEED="$seed"
log "chaos: $dossiers dossiers, seed $seed, on $brokers"
exec cargo test -p motcua --test chaos -- --nocapture
