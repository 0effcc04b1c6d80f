#!/usr/bin/env bash
# Fuzzes the parsers that read untrusted input (the IDX reader, the experiment config parser,
# the class-mapping parser, the run query language) with cargo-fuzz for a bounded time each. Not part of CI.
# usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]   (default 60 s, every target)
# Needs the nightly toolchain (rustup toolchain install nightly); installs cargo-fuzz if missing.
# A crash is saved under fuzz/artifacts/TARGET/; turn it into a regression test, then fix it.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(idx experiment_config class_mapping run_query)

rustup toolchain list | grep -q '^nightly' || {
    echo "fuzz.sh: cargo-fuzz needs the nightly toolchain: rustup toolchain install nightly" >&2
    exit 2
}
cargo +nightly fuzz --version >/dev/null 2>&1 || cargo install --locked cargo-fuzz

# Seeds: the project's own configs and a few small IDX files, raw and gzipped.
corpus=target/fuzz-corpus
mkdir -p "$corpus"/{idx,experiment_config,class_mapping,run_query}
printf '%s' "metrics.test.accuracy > 0.9 and params.training.learning_rate = 0.001" > "$corpus/run_query/mlflow"
printf '%s' "(tags.owner = 'ana' or tags.owner = 'ben') and not status in ('failed', 'cancelled')" > "$corpus/run_query/or"
printf '%s' "metrics.val_loss.min < 0.3 and metrics.accuracy@epoch=3 >= 0.8 and data.sha256 = '3f2a' and verified" > "$corpus/run_query/provenance"
cp config/*.yaml "$corpus/experiment_config/"
cp config/class_mapping_config.yaml "$corpus/class_mapping/"
python3 - "$corpus/idx" <<'PY'
import gzip, struct, sys
out = sys.argv[1]
def idx(dims, data):
    return bytes([0, 0, 8, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + bytes(data)
files = {
    "labels": idx([4], [1, 2, 3, 4]),
    "images": idx([2, 2, 2], range(8)),
    "empty": idx([0, 28, 28], []),
    "truncated": idx([3, 2, 2], range(5)),
}
for name, data in files.items():
    open(f"{out}/{name}", "wb").write(data)
    open(f"{out}/{name}.gz", "wb").write(gzip.compress(data))
PY

status=0
for target in "${targets[@]}"; do
    echo "== fuzzing $target for ${seconds}s"
    if ! cargo +nightly fuzz run --fuzz-dir fuzz "$target" "$corpus/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1; then
        echo "fuzz.sh: $target found a crash; the input is under fuzz/artifacts/$target/" >&2
        status=1
    fi
done
[ "$status" -eq 0 ] && echo "fuzz.sh: every target ran ${seconds}s without a crash"
exit "$status"
