#!/usr/bin/env bash
# A long fuzzing run (issue 14's numbers): each fuzz target for SECONDS (default
# 1800), JOBS at a time (default 2), with the limits CI uses (an input over 5 s,
# 2 GB of memory, or any crash is a finding). Each target's corpus grows in
# build-san/fuzz/corpus/<target> from run to run. Writes
# bench/results/fuzz-<date>.json: per target the seconds, executions, exec/s,
# edges covered, features, corpus size and the findings (artifact files).
# Needs the sanitizer build: bash scripts/setup.sh build-san --sanitize
# The time that counts is each fuzzer's CPU time (user + sys, recorded per
# target): a run under `nice` beside other work gets less CPU than its wall
# time. Prints each target's total over all bench/results/fuzz-*.json (older
# files without cpu_seconds count their seconds_per_target: they ran alone,
# one fuzzer per core).
# Usage: bench/run_fuzz.sh [SECONDS] [JOBS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-1800}"; jobs="${2:-2}"; shift 2 || shift $# || true
b=build-san/fuzz
[ -x "$b/make_seeds" ] || { echo "run_fuzz: build-san is missing: bash scripts/setup.sh build-san --sanitize" >&2; exit 1; }
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for f in "$b"/fuzz_*; do [ -x "$f" ] && targets+=("$(basename "$f" | sed 's/^fuzz_//')"); done
fi
"$b/make_seeds" "$b/seeds" "$PWD" >/dev/null
stamp=$(date -u +%Y%m%d-%H%M%S)
logs="$b/logs-$stamp"
mkdir -p "$logs" "$b/artifacts"
echo "run_fuzz: ${#targets[@]} targets x ${secs} s, ${jobs} at a time; logs in $logs" >&2
run_one() {
  # Two statements: in one `local`, "$t" in dirs would expand before t is set
  # (every run until 2026-12-01 read and grew the corpus/ and seeds/ roots,
  # all targets' inputs together).
  local t="$1"
  local dirs=("$b/corpus/$t" "$b/seeds/$t")
  mkdir -p "$b/corpus/$t"
  [ -d "tests/fuzz_regressions/$t" ] && dirs+=("tests/fuzz_regressions/$t")
  OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive /usr/bin/time -f '%U %S %e' -o "$logs/$t.time" "$b/fuzz_$t" -max_total_time="$secs" -timeout=5 -rss_limit_mb=2048 -malloc_limit_mb=2048 \
    -max_len=1048576 -print_final_stats=1 -artifact_prefix="$b/artifacts/$t-" "${dirs[@]}" >"$logs/$t.log" 2>&1 || true
  echo "run_fuzz: $t done" >&2
}
export -f run_one; export b secs logs
printf '%s\n' "${targets[@]}" | xargs -P "$jobs" -I{} bash -c 'run_one {}'
python3 - "$logs" "$b" "$secs" "$stamp" "${targets[@]}" <<'PY'
import json, os, re, subprocess, sys
logs, b, secs, stamp, targets = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5:]
isa = "avx512" if "avx512f" in open("/proc/cpuinfo").read() else "avx2"
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "")
out = {"schema": "condense-fuzz/1", "date": stamp, "cpu": cpu, "isa": isa, "seconds_per_target": secs,
       "limits": {"timeout_s": 5, "rss_limit_mb": 2048, "malloc_limit_mb": 2048, "max_len": 1048576}, "targets": {}}
for t in targets:
    text = open(os.path.join(logs, t + ".log"), errors="replace").read()
    stat = dict(re.findall(r"stat::(\w+):\s+(\d+)", text))
    cov = re.findall(r"cov: (\d+) ft: (\d+) corp: (\d+)", text)
    findings = sorted(f for f in os.listdir(os.path.join(b, "artifacts")) if f.startswith(t + "-"))
    user, sys_, wall = (float(x) for x in open(os.path.join(logs, t + ".time")).read().split()[-3:])
    crashed = bool(re.search(r"==\d+==ERROR|deadly signal|Timeout|out-of-memory|malloc\(|uncaught", text))
    out["targets"][t] = {"cpu_seconds": round(user + sys_, 1), "wall_seconds": round(wall, 1),
                         "executions": int(stat.get("number_of_executed_units", 0)),
                         "exec_per_s": int(stat.get("average_exec_per_sec", 0)),
                         "edges": int(cov[-1][0]) if cov else 0, "features": int(cov[-1][1]) if cov else 0,
                         "corpus": int(cov[-1][2]) if cov else 0, "peak_rss_mb": int(stat.get("peak_rss_mb", 0)),
                         "findings": findings, "clean": not crashed and not findings}
path = f"bench/results/fuzz-{stamp}.json"
json.dump(out, open(path, "w"), indent=1)
print(path)
for t, r in out["targets"].items():
    print(f"{t:18s} {r['executions']:>10d} runs {r['exec_per_s']:>7d}/s  edges {r['edges']:>6d}  corpus {r['corpus']:>5d}  {'clean' if r['clean'] else 'FINDINGS ' + ' '.join(r['findings'])}")
import glob
total = {}
for f in sorted(glob.glob("bench/results/fuzz-*.json")):
    d = json.load(open(f))
    for t, r in d["targets"].items():
        s = total.setdefault(t, {"cpu_seconds": 0.0, "executions": 0, "clean": True})
        s["cpu_seconds"] += r.get("cpu_seconds", d["seconds_per_target"])
        s["executions"] += r["executions"]
        s["clean"] = s["clean"] and r["clean"]
print("totals over bench/results/fuzz-*.json:")
for t, s in sorted(total.items()):
    print(f"{t:18s} {s['cpu_seconds'] / 60:6.1f} CPU-min {s['executions']:>11d} runs  {'clean' if s['clean'] else 'FINDINGS'}")
PY
