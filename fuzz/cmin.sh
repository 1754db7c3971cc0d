#!/usr/bin/env bash
# Folds the inputs found by fuzz/run.sh (fuzz/target/corpus/TARGET) into the committed corpus
# (fuzz/corpus/TARGET) and minimises it with `cargo fuzz cmin`: the smallest set of inputs
# that keeps every covered edge. Review and commit fuzz/corpus/ afterwards.
#
# FUZZ_CMIN_ARGS (default "-use_counters=0 -max_len=1024") go to libFuzzer. Without hit
# counters a feature is an edge, which keeps a few hundred inputs per target instead of
# thousands (one per edge-count bucket); a long run grows the rest back in minutes. Inputs are
# cut to 1 KiB: only `config` has longer ones (whole files), and the deep compile paths they
# reach are covered by `config_structured`'s small inputs. Together that keeps the committed
# corpus to about 400 KB. Set FUZZ_CMIN_ARGS="" to keep every feature of every input.
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
    # Inputs are named by their sha1, so a copy never overwrites a different input. Through
    # find: a long run's tens of thousands of names overflow a command line (a `cp "$work"/*`
    # failed silently on 40,000 inputs and folded none in).
    find "$work" -type f -exec cp -n -t "$corpus" {} +
fi
before=$(find "$corpus" -type f | wc -l)
read -r -a extra <<<"${FUZZ_CMIN_ARGS--use_counters=0 -max_len=1024}"
nice -n "${FUZZ_NICE:-19}" cargo fuzz cmin --fuzz-dir "$fuzz_dir" -s "$sanitizer" "$target" "$corpus" \
    -- -timeout="${FUZZ_TIMEOUT:-10}" -rss_limit_mb="${FUZZ_RSS_MB:-2048}" "${extra[@]}" >&2
after=$(find "$corpus" -type f | wc -l)
echo "cmin target=$target inputs_before=$before inputs_after=$after bytes=$(cat "$corpus"/* | wc -c)"
