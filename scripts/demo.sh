#!/usr/bin/env bash
# The main job (README, first command): starts Kafka and PostgreSQL on
# loopback if they are not running, then runs the live end-to-end demo.
# Services are left running afterwards; stop them with scripts/services.sh stop.
#
# Usage: scripts/demo.sh [sumud demo arguments, e.g. --households 100000]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
eval "$(scripts/services.sh start)"
exec cargo run --release --quiet -p sumud -- demo "$@"
