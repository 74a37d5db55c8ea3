#!/usr/bin/env bash
# The main job, end to end: a teacher, a handful of compressed variants (a
# distilled student, int8, int4 GPTQ, 50% sparse + int8, fp8 KV cache), each
# evaluated against the teacher and benchmarked, then the Pareto report.
#
#   scripts/demo.sh                      nothing but Debian: condense learns a tokenizer and
#                                        trains a small Llama-shaped teacher on the `fortunes`
#                                        corpus (Debian package), once; every step is cached
#   scripts/demo.sh --model stories260K  the same on the real stories260K (../shared/data)
#
# Work and results under build/demo (CONDENSE_DEMO_DIR); a rerun only redoes a
# step whose recipe changed. Prints a table and the path of report.html.
# CONDENSE_DEMO_TEACHER_STEPS (800) and CONDENSE_DEMO_DISTILL_STEPS (300)
# shorten the training (the CI test of this script uses a few steps).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
bin="${CONDENSE_BIN:-$here/build/condense}"
data="${CONDENSE_DATA_DIR:-$here/../shared/data}"
model=default
while [ $# -gt 0 ]; do
  case "$1" in
    --model) model="${2:?--model needs a name: default or stories260K}"; shift 2 ;;
    -h|--help) sed -n '2,/^set -e/p' "$0" | grep '^#'; exit 0 ;;
    *) echo "demo: unknown argument '$1' (try --help)" >&2; exit 1 ;;
  esac
done
[ -x "$bin" ] || { echo "demo: $bin is not built; run: bash scripts/setup.sh build --main" >&2; exit 1; }
work="${CONDENSE_DEMO_DIR:-$here/build/demo}/$model"
mkdir -p "$work/recipes"
export OMP_WAIT_POLICY=passive
t0=$(date +%s)
step() { echo "== [$(( $(date +%s) - t0 ))s] $*"; }

# run NAME JSON: a recipe into $work/NAME, skipped when the same recipe already ran there.
run() {
  local name="$1" json="$2" dir="$work/$1"
  printf '%s\n' "$json" >"$work/recipes/$name.json"
  if [ -f "$dir/results.json" ] && cmp -s "$work/recipes/$name.json" "$dir/recipe.json"; then
    step "$name: cached ($dir)"
    return
  fi
  step "$name"
  rm -rf "$dir"
  "$bin" run "$work/recipes/$name.json"
  cp "$work/recipes/$name.json" "$dir/recipe.json"
}

# bench NAME MODEL: decode speed into $work/NAME/bench.json, cached (redone when the recipe's results are newer).
bench() {
  local name="$1" m="$2" out="$work/$1/bench.json"
  if [ -f "$out" ] && [ "$out" -nt "$work/$1/results.json" ]; then return; fi
  step "bench $name"
  "$bin" bench "$m" --json --threads 1 --prefill 64 --context 64 --batch 1 --decode-tokens 32 >"$out.tmp" && mv "$out.tmp" "$out"
}

if [ "$model" = default ]; then
  fortunes=/usr/share/games/fortunes
  if [ ! -d "$fortunes" ]; then
    echo "demo: the training corpus comes from Debian's fortunes package: apt-get install fortunes (scripts/setup.sh installs it)" >&2
    exit 1
  fi
  if [ ! -s "$work/eval.txt" ]; then
    step "corpus: $fortunes (the % separators dropped; the last 5% of lines held out for evaluation)"
    find "$fortunes" -maxdepth 1 -type f ! -name '*.dat' ! -name '*.u8' ! -name '*art' | sort | xargs cat | grep -v '^%$' >"$work/corpus.txt"
    n=$(wc -l <"$work/corpus.txt")
    head -n $((n * 95 / 100)) "$work/corpus.txt" >"$work/train.txt"
    tail -n +$((n * 95 / 100 + 1)) "$work/corpus.txt" >"$work/eval.txt"
  fi
  if [ ! -s "$work/tokenizer.model" ]; then
    step "tokenizer: SentencePiece BPE, 1024 pieces, learned from the training text"
    "$bin" data tokenizer --text "$work/train.txt" --vocab 1024 --out "$work/tokenizer.model"
  fi
  train="$work/train.txt" eval="$work/eval.txt"
  before=$(stat -c %Y "$work/teacher/results.json" 2>/dev/null || echo none)
  run teacher "{\"name\": \"teacher\", \"data\": {\"text\": \"$train\"},
    \"student\": {\"init\": \"random\", \"shape\": \"stories15M\", \"tokenizer\": \"$work/tokenizer.model\", \"seed\": 7,
                \"config\": {\"dim\": 192, \"n_layers\": 4, \"n_heads\": 4, \"n_kv_heads\": 4, \"ffn_dim\": 512, \"max_seq\": 256}},
    \"stages\": [{\"type\": \"train\", \"steps\": ${CONDENSE_DEMO_TEACHER_STEPS:-800}, \"batch\": 16, \"seq\": 128, \"lr\": 0.003}],
    \"output\": {\"dir\": \"$work/teacher\"}}"
  if [ "$(stat -c %Y "$work/teacher/results.json")" != "$before" ]; then
    # A new teacher: every variant and benchmark made from the old one is stale.
    rm -rf "$work"/{distilled,int8,int4-gptq,sparse50-int8,fp8-kv,reference}
  fi
  teacher="$work/teacher/model" keep="[0, 3]" distill_steps=${CONDENSE_DEMO_DISTILL_STEPS:-300}
elif [ "$model" = stories260K ]; then
  teacher="$data/models/stories260K/stories260K.bin"
  train="$data/text/tinystories/tinystories_valid_head.txt" eval="$train"
  [ -f "$teacher" ] && [ -f "$train" ] || { echo "demo: --model stories260K needs $teacher and $train (../shared/data)" >&2; exit 1; }
  keep="[0, 2, 4]" distill_steps=${CONDENSE_DEMO_DISTILL_STEPS:-300}
else
  echo "demo: unknown --model '$model' (default or stories260K)" >&2
  exit 1
fi

# The variants: each recipe names the teacher, so its evaluation compares against it.
common="\"teacher\": {\"model\": \"$teacher\"}, \"data\": {\"text\": \"$train\"},
  \"eval\": {\"text\": \"$eval\", \"ctx\": 128, \"max_windows\": 16}"
variant() {  # NAME STUDENT STAGES
  run "$1" "{\"name\": \"$1\", $common, \"student\": $2, \"stages\": $3, \"output\": {\"dir\": \"$work/$1\"}}"
}
whole='{"init": "from_teacher"}'
variant distilled "{\"init\": \"from_teacher\", \"layers\": $keep}" \
  "[{\"type\": \"distill\", \"steps\": $distill_steps, \"batch\": 16, \"seq\": 128, \"lr\": 0.002}]"
variant int8 "$whole" '[{"type": "quantize", "weights": {"type": "int8", "granularity": "channel"}, "method": "rtn"}]'
variant int4-gptq "$whole" '[{"type": "quantize", "weights": {"type": "int4", "group": 32}, "method": "gptq",
  "calibration": {"samples": 32, "seq": 128}}]'
variant sparse50-int8 "$whole" '[{"type": "prune", "sparsity": 0.5, "method": "sparsegpt", "calibration": {"samples": 32, "seq": 128}},
  {"type": "quantize", "weights": {"type": "int8", "granularity": "channel"}, "method": "rtn"}]'
variant fp8-kv "$whole" '[{"type": "calibrate_kv", "dtype": "fp8", "granularity": "head", "calibration": {"samples": 16, "seq": 128}}]'

# Speed: the teacher (the report's reference) and every variant.
mkdir -p "$work/reference"
bench reference "$teacher"
for v in distilled int8 int4-gptq sparse50-int8 fp8-kv; do
  if [ -f "$work/$v/model.cpk" ]; then bench "$v" "$work/$v/model.cpk"; else bench "$v" "$work/$v/model"; fi
done

step "report"
"$bin" report "$work/reference/bench.json" "$work"/{distilled,int8,int4-gptq,sparse50-int8,fp8-kv} \
  --title "condense: $model teacher and its compressed variants" \
  --out "$work/report.html" --json "$work/report.json" --csv "$work/report.csv"
step "done: open $work/report.html"
