# Shared by tests/run.sh and benches/cost.sh (sourced, not run): the pinned Python
# clients and a throwaway PostgreSQL cluster. Expects `$root` (the repository) and the
# functions `log` and `as_root`.

# The Python third-party clients (confluent-kafka with its Schema Registry Avro
# deserializer, pyarrow, …), pinned, in a virtualenv cached per requirements file.
# Sets $py_env.
python_env() {
  local req="$root/tests/python/requirements.txt"
  py_env="${XDG_CACHE_HOME:-$HOME/.cache}/motcua/pyenv-$(sha256sum "$req" | cut -c1-16)"
  if [ ! -x "$py_env/bin/python" ] || [ ! -f "$py_env/.complete" ]; then
    log "installing the Python clients into $py_env (pip, pinned)"
    rm -rf "$py_env"
    python3 -m venv "$py_env"
    "$py_env/bin/pip" install --quiet --disable-pip-version-check -r "$req"
    touch "$py_env/.complete"
  fi
}

# A throwaway PostgreSQL cluster in DIR on 127.0.0.1:PORT (installing the Debian package
# if needed); extra arguments are server options (`-c name=value`). fsync is off: the
# data is thrown away. Run as root, the server runs as the `postgres` user, which then
# owns DIR's parent directory (the TLS key files the options name live there). Stop it
# with `stop_postgres DIR`.
start_postgres() {
  local dir=$1 port=$2
  shift 2
  pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -z "$pg_bin" ] || [ ! -x "$pg_bin/initdb" ]; then
    log "installing PostgreSQL (Debian package)"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq postgresql >/dev/null
    pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  fi
  mkdir -p "$dir"
  # PostgreSQL refuses to run as root: run it as the `postgres` system user then.
  if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --home "$dir" postgres
    chown -R postgres "$(dirname "$dir")"
  fi
  log "starting PostgreSQL ($pg_bin) on 127.0.0.1:$port"
  as_pg "$pg_bin/initdb" -D "$dir/data" -A trust -U motcua -E UTF8 --no-locale >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log"; return 1; }
  as_pg "$pg_bin/pg_ctl" -D "$dir/data" -l "$dir/pg.log" -w -t 60 \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c max_connections=300 $*" start >/dev/null \
    || { cat "$dir/pg.log"; return 1; }
}

stop_postgres() {
  [ -n "${pg_bin:-}" ] && as_pg "$pg_bin/pg_ctl" -D "$1/data" -m immediate stop >/dev/null 2>&1 || true
}

as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
