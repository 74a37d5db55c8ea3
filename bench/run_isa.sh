#!/usr/bin/env bash
# Every ISA path on this machine, measured in one run against the limits
# measured in the same run (bench_machine: f32 FMA peak and read bandwidth per
# ISA), recorded as JSON under bench/results/isa-*.json:
#   - training, stories15M shape, batch 8 x 256, 1 thread (bench_train), and
#     prefill of 512 tokens and f32 decode of 128, stories110M shape, 1 thread
#     (bench_engine), per ISA, in 3 interleaved rounds (medians reported; the
#     limits are the mean of bench_machine before and after the rounds);
#   - a busy neighbour: one CPU-bound process beside 1- and 2-thread runs of the
#     same training and engine benchmarks (best ISA), in 3 interleaved rounds,
#     passive waiting as the CLI does, and once with OpenMP's active waiting for
#     comparison; the medians' ratio 2 threads / 1 thread is recorded.
# Usage: bench/run_isa.sh [build-dir]   (build first: scripts/setup.sh; ~12 min)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$here/build}"
models="$build/bench-models"
out="$here/bench/results/isa-$(date -u +%Y%m%d-%H%M%S).json"
mkdir -p "$models" "$here/bench/results"
export OMP_WAIT_POLICY=passive
[ -f "$models/stories110M/model.safetensors" ] || "$build/condense" init --shape stories110M --seed 1 --out "$models/stories110M" >/dev/null

tmp=$(mktemp -d)
busy=""
cleanup() { [ -n "$busy" ] && kill "$busy" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT

echo "machine limits (bench_machine) ..." >&2
"$build/bench/bench_machine" --benchmark_format=json >"$tmp/machine.json" 2>/dev/null
isas=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["context"]["isas"].replace(",", " "))' "$tmp/machine.json")
best=${isas%% *}

: >"$tmp/runs.jsonl"
record() {  # record KIND NEIGHBOUR WAIT -- command...
  local kind=$1 neighbour=$2 wait=$3; shift 4
  local line
  line=$(OMP_WAIT_POLICY=$wait "$@")
  python3 -c 'import json,sys; r=json.loads(sys.argv[1]); r.update(kind=sys.argv[2], neighbour=sys.argv[3]=="1", wait_policy=sys.argv[4]); print(json.dumps(r))' \
    "$line" "$kind" "$neighbour" "$wait" >>"$tmp/runs.jsonl"
  echo "  $kind isa=${CONDENSE_ISA:-} neighbour=$neighbour wait=$wait: $(echo "$line" | cut -c1-150)..." >&2
}

for round in 1 2 3; do  # ISAs interleaved, 3 rounds: other tenants' load drifts over minutes
  for isa in $isas; do
    export CONDENSE_ISA=$isa
    record train 0 passive -- "$build/bench/bench_train" --shape stories15M --threads 1 --batch 8 --seq 256 --reps 3
    record engine 0 passive -- "$build/bench/bench_engine" "$models/stories110M" --threads 1 --batch 512 --decode 128 --reps 2
  done
done
echo "machine limits again (bench_machine), for the drift ..." >&2
"$build/bench/bench_machine" --benchmark_format=json >"$tmp/machine2.json" 2>/dev/null

export CONDENSE_ISA=$best
( while :; do :; done ) &
busy=$!
sleep 1
for round in 1 2 3; do  # interleaved rounds: the neighbour's effect drifts
  for t in 1 2; do
    record train 1 passive -- "$build/bench/bench_train" --shape stories15M --threads $t --batch 8 --seq 256 --reps 2
    record engine 1 passive -- "$build/bench/bench_engine" "$models/stories110M" --threads $t --batch 512 --decode 128 --reps 2
  done
done
record train 1 active -- "$build/bench/bench_train" --shape stories15M --threads 2 --batch 8 --seq 256 --reps 2
kill "$busy"; busy=""

python3 - "$tmp/machine.json" "$tmp/runs.jsonl" "$out" "$tmp/machine2.json" <<'PY'
import json, statistics, sys
machine = json.load(open(sys.argv[1]))
fma, bw, int8 = {}, {}, {}
# Limits: the mean of the measurements before and after the per-ISA rounds.
benches = machine["benchmarks"] + json.load(open(sys.argv[4]))["benchmarks"]
for b in benches:
    parts = b["name"].split("/")
    if parts[0] == "BM_FmaPeak":
        fma.setdefault(parts[1], {}).setdefault(int(parts[2]), []).append(b["GFLOPS"] / 1e9)
    elif parts[0] == "BM_ReadBandwidth":  # best prefetch variant of each measurement
        bw.setdefault(parts[1], {}).setdefault(int(parts[3]), {}).setdefault(parts[2], []).append(b["bytes_per_second"] / 1e9)
    elif parts[0] == "BM_Int8Peak":
        int8.setdefault(parts[1], {}).setdefault(int(parts[2]), []).append(b["GOPS"] / 1e9)
mean = statistics.mean
fma = {i: {t: mean(v) for t, v in d.items()} for i, d in fma.items()}
int8 = {i: {t: mean(v) for t, v in d.items()} for i, d in int8.items()}
# per ISA and thread count: max over prefetch variants of the per-measurement value, averaged over the 2 measurements
def best_bw(variants):  # prefetch variant -> [GB/s per measurement]: best variant, mean over measurements
    n = min(len(v) for v in variants.values())
    return mean(max(v[i] for v in variants.values()) for i in range(n))
bw = {i: {t: best_bw(variants) for t, variants in d.items()} for i, d in bw.items()}
best_bw = {t: max(v[t] for v in bw.values()) for t in (1, 2)}
runs = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
for r in runs:
    isa, t = r["isa"], r["threads"]
    if r["kind"] == "train":
        r["fraction_of_fma_peak"] = r["gflops"] / fma[isa][t]
    else:
        r["prefill_fraction_of_fma_peak"] = r["prefill_gflops"] / fma[isa][t]
        r["decode_fraction_of_read_bandwidth"] = r["decode_weight_gb_s"] / best_bw[t]
ctx = machine["context"]
result = {"machine": {"cpu": ctx.get("cpu_name"), "isas": ctx.get("isas"), "fma_peak_gflops": fma,
                      "read_bandwidth_gb_s": bw, "best_read_bandwidth_gb_s": best_bw, "int8_peak_gops": int8,
                      "note": "bandwidth: best of the read variants per ISA, decimal GB/s; decode fractions use the best over ISAs"},
          "runs": runs}
# Busy neighbour: 2 threads against 1, medians over the interleaved rounds.
import statistics
def med(kind, t, key):
    v = [r[key] for r in runs if r["neighbour"] and r["wait_policy"] == "passive" and r["kind"] == kind and r["threads"] == t]
    return statistics.median(v) if v else None
neighbour = {}
for kind, key in (("train", "tokens_per_s"), ("engine", "prefill_tok_s"), ("engine", "decode_tok_s")):
    one, two = med(kind, 1, key), med(kind, 2, key)
    neighbour[f"{kind}.{key}"] = {"threads1_median": one, "threads2_median": two, "ratio_2_over_1": two / one}
result["busy_neighbour"] = neighbour
# Without a neighbour: per ISA, the medians over the rounds.
summary = {}
for isa in fma:
    rs = [r for r in runs if not r["neighbour"] and r["isa"] == isa]
    tr = [r["fraction_of_fma_peak"] for r in rs if r["kind"] == "train"]
    pf = [r["prefill_fraction_of_fma_peak"] for r in rs if r["kind"] == "engine"]
    dc = [r["decode_fraction_of_read_bandwidth"] for r in rs if r["kind"] == "engine"]
    if tr:
        summary[isa] = {"train_fraction_of_fma_peak": {"median": statistics.median(tr), "all": tr},
                        "prefill512_fraction_of_fma_peak": {"median": statistics.median(pf), "all": pf},
                        "decode_fraction_of_read_bandwidth": {"median": statistics.median(dc), "all": dc}}
result["per_isa_medians"] = summary
json.dump(result, open(sys.argv[3], "w"), indent=1)
print(f'CPU {ctx.get("cpu_name")}, ISAs {ctx.get("isas")}; read bandwidth {best_bw[1]:.1f} GB/s (1 thread)')
for isa, p in fma.items():
    print(f'  {isa:9} FMA peak {p[1]:6.1f} GFLOP/s (1 thread)')
print("isa       kind    thr neighbour wait     result")
for r in runs:
    if r["kind"] == "train":
        res = f'{r["tokens_per_s"]:7.0f} tok/s {r["gflops"]:6.1f} GFLOP/s = {100*r["fraction_of_fma_peak"]:5.1f}% of peak'
    else:
        res = (f'prefill {r["prefill_tok_s"]:6.0f} tok/s {r["prefill_gflops"]:6.1f} GFLOP/s = {100*r["prefill_fraction_of_fma_peak"]:5.1f}% | '
               f'decode {r["decode_tok_s"]:5.1f} tok/s {r["decode_weight_gb_s"]:5.1f} GB/s = {100*r["decode_fraction_of_read_bandwidth"]:5.1f}% of bw')
    print(f'{r["isa"]:9} {r["kind"]:7} {r["threads"]:3} {str(r["neighbour"]):9} {r["wait_policy"]:8} {res}')
print("per ISA, medians of 3 rounds (all rounds in brackets):")
for isa, v in summary.items():
    print(f'  {isa:9} ' + "  ".join(f'{k.split("_")[0]} {100*x["median"]:.1f}% [{", ".join(f"{100*a:.1f}" for a in x["all"])}]' for k, x in v.items()))
print("busy neighbour, medians of 3 rounds (2 threads / 1 thread):")
for k, v in neighbour.items():
    print(f'  {k:22} 1 thread {v["threads1_median"]:8.1f}  2 threads {v["threads2_median"]:8.1f}  ratio {v["ratio_2_over_1"]:.3f}')
print("wrote", sys.argv[3])
PY
