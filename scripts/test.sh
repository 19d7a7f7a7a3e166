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
# Test tools: xmllint validates the pain.001 export.
need=()
command -v xmllint >/dev/null 2>&1 || need+=(libxml2-utils)
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
stop_services() {
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
cargo test --workspace --no-fail-fast "$@"
