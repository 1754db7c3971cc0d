#!/usr/bin/env bash
# CI smoke run: every fuzz target for FUZZ_SMOKE_SECONDS (default 30, at most 30) each,
# starting from the committed corpus. Installs cargo-fuzz if missing. Prints one summary line
# per target and fails (exit 1) if any target crashed, timed out, ran out of memory or did
# not build; the crashing input is in fuzz/artifacts/TARGET/ and named in the output.
#
#   bash fuzz/smoke.sh
set -euo pipefail
fuzz_dir=$(cd "$(dirname "$0")" && pwd)
cd "$(dirname "$fuzz_dir")"
started=$(date +%s)
seconds=${FUZZ_SMOKE_SECONDS:-30}
[ "$seconds" -le 30 ] || seconds=30
export RUSTC_BOOTSTRAP=1 # see run.sh

CARGO_FUZZ_VERSION=0.13.2
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz $CARGO_FUZZ_VERSION"
    cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION"
fi

installed=$(date +%s)

# One build for all targets (they share every dependency), so each run below only fuzzes.
echo "== building fuzz targets"
sanitizer=${FUZZ_SANITIZER:-none}
cargo fuzz build --fuzz-dir "$fuzz_dir" -s "$sanitizer"
built=$(date +%s)
echo "== built in $((built - installed))s (cargo-fuzz check/install took $((installed - started))s)"

failed=()
summaries=()
for target in $(cargo fuzz list --fuzz-dir "$fuzz_dir"); do
    echo "== fuzzing $target for ${seconds}s"
    if line=$("$fuzz_dir/run.sh" "$target" "$seconds"); then
        :
    else
        failed+=("$target")
    fi
    summary=$(grep '^fuzz-summary' <<<"$line" || echo "fuzz-summary target=$target result=no-summary")
    echo "$summary"
    summaries+=("$summary")
done

echo "== fuzz smoke summary"
printf '%s\n' "${summaries[@]}"
if [ ${#failed[@]} -gt 0 ]; then
    echo "FUZZ SMOKE FAILED: ${failed[*]} (inputs in fuzz/artifacts/; reproduce with fuzz/run.sh TARGET FILE)" >&2
    exit 1
fi
echo "fuzz smoke: ${#summaries[@]} targets clean in $(($(date +%s) - started))s (install $((installed - started))s, build $((built - installed))s, fuzzing $(($(date +%s) - built))s)"
