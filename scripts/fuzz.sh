#!/usr/bin/env bash
# Fuzzing: runs each cargo-fuzz target of fuzz/ (every decoder of outside
# input) for a bounded time, one after another, and fails if any crashed,
# hung or ran out of memory, printing the input that did it. Not part of
# scripts/test.sh (CI time is limited); the seeds and a fixed-seed mutation
# loop run on stable in every `cargo test --workspace` instead
# (cli/tests/fuzz_seeds.rs, services/alerts/tests/untrusted_inputs.rs).
#
# Usage: scripts/fuzz.sh [seconds-per-target] [target...]
#   seconds-per-target  default 60
#   target              default: all of `cargo fuzz list`
#
# Installs the nightly toolchain and cargo-fuzz if missing. Builds into
# .local/fuzz-target (or SUMUD_FUZZ_TARGET_DIR), grows the git-ignored corpus
# in fuzz/corpus/<target> from the committed seeds in fuzz/seeds/<target>,
# and writes one log per target to .local/fuzz-logs/. A crash is kept in
# fuzz/artifacts/<target>/; once fixed, copy it to fuzz/seeds/<target>/
# under a name that says its outcome, so that the stable replay keeps it.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"

seconds=${1:-60}
[[ $seconds =~ ^[0-9]+$ ]] || die fuzz "usage: scripts/fuzz.sh [seconds-per-target] [target...]"
shift $(($# > 0 ? 1 : 0))

if ! rustup toolchain list | grep -q '^nightly'; then
    log fuzz "installing the nightly toolchain"
    rustup toolchain install nightly --profile minimal
fi
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    log fuzz "installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi
# The targets link the services: the same native build dependencies.
ensure_build_deps

target_dir=${SUMUD_FUZZ_TARGET_DIR:-$ROOT/.local/fuzz-target}
logs=$ROOT/.local/fuzz-logs
mkdir -p "$target_dir" "$logs"

cd "$ROOT/fuzz"
if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi
log fuzz "building ${#targets[@]} targets into $target_dir (the first build takes a while)"
cargo +nightly fuzz build --target-dir "$target_dir" >&2

failed=()
for t in "${targets[@]}"; do
    [ -d "seeds/$t" ] || die fuzz "no seeds for $t in fuzz/seeds/$t"
    mkdir -p "corpus/$t" "artifacts/$t"
    before=$(ls "artifacts/$t")
    log fuzz "$t: running for ${seconds}s (log: $logs/$t.log)"
    # -timeout: an input taking over 10 s is a hang, and a failure.
    status=0
    cargo +nightly fuzz run --target-dir "$target_dir" "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        >"$logs/$t.log" 2>&1 || status=$?
    runs=$(grep -oE '^stat::number_of_executed_units: *[0-9]+' "$logs/$t.log" | grep -oE '[0-9]+$' || echo '?')
    cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+' "$logs/$t.log" | tail -1 || true)
    log fuzz "$t: $runs runs in ${seconds}s, ${cov:-no coverage line}, exit $status"
    new=$(comm -13 <(echo "$before") <(ls "artifacts/$t") | sed "s|^|$ROOT/fuzz/artifacts/$t/|")
    if [ "$status" -ne 0 ] || [ -n "$new" ]; then
        failed+=("$t")
        log fuzz "$t FAILED; last lines of the log:"
        tail -n 30 "$logs/$t.log" >&2
        for a in $new; do
            log fuzz "$t: artifact $a (replay: cd fuzz && cargo +nightly fuzz run --target-dir $target_dir $t $a)"
        done
    fi
done

if [ ${#failed[@]} -gt 0 ]; then
    die fuzz "crashes in: ${failed[*]}"
fi
log fuzz "no crash in ${targets[*]}"
