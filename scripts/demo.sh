#!/usr/bin/env bash
# The main job (README, first command): the live end-to-end demo on the
# embedded default. Kafka is the Kafka-protocol broker built into `sumud`
# (no Java, no Kafka install); the record of truth is an SQLite file under
# .sumud/ (no PostgreSQL install). With KAFKA_BOOTSTRAP_SERVERS and/or
# DATABASE_URL set, the demo runs on that cluster and database instead
# (scripts/services.sh start prints both for the local ones).
# The demo keeps running (dashboard included) until Ctrl-C.
#
# Usage: scripts/demo.sh [sumud demo arguments, e.g. --households 20000 --exit]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"
ensure_build_deps
exec cargo run --release --quiet -p sumud -- demo "$@"
