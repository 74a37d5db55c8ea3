#!/usr/bin/env bash
# Issue 15's number: converting a stories110M-shape int4 .cpk to GGUF and to
# compressed-tensors: wall time and peak RSS, against the bound
#   peak RSS - output bytes <= 1.5 x the model's largest tensor (f32 bytes).
# The model is `condense init` random weights (the shape is what matters),
# quantized int4 g32 (RTN) over the block linears; embedding f32 as stored.
# Each conversion runs as its own process (`/usr/bin/time -v` reads its peak
# RSS; condense's --json reports the same VmHWM). Writes
# bench/results/convert-<date>.json.
# Needs ../shared/data (the 32k llama2.c tokenizer).
# Usage: bench/run_convert.sh [SHAPE]   (default stories110M)
set -euo pipefail
cd "$(dirname "$0")/.."
shape="${1:-stories110M}"
bin=build/condense
[ -x "$bin" ] || { echo "run_convert: build first (cmake --build build)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OMP_WAIT_POLICY=passive
# The 32k llama2.c tokenizer (a .cpk embeds its tokenizer; GGUF gets it too).
data="${CONDENSE_DATA_DIR:-$PWD/../shared/data}"
tok="$data/models/llama2c-tokenizer-32k/tokenizer.bin"
[ -f "$tok" ] || { echo "run_convert: needs $tok (../shared/data)" >&2; exit 1; }
"$bin" init --shape "$shape" --out "$work/f32" >/dev/null
"$bin" quantize "$work/f32" --tokenizer "$tok" --to int4 --group 32 --out "$work/m.cpk" >/dev/null
stamp=$(date -u +%Y%m%d-%H%M%S)
runs=()
for spec in "gguf auto" "gguf q4_k" "compressed-tensors f16"; do
  set -- $spec
  to=$1; arg=$2
  out="$work/out-$to-$arg"
  extra=(--type "$arg")
  [ "$to" = compressed-tensors ] && extra=(--dtype "$arg")
  /usr/bin/time -v -o "$work/time.txt" "$bin" convert "$work/m.cpk" --to "$to" "${extra[@]}" --out "$out" --json > "$work/r.json"
  rss_kb=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time.txt")
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$work/time.txt")
  runs+=("$(python3 - "$work/r.json" "$rss_kb" "$wall" "$to" "$arg" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
rss = int(sys.argv[2]) * 1024
def secs(t):
    p = [float(x) for x in t.split(":")]
    return sum(v * 60 ** i for i, v in enumerate(reversed(p)))
kinds = {}
for t in r["tensors"]:
    k = t.get("type") or t.get("format")
    kinds[k] = kinds.get(k, 0) + 1
print(json.dumps({"to": sys.argv[4], "option": sys.argv[5], "wall_s": secs(sys.argv[3]), "convert_s": r["seconds"],
                  "peak_rss_bytes": rss, "peak_rss_reported": r["peak_rss_bytes"], "output_bytes": r["output_bytes"],
                  "tensors_by_type": kinds, "exact": sum(t["how"] == "exact" for t in r["tensors"]), "tensors": len(r["tensors"])}))
PY
)")
done
python3 - "$shape" "$stamp" "$work/m.cpk" "$bin" "${runs[@]}" <<'PY'
import json, os, subprocess, sys
shape, stamp, cpk, bin_ = sys.argv[1:5]
runs = [json.loads(x) for x in sys.argv[5:]]
info = json.loads(subprocess.run([bin_, "info", cpk, "--json"], capture_output=True, text=True, check=True).stdout)
c = info["config"]
largest = max(c["vocab"] * c["dim"], c["ffn_dim"] * c["dim"], c["n_heads"] * c["head_dim"] * c["dim"]) * 4
isa = info["runtime"]["isa"]
for r in runs:
    r["rss_above_output_bytes"] = r["peak_rss_bytes"] - r["output_bytes"]
    r["rss_above_output_over_largest_tensor"] = round(r["rss_above_output_bytes"] / largest, 3)
    r["bound_met"] = r["rss_above_output_over_largest_tensor"] <= 1.5
out = {"schema": "condense-bench-convert/1", "date": stamp, "shape": shape, "config": c, "input_cpk_bytes": os.path.getsize(cpk),
       "largest_tensor_f32_bytes": largest, "cpu": info["runtime"]["cpu"], "isa": isa, "threads": info["runtime"]["threads"], "runs": runs}
path = f"bench/results/convert-{shape}-{stamp}.json"
json.dump(out, open(path, "w"), indent=1)
print(path)
print(f"{shape}: input .cpk {out['input_cpk_bytes']/1e6:.1f} MB, largest tensor {largest/1e6:.1f} MB (f32), ISA {isa}")
for r in runs:
    print(f"  -> {r['to']:18s} {r['option']:5s} {r['wall_s']:6.2f} s  output {r['output_bytes']/1e6:7.1f} MB  peak RSS {r['peak_rss_bytes']/1e6:7.1f} MB"
          f"  (RSS - output) / largest = {r['rss_above_output_over_largest_tensor']:.2f}  {'<= 1.5: met' if r['bound_met'] else '> 1.5: NOT MET'}")
PY
