#!/usr/bin/env bash
# Data-parallel training, 2 ranks under mpirun on this machine, recorded as
# JSON under bench/results/: for the stories15M shape (2 windows of 256 per
# rank) and the stories110M shape (1 window of 256 per rank), with 25 MB
# buckets (the default) and 4 MB buckets: gradient bytes all-reduced per step,
# all-reduce time, the part the training thread waited for and the fraction
# hidden behind the backward, the same bytes all-reduced alone, AdamW alone.
# Then bench/scaling_model.py turns the stories110M run into the scaling table
# of docs/DATA_PARALLEL.md.
# Usage: bench/run_data_parallel.sh [build-dir]   (build first: scripts/setup.sh)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$here/build}"
out="$here/bench/results/data-parallel-$(date -u +%Y%m%d-%H%M%S).json"
mkdir -p "$here/bench/results"
export OMP_WAIT_POLICY=passive
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
: >"$tmp/runs.jsonl"
# --bind-to none: each rank's compute thread and its all-reduce thread may use
# either core (bound, they would share one)
run() {  # shape batch bucket-mb
  mpirun --allow-run-as-root --oversubscribe -np 2 --bind-to none \
    "$build/bench/bench_data_parallel" --shape "$1" --batch "$2" --seq 256 --steps 3 --warmup 1 --bucket-mb "$3" |
    python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)))' >>"$tmp/runs.jsonl"
  echo "  $1 bucket $3 MB: $(tail -1 "$tmp/runs.jsonl" | python3 -c 'import json,sys; j=json.load(sys.stdin); print("step %.3f s, %.1f MB/step, all-reduce %.3f s, exposed %.3f s, hidden %.0f%%" % (j["step_s"], j["allreduce_bytes_per_step"]/1e6, j["allreduce_s_per_step"], j["exposed_s_per_step"], 100*j["hidden_fraction"]))')" >&2
}
for b in 25 4; do
  run stories15M 2 "$b"
  run stories110M 1 "$b"
done
python3 - "$tmp/runs.jsonl" "$out" <<'PY'
import json, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
json.dump({"bench": "data_parallel", "runs": runs}, open(sys.argv[2], "w"), indent=2)
PY
echo "wrote $out" >&2
python3 "$here/bench/scaling_model.py" "$out"
