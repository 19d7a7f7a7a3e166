#!/usr/bin/env bash
# Runs a real, single-node Apache Kafka broker (KRaft, combined
# broker+controller) on loopback for integration tests and local runs.
#
# Owns .local/kafka/ (git-ignored) and nothing else:
#   libs/            the broker's jars, fetched from Maven Central with
#                    scripts/kafka/pom.xml (`fetch`); libs/.fetched is the marker
#   config/          generated server.properties and log4j2 configs
#   data/            the broker's log.dirs (KRaft metadata + topic data)
#   cluster-id       the cluster id the storage was formatted with
#   config/admin-client.properties
#                    SASL mode only: the super user's client settings (0600),
#                    for the CLI tools (`topics`, `acls`, `tool ... --command-config`)
#   broker.pid       pid of the running broker
#   broker.log       the broker's output (the previous run's is broker.log.1)
#
# Usage: scripts/kafka.sh start|stop|restart|status|fetch|reset|env|topics ARGS...|acls ARGS...|tool CLASS ARGS...
#   start    fetch if needed, format storage once, start the broker and wait
#            until a real client can list topics; a no-op if already running
#   stop     SIGTERM, then SIGKILL after SUMUD_KAFKA_STOP_TIMEOUT seconds
#   status   prints running/stopped; exit 0 if running, 1 if not
#   fetch    download the jars (skipped when libs/ matches the pom)
#   reset    stop and delete data/ and cluster-id (keeps libs/)
#   env      prints `export KAFKA_BOOTSTRAP_SERVERS=...` (SASL mode: also the
#            SUMUD_RDKAFKA_* settings of the super user)
#   topics   runs Kafka's TopicCommand against the broker, e.g. `topics --list`
#   acls     runs Kafka's AclCommand against the broker as the super user,
#            e.g. `acls --list` (what `kafka-acls.sh` does; docs/security.md)
#   tool     runs any Kafka CLI class from libs/ with the tools' logging
#
# Environment:
#   SUMUD_KAFKA_PORT              PLAINTEXT listener port (default 19092)
#   SUMUD_KAFKA_CONTROLLER_PORT   KRaft controller port (default 19093)
#   SUMUD_KAFKA_HEAP_OPTS         broker heap (default "-Xms256m -Xmx1g")
#   SUMUD_KAFKA_START_TIMEOUT     seconds to wait for readiness (default 90)
#   SUMUD_KAFKA_STOP_TIMEOUT      seconds to wait after SIGTERM (default 45)
#   JAVA_HOME                     Java 17+ to use (default: `java` on PATH)
#
# Opt-in secured broker (default: off, a PLAINTEXT listener as above):
#   SUMUD_KAFKA_SASL=1                 the client listener is SASL_PLAINTEXT with
#                                      SCRAM-SHA-512 instead of PLAINTEXT (the
#                                      controller listener stays PLAINTEXT)
#   SUMUD_KAFKA_SASL_ADMIN_USER        super user, also used between brokers
#                                      and by this script's tools (default admin)
#   SUMUD_KAFKA_SASL_ADMIN_PASSWORD    its password (default admin-secret)
#   SUMUD_KAFKA_SASL_USERS             more SCRAM users, "name=password ..."
#                                      (space-separated)
#   SUMUD_KAFKA_AUTHORIZER=1           with SASL: enable the StandardAuthorizer;
#                                      what no ACL allows (`acls --add ...`) is
#                                      denied to everyone but the super user
# SCRAM users are created when the storage is formatted (the first start, or
# the first after `reset`); switching a formatted broker into or out of SASL
# mode needs a `reset`. Names and passwords: letters, digits and . _ ~ - only.
#
# Everything listens on 127.0.0.1 only.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ROOT=$SUMUD_ROOT

KAFKA_PORT=${SUMUD_KAFKA_PORT:-19092}
KAFKA_CONTROLLER_PORT=${SUMUD_KAFKA_CONTROLLER_PORT:-19093}
KAFKA_HEAP_OPTS=${SUMUD_KAFKA_HEAP_OPTS:--Xms256m -Xmx1g}
START_TIMEOUT=${SUMUD_KAFKA_START_TIMEOUT:-90}
STOP_TIMEOUT=${SUMUD_KAFKA_STOP_TIMEOUT:-45}
BOOTSTRAP="127.0.0.1:$KAFKA_PORT"
SASL=${SUMUD_KAFKA_SASL:-0}
SASL_ADMIN_USER=${SUMUD_KAFKA_SASL_ADMIN_USER:-admin}
SASL_ADMIN_PASSWORD=${SUMUD_KAFKA_SASL_ADMIN_PASSWORD:-admin-secret}
SASL_USERS=${SUMUD_KAFKA_SASL_USERS:-}
AUTHORIZER=${SUMUD_KAFKA_AUTHORIZER:-0}

POM="$ROOT/scripts/kafka/pom.xml"
KAFKA_HOME="$SUMUD_LOCAL/kafka"
# The jars are shared by every instance (SUMUD_STATE_DIR), fetched once.
LIBS="$SUMUD_ROOT/.local/kafka/libs"
FETCH_MARKER="$LIBS/.fetched"
CONFIG_DIR="$KAFKA_HOME/config"
PROPS="$CONFIG_DIR/server.properties"
BROKER_LOG4J="$CONFIG_DIR/log4j2.properties"
TOOLS_LOG4J="$CONFIG_DIR/tools-log4j2.properties"
ADMIN_CLIENT_PROPS="$CONFIG_DIR/admin-client.properties"
DATA_DIR="$KAFKA_HOME/data"
CLUSTER_ID_FILE="$KAFKA_HOME/cluster-id"
PID_FILE="$KAFKA_HOME/broker.pid"
LOG_FILE="$KAFKA_HOME/broker.log"
LOCK_FILE="$KAFKA_HOME/.lock"

JAVA=java

klog() { log kafka "$@"; }
kdie() { die kafka "$@"; }

# ---------------------------------------------------------------- toolchain

# Finds a Java 17+ (JAVA_HOME, then PATH); installs Debian's if none.
ensure_java() {
    if [[ -n ${JAVA_HOME:-} && -x $JAVA_HOME/bin/java ]]; then
        JAVA="$JAVA_HOME/bin/java"
    elif ! command -v java >/dev/null 2>&1; then
        apt_install openjdk-17-jre-headless
    fi
    local version major
    version=$("$JAVA" -XshowSettings:properties -version 2>&1 |
        awk -F' = ' '/java.specification.version/ {print $2}')
    major=${version%%.*}
    [[ $major =~ ^[0-9]+$ && $major -ge 17 ]] ||
        kdie "Kafka 4 needs Java 17+, but $JAVA is version '${version:-unknown}' (set JAVA_HOME)"
}

ensure_maven() {
    command -v mvn >/dev/null 2>&1 || apt_install maven
}

# ---------------------------------------------------------------- fetch

pom_hash() {
    sha256sum "$POM" | cut -d' ' -f1
}

fetched() {
    [[ -f $FETCH_MARKER && $(cat "$FETCH_MARKER") == "$(pom_hash)" ]]
}

# Downloads the jars named by scripts/kafka/pom.xml (and their runtime
# dependencies) into libs/. Goes through a temporary directory so that an
# interrupted fetch never leaves a half-filled libs/ behind a valid marker.
fetch() {
    if fetched; then
        klog "jars already fetched ($(find "$LIBS" -name '*.jar' | wc -l) in $LIBS)"
        return 0
    fi
    ensure_java
    ensure_maven
    local tmp="$LIBS.tmp.$$" t0
    t0=$(now)
    rm -rf "$tmp"
    mkdir -p "$tmp" "$KAFKA_HOME"
    klog "fetching Kafka jars with Maven into $LIBS ..."
    # Maven's output is kept in fetch.log and shown only if it fails.
    if ! mvn -B --no-transfer-progress -Dstyle.color=never -f "$POM" \
        dependency:copy-dependencies -Dkafka.libs.dir="$tmp" >"$KAFKA_HOME/fetch.log" 2>&1; then
        tail -n 60 "$KAFKA_HOME/fetch.log" >&2
        rm -rf "$tmp"
        kdie "mvn dependency:copy-dependencies failed (full output: $KAFKA_HOME/fetch.log)"
    fi
    ls "$tmp"/kafka_2.13-*.jar >/dev/null 2>&1 || kdie "fetch produced no kafka_2.13 jar"
    pom_hash >"$tmp/.fetched"
    rm -rf "$LIBS"
    mv "$tmp" "$LIBS"
    klog "fetched $(find "$LIBS" -name '*.jar' | wc -l) jars ($(du -sh "$LIBS" | cut -f1)) in $(($(now) - t0)) s"
}

# ---------------------------------------------------------------- config

# sasl_on: true when SUMUD_KAFKA_SASL=1.
sasl_on() {
    [[ $SASL == 1 ]]
}

# Checks the SASL settings: names and passwords end up inside a JAAS string
# and a `--add-scram` argument, so only characters that need no quoting in
# either are accepted.
check_sasl_settings() {
    sasl_on || return 0
    local pair name password
    for pair in "$SASL_ADMIN_USER=$SASL_ADMIN_PASSWORD" $SASL_USERS; do
        name=${pair%%=*}
        password=${pair#*=}
        [[ $pair == *=* && $name =~ ^[A-Za-z0-9._~-]+$ && $password =~ ^[A-Za-z0-9._~-]+$ ]] ||
            kdie "SASL user '$name': expected name=password with letters, digits and . _ ~ - only"
    done
}

# The listener lines of server.properties. Default: one PLAINTEXT listener.
# SASL mode: the same port speaks SASL_PLAINTEXT with SCRAM-SHA-512, the
# broker talks to itself there as the super user, and (with
# SUMUD_KAFKA_AUTHORIZER=1) the StandardAuthorizer denies whatever no ACL
# allows. The controller listener stays PLAINTEXT on loopback; the broker's
# requests to the controller arrive there as User:ANONYMOUS, which must
# therefore be a super user too (a production cluster secures that listener
# as well; see docs/security.md).
listener_properties() {
    if ! sasl_on; then
        cat <<EOF
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
EOF
        return 0
    fi
    cat <<EOF
listeners=SASL_PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=SASL_PLAINTEXT://127.0.0.1:$KAFKA_PORT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT
inter.broker.listener.name=SASL_PLAINTEXT
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="$SASL_ADMIN_USER" password="$SASL_ADMIN_PASSWORD";
EOF
    if [[ $AUTHORIZER == 1 ]]; then
        cat <<EOF
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:$SASL_ADMIN_USER;User:ANONYMOUS
EOF
    fi
}

# SASL mode: the super user's client settings for the CLI tools (0600, as it
# holds the password). Removed in default mode so no stale one lingers.
write_admin_client_properties() {
    if ! sasl_on; then
        rm -f "$ADMIN_CLIENT_PROPS"
        return 0
    fi
    # Through a temporary file: concurrent `acls` calls rewrite it while
    # others' tools read it.
    (
        umask 077
        cat >"$ADMIN_CLIENT_PROPS.tmp.$$" <<EOF
# Generated by scripts/kafka.sh (SASL mode): the super user, for CLI tools.
security.protocol=SASL_PLAINTEXT
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="$SASL_ADMIN_USER" password="$SASL_ADMIN_PASSWORD";
EOF
    )
    mv -f "$ADMIN_CLIENT_PROPS.tmp.$$" "$ADMIN_CLIENT_PROPS"
}

# command_config: the `--command-config FILE` arguments for Kafka's CLI tools
# (none in default mode).
command_config() {
    if sasl_on; then
        printf '%s\n' --command-config "$ADMIN_CLIENT_PROPS"
    fi
}

# The broker's configuration: the one place to change listeners (see
# listener_properties for the SASL_PLAINTEXT/SCRAM variant).
# Regenerated on every start, so edits here apply on the next start.
write_server_properties() {
    check_sasl_settings
    mkdir -p "$CONFIG_DIR"
    write_admin_client_properties
    cat >"$PROPS.tmp" <<EOF
# Generated by scripts/kafka.sh on every start; edit the script, not this file.
node.id=1
process.roles=broker,controller
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
controller.listener.names=CONTROLLER
$(listener_properties)

log.dirs=$DATA_DIR

# Single node: every internal topic has one replica.
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# Fewer internal partitions than the default 50: quicker first use on 2 cores.
offsets.topic.num.partitions=10
transaction.state.log.num.partitions=10

# Tests want fast group joins and explicit topic creation.
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
delete.topic.enable=true
message.max.bytes=2000000
replica.fetch.max.bytes=2000000

# Small thread pools for a 2-core machine.
num.network.threads=2
num.io.threads=4
background.threads=4
num.recovery.threads.per.data.dir=1
log.cleaner.threads=1
EOF
    mv "$PROPS.tmp" "$PROPS"
    # SASL mode: the file holds the super user's password.
    if sasl_on; then chmod 600 "$PROPS"; fi

    # Broker logging: everything to stdout, which start() sends to broker.log.
    cat >"$BROKER_LOG4J" <<'EOF'
# Generated by scripts/kafka.sh.
status = warn
appender.out.type = Console
appender.out.name = STDOUT
appender.out.target = SYSTEM_OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.out.ref = STDOUT
logger.request.name = kafka.request.logger
logger.request.level = warn
logger.statechange.name = state.change.logger
logger.statechange.level = warn
EOF

    # CLI tools: warnings only, on stderr.
    cat >"$TOOLS_LOG4J" <<'EOF'
# Generated by scripts/kafka.sh.
status = warn
appender.err.type = Console
appender.err.name = STDERR
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.err.ref = STDERR
EOF
}

# Formats data/ once, with a cluster id kept in cluster-id. If data/ is
# already formatted, its own cluster id wins (and is written back).
format_storage() {
    local meta="$DATA_DIR/meta.properties" cid
    if [[ -f $meta ]]; then
        cid=$(sed -n 's/^cluster\.id=//p' "$meta")
        [[ -n $cid ]] && printf '%s\n' "$cid" >"$CLUSTER_ID_FILE"
        return 0
    fi
    if [[ -s $CLUSTER_ID_FILE ]]; then
        cid=$(cat "$CLUSTER_ID_FILE")
    else
        cid=$(run_tool kafka.tools.StorageTool random-uuid | tail -n1)
        [[ $cid =~ ^[A-Za-z0-9_-]{22}$ ]] || kdie "could not generate a cluster id (got '$cid')"
        printf '%s\n' "$cid" >"$CLUSTER_ID_FILE"
    fi
    klog "formatting storage in $DATA_DIR (cluster id $cid)"
    mkdir -p "$DATA_DIR"
    # The quorum is static (controller.quorum.voters), so no --standalone.
    # SASL mode: SCRAM credentials are bootstrapped into the metadata log, so
    # the broker can authenticate to itself on its first start.
    local scram=() pair
    if sasl_on; then
        for pair in "$SASL_ADMIN_USER=$SASL_ADMIN_PASSWORD" $SASL_USERS; do
            scram+=(--add-scram "SCRAM-SHA-512=[name=${pair%%=*},password=${pair#*=}]")
        done
        klog "creating SCRAM-SHA-512 users: $(for pair in "$SASL_ADMIN_USER=x" $SASL_USERS; do printf '%s ' "${pair%%=*}"; done)"
    fi
    run_tool kafka.tools.StorageTool format --ignore-formatted \
        --cluster-id "$cid" --config "$PROPS" "${scram[@]}" >&2 ||
        kdie "storage format failed"
}

# ---------------------------------------------------------------- process

# run_tool CLASS ARGS...: runs a Kafka CLI class from libs/ in the foreground.
run_tool() {
    local class=$1
    shift
    "$JAVA" -Xms64m -Xmx512m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
        -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$TOOLS_LOG4J" \
        -cp "$LIBS/*" "$class" "$@"
}

# Prints the pid of this checkout's broker if it runs, else fails. Trusts the
# pid file only if that pid is a live kafka.Kafka with our server.properties;
# otherwise looks for such a process (pid file lost) and re-adopts it.
broker_pid() {
    local pid="" p
    [[ -f $PID_FILE ]] && pid=$(cat "$PID_FILE" 2>/dev/null || true)
    if [[ -n $pid ]] && pid_alive "$pid" && pid_cmdline_has "$pid" kafka.Kafka &&
        pid_cmdline_has "$pid" "$PROPS"; then
        echo "$pid"
        return 0
    fi
    for p in $(grep -lsF -- "$PROPS" /proc/[0-9]*/cmdline 2>/dev/null || true); do
        p=${p#/proc/}
        p=${p%/cmdline}
        if pid_cmdline_has "$p" kafka.Kafka && pid_alive "$p"; then
            echo "$p" >"$PID_FILE"
            echo "$p"
            return 0
        fi
    done
    return 1
}

# True once a real client can talk to the broker (in SASL mode: log in as
# the super user). Word splitting of command_config's output is wanted.
# shellcheck disable=SC2046
client_ready() {
    timeout 30 "$JAVA" -Xms64m -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
        -Djava.awt.headless=true -Dlog4j2.configurationFile="$TOOLS_LOG4J" \
        -cp "$LIBS/*" org.apache.kafka.tools.TopicCommand \
        --bootstrap-server "$BOOTSTRAP" $(command_config) --list >/dev/null 2>&1
}

# wait_ready PID: waits until the broker answers, it dies, or the deadline.
# The client check costs a JVM start, so it is tried once the broker has
# logged that it started (or, should that message ever change, after 20 s).
wait_ready() {
    local pid=$1 t0 deadline
    t0=$(now)
    deadline=$((t0 + START_TIMEOUT))
    while (($(now) < deadline)); do
        if ! pid_alive "$pid"; then
            klog "broker exited during startup; last lines of $LOG_FILE:"
            tail -n 40 "$LOG_FILE" >&2 || true
            rm -f "$PID_FILE"
            return 1
        fi
        if { grep -qF 'Kafka Server started' "$LOG_FILE" 2>/dev/null || (($(now) - t0 > 20)); } &&
            port_open "$KAFKA_PORT" && client_ready; then
            return 0
        fi
        sleep 0.5
    done
    klog "broker not ready after ${START_TIMEOUT}s; last lines of $LOG_FILE:"
    tail -n 40 "$LOG_FILE" >&2 || true
    return 1
}

start() {
    with_lock "$LOCK_FILE"
    local pid t0
    t0=$(now)
    if pid=$(broker_pid); then
        ensure_java
        if port_open "$KAFKA_PORT" && client_ready; then
            klog "already running (pid $pid) on $BOOTSTRAP"
            return 0
        fi
        klog "broker (pid $pid) is up but not answering yet; waiting"
        wait_ready "$pid" || kdie "broker (pid $pid) did not become ready"
        klog "ready (pid $pid) on $BOOTSTRAP"
        return 0
    fi
    rm -f "$PID_FILE" # stale: the process is gone (e.g. kill -9)

    local port
    for port in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"; do
        if port_open "$port"; then
            kdie "port $port is taken by another process: $(who_listens "$port")"
        fi
    done

    fetch
    ensure_java
    write_server_properties
    format_storage

    [[ -f $LOG_FILE ]] && mv -f "$LOG_FILE" "$LOG_FILE.1"
    klog "starting broker on $BOOTSTRAP (controller 127.0.0.1:$KAFKA_CONTROLLER_PORT), log $LOG_FILE"
    # setsid: own session, so the broker outlives the calling shell/terminal.
    # 9>&-: do not hand it the lock. Word splitting of the heap opts is wanted.
    # shellcheck disable=SC2086
    setsid "$JAVA" $KAFKA_HEAP_OPTS \
        -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
        -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent \
        -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$BROKER_LOG4J" \
        -Dkafka.logs.dir="$KAFKA_HOME" \
        -cp "$LIBS/*" kafka.Kafka "$PROPS" \
        </dev/null >>"$LOG_FILE" 2>&1 9>&- &
    pid=$!
    echo "$pid" >"$PID_FILE"

    wait_ready "$pid" || kdie "broker failed to start"
    klog "ready (pid $pid) on $BOOTSTRAP in $(($(now) - t0)) s"
}

stop() {
    with_lock "$LOCK_FILE"
    local pid deadline
    if ! pid=$(broker_pid); then
        rm -f "$PID_FILE"
        klog "not running"
        return 0
    fi
    klog "stopping broker (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$(($(now) + STOP_TIMEOUT))
    while pid_alive "$pid" && (($(now) < deadline)); do
        sleep 0.5
    done
    if pid_alive "$pid"; then
        klog "still alive after ${STOP_TIMEOUT}s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        while pid_alive "$pid"; do sleep 0.2; done
    fi
    rm -f "$PID_FILE"
    klog "stopped"
}

status() {
    local pid
    if pid=$(broker_pid); then
        echo "kafka: running (pid $pid) on $BOOTSTRAP"
        return 0
    fi
    echo "kafka: stopped"
    return 1
}

reset() {
    stop
    klog "deleting $DATA_DIR and $CLUSTER_ID_FILE"
    rm -rf "$DATA_DIR" "$CLUSTER_ID_FILE"
}

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
    exit 2
}

main() {
    local cmd=${1:-}
    [[ $# -gt 0 ]] && shift
    case $cmd in
    start) start ;;
    stop) stop ;;
    restart)
        stop
        start
        ;;
    status) status ;;
    fetch)
        with_lock "$LOCK_FILE"
        fetch
        ;;
    reset) reset ;;
    env)
        echo "export KAFKA_BOOTSTRAP_SERVERS=$BOOTSTRAP"
        if sasl_on; then
            echo "export SUMUD_RDKAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT"
            echo "export SUMUD_RDKAFKA_SASL_MECHANISM=SCRAM-SHA-512"
            echo "export SUMUD_RDKAFKA_SASL_USERNAME=$SASL_ADMIN_USER"
            echo "export SUMUD_RDKAFKA_SASL_PASSWORD=$SASL_ADMIN_PASSWORD"
        fi
        ;;
    topics)
        fetched || kdie "jars not fetched; run: $0 fetch"
        ensure_java
        [[ -f $TOOLS_LOG4J ]] || write_server_properties
        if sasl_on; then write_admin_client_properties; fi
        # shellcheck disable=SC2046 # word splitting of command_config is wanted
        run_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$BOOTSTRAP" $(command_config) "$@"
        ;;
    acls)
        fetched || kdie "jars not fetched; run: $0 fetch"
        ensure_java
        [[ -f $TOOLS_LOG4J ]] || write_server_properties
        if sasl_on; then write_admin_client_properties; fi
        # shellcheck disable=SC2046 # word splitting of command_config is wanted
        run_tool org.apache.kafka.tools.AclCommand --bootstrap-server "$BOOTSTRAP" $(command_config) "$@"
        ;;
    tool)
        [[ $# -ge 1 ]] || kdie "usage: $0 tool CLASS [ARGS...]"
        fetched || kdie "jars not fetched; run: $0 fetch"
        ensure_java
        [[ -f $TOOLS_LOG4J ]] || write_server_properties
        run_tool "$@"
        ;;
    *) usage ;;
    esac
}

main "$@"
