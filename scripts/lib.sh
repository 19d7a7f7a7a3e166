# shellcheck shell=bash
# Helpers shared by scripts/kafka.sh, scripts/postgres.sh and scripts/services.sh.
# Sourced, never run. Owns nothing on disk by itself.
#
# Conventions for the scripts that source it:
#   - progress and errors go to stderr, so stdout stays clean for values a
#     caller may capture (URLs, `export` lines);
#   - all state lives under "$ROOT/.local/" (git-ignored), ROOT being the
#     repository root found from the script's own location, or under
#     SUMUD_STATE_DIR when set.

# Repository root, from the location of this file (scripts/lib.sh).
SUMUD_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Where the instances keep their state. SUMUD_STATE_DIR lets a test run a
# second, private Kafka or PostgreSQL (with its own ports) that it may stop,
# restart or reconfigure without disturbing the shared one.
# shellcheck disable=SC2034 # used by the scripts that source this file
SUMUD_LOCAL="${SUMUD_STATE_DIR:-$SUMUD_ROOT/.local}"

# log TAG MESSAGE...: one line on stderr.
log() {
    local tag=$1
    shift
    printf '[%s] %s\n' "$tag" "$*" >&2
}

# die TAG MESSAGE...: log and exit 1.
die() {
    log "$@"
    exit 1
}

# now: seconds since the epoch (integer).
now() {
    date +%s
}

# port_open PORT [HOST]: true if something accepts TCP connections there.
port_open() {
    local port=$1 host=${2:-127.0.0.1}
    # shellcheck disable=SC2016 # expanded by the inner bash
    timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$host" "$port" 2>/dev/null
}

# who_listens PORT: best-effort description of the process listening on PORT.
who_listens() {
    if command -v ss >/dev/null 2>&1; then
        ss -Hltnp "sport = :$1" 2>/dev/null || true
    fi
}

# pid_alive PID: true if PID names a live process (zombies count as dead).
pid_alive() {
    local pid=$1 state
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    state=$(awk '/^State:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
    [[ $state != Z ]]
}

# pid_cmdline_has PID NEEDLE: true if the command line of PID contains NEEDLE
# (guards against a pid file naming a pid that was reused by another program).
pid_cmdline_has() {
    local pid=$1 needle=$2
    [[ -r /proc/$pid/cmdline ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$needle"
}

# apt_install PACKAGE...: install Debian packages (root only), running
# `apt-get update` once per script run first.
_SUMUD_APT_UPDATED=0
apt_install() {
    command -v apt-get >/dev/null 2>&1 ||
        die setup "apt-get not found; install $* by hand"
    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null 2>&1 || die setup "need root (or sudo) to install: $*"
        sudo=(sudo)
    fi
    log setup "installing Debian packages: $*"
    if [[ $_SUMUD_APT_UPDATED -eq 0 ]]; then
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
        _SUMUD_APT_UPDATED=1
    fi
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq -o Dpkg::Use-Pty=0 --no-install-recommends "$@" >&2
}

# ensure_build_deps: the Debian packages the workspace's native crates build
# with (librdkafka with OpenSSL, sqlx, tansu's compression codecs); installs
# what is missing.
ensure_build_deps() {
    local need=()
    command -v cc >/dev/null 2>&1 || need+=(build-essential)
    command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
    dpkg -s libssl-dev >/dev/null 2>&1 || need+=(libssl-dev)
    command -v cmake >/dev/null 2>&1 || need+=(cmake)
    if [ ${#need[@]} -gt 0 ]; then
        log setup "installing build dependencies: ${need[*]}"
        apt_install "${need[@]}"
    fi
}

# with_lock FILE: take an exclusive lock on FILE on fd 9 for the rest of the
# script (serialises concurrent start/stop calls). Children that must outlive
# the script have to be started with `9>&-` so they do not inherit it.
with_lock() {
    local file=$1
    mkdir -p "$(dirname "$file")"
    exec 9>"$file"
    if ! flock -w 300 9; then
        die lock "timed out waiting for $file"
    fi
}
