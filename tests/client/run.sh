#!/usr/bin/env bash
# Runs client_test.mjs (the official OpenAI Node SDK) against `condense serve`
# on the real stories260K. Exit 77 (ctest: skipped) when node or the model is
# missing. Usage: run.sh CONDENSE_BIN DATA_DIR
set -euo pipefail
bin="$1"; data="${CONDENSE_DATA_DIR:-$2}"
here="$(cd "$(dirname "$0")" && pwd)"
model="$data/models/stories260K/stories260K.bin"
command -v node >/dev/null || { echo "skip: node is not installed (scripts/setup.sh installs it)"; exit 77; }
[ -f "$model" ] || { echo "skip: $model is absent (set CONDENSE_DATA_DIR)"; exit 77; }
if [ ! -d "$here/node_modules/openai" ]; then
  command -v npm >/dev/null || { echo "skip: npm is not installed"; exit 77; }
  (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
fi
log="$(mktemp)"
"$bin" serve "$model" --port 0 --threads 1 --kv-memory 32M --api-key test-key --served-model-name stories260K 2>"$log" &
pid=$!
trap 'kill -TERM $pid 2>/dev/null || true; rm -f "$log"' EXIT
port=""
for _ in $(seq 1 100); do
  port="$(grep -o 'http://127.0.0.1:[0-9]*' "$log" | head -1 | sed 's/.*://')" || true
  [ -n "$port" ] && break
  sleep 0.1
done
[ -n "$port" ] || { echo "the server did not start:"; cat "$log"; exit 1; }
node "$here/client_test.mjs" "http://127.0.0.1:$port/v1" stories260K test-key
kill -TERM $pid
wait $pid
echo "server exited $?"
