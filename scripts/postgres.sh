#!/usr/bin/env bash
# Runs a private PostgreSQL server on loopback for integration tests and
# local runs: its own cluster (never the system one), user `sumud` with
# password `sumud`, database `sumud`, superuser like the postgres image's
# POSTGRES_USER in docker-compose.yml.
#
# Owns .local/postgres/ (git-ignored) and, when needed, /var/tmp/sumud-pg-<hash>:
#   .local/postgres/location   the cluster's base directory, chosen once:
#     - .local/postgres/cluster if the `postgres` user can reach it (it must
#       traverse every parent of the checkout), else
#     - /var/tmp/sumud-pg-<hash of the repo path>, e.g. for a checkout under
#       /root (mode 0700), rather than loosening permissions on the parents.
#   <base>/data          PGDATA (initdb'd once; our settings in data/sumud.conf)
#   <base>/run           unix socket directory
#   <base>/postgres.log  the server log
# As root the server runs as the `postgres` system user (PostgreSQL refuses
# root); as any other user it runs as that user.
#
# Usage: scripts/postgres.sh start|stop|restart|status|url|env|psql ARGS...|reset
#   start    install PostgreSQL if missing, initdb once, start, wait for
#            readiness, ensure the role and database; a no-op if running
#   stop     fast shutdown; immediate, then SIGKILL if that hangs
#   status   prints running/stopped; exit 0 if running, 1 if not
#   url      prints the connection URL (DATABASE_URL)
#   env      prints `export DATABASE_URL=...`
#   psql     runs psql as sumud against the server
#   reset    stop and delete the cluster
#
# Environment:
#   SUMUD_PG_PORT           TCP port on 127.0.0.1 (default 15432)
#   SUMUD_PG_START_TIMEOUT  seconds to wait for readiness (default 60)
#   SUMUD_PG_STOP_TIMEOUT   seconds to wait for a fast shutdown (default 30)
#
# fsync stays on: tests check crash safety.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ROOT=$SUMUD_ROOT

PG_PORT=${SUMUD_PG_PORT:-15432}
START_TIMEOUT=${SUMUD_PG_START_TIMEOUT:-60}
STOP_TIMEOUT=${SUMUD_PG_STOP_TIMEOUT:-30}
DB_USER=sumud
DB_PASSWORD=sumud
DB_NAME=sumud
DATABASE_URL="postgres://$DB_USER:$DB_PASSWORD@127.0.0.1:$PG_PORT/$DB_NAME"

PG_HOME="$SUMUD_LOCAL/postgres"
LOCATION_FILE="$PG_HOME/location"
LOCK_FILE="$PG_HOME/.lock"

# Set by resolve_paths.
BASE="" DATA="" SOCK_DIR="" LOG_FILE=""
# Set by find_pg_bin.
PG_BIN=""
# The OS user the server runs as.
if [[ $(id -u) -eq 0 ]]; then PG_OS_USER=postgres; else PG_OS_USER=$(id -un); fi

plog() { log postgres "$@"; }
pdie() { die postgres "$@"; }

# as_pg CMD...: runs CMD as the server's OS user, from / (the caller's
# directory may be unreadable to that user, and initdb/pg_ctl mind).
as_pg() {
    if [[ $(id -u) -eq 0 ]]; then
        (cd / && runuser -u "$PG_OS_USER" -- "$@")
    else
        (cd / && "$@")
    fi
}

repo_hash() {
    printf '%s' "$ROOT" | sha256sum | cut -c1-12
}

# Chooses (once) and sets BASE, DATA, SOCK_DIR, LOG_FILE.
resolve_paths() {
    mkdir -p "$PG_HOME"
    if [[ -s $LOCATION_FILE ]]; then
        BASE=$(cat "$LOCATION_FILE")
    else
        BASE="$PG_HOME/cluster"
        if [[ $(id -u) -eq 0 ]] && ! runuser -u "$PG_OS_USER" -- test -x "$PG_HOME"; then
            BASE="/var/tmp/sumud-pg-$(repo_hash)"
            plog "user $PG_OS_USER cannot reach $PG_HOME; the cluster goes to $BASE"
        fi
        echo "$BASE" >"$LOCATION_FILE"
    fi
    DATA="$BASE/data"
    LOG_FILE="$BASE/postgres.log"
    SOCK_DIR="$BASE/run"
    # A unix socket path must fit in 107 bytes.
    if ((${#SOCK_DIR} + 20 > 107)); then
        SOCK_DIR="/tmp/sumud-pg-$(repo_hash)-run"
    fi
}

# Creates BASE and SOCK_DIR owned by the server's user.
make_dirs() {
    local d
    for d in "$BASE" "$SOCK_DIR"; do
        mkdir -p "$d"
        [[ $(id -u) -eq 0 ]] && chown "$PG_OS_USER:" "$d"
        chmod 0755 "$d"
    done
}

# Ensures the `postgres` system user exists (only needed as root).
ensure_pg_user() {
    [[ $(id -u) -eq 0 ]] || return 0
    id "$PG_OS_USER" >/dev/null 2>&1 && return 0
    plog "creating system user $PG_OS_USER"
    useradd --system --user-group --home-dir /var/lib/postgresql \
        --shell /usr/sbin/nologin "$PG_OS_USER"
}

# Prints the installed server bin directories, lowest version first.
installed_pg_bins() {
    local d
    for d in /usr/lib/postgresql/*/bin; do
        [[ -x $d/initdb && -x $d/pg_ctl && -x $d/postgres ]] && echo "$d"
    done | sort -V
}

# Sets PG_BIN: the version the cluster was created with if it exists,
# else the highest installed /usr/lib/postgresql/*/bin; installs Debian's
# postgresql package if there is none.
find_pg_bin() {
    local want=""
    [[ -f $DATA/PG_VERSION ]] && want=$(cat "$DATA/PG_VERSION")
    [[ -n $(installed_pg_bins) ]] || apt_install postgresql
    if [[ -n $want ]]; then
        PG_BIN="/usr/lib/postgresql/$want/bin"
        [[ -x $PG_BIN/postgres ]] ||
            pdie "the cluster in $DATA is PostgreSQL $want, which is not installed; run: $0 reset"
    else
        PG_BIN=$(installed_pg_bins | tail -n1)
        [[ -n $PG_BIN ]] || pdie "no PostgreSQL server binaries under /usr/lib/postgresql"
    fi
}

# Our settings; rewritten on every start, included from postgresql.conf.
write_config() {
    as_pg tee "$DATA/sumud.conf" >/dev/null <<EOF
# Generated by scripts/postgres.sh on every start; edit the script, not this file.
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$SOCK_DIR'
max_connections = 300
shared_buffers = 256MB
# Durability stays as in production: tests check crash safety.
fsync = on
synchronous_commit = on
full_page_writes = on
# A query whose client has gone (a service killed mid-pass) stops within a
# second instead of running to its end.
client_connection_check_interval = 1s
timezone = 'UTC'
log_timezone = 'UTC'
log_line_prefix = '%m [%p] %q%u@%d '
EOF
}

init_cluster() {
    [[ -f $DATA/PG_VERSION ]] && return 0
    plog "initdb in $DATA ($PG_BIN)"
    rm -rf "$DATA"
    # Local (socket) connections trust; TCP needs a password (scram).
    as_pg "$PG_BIN/initdb" -D "$DATA" -U postgres -E UTF8 --locale=C.UTF-8 \
        --auth-local=trust --auth-host=scram-sha-256 >"$BASE/initdb.log" 2>&1 || {
        cat "$BASE/initdb.log" >&2
        pdie "initdb failed"
    }
    printf "\n# Added by scripts/postgres.sh\ninclude = 'sumud.conf'\n" |
        as_pg tee -a "$DATA/postgresql.conf" >/dev/null
}

# Prints the postmaster's pid if this cluster's server is running.
server_pid() {
    local pid
    [[ -n $DATA && -f $DATA/postmaster.pid ]] || return 1
    pid=$(head -n1 "$DATA/postmaster.pid" 2>/dev/null || true)
    pid_alive "$pid" && pid_cmdline_has "$pid" "$DATA" || return 1
    echo "$pid"
}

ready() {
    "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -t 2
}

# Waits until pg_isready answers, the server dies, or the deadline.
wait_ready() {
    local deadline=$(($(now) + START_TIMEOUT))
    while (($(now) < deadline)); do
        ready && return 0
        server_pid >/dev/null || {
            plog "server is not running; last lines of $LOG_FILE:"
            tail -n 30 "$LOG_FILE" >&2 || true
            return 1
        }
        sleep 0.5
    done
    plog "not ready after ${START_TIMEOUT}s; last lines of $LOG_FILE:"
    tail -n 30 "$LOG_FILE" >&2 || true
    return 1
}

# Creates (or repairs) the role and the database; idempotent.
ensure_role_and_db() {
    "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$SOCK_DIR" -p "$PG_PORT" \
        -U postgres -d postgres >/dev/null <<EOF
DO \$\$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$DB_USER') THEN
    CREATE ROLE $DB_USER LOGIN SUPERUSER;
  END IF;
END
\$\$;
ALTER ROLE $DB_USER WITH LOGIN SUPERUSER PASSWORD '$DB_PASSWORD';
SELECT 'CREATE DATABASE $DB_NAME OWNER $DB_USER'
  WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$DB_NAME') \gexec
EOF
    # The real check: the URL the tests use, over TCP, with the password.
    "$PG_BIN/psql" -X -q -At "$DATABASE_URL" -c 'SELECT 1' >/dev/null ||
        pdie "cannot connect with $DATABASE_URL"
}

start() {
    with_lock "$LOCK_FILE"
    local t0 deadline pid
    t0=$(now)
    resolve_paths
    find_pg_bin
    if pid=$(server_pid); then
        wait_ready || pdie "server (pid $pid) is not answering"
        ensure_role_and_db
        plog "already running (pid $pid) on 127.0.0.1:$PG_PORT"
        return 0
    fi
    if port_open "$PG_PORT"; then
        pdie "port $PG_PORT is taken by another process: $(who_listens "$PG_PORT")"
    fi
    ensure_pg_user
    make_dirs
    init_cluster
    write_config

    plog "starting PostgreSQL ($PG_BIN) on 127.0.0.1:$PG_PORT, log $LOG_FILE"
    # After a kill -9 of the postmaster its backends may linger a moment and
    # hold the old shared memory ("pre-existing shared memory block is still
    # in use"), so a failed start is retried until the deadline.
    deadline=$(($(now) + START_TIMEOUT))
    until as_pg "$PG_BIN/pg_ctl" start -D "$DATA" -l "$LOG_FILE" -w -t "$START_TIMEOUT" -s \
        9>&- >/dev/null 2>&1; do
        if (($(now) >= deadline)); then
            plog "pg_ctl start failed; last lines of $LOG_FILE:"
            tail -n 30 "$LOG_FILE" >&2 || true
            pdie "could not start PostgreSQL"
        fi
        plog "pg_ctl start failed; retrying"
        sleep 1
    done
    wait_ready || pdie "PostgreSQL did not become ready"
    ensure_role_and_db
    plog "ready (pid $(server_pid || echo '?')) on 127.0.0.1:$PG_PORT in $(($(now) - t0)) s"
}

stop() {
    with_lock "$LOCK_FILE"
    local pid deadline
    if [[ ! -s $LOCATION_FILE ]]; then
        plog "not running (no cluster yet)"
        return 0
    fi
    resolve_paths
    if ! pid=$(server_pid); then
        plog "not running"
        return 0
    fi
    find_pg_bin
    plog "stopping PostgreSQL (pid $pid)"
    if ! as_pg "$PG_BIN/pg_ctl" stop -D "$DATA" -m fast -w -t "$STOP_TIMEOUT" -s >&2; then
        plog "fast shutdown timed out; immediate shutdown"
        as_pg "$PG_BIN/pg_ctl" stop -D "$DATA" -m immediate -w -t 10 -s >&2 || true
    fi
    if pid_alive "$pid"; then
        plog "still alive; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    deadline=$(($(now) + 10))
    while pid_alive "$pid" && (($(now) < deadline)); do sleep 0.2; done
    plog "stopped"
}

status() {
    local pid
    [[ -s $LOCATION_FILE ]] && resolve_paths
    if pid=$(server_pid); then
        echo "postgres: running (pid $pid) on 127.0.0.1:$PG_PORT, data $DATA"
        return 0
    fi
    echo "postgres: stopped"
    return 1
}

reset() {
    stop
    [[ -s $LOCATION_FILE ]] || return 0
    resolve_paths
    plog "deleting $BASE"
    rm -rf "$BASE" "$LOCATION_FILE"
    [[ $SOCK_DIR == "$BASE/run" ]] || rm -rf "$SOCK_DIR"
}

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
    exit 2
}

main() {
    local cmd=${1:-}
    [[ $# -gt 0 ]] && shift
    case $cmd in
    start) start ;;
    stop) stop ;;
    restart)
        stop
        start
        ;;
    status) status ;;
    url) echo "$DATABASE_URL" ;;
    env) echo "export DATABASE_URL=$DATABASE_URL" ;;
    psql)
        resolve_paths
        find_pg_bin
        exec "$PG_BIN/psql" "$DATABASE_URL" "$@"
        ;;
    reset) reset ;;
    *) usage ;;
    esac
}

main "$@"
