#!/usr/bin/env bash
# The main job (README, first command): the live end-to-end demo on the
# embedded default. Kafka is the Kafka-protocol broker built into `sumud`
# (no Java, no Kafka install); PostgreSQL, the record of truth, is Debian's,
# started on loopback if it is not running (installed if missing). With
# KAFKA_BOOTSTRAP_SERVERS set, the demo runs on that cluster instead.
# The demo keeps running (dashboard included) until Ctrl-C; PostgreSQL is
# left running afterwards: stop it with scripts/postgres.sh stop.
#
# Usage: scripts/demo.sh [sumud demo arguments, e.g. --households 20000 --exit]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"
ensure_build_deps
scripts/postgres.sh start
eval "$(scripts/postgres.sh env)"
exec cargo run --release --quiet -p sumud -- demo "$@"
