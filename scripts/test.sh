#!/usr/bin/env bash
# The test command (README, "Run the tests"): installs what the build needs if
# it is missing, starts Kafka and PostgreSQL on loopback, runs every test of
# the workspace against them, and stops what it started.
#
# Usage: scripts/test.sh [extra cargo test arguments]
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"

ensure_build_deps
# Test tools: xmllint validates the pain.001 export; gdb prints the thread
# stacks of a test that outlives its budget (the watchdogs below and in
# tests/src/watchdog.rs).
need=()
command -v xmllint >/dev/null 2>&1 || need+=(libxml2-utils)
command -v gdb >/dev/null 2>&1 || need+=(gdb)
if [ ${#need[@]} -gt 0 ]; then
    log test "installing test tools: ${need[*]}"
    apt_install "${need[@]}"
fi

# The ISO 20022 pain.001.001.09 schema, from the sepaxml package on PyPI
# (it ships the official XSDs), for the export test.
xsd_dir="$ROOT/.local/xsd"
if [ ! -f "$xsd_dir/pain.001.001.09.xsd" ]; then
    mkdir -p "$xsd_dir"
    tmp=$(mktemp -d)
    python3 -m pip download --quiet --no-deps --dest "$tmp" 'sepaxml==2.7.0' >&2
    python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("sepaxml/schemas/pain.001.001.09.xsd", sys.argv[2])' "$tmp"/sepaxml-*.whl "$tmp"
    mv "$tmp/sepaxml/schemas/pain.001.001.09.xsd" "$xsd_dir/"
    rm -rf "$tmp"
fi
export SUMUD_PAIN001_XSD="$xsd_dir/pain.001.001.09.xsd"

# Headless Chromium for the dashboard's browser test (tests/tests/dashboard.rs).
scripts/chromium.sh

started=0
if ! scripts/services.sh status >/dev/null 2>&1; then
    started=1
fi
# Private brokers and databases of fault tests (.local/faults/<id>) are
# stopped by the tests themselves; a test process ended by its watchdog
# cannot, so whatever is left is stopped here.
stop_private() {
    local dir
    for dir in "$ROOT"/.local/faults/*/; do
        [ -d "$dir" ] || continue
        SUMUD_STATE_DIR=${dir%/} scripts/kafka.sh stop >/dev/null 2>&1 || true
        SUMUD_STATE_DIR=${dir%/} scripts/postgres.sh stop >/dev/null 2>&1 || true
        # Their logs are what a hang leaves to read.
        local keep
        keep="$ROOT/target/faults-logs/$(basename "$dir")"
        mkdir -p "$keep"
        cp "$dir"kafka/broker.log* "$dir"postgres/cluster/postgres.log "$keep"/ 2>/dev/null || true
        log test "a private server of a test that did not finish was stopped; its logs are in $keep"
        rm -rf "$dir"
    done
}
stop_services() {
    stop_private
    if [ "$started" = 1 ]; then
        scripts/services.sh stop || true
    fi
}
trap stop_services EXIT
eval "$(scripts/services.sh start)"

# Every test creates its own database (sumud_t_<id>) and leaves it behind for
# inspection; those of earlier runs are dropped now, before they fill the disk.
for db in $(psql "$DATABASE_URL" -XAtc "SELECT datname FROM pg_database WHERE datname LIKE 'sumud\_t\_%'"); do
    psql "$DATABASE_URL" -Xqc "DROP DATABASE IF EXISTS \"$db\"" >/dev/null 2>&1 || true
done

export RUST_LOG=${RUST_LOG:-warn}

# The whole run (build included) is bounded: past SUMUD_TEST_TIMEOUT seconds
# (default 3600, well inside CI's 90 minutes) every test process still
# running has its thread stacks printed, and the run is ended and fails,
# rather than holding CI until its limit. Each test world has a watchdog of
# its own too (SUMUD_TEST_BUDGET_SECS, tests/src/watchdog.rs), which names
# the phase it hung in.
budget=${SUMUD_TEST_TIMEOUT:-3600}
stacks() {
    local pid
    for pid in $(pgrep -f "^$ROOT/target/[^ ]*/deps/" || true); do
        echo "==== test process $pid: $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" >&2
        timeout 60 gdb -p "$pid" -batch -nx -ex 'set pagination off' \
            -ex 'thread apply all bt' >&2 2>/dev/null || true
    done
}
setsid cargo test --workspace --no-fail-fast "$@" &
cargo_pid=$!
(
    trap 'kill "$nap" 2>/dev/null; exit 0' TERM
    sleep "$budget" &
    nap=$!
    wait "$nap"
    log test "WATCHDOG: the test run is still going after $budget s; thread stacks follow, then it is ended"
    stacks
    kill -TERM -- "-$cargo_pid" 2>/dev/null || true
    sleep 10
    kill -KILL -- "-$cargo_pid" 2>/dev/null || true
) &
watcher=$!
set +e
wait "$cargo_pid"
rc=$?
set -e
kill "$watcher" 2>/dev/null || true
wait "$watcher" 2>/dev/null || true
exit "$rc"
