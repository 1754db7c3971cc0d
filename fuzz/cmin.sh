#!/usr/bin/env bash
# Folds the inputs found by fuzz/run.sh (fuzz/target/corpus/TARGET) into the committed corpus
# (fuzz/corpus/TARGET) and minimises it with `cargo fuzz cmin`: the smallest set of inputs
# that keeps every coverage feature. Review and commit fuzz/corpus/ afterwards.
#
#   fuzz/cmin.sh TARGET
set -euo pipefail
[ $# -eq 1 ] || {
    echo "usage: $0 TARGET" >&2
    exit 2
}
target=$1
fuzz_dir=$(cd "$(dirname "$0")" && pwd)
cd "$(dirname "$fuzz_dir")"
export RUSTC_BOOTSTRAP=1 # see run.sh
sanitizer=${FUZZ_SANITIZER:-none}

corpus="$fuzz_dir/corpus/$target"
work="$fuzz_dir/target/corpus/$target"
mkdir -p "$corpus"
if [ -d "$work" ]; then
    # Inputs are named by their sha1, so a copy never overwrites a different input.
    cp -n "$work"/* "$corpus"/ 2>/dev/null || true
fi
before=$(find "$corpus" -type f | wc -l)
nice -n "${FUZZ_NICE:-19}" cargo fuzz cmin --fuzz-dir "$fuzz_dir" -s "$sanitizer" "$target" "$corpus" \
    -- -timeout="${FUZZ_TIMEOUT:-10}" -rss_limit_mb="${FUZZ_RSS_MB:-2048}" >&2
after=$(find "$corpus" -type f | wc -l)
echo "cmin target=$target inputs_before=$before inputs_after=$after size=$(du -sh "$corpus" | cut -f1)"
