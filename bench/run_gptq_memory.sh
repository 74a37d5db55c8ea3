#!/usr/bin/env bash
# Calibration memory at a realistic size: GPTQ (int4 g128, true-sequential)
# on a randomly initialised stories110M (`condense init`), 128 x 512
# calibration tokens of TinyStories through the llama2.c 32k tokenizer.
# Records the quantize report's peak RSS (VmHWM), GNU time's maximum RSS
# and the wall time under bench/results/. Weights are random, so no quality
# is measured; the point is that memory stays bounded by one layer.
# Usage: bench/run_gptq_memory.sh [build-dir]   (about 10-20 min on 2 cores)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$here/build}"
data="${CONDENSE_DATA_DIR:-$here/../shared/data}"
out="$here/bench/results/gptq-memory-stories110M-$(date -u +%Y%m%d-%H%M%S).json"
tok="$data/models/llama2c-tokenizer-32k/tokenizer.bin"
text="$data/text/tinystories/tinystories_valid_head.txt"
for f in "$tok" "$text"; do [ -f "$f" ] || { echo "missing $f (set CONDENSE_DATA_DIR)" >&2; exit 1; }; done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$build/condense" init --shape stories110M --seed 1 --out "$tmp/model" >/dev/null
cat >"$tmp/recipe.json" <<JSON
{
  "name": "gptq-memory-stories110M",
  "data": {"text": "$text"},
  "student": {"init": "model", "model": "$tmp/model", "tokenizer": "$tok"},
  "stages": [{"type": "quantize", "weights": {"type": "int4", "group": 128}, "method": "gptq",
              "calibration": {"samples": 128, "seq": 512, "chunk": 8}}],
  "output": {"dir": "$tmp/out"}
}
JSON
/usr/bin/time -v "$build/condense" run "$tmp/recipe.json" 2>"$tmp/time.txt" >/dev/null || { cat "$tmp/time.txt" >&2; exit 1; }
python3 - "$tmp/out/results.json" "$tmp/time.txt" "$out" <<'PY'
import json, re, sys
res = json.load(open(sys.argv[1]))
rep = res["stages"][0]["report"]
t = open(sys.argv[2]).read()
max_rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", t).group(1))
wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", t).group(1)
row = {"model": "stories110M (random init)", "params": res["student"]["params"], "method": "gptq int4 g128",
       "calibration": rep["calibration"], "quantize_seconds": rep["seconds"], "report_peak_rss_mb": rep["peak_rss_mb"],
       "time_max_rss_mb": max_rss_kb * 1024 / 1e6, "wall": wall, "limit_mb": 3000}
json.dump(row, open(sys.argv[3], "w"), indent=2)
print(json.dumps(row, indent=2))
print("wrote", sys.argv[3])
PY
