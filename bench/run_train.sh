#!/usr/bin/env bash
# Training throughput (forward + backward + AdamW), recorded as JSON under
# bench/results/: the machine's f32 FMA peak, then bench_train on the
# stories15M shape (batch 8 x 256) and the real stories260K (batch 8 x 256) at
# 1 and 2 threads, each with its achieved GFLOP/s and the ratio to the peak.
# Usage: bench/run_train.sh [build-dir]   (build first: scripts/setup.sh)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$here/build}"
data="${CONDENSE_DATA_DIR:-$here/../shared/data}"
out="$here/bench/results/train-$(date -u +%Y%m%d-%H%M%S).json"
mkdir -p "$here/bench/results"
export OMP_WAIT_POLICY=passive

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$build/bench/bench_machine" --benchmark_format=json --benchmark_filter=FmaPeak >"$tmp/machine.json" 2>/dev/null
: >"$tmp/train.jsonl"
targets=("--shape stories15M")
[ -f "$data/models/stories260K/stories260K.bin" ] && targets+=("$data/models/stories260K/stories260K.bin")
for m in "${targets[@]}"; do
  for t in 1 2; do
    # shellcheck disable=SC2086
    "$build/bench/bench_train" $m --threads "$t" --batch 8 --seq 256 --reps 3 >>"$tmp/train.jsonl"
    echo "  $m threads=$t: $(tail -1 "$tmp/train.jsonl")" >&2
  done
done
python3 - "$tmp/machine.json" "$tmp/train.jsonl" "$out" <<'PY'
import json, sys
machine = json.load(open(sys.argv[1]))
peak = {}  # isa -> threads -> GFLOP/s
for b in machine["benchmarks"]:
    parts = b["name"].split("/")
    if parts[0] == "BM_FmaPeak":
        peak.setdefault(parts[1], {})[int(parts[2])] = b["GFLOPS"] / 1e9
rows = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
for r in rows:
    r["fma_peak_gflops"] = peak[r["isa"]][r["threads"]]
    r["fraction_of_peak"] = r["gflops"] / r["fma_peak_gflops"]
json.dump({"machine": {"cpu": machine["context"].get("cpu_name"), "fma_peak_gflops": peak}, "train": rows}, open(sys.argv[3], "w"), indent=2)
for r in rows:
    print(f'{r["model"]:>60} {r["isa"]} threads={r["threads"]}: {r["tokens_per_s"]:.0f} tok/s, {r["gflops"]:.1f} GFLOP/s = {100*r["fraction_of_peak"]:.0f}% of {r["fma_peak_gflops"]:.1f}')
print("wrote", sys.argv[3])
PY
