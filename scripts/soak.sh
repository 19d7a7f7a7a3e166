#!/usr/bin/env bash
# Release soaks against the project-started Kafka and PostgreSQL:
#   scripts/soak.sh [crash]   the crash test with 50 kills of the disbursement
#                             service during a 100,000-household crisis
#                             (SUMUD_CRASH_KILLS, SUMUD_CRASH_HOUSEHOLDS
#                             override)
#   scripts/soak.sh rejoin    the broker-restart-then-new-pipeline sequence that
#                             once hung the suite, 20 rounds (SUMUD_REJOIN_ROUNDS
#                             overrides; SUMUD_REJOIN_DEBUG=1 with
#                             RUST_LOG=librdkafka=debug logs librdkafka's
#                             cgrp, broker and protocol contexts)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
eval "$(scripts/services.sh start)"
export RUST_LOG=${RUST_LOG:-error}
case ${1:-crash} in
crash)
    export SUMUD_CRASH_KILLS=${SUMUD_CRASH_KILLS:-50}
    export SUMUD_CRASH_HOUSEHOLDS=${SUMUD_CRASH_HOUSEHOLDS:-100000}
    exec cargo test --release -p sumud-tests --test crash -- --nocapture
    ;;
rejoin)
    export SUMUD_REJOIN_ROUNDS=${SUMUD_REJOIN_ROUNDS:-20}
    exec cargo test -p sumud-tests --test rejoin -- --nocapture
    ;;
*)
    sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
