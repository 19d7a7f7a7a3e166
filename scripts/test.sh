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

# Native build dependencies of rdkafka (librdkafka with OpenSSL) and sqlx.
need=()
command -v cc >/dev/null 2>&1 || need+=(build-essential)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
dpkg -s libssl-dev >/dev/null 2>&1 || need+=(libssl-dev)
command -v cmake >/dev/null 2>&1 || need+=(cmake)
if [ ${#need[@]} -gt 0 ]; then
    log test "installing build dependencies: ${need[*]}"
    apt_install "${need[@]}"
fi

started=0
if ! scripts/services.sh status >/dev/null 2>&1; then
    started=1
fi
stop_services() {
    if [ "$started" = 1 ]; then
        scripts/services.sh stop || true
    fi
}
trap stop_services EXIT
eval "$(scripts/services.sh start)"

export RUST_LOG=${RUST_LOG:-warn}
cargo test --workspace --no-fail-fast "$@"
