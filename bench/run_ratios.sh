#!/usr/bin/env bash
# Ratios that a shared, noisy machine blurs when each model is measured once
# (issue 11's sparsity, batching and weight-only numbers; "-f32decode": the
# same model with CONDENSE_WEIGHT_ONLY=f32): decode tok/s of several models in
# interleaved rounds (every model once per round, `condense bench` at context
# 128), then per comparison the ratio of the medians and the median of the
# per-round ratios. Models are run_native.sh's (run it first).
# Writes bench/results/ratios-*.json. Usage: bench/run_ratios.sh [build-dir] [rounds=5] [threads=1]  (~8 min)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$here/build}"
rounds="${2:-5}"
threads="${3:-1}"
models="$build/bench-models"
[ -f "$models/native/int8-w8a8-head/model.cpk" ] || { echo "run_ratios.sh: run bench/run_native.sh first (needs $models/native)" >&2; exit 1; }
out="$here/bench/results/ratios-$(date -u +%Y%m%d-%H%M%S).json"
data="${CONDENSE_DATA_DIR:-$here/../shared/data}"
python3 - "$build/condense" "$models" "$rounds" "$threads" "$(git -C "$here" rev-parse --short HEAD)" "$out" "$data" <<'PY'
import json, os, statistics, subprocess, sys
condense, models, rounds, threads, head, out, data = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6], sys.argv[7]
nat = lambda n: f"{models}/native/{n}/model.cpk"
# label -> (model, batch)
cases = {
    "f32": (f"{models}/stories110M", 1),
    "f32-sparse50": (nat("f32-sparse50"), 1), "f32-sparse70": (nat("f32-sparse70"), 1), "f32-2of4": (nat("f32-2of4"), 1),
    "w8a8-head": (nat("int8-w8a8-head"), 1),
    "w8a8-head-sparse50": (nat("int8-w8a8-head-sparse50"), 1), "w8a8-head-sparse70": (nat("int8-w8a8-head-sparse70"), 1),
    "w8a8-head-2of4": (nat("int8-w8a8-head-2of4"), 1),
    "w8a8-head-sparse50-all": (nat("int8-w8a8-head-sparse50-all"), 1), "w8a8-head-sparse70-all": (nat("int8-w8a8-head-sparse70-all"), 1),
    "w8a8-head-int8kv-b1": (nat("int8-w8a8-head-int8kv"), 1), "w8a8-head-int8kv-b16": (nat("int8-w8a8-head-int8kv"), 16),
    "int8-head": (nat("int8"), 1), "int8-head-f32decode": (nat("int8"), 1, {"CONDENSE_WEIGHT_ONLY": "f32"}),
    "int4-head": (nat("int4"), 1), "int4-head-f32decode": (nat("int4"), 1, {"CONDENSE_WEIGHT_ONLY": "f32"}),
    "w4a8-head": (nat("int4-w4a8-head"), 1), "fp8-head": (nat("fp8"), 1),
}
compare = [("f32-sparse50", "f32"), ("f32-sparse70", "f32"), ("f32-2of4", "f32"),
           ("w8a8-head-sparse50", "w8a8-head"), ("w8a8-head-sparse70", "w8a8-head"), ("w8a8-head-2of4", "w8a8-head"),
           ("w8a8-head-sparse50-all", "w8a8-head"), ("w8a8-head-sparse70-all", "w8a8-head"),
           ("w8a8-head-int8kv-b16", "w8a8-head-int8kv-b1"),
           ("int8-head", "int8-head-f32decode"), ("int4-head", "int4-head-f32decode"), ("int4-head", "f32"), ("int8-head", "w8a8-head"),
           ("int4-head", "w4a8-head")]
env = dict(os.environ, OMP_WAIT_POLICY="passive")
runs = []
for rnd in range(1, rounds + 1):
    for label, (model, batch, *extra) in cases.items():
        args = [condense, "bench", model, "--threads", threads, "--json", "--prefill", "8", "--reps", "1", "--context", "128",
                "--batch", str(batch), "--decode-tokens", "32"]
        if not model.endswith(".cpk"):
            args += ["--tokenizer", os.path.join(data, "models/llama2c-tokenizer-32k/tokenizer.model")]
        d = json.loads(subprocess.run(args, capture_output=True, text=True, env=dict(env, **(extra[0] if extra else {})), check=True).stdout)
        dec = d["decode"][0]
        runs.append({"round": rnd, "label": label, "batch": batch, "tok_s": dec["tok_s"], "fraction_of_bound": dec["fraction_of_bound"],
                     "bound": dec["bound"], "bytes_per_step": dec["bytes_per_step"], "compute_bound_tok_s": dec["compute_bound_tok_s"],
                     "machine": d["machine"]})
        print(f"round {rnd} {label}: {dec['tok_s']:.1f} tok/s ({100 * dec['fraction_of_bound']:.0f}% of {dec['bound']})", file=sys.stderr)
val = lambda label, key="tok_s": [r[key] for r in runs if r["label"] == label]
res = {"what": f"decode tok/s at context 128, {threads} thread(s), {rounds} interleaved rounds (condense bench, 32 decode steps) at {head}",
       "medians": {l: {"tok_s": statistics.median(val(l)), "fraction_of_bound": statistics.median(val(l, "fraction_of_bound")),
                       "compute_bound_tok_s": statistics.median(val(l, "compute_bound_tok_s")), "bytes_per_step": val(l, "bytes_per_step")[0]}
                   for l in cases},
       "ratios": [{"a": a, "b": b, "ratio_of_medians": statistics.median(val(a)) / statistics.median(val(b)),
                   "median_round_ratio": statistics.median([x / y for x, y in zip(val(a), val(b))]),
                   "byte_ratio": val(b, "bytes_per_step")[0] / val(a, "bytes_per_step")[0]} for a, b in compare],
       "runs": runs}
json.dump(res, open(out, "w"), indent=1)
for r in res["ratios"]:
    print(f"{r['a']:24s} / {r['b']:20s} {r['ratio_of_medians']:.2f}x (per-round median {r['median_round_ratio']:.2f}x; bytes {r['byte_ratio']:.2f}x)")
for l, m in res["medians"].items():
    print(f"{l:24s} {m['tok_s']:7.1f} tok/s  {100 * m['fraction_of_bound']:5.1f}% of bound  int8/FMA compute bound {m['compute_bound_tok_s']:.0f} tok/s")
print("wrote", out)
PY
