#!/usr/bin/env bash
# stories260K (real, overhead-bound) decode against an earlier engine, built
# beside this one from a git worktree (issue 11 measured against 10f4877, the
# revision it started from): 7 interleaved rounds of bench_engine at 1 thread,
# 256 decoded tokens, best of 5 reps each; writes bench/results/stories260K-overhead-*.json
# with the ratio of the medians and the median per-round ratio.
# Needs ../shared/data (stories260K). Usage: bench/run_overhead.sh [build-dir] [old-rev]  (~10 min, mostly the old build)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$here/build}"
rev="${2:-10f4877}"
model="${CONDENSE_DATA_DIR:-$here/../shared/data}/models/stories260K/stories260K.bin"
[ -f "$model" ] || { echo "run_overhead.sh: needs $model (../shared/data)" >&2; exit 1; }
old="$build/old-$rev"
if [ ! -x "$old/build/bench/bench_engine" ]; then
  [ -d "$old" ] || git -C "$here" worktree add -q --detach "$old" "$rev"
  cmake -S "$old" -B "$old/build" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$old/build" -j2 --target bench_engine >/dev/null
fi
cmake --build "$build" -j2 --target bench_engine >/dev/null
out="$here/bench/results/stories260K-overhead-$(date -u +%Y%m%d-%H%M%S).json"
python3 - "$model" "$old/build/bench/bench_engine" "$build/bench/bench_engine" "$rev" "$(git -C "$here" rev-parse --short HEAD)" "$out" <<'PY'
import json, os, statistics, subprocess, sys
model, old_bin, new_bin, rev, head, out = sys.argv[1:]
env = dict(os.environ, OMP_NUM_THREADS="1", OMP_WAIT_POLICY="passive")
runs = []
for rnd in range(1, 8):
    for name, b in ((f"old-{rev}", old_bin), ("new", new_bin)):
        line = subprocess.run([b, model, "--threads", "1", "--decode", "256", "--reps", "5", "--batch", "64"],
                              capture_output=True, text=True, env=env, check=True).stdout.strip().splitlines()[-1]
        d = json.loads(line)
        d.update(engine=name, round=rnd)
        runs.append(d)
        print(f"round {rnd} {name}: decode {d['decode_tok_s']:.0f} tok/s", file=sys.stderr)
pick = lambda eng, key: [r[key] for r in runs if (r["engine"] == "new") == (eng == "new")]
old, new = pick("old", "decode_tok_s"), pick("new", "decode_tok_s")
res = {"what": f"stories260K decode (bench_engine, 1 thread, 256 tokens from position 0, best of 5 reps per run; 7 interleaved rounds) at {rev} (built beside) and at {head}",
       "ratio_of_medians": statistics.median(new) / statistics.median(old),
       "median_round_ratio": statistics.median([n / o for n, o in zip(new, old)]),
       "prefill_ratio_of_medians": statistics.median(pick("new", "prefill_tok_s")) / statistics.median(pick("old", "prefill_tok_s")),
       "runs": runs}
json.dump(res, open(out, "w"), indent=1)
print(f"decode {res['ratio_of_medians']:.2f}x (median per-round {res['median_round_ratio']:.2f}x), prefill {res['prefill_ratio_of_medians']:.2f}x -> {out}")
PY
