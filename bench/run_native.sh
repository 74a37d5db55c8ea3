#!/usr/bin/env bash
# The native runtime's numbers (issue 11), recorded as JSON under bench/results/:
# the random stories110M shape (`condense init`) compressed by RTN recipes into
# every stored format (int8 / int4 g32 / fp8 weights with the tied embedding and
# head quantized too, W8A8 / W4A8 (also with the head's input int8, and W8A8
# with an int8 KV cache), 50% / 70% / 2:4 pruned f32, int8 and W8A8 (-all: the
# tied embedding/head pruned too), fp8 and int8 KV), then `condense bench` on each at 1 and 2 threads. Every bench run
# measures the machine's read bandwidth, FMA and int8 peaks itself.
# Needs ../shared/data (the 32k tokenizer and text for calibration).
# Usage: bench/run_native.sh [build-dir] [quick]   (~15 min; quick: 1 thread, fewer cases)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$here/build}"
quick="${2:-}"
data="${CONDENSE_DATA_DIR:-$here/../shared/data}"
tok="$data/models/llama2c-tokenizer-32k/tokenizer.model"
text="$data/text/tinystories/tinystories_valid_head.txt"
[ -f "$tok" ] && [ -f "$text" ] || { echo "run_native.sh: needs $tok and $text (../shared/data)" >&2; exit 1; }
models="$build/bench-models"
work="$models/native"
out="$here/bench/results/native-$(date -u +%Y%m%d-%H%M%S).json"
mkdir -p "$work" "$here/bench/results"
export OMP_WAIT_POLICY=passive
base="$models/stories110M"
[ -f "$base/model.safetensors" ] || "$build/condense" init --shape stories110M --seed 1 --out "$base" >/dev/null

# name|stages (JSON array)
all='model.layers.*_proj.weight", "model.embed_tokens.weight'
variants=(
  "int8|[{\"type\": \"quantize\", \"weights\": {\"type\": \"int8\", \"granularity\": \"channel\"}, \"method\": \"rtn\", \"targets\": [\"$all\"]}]"
  "int8-w8a8|[{\"type\": \"quantize\", \"weights\": {\"type\": \"int8\", \"granularity\": \"channel\"}, \"method\": \"rtn\", \"targets\": [\"$all\"], \"activations\": {\"type\": \"int8\"}}]"
  "int4|[{\"type\": \"quantize\", \"weights\": {\"type\": \"int4\", \"group\": 32}, \"method\": \"rtn\", \"targets\": [\"$all\"]}]"
  "int4-w4a8|[{\"type\": \"quantize\", \"weights\": {\"type\": \"int4\", \"group\": 32}, \"method\": \"rtn\", \"targets\": [\"$all\"], \"activations\": {\"type\": \"int8\"}}]"
  "int8-w8a8-head|[{\"type\": \"quantize\", \"weights\": {\"type\": \"int8\", \"granularity\": \"channel\"}, \"method\": \"rtn\", \"targets\": [\"$all\"], \"activations\": {\"type\": \"int8\", \"head\": true}}]"
  "int4-w4a8-head|[{\"type\": \"quantize\", \"weights\": {\"type\": \"int4\", \"group\": 32}, \"method\": \"rtn\", \"targets\": [\"$all\"], \"activations\": {\"type\": \"int8\", \"head\": true}}]"
  "fp8|[{\"type\": \"quantize\", \"weights\": {\"type\": \"fp8\", \"granularity\": \"channel\"}, \"method\": \"rtn\", \"targets\": [\"$all\"]}]"
  "f32-sparse50|[{\"type\": \"prune\", \"sparsity\": 0.5}]"
  "f32-sparse70|[{\"type\": \"prune\", \"sparsity\": 0.7}]"
  "f32-2of4|[{\"type\": \"prune\", \"pattern\": \"2:4\"}]"
  "int8-sparse50|[{\"type\": \"prune\", \"sparsity\": 0.5}, {\"type\": \"quantize\", \"weights\": {\"type\": \"int8\", \"granularity\": \"channel\"}, \"method\": \"rtn\"}]"
  "int8-sparse70|[{\"type\": \"prune\", \"sparsity\": 0.7}, {\"type\": \"quantize\", \"weights\": {\"type\": \"int8\", \"granularity\": \"channel\"}, \"method\": \"rtn\"}]"
  "int8-w8a8-head-sparse50|[{\"type\": \"prune\", \"sparsity\": 0.5}, {\"type\": \"quantize\", \"weights\": {\"type\": \"int8\", \"granularity\": \"channel\"}, \"method\": \"rtn\", \"targets\": [\"$all\"], \"activations\": {\"type\": \"int8\", \"head\": true}}]"
  "int8-w8a8-head-sparse70|[{\"type\": \"prune\", \"sparsity\": 0.7}, {\"type\": \"quantize\", \"weights\": {\"type\": \"int8\", \"granularity\": \"channel\"}, \"method\": \"rtn\", \"targets\": [\"$all\"], \"activations\": {\"type\": \"int8\", \"head\": true}}]"
  "int8-w8a8-head-2of4|[{\"type\": \"prune\", \"pattern\": \"2:4\"}, {\"type\": \"quantize\", \"weights\": {\"type\": \"int8\", \"granularity\": \"channel\"}, \"method\": \"rtn\", \"targets\": [\"$all\"], \"activations\": {\"type\": \"int8\", \"head\": true}}]"
  "int8-w8a8-head-sparse50-all|[{\"type\": \"prune\", \"sparsity\": 0.5, \"targets\": [\"$all\"]}, {\"type\": \"quantize\", \"weights\": {\"type\": \"int8\", \"granularity\": \"channel\"}, \"method\": \"rtn\", \"targets\": [\"$all\"], \"activations\": {\"type\": \"int8\", \"head\": true}}]"
  "int8-w8a8-head-sparse70-all|[{\"type\": \"prune\", \"sparsity\": 0.7, \"targets\": [\"$all\"]}, {\"type\": \"quantize\", \"weights\": {\"type\": \"int8\", \"granularity\": \"channel\"}, \"method\": \"rtn\", \"targets\": [\"$all\"], \"activations\": {\"type\": \"int8\", \"head\": true}}]"
  "int8-w8a8-head-int8kv|[{\"type\": \"quantize\", \"weights\": {\"type\": \"int8\", \"granularity\": \"channel\"}, \"method\": \"rtn\", \"targets\": [\"$all\"], \"activations\": {\"type\": \"int8\", \"head\": true}}, {\"type\": \"calibrate_kv\", \"dtype\": \"int8\", \"granularity\": \"head\", \"calibration\": {\"samples\": 8, \"seq\": 128}}]"
  "int8-dense|[{\"type\": \"quantize\", \"weights\": {\"type\": \"int8\", \"granularity\": \"channel\"}, \"method\": \"rtn\"}]"
  "fp8kv|[{\"type\": \"calibrate_kv\", \"dtype\": \"fp8\", \"granularity\": \"head\", \"calibration\": {\"samples\": 8, \"seq\": 128}}]"
  "int8kv|[{\"type\": \"calibrate_kv\", \"dtype\": \"int8\", \"granularity\": \"head\", \"calibration\": {\"samples\": 8, \"seq\": 128}}]"
)
for v in "${variants[@]}"; do
  name="${v%%|*}" stages="${v#*|}"
  [ -f "$work/$name/model.cpk" ] && continue
  cat >"$work/$name.json" <<EOF
{"name": "$name-stories110M", "teacher": {"model": "$base", "tokenizer": "$tok"}, "student": {"init": "from_teacher"},
 "data": {"text": "$text"}, "stages": $stages, "output": {"dir": "$work/$name"}}
EOF
  "$build/condense" run "$work/$name.json" >/dev/null 2>&1 || { echo "recipe $name failed" >&2; exit 1; }
done

threads=(1 2)
[ -n "$quick" ] && threads=(1)
: >"$work/runs.jsonl"
run() {  # label model threads extra-args...
  local label="$1" model="$2" t="$3"
  shift 3
  "$build/condense" bench "$model" --threads "$t" --json "$@" 2>/dev/null |
    python3 -c "import json,sys; d=json.load(sys.stdin); d['label']='$label'; print(json.dumps(d))" >>"$work/runs.jsonl"
  echo "  $label threads=$t done" >&2
}
for t in "${threads[@]}"; do
  run f32 "$base" "$t" --tokenizer "$tok"
  for name in int8 int8-w8a8 int8-w8a8-head int8-w8a8-head-int8kv int4 int4-w4a8 int4-w4a8-head fp8 f32-sparse50 f32-sparse70 f32-2of4 \
              int8-dense int8-sparse50 int8-sparse70 int8-w8a8-head-sparse50 int8-w8a8-head-sparse70 int8-w8a8-head-2of4 \
              int8-w8a8-head-sparse50-all int8-w8a8-head-sparse70-all; do
    run "$name" "$work/$name/model.cpk" "$t" --context 128 --batch 1 --batch 4 --batch 16 --decode-tokens 32
  done
  # KV dtypes at context 1024 (decode batch 1 and 4): f16 and bf16 on the f32 model, fp8 / int8 calibrated.
  for kv in f16 bf16; do run "f32-kv-$kv" "$base" "$t" --tokenizer "$tok" --kv-dtype "$kv" --prefill 128 --context 1024 --batch 1 --batch 4; done
  run fp8kv "$work/fp8kv/model.cpk" "$t" --prefill 128 --context 1024 --batch 1 --batch 4
  run int8kv "$work/int8kv/model.cpk" "$t" --prefill 128 --context 1024 --batch 1 --batch 4
  run f32-kv-f32 "$base" "$t" --tokenizer "$tok" --prefill 128 --context 1024 --batch 1 --batch 4
done
python3 - "$work/runs.jsonl" "$out" <<'PY'
import json, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
json.dump({"schema": "condense-bench-set/1", "runs": runs}, open(sys.argv[2], "w"), indent=1)
by = {}
for r in runs:
    by[(r["label"], r["machine"]["threads"])] = r
def dec(label, t, batch=1, ctx=128):
    r = by.get((label, t))
    if not r: return None
    for d in r["decode"]:
        if d.get("batch") == batch and d.get("requested_context", d.get("context")) == ctx and "tok_s" in d: return d
for t in sorted({k[1] for k in by}):
    m = by[("f32", t)]["machine"]
    print(f"threads {t}: {m['cpu']} {m['isa']}, read {m['read_gbs']:.1f} GB/s, FMA {m['fma_gflops']:.0f} GFLOP/s, int8 {m['int8_gops']:.0f} GOPS ({m['int8_kind']})")
    for label in ["f32", "int8", "int8-w8a8", "int8-w8a8-head", "int8-w8a8-head-int8kv", "int4", "int4-w4a8", "int4-w4a8-head", "fp8",
                  "int8-dense", "f32-sparse50", "f32-sparse70", "f32-2of4", "int8-sparse50", "int8-sparse70",
                  "int8-w8a8-head-sparse50", "int8-w8a8-head-sparse70", "int8-w8a8-head-2of4", "int8-w8a8-head-sparse50-all",
                  "int8-w8a8-head-sparse70-all"]:
        d = dec(label, t)
        if not d: continue
        b = by[(label, t)]
        d16 = dec(label, t, 16)
        pre = [p for p in b["prefill"] if p.get("tokens") == 512 and "tok_s" in p]
        print(f"  {label:27s} decode b1 {d['tok_s']:7.1f} tok/s ({100*d['fraction_of_bound']:5.1f}% of {d['bound']}; "
              f"{b['model']['decode_weight_bytes']/1e6:6.1f} MB/token)  b16 {d16['tok_s'] if d16 else 0:7.1f} tok/s "
              f"({100*(d16['fraction_of_bound'] if d16 else 0):4.1f}%)  prefill512 {pre[0]['tok_s'] if pre else 0:7.1f} tok/s "
              f"({100*(pre[0]['fraction_of_bound'] if pre else 0):4.1f}%)")
    for label in ["f32-kv-f32", "f32-kv-f16", "f32-kv-bf16", "fp8kv", "int8kv"]:
        d = dec(label, t, 1, 1024)
        if d: print(f"  {label:14s} decode ctx1024 b1 {d['tok_s']:7.1f} tok/s, KV {by[(label, t)]['kv']['bytes_per_token']} B/token")
print("wrote", sys.argv[2])
PY
