#!/usr/bin/env bash
# Release soak: the crash test with 50 kills of the disbursement service
# (SUMUD_CRASH_KILLS overrides), in a release build, against the
# project-started Kafka and PostgreSQL.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
eval "$(scripts/services.sh start)"
export SUMUD_CRASH_KILLS=${SUMUD_CRASH_KILLS:-50} RUST_LOG=${RUST_LOG:-error}
exec cargo test --release -p sumud-tests --test crash -- --nocapture
