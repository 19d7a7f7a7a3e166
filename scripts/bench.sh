#!/usr/bin/env bash
# Benchmarks: builds release binaries, starts Kafka and PostgreSQL, runs one
# benchmark of bench/ and prints its figures.
#
# Usage: scripts/bench.sh registry|eligibility|disbursement|alerts [options; see --help]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
eval "$(scripts/services.sh start)"
cargo build --release --quiet -p sumud-bench -p sumud-alerts -p sumud-registry -p sumud-control -p sumud-eligibility -p sumud-disbursement
export RUST_LOG=${RUST_LOG:-warn}
exec target/release/sumud-bench "$@"
