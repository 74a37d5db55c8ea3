#!/usr/bin/env bash
# The README's main job (scripts/demo.sh) end to end with short training, in a
# fresh work folder: it must finish, report all six variants (the teacher and
# five), and a second run must redo nothing. Exit 77 (ctest: Skipped) without
# the fortunes corpus. Usage: demo_test.sh CONDENSE_BIN
set -euo pipefail
bin="$1"
here="$(cd "$(dirname "$0")/.." && pwd)"
[ -d /usr/share/games/fortunes ] || { echo "SKIP: the fortunes package is not installed (scripts/setup.sh installs it)"; exit 77; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export CONDENSE_BIN="$bin" CONDENSE_DEMO_DIR="$work" CONDENSE_DEMO_TEACHER_STEPS=12 CONDENSE_DEMO_DISTILL_STEPS=6
bash "$here/scripts/demo.sh" >"$work/first.log" 2>&1 || { cat "$work/first.log"; exit 1; }
report="$work/default/report.json"
[ -s "$work/default/report.html" ] || { echo "no report.html"; exit 1; }
n=$(grep -c '"name":' "$report" || true)
[ "$n" -ge 6 ] || { echo "report.json names $n variants, expected the teacher and 5"; cat "$report"; exit 1; }
for v in distilled int8 int4-gptq sparse50-int8 fp8-kv; do
  grep -q "\"name\": \"$v\"" "$report" || { echo "variant $v missing from the report"; exit 1; }
done
bash "$here/scripts/demo.sh" >"$work/second.log" 2>&1 || { cat "$work/second.log"; exit 1; }
cached=$(grep -c ': cached' "$work/second.log" || true)
[ "$cached" -eq 6 ] || { echo "the second run redid work ($cached of 6 steps cached)"; cat "$work/second.log"; exit 1; }
if grep -q '^== .*bench ' "$work/second.log"; then echo "the second run benchmarked again"; cat "$work/second.log"; exit 1; fi
echo "demo: first run and cached rerun OK"
