#!/usr/bin/env bash
# End-to-end speed, recorded as JSON under bench/results/: the machine's limits
# (read bandwidth, f32 FMA peak), then prefill and decode of stories260K (real,
# from ../shared/data) and the stories15M / stories110M shapes (random weights
# from `condense init`) at 1 and 2 threads, with each figure's ratio to its limit.
# Usage: bench/run_e2e.sh [build-dir]   (build first: scripts/setup.sh)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$here/build}"
data="${CONDENSE_DATA_DIR:-$here/../shared/data}"
models="$build/bench-models"
out="$here/bench/results/e2e-$(date -u +%Y%m%d-%H%M%S).json"
mkdir -p "$models" "$here/bench/results"
export OMP_WAIT_POLICY=passive   # a busy neighbour core otherwise makes 2 threads slower than 1

for shape in stories15M stories110M; do
  [ -f "$models/$shape/model.safetensors" ] || "$build/condense" init --shape "$shape" --seed 1 --out "$models/$shape" >/dev/null
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$build/bench/bench_machine" --benchmark_format=json >"$tmp/machine.json" 2>/dev/null
list=("$models/stories15M" "$models/stories110M")
[ -f "$data/models/stories260K/stories260K.bin" ] && list=("$data/models/stories260K/stories260K.bin" "${list[@]}")
: >"$tmp/engine.jsonl"
for m in "${list[@]}"; do
  for t in 1 2; do
    "$build/bench/bench_engine" "$m" --threads "$t" --batch 128 --decode 128 --reps 3 >>"$tmp/engine.jsonl"
    echo "  $(basename "$m") threads=$t: $(tail -1 "$tmp/engine.jsonl" | cut -c1-160)..." >&2
  done
done

python3 - "$tmp/machine.json" "$tmp/engine.jsonl" "$out" <<'PY'
import json, platform, sys
machine = json.load(open(sys.argv[1]))
bw, fma = {}, {}  # bw: threads -> best GB/s over ISAs; fma: isa -> threads -> GFLOP/s
for b in machine["benchmarks"]:
    parts = b["name"].split("/")
    if parts[0] == "BM_ReadBandwidth":
        threads = int(parts[3])
        bw[threads] = max(bw.get(threads, 0), b["bytes_per_second"] / 1e9)   # decimal GB/s
    elif parts[0] == "BM_FmaPeak":
        fma.setdefault(parts[1], {})[int(parts[2])] = b["GFLOPS"] / 1e9
runs = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
for r in runs:
    t = r["threads"]
    r["decode_bound_tok_s"] = bw[t] * 1e9 / r["decode_weight_bytes_per_token"]
    r["decode_fraction_of_bandwidth_bound"] = r["decode_tok_s"] / r["decode_bound_tok_s"]
    r["prefill_fraction_of_fma_peak"] = r["prefill_gflops"] / fma[r["isa"]][t]
result = {"machine": {"cpu": machine["context"].get("cpu_name", platform.node()),
                      "read_bandwidth_gb_s": bw, "fma_peak_gflops": fma,
                      "note": "bandwidth: best of the bench_machine read variants, decimal GB/s"},
          "runs": runs}
json.dump(result, open(sys.argv[3], "w"), indent=1)
print("model                 thr  prefill tok/s  GFLOP/s  %peak   decode tok/s  GB/s   %bound")
for r in runs:
    print(f'{r["model"].split("/")[-1][:20]:20}  {r["threads"]:3}  {r["prefill_tok_s"]:12.1f}  {r["prefill_gflops"]:7.1f}  '
          f'{100*r["prefill_fraction_of_fma_peak"]:5.1f}  {r["decode_tok_s"]:12.1f}  {r["decode_weight_gb_s"]:5.1f}  '
          f'{100*r["decode_fraction_of_bandwidth_bound"]:5.1f}')
print("wrote", sys.argv[3])
PY
