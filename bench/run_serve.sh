#!/usr/bin/env bash
# The server's numbers (issue 13), as JSON under bench/results/:
#  1. stories15M and stories110M random shapes (`condense init`), int8 and int4
#     g32 .cpk (RTN, the tied embedding/head quantized too), served by
#     `condense serve --threads 2`, measured by `condense bench --server` over
#     concurrency 1/4/16/64 (128 prompt + 128 output tokens); each run also
#     carries the machine's bound and the engine's own capacity for that mix,
#     measured in the same invocation (--bound-model).
#  2. Scheduler overhead on the real stories260K at concurrency 1: the server's
#     TPOT against the in-process scheduler's (`bench --model`), alternated 3 times.
#  3. 500 concurrent streams against a queue of 256 (stories260K).
# Needs ../shared/data (the 32k tokenizer, stories260K). Usage: bench/run_serve.sh [build-dir]  (~10 min)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$here/build}"
data="${CONDENSE_DATA_DIR:-$here/../shared/data}"
tok="$data/models/llama2c-tokenizer-32k/tokenizer.model"
s260="$data/models/stories260K/stories260K.bin"
[ -f "$tok" ] && [ -f "$s260" ] || { echo "run_serve.sh: needs $tok and $s260 (../shared/data)" >&2; exit 1; }
bin="$build/condense"
models="$build/bench-models"
stamp="$(date -u +%Y%m%d-%H%M%S)"
res="$here/bench/results"
tmp="$(mktemp -d)"
mkdir -p "$models" "$res"
export OMP_WAIT_POLICY=passive
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"' EXIT

serve() {  # serve MODEL PORT [args...]: starts the server, waits until it listens
  local m="$1" port="$2"; shift 2
  "$bin" serve "$m" --port "$port" "$@" 2>"$tmp/serve-$port.log" &
  for _ in $(seq 1 300); do grep -q "http://" "$tmp/serve-$port.log" && return 0; sleep 0.1; done
  cat "$tmp/serve-$port.log" >&2; return 1
}
stop() { kill -TERM "$1"; wait "$1" || true; }

# 1. Concurrency sweeps.
for shape in stories15M stories110M; do
  base="$models/$shape"
  [ -f "$base/model.safetensors" ] || "$bin" init --shape "$shape" --seed 1 --out "$base" >/dev/null
  for q in int8 int4; do
    m="$models/serve-$shape-$q.cpk"
    [ -f "$m" ] || "$bin" quantize "$base" --tokenizer "$tok" --to "$q" --head --out "$m" >/dev/null
    serve "$m" 18200 --threads 2
    pid=$!
    echo "== $shape $q"
    "$bin" bench --server http://127.0.0.1:18200 --bound-model "$m" --threads 2 --num-prompts 8 --input-len 128 --output-len 128 \
      --ignore-eos --warmups 1 --sweep concurrency=1,4,16,64 --out "$res/serve-$shape-$q-$stamp.json" 2>/dev/null
    stop $pid
  done
done

# 2. Scheduler overhead (stories260K, concurrency 1, the same KV pool and threads).
echo "== stories260K: server vs in-process scheduler, concurrency 1"
serve "$s260" 18201 --threads 1 --kv-memory 64M
pid=$!
for i in 1 2 3; do
  "$bin" bench --server http://127.0.0.1:18201 --num-prompts 30 --input-len 64 --output-len 256 --max-concurrency 1 --ignore-eos --warmups 2 \
    --out "$tmp/over-server-$i.json" 2>/dev/null
  "$bin" bench --model "$s260" --threads 1 --kv-memory 64M --num-prompts 30 --input-len 64 --output-len 256 --max-concurrency 1 --ignore-eos \
    --warmups 2 --out "$tmp/over-engine-$i.json" 2>/dev/null
done
stop $pid

# 3. 500 streams at once against a queue of 256.
echo "== stories260K: 500 streams, queue 256"
serve "$s260" 18202 --threads 2 --kv-memory 64M --max-queue 256 --max-seqs 64
pid=$!
"$bin" bench --server http://127.0.0.1:18202 --num-prompts 500 --input-len 32 --output-len 64 --ignore-eos --out "$tmp/flood.json" 2>/dev/null || true
stop $pid

python3 - "$tmp" "$res/serve-overhead-stories260K-$stamp.json" "$res/serve-flood-stories260K-$stamp.json" <<'PY'
import json, statistics, sys
tmp, over_out, flood_out = sys.argv[1:4]
runs = []
for i in (1, 2, 3):
    s = json.load(open(f"{tmp}/over-server-{i}.json"))["runs"][0]
    e = json.load(open(f"{tmp}/over-engine-{i}.json"))["runs"][0]
    runs.append({"server_median_tpot_ms": s["median_tpot_ms"], "engine_median_tpot_ms": e["median_tpot_ms"],
                 "server_p99_tpot_ms": s["p99_tpot_ms"], "engine_p99_tpot_ms": e["p99_tpot_ms"],
                 "ratio": s["median_tpot_ms"] / e["median_tpot_ms"]})
doc = {"what": "server TPOT / in-process scheduler TPOT, stories260K, concurrency 1, 64 prompt + 256 output tokens, 1 engine thread",
       "pairs": runs, "median_ratio": statistics.median(r["ratio"] for r in runs)}
json.dump(doc, open(over_out, "w"), indent=2)
print(f"overhead: server/in-process TPOT median ratio {doc['median_ratio']:.3f} over {[round(r['ratio'], 3) for r in runs]}")
f = json.load(open(f"{tmp}/flood.json"))
r = f["runs"][0]
json.dump(f, open(flood_out, "w"), indent=2)
rejected = sum(e["count"] for e in r["errors"] if "503" in e["error"])
print(f"500 streams: {r['completed']} completed, {rejected} rejected with 503, {r['failed'] - rejected} other failures, "
      f"p99 TTFT {r['p99_ttft_ms']:.1f} ms, p99 TPOT {r['p99_tpot_ms']:.2f} ms, server peak RSS "
      f"{r.get('server', {}).get('condense:process_peak_rss_bytes', 0) / 1e6:.0f} MB")
PY
echo "results: $res/serve-*-$stamp.json"
