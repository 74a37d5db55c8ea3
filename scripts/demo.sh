#!/usr/bin/env bash
# The main job on its default: greedy generation, then perplexity, with the real
# stories260K model from ../shared/data. Usage: scripts/demo.sh [MODEL] [TEXT]
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
bin="${CONDENSE_BIN:-$here/build/condense}"
data="${CONDENSE_DATA_DIR:-$here/../shared/data}"
model="${1:-$data/models/stories260K/stories260K.bin}"
text="${2:-$data/text/tinystories/tinystories_valid_head.txt}"
if [ ! -e "$model" ] || [ ! -e "$text" ]; then
  echo "demo: need a model and a text file. Pass them: scripts/demo.sh MODEL TEXT" >&2
  echo "      (MODEL: a llama2.c .bin with its tokenizer beside it, or a Hugging Face folder; TEXT: UTF-8 text)" >&2
  echo "      or make a random model to benchmark: $bin init --shape stories15M --out /tmp/s15m" >&2
  exit 1
fi
echo "== condense info $model"
"$bin" info "$model"
echo "== condense generate (greedy, 120 tokens)"
"$bin" generate "$model" --temperature 0 --steps 120
echo "== condense eval (ctx 256, first 16 windows)"
"$bin" eval "$model" --text "$text" --ctx 256 --max-windows 16
