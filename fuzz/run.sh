#!/usr/bin/env bash
# Fuzz one target for a bounded time, or replay one input.
#
#   fuzz/run.sh TARGET SECONDS [LIBFUZZER_ARGS...]   fuzz; ends with one summary line
#   fuzz/run.sh TARGET FILE                          run one input (reproduce a crash)
#
# New inputs go to fuzz/target/corpus/TARGET (not committed); the committed corpus and past
# crashes (fuzz/corpus/TARGET, fuzz/regressions/TARGET) are read as seeds. fuzz/cmin.sh folds
# the new inputs into the committed corpus. A crash is written to fuzz/artifacts/TARGET/.
#
# The last line is the summary the lead pastes into a closing note, e.g.
#   fuzz-summary target=routes seconds=600 execs=9340117 exec_per_sec=15566 cov=1482 ft=5530 corpus=611 result=ok
# Exit status: 0 when the run ended clean, 1 on a crash, timeout, OOM or build failure.
#
# Environment: FUZZ_SANITIZER (default none: the fuzzed crates forbid unsafe code, and
# `address` halves throughput), FUZZ_NICE (default 19), FUZZ_TIMEOUT (seconds per input,
# default 10), FUZZ_RSS_MB (default 2048), FUZZ_CPU_SECONDS (stop once the fuzzer has used this
# much CPU time, before SECONDS of wall time if the machine is shared: several targets can then
# run side by side and each still gets its full budget of CPU; the summary reports cpu_seconds).
set -euo pipefail

usage() {
    echo "usage: $0 TARGET SECONDS [LIBFUZZER_ARGS...] | $0 TARGET FILE" >&2
    exit 2
}
[ $# -ge 2 ] || usage
target=$1
shift
what=$1
shift

fuzz_dir=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$fuzz_dir")
cd "$root"

# cargo-fuzz needs nightly-only rustc flags (-Zsanitizer, -Cllvm-args=-sanitizer-coverage-*).
# Only the stable toolchain exists on our machines (rust-toolchain.toml); RUSTC_BOOTSTRAP=1
# lets stable rustc accept them. It affects these builds only, never the workspace's.
export RUSTC_BOOTSTRAP=1
CARGO_FUZZ_VERSION=0.13.2
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz $CARGO_FUZZ_VERSION" >&2
    cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION" >&2
fi

sanitizer=${FUZZ_SANITIZER:-none}
nice_level=${FUZZ_NICE:-19}
fuzz=(nice -n "$nice_level" cargo fuzz run --fuzz-dir "$fuzz_dir" -s "$sanitizer" "$target")

if [ -f "$what" ]; then
    # Reproduce: run the one input; the panic message and backtrace name the broken check.
    RUST_BACKTRACE=${RUST_BACKTRACE:-1} exec "${fuzz[@]}" "$what"
fi
case $what in
    '' | *[!0-9]*) usage ;;
esac
seconds=$what

targets=$(cargo fuzz list --fuzz-dir "$fuzz_dir")
if ! grep -qx "$target" <<<"$targets"; then
    echo "$0: no target '$target'; targets: $(tr '\n' ' ' <<<"$targets")" >&2
    exit 2
fi

work="$fuzz_dir/target/corpus/$target"
logs="$fuzz_dir/target/logs"
mkdir -p "$work" "$logs"
log="$logs/$target-$(date -u +%Y%m%dT%H%M%SZ).log"
seeds=()
for dir in "$fuzz_dir/corpus/$target" "$fuzz_dir/regressions/$target"; do
    [ -d "$dir" ] && seeds+=("$dir")
done
args=(
    "-max_total_time=$seconds"
    "-timeout=${FUZZ_TIMEOUT:-10}"
    "-rss_limit_mb=${FUZZ_RSS_MB:-2048}"
    -print_final_stats=1
)
[ -f "$fuzz_dir/dict/$target.dict" ] && args+=("-dict=$fuzz_dir/dict/$target.dict")

# Build first, so a build failure is reported as such and SECONDS is all fuzzing.
if ! nice -n "$nice_level" cargo fuzz build --fuzz-dir "$fuzz_dir" -s "$sanitizer" "$target" >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    echo "fuzz-summary target=$target seconds=0 execs=0 result=build-failed log=$log"
    exit 1
fi

# CPU time (user + system, seconds) of the libFuzzer process under cargo's pid $1, or empty.
fuzzer_cpu_seconds() {
    local child stat
    child=$(pgrep -P "$1" | head -n 1) || return 0
    stat=$(cat "/proc/$child/stat" 2>/dev/null) || return 0
    # Fields 14 and 15 are utime and stime in clock ticks; the command name (field 2) may hold
    # spaces, so count from after its closing parenthesis.
    awk -v ticks="$(getconf CLK_TCK)" '{ print int(($12 + $13) / ticks) }' <<<"${stat##*) }"
}

start=$(date +%s)
set +e
"${fuzz[@]}" "$work" "${seeds[@]}" -- "${args[@]}" "$@" >>"$log" 2>&1 &
cargo_pid=$!
cpu=""
while kill -0 "$cargo_pid" 2>/dev/null; do
    used=$(fuzzer_cpu_seconds "$cargo_pid")
    [ -n "$used" ] && cpu=$used
    if [ -n "${FUZZ_CPU_SECONDS:-}" ] && [ -n "$used" ] && [ "$used" -ge "$FUZZ_CPU_SECONDS" ]; then
        # libFuzzer's SIGUSR1 handler finishes the current input, prints its final stats and
        # exits 0, the same way -max_total_time ends a run.
        pkill -USR1 -P "$cargo_pid"
        break
    fi
    sleep 1
done
wait "$cargo_pid"
status=$?
set -e
elapsed=$(($(date +%s) - start))

# libFuzzer's final stats and its last status line ("#N DONE cov: X ft: Y corp: N/...").
stat() { sed -n "s/^stat::$1: *//p" "$log" | tail -n 1; }
execs=$(stat number_of_executed_units)
rate=$(stat average_exec_per_sec)
last=$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)
cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
corpus=$(find "$work" -type f | wc -l)

if [ "$status" -eq 0 ]; then
    result=ok
else
    # The input that failed, as libFuzzer names it ("Test unit written to ...").
    artifact=$(sed -n 's/.*Test unit written to \(\S*\).*/\1/p' "$log" | tail -n 1)
    kind=crash
    [ -n "$artifact" ] || kind=error # libFuzzer refused to start (a bad flag or dictionary)
    grep -q 'ERROR: libFuzzer: timeout' "$log" && kind=timeout
    grep -q 'ERROR: libFuzzer: out-of-memory' "$log" && kind=oom
    # Show what broke: the panic message and the first frames.
    grep -E -A 20 "panicked at|ERROR: libFuzzer" "$log" | head -n 60 >&2 || tail -n 40 "$log" >&2
    result="$kind artifact=${artifact:-?} reproduce='fuzz/run.sh $target ${artifact:-ARTIFACT}'"
fi
echo "fuzz-summary target=$target seconds=$elapsed cpu_seconds=${cpu:-?} execs=${execs:-0} exec_per_sec=${rate:-0} cov=${cov:-?} ft=${ft:-?} corpus=$corpus result=$result log=${log#"$root"/}"
[ "$status" -eq 0 ]
