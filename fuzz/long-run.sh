#!/usr/bin/env bash
# Runs each fuzz target in turn for SECONDS_PER_TARGET (default 600), at the
# lowest priority, then minimises its corpus back into corpus/<target>.
# Usage: fuzz/long-run.sh [target…]   (default: every target)
# Needs cargo-fuzz; RUSTC_BOOTSTRAP=1 lets the stable compiler take the
# nightly-only flags libFuzzer builds need (see README.md).
set -euo pipefail
cd "$(dirname "$0")"
export RUSTC_BOOTSTRAP=1
seconds="${SECONDS_PER_TARGET:-600}"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo fuzz list)
fi
cargo fuzz build -O
mkdir -p logs target/work
for target in "${targets[@]}"; do
    work="target/work/$target"
    mkdir -p "$work"
    cp -f "seeds/$target"/* "corpus/$target"/* "$work"/ 2>/dev/null || true
    echo "== $target: ${seconds}s" >&2
    nice -n 19 cargo fuzz run -O "$target" "$work" -- \
        -max_total_time="$seconds" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
        >"logs/$target.log" 2>&1 || echo "== $target: FAILED, see logs/$target.log" >&2
    # Edges only (no hit counts): a corpus of tens of files, not hundreds.
    nice -n 19 cargo fuzz cmin -O "$target" "$work" -- -use_counters=0 >"logs/$target.cmin.log" 2>&1
    rm -rf "corpus/$target"
    cp -r "$work" "corpus/$target"
    grep -E '^#[0-9]+ +DONE|stat::number_of_executed_units|stat::peak_rss_mb' "logs/$target.log" >&2 || true
done
