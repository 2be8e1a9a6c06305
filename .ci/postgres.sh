#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the tests, on 127.0.0.1 at a non-default port.
#
#   eval "$(.ci/postgres.sh start)"   # start (or reuse) it; exports STREAMING_READER_TEST_POSTGRES_URL
#                                     # (and STREAMING_READER_PG_STARTED=1 when this call started it)
#   .ci/postgres.sh stop              # stop it and remove its data directory
#   .ci/postgres.sh url               # print the URL of the running cluster
#
# Idempotent: `start` reuses a cluster already running in the same directory. Installs
# PostgreSQL from the system's packages (apt-get) when no server binaries are found.
# Runs the server as the `postgres` user when invoked as root (initdb refuses root).
# Settings: STREAMING_READER_PG_PORT (54329), STREAMING_READER_PG_DIR
# (${TMPDIR:-/tmp}/streaming-reader-pg-<port>). Diagnostics go to stderr; stdout carries
# only the `export` lines for `eval`.
set -euo pipefail

port="${STREAMING_READER_PG_PORT:-54329}"
dir="${STREAMING_READER_PG_DIR:-${TMPDIR:-/tmp}/streaming-reader-pg-${port}}"
role="streaming_reader"
password="streaming-reader-test"
url="postgres://${role}:${password}@127.0.0.1:${port}/postgres"

log() { echo "postgres.sh: $*" >&2; }

find_bin() {
  local candidate
  for candidate in /usr/lib/postgresql/*/bin /usr/local/pgsql/bin /usr/local/bin /usr/bin; do
    if [ -x "$candidate/initdb" ] && [ -x "$candidate/pg_ctl" ] && [ -x "$candidate/postgres" ]; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

install_postgres() {
  log "PostgreSQL server binaries not found; installing them with apt-get"
  if [ "$(id -u)" -ne 0 ]; then
    log "not root: install PostgreSQL (apt-get install postgresql) and run again"
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update >&2
  apt-get install -y postgresql >&2
}

# Runs a command as the cluster's owner: the `postgres` user when we are root, else ourselves.
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    if ! id postgres >/dev/null 2>&1; then useradd -m postgres >&2; fi
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

running() { [ -n "${bin:-}" ] && as_owner "$bin/pg_ctl" -D "$dir" status >/dev/null 2>&1; }

start() {
  bin="$(find_bin)" || { install_postgres; bin="$(find_bin)"; }
  local started=0
  if running; then
    log "reusing the cluster running in $dir on port $port"
  else
    started=1
    if [ ! -s "$dir/PG_VERSION" ]; then
      rm -rf "$dir"
      mkdir -p "$dir"
      if [ "$(id -u)" -eq 0 ]; then
        id postgres >/dev/null 2>&1 || useradd -m postgres >&2
        chown postgres "$dir"
      fi
      chmod 700 "$dir"
      local pwfile
      pwfile="$(mktemp)"
      echo "$password" >"$pwfile"
      chmod 644 "$pwfile"
      # Local (socket) connections trust the owner; TCP connections need the password.
      as_owner "$bin/initdb" -D "$dir" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
        --pwfile="$pwfile" -E UTF8 --no-sync >&2
      rm -f "$pwfile"
    fi
    as_owner "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 30 \
      -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
      start >&2 || { cat "$dir/server.log" >&2 || true; exit 1; }
  fi
  as_owner "$bin/psql" -h "$dir" -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 -q >&2 <<SQL
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$role') THEN
    CREATE ROLE $role LOGIN CREATEDB PASSWORD '$password';
  END IF;
END \$\$;
SQL
  echo "export STREAMING_READER_TEST_POSTGRES_URL='$url'"
  echo "export STREAMING_READER_PG_DIR='$dir'"
  echo "export STREAMING_READER_PG_PORT='$port'"
  # 1 when this call started the server (so a script that started it knows to stop it).
  echo "export STREAMING_READER_PG_STARTED='$started'"
}

stop() {
  bin="$(find_bin)" || return 0
  if running; then as_owner "$bin/pg_ctl" -D "$dir" -m fast -w stop >&2; fi
  rm -rf "$dir"
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  url) echo "$url" ;;
  *) log "usage: $0 start|stop|url"; exit 2 ;;
esac
