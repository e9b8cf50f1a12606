#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs and starts what the tests need
# (PostgreSQL, Apache Kafka, the rivven-schema registry), runs every test, stops what it
# started.
#
#   tests/run.sh                 # everything
#   tests/run.sh -p motcua-store # extra arguments go to `cargo test`
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
work=$(mktemp -d /tmp/motcua-test.XXXXXX)
chmod 755 "$work"
log() { printf '\n== %s\n' "$*"; }

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# --- stunnel and openssl: a real TLS terminator in front of the HTTP simulators, and the CLI the
# tests make their certificate authority with -------------------------------------------
if ! command -v stunnel4 >/dev/null 2>&1 || ! command -v openssl >/dev/null 2>&1; then
  log "installing stunnel4 and openssl (Debian packages)"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq stunnel4 openssl >/dev/null
fi
export MOTCUA_TEST_STUNNEL="$(command -v stunnel4)"

# --- A test certificate authority: PostgreSQL serves TLS with it, and the tests that
# need one make their own the same way (tests/support) --------------------------------
pki="$work/pki"
mkdir -p "$pki"
ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2)
for ca in ca other-ca; do
  openssl req -x509 "${ec[@]}" -subj "/CN=motcua test CA" -keyout "$pki/$ca.key" -out "$pki/$ca.pem" 2>/dev/null
done
openssl req "${ec[@]}" -subj "/CN=localhost" -keyout "$pki/server.key" -out "$pki/server.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$pki/ext"
openssl x509 -req -in "$pki/server.csr" -CA "$pki/ca.pem" -CAkey "$pki/ca.key" -CAcreateserial \
  -days 2 -extfile "$pki/ext" -out "$pki/server.pem" 2>/dev/null
chmod 600 "$pki/server.key"
export MOTCUA_TEST_PKI="$pki"

# --- PostgreSQL: a throwaway cluster in $work, on its own port, serving TLS too -------
# shellcheck source=tests/lib/services.sh
. "$root/tests/lib/services.sh"
pg_port=${MOTCUA_TEST_PG_PORT:-55432}
start_postgres "$work/pg" "$pg_port" -c ssl=on -c ssl_cert_file="$pki/server.pem" -c ssl_key_file="$pki/server.key"
cleanup() {
  [ -d "$work/kafka/node-1" ] && tests/kafka/kafka.sh stop "$work/kafka/node-1"
  stop_postgres "$work/pg"
  rm -rf "$work"
}
trap cleanup EXIT
export MOTCUA_TEST_DATABASE_URL="postgres://motcua@127.0.0.1:$pg_port/postgres"

# --- Apache Kafka (KRaft, jars from Maven Central, version pinned in tests/kafka/pom.xml):
# one broker for the whole suite, each test under a topic prefix of its own; tests that
# need a cluster of their own (several nodes, SASL, ACLs) start it with the same script --
kafka_port=${MOTCUA_TEST_KAFKA_PORT:-59092}
log "starting Apache Kafka on 127.0.0.1:$kafka_port"
tests/kafka/kafka.sh jars >/dev/null
KAFKA_TEST_HEAP=768m tests/kafka/kafka.sh single "$work/kafka" "$kafka_port"
export MOTCUA_TEST_KAFKA="127.0.0.1:$kafka_port"

# --- rivven-schema: a Confluent-compatible Schema Registry server (the tests start it) --
if ! command -v rivven-schema >/dev/null 2>&1; then
  log "installing the rivven-schema registry (cargo install rivven-schema, once per machine)"
  CARGO_PROFILE_RELEASE_OPT_LEVEL=1 CARGO_PROFILE_RELEASE_LTO=off CARGO_PROFILE_RELEASE_CODEGEN_UNITS=256 \
    CARGO_PROFILE_RELEASE_DEBUG=false CARGO_PROFILE_RELEASE_STRIP=true \
    cargo install rivven-schema --version 0.0.22 --locked --quiet
fi
export MOTCUA_TEST_SCHEMA_REGISTRY="$(command -v rivven-schema)"

# --- kcat: a third-party Kafka client, to check others can read our topics -------------
if ! command -v kcat >/dev/null 2>&1; then
  log "installing kcat (Debian package)"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq kcat >/dev/null
fi

# --- promtool (Prometheus, Debian package, pinned): checks and unit-tests the alert rules
prom_version=2.42.0+ds-5+deb12u1
if ! command -v promtool >/dev/null 2>&1; then
  log "installing promtool (Debian package prometheus $prom_version)"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "prometheus=$prom_version" >/dev/null
fi
export MOTCUA_TEST_PROMTOOL="$(command -v promtool)"

# --- Chromium and ChromeDriver (Debian packages, pinned): the console's browser test --
chromium_version=156.0.8078.114-1~deb12u1
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  log "installing chromium and chromium-driver (Debian packages $chromium_version)"
  as_root apt-get update -qq
  if ! DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends \
      "chromium=$chromium_version" "chromium-driver=$chromium_version" >/dev/null; then
    # Debian's security archive keeps only the newest Chromium: when the pin is gone,
    # take the archive's (browser and driver always come as a matching pair).
    log "chromium $chromium_version is no longer in the archive: installing the archive's version"
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
  fi
fi
export MOTCUA_TEST_CHROMIUM="$(command -v chromium)" MOTCUA_TEST_CHROMEDRIVER="$(command -v chromedriver)"

# --- Python third-party clients: confluent-kafka (with its Schema Registry Avro
# deserializer) and pyarrow, pinned, in a virtualenv cached per requirements file -------
python_env
export MOTCUA_TEST_PYTHON="$py_env/bin/python"
# rotel's collector binary ships inside its wheel.
export MOTCUA_TEST_ROTEL="$("$py_env/bin/python" -c 'import os, rotel; print(os.path.join(os.path.dirname(rotel.__file__), "rotel-agent"))')"

log "building"
# Incremental caches would double the build's disk use for a one-off build of ~85 test
# binaries (a clean CI clone gains nothing from them); set CARGO_INCREMENTAL=1 to keep them.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
cargo build --workspace --all-targets --locked
log "running the tests"
if ! cargo test --workspace --locked --no-fail-fast "$@" -- --test-threads "${MOTCUA_TEST_THREADS:-4}"; then
  log "tests failed; the suite's Kafka broker logged, last lines:"
  tail -n 80 "$work/kafka/node-1/broker.log"
  exit 1
fi
