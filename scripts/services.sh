#!/usr/bin/env bash
# Starts/stops every backing service Sumud's integration tests and local runs
# need, on loopback: Apache Kafka (scripts/kafka.sh) and PostgreSQL
# (scripts/postgres.sh). Owns no state of its own; see those scripts.
#
# Usage: scripts/services.sh start|stop|restart|status|env
#   start    starts both (no-op for one already running) and prints the
#            environment on stdout, so that
#              eval "$(scripts/services.sh start)"
#            starts them and exports the variables in the calling shell
#   stop     stops both
#   status   prints the status of each; exit 0 only if both run
#   env      prints the exports only:
#              export KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:19092
#              export DATABASE_URL=postgres://sumud:sumud@127.0.0.1:15432/sumud
# Progress goes to stderr. Ports: SUMUD_KAFKA_PORT, SUMUD_KAFKA_CONTROLLER_PORT,
# SUMUD_PG_PORT (see the two scripts).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

print_env() {
    "$HERE/kafka.sh" env
    "$HERE/postgres.sh" env
}

case ${1:-} in
start)
    # PostgreSQL first: it is ready in a second or two, Kafka takes longer.
    "$HERE/postgres.sh" start
    "$HERE/kafka.sh" start
    print_env
    ;;
stop)
    rc=0
    "$HERE/kafka.sh" stop || rc=1
    "$HERE/postgres.sh" stop || rc=1
    exit "$rc"
    ;;
restart)
    "$0" stop
    "$0" start
    ;;
status)
    rc=0
    "$HERE/kafka.sh" status || rc=1
    "$HERE/postgres.sh" status || rc=1
    exit "$rc"
    ;;
env) print_env ;;
*)
    sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
