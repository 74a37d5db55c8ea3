#!/usr/bin/env bash
# tokenizer.json interop: `condense convert --to hf` of the real stories260K
# writes a tokenizer.json from its llama2.c tokenizer; Hugging Face tokenizers
# (the Rust library's Node binding, pinned in package-lock.json) reads it and
# must encode every line of the validation text to [BOS] + the ids of the
# llama2.c algorithm (a dummy-prefix space, then merges of the highest-scoring
# pair, leftmost first), computed here in Python from tok512.bin directly.
# Exit 77 (ctest: skipped) when node or the model is missing.
# Usage: run_tokenizer.sh CONDENSE_BIN DATA_DIR
set -euo pipefail
bin="$1"; data="${CONDENSE_DATA_DIR:-$2}"
here="$(cd "$(dirname "$0")" && pwd)"
model="$data/models/stories260K/stories260K.bin"
tok="$data/models/stories260K/tok512.bin"
text="$data/text/tinystories/tinystories_valid_head.txt"
command -v node >/dev/null || { echo "skip: node is not installed (scripts/setup.sh installs it)"; exit 77; }
[ -f "$model" ] || { echo "skip: $model is absent (set CONDENSE_DATA_DIR)"; exit 77; }
if [ ! -d "$here/node_modules/tokenizers" ]; then
  command -v npm >/dev/null || { echo "skip: npm is not installed"; exit 77; }
  (cd "$here" && npm install --no-save --omit=optional --ignore-scripts --no-audit --no-fund --loglevel=error)
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$bin" convert "$model" --tokenizer "$tok" --to hf --out "$work/hf" >/dev/null
head -c 60000 "$text" > "$work/text.txt"
node "$here/hf_tokenize.mjs" "$work/hf/tokenizer.json" "$work/text.txt" > "$work/hf.jsonl"
python3 - "$tok" "$work/text.txt" "$work/hf.jsonl" <<'PY'
import json, struct, sys
b = open(sys.argv[1], "rb").read()
off, pieces, scores = 4, [], []
while off < len(b):
    s, n = struct.unpack_from("<fi", b, off)
    off += 8
    pieces.append(b[off:off + n].decode("utf8"))
    scores.append(s)
    off += n
index = {p: i for i, p in enumerate(pieces)}
def encode(text):
    ids = [index[" "]]
    for ch in text:
        if ch in index:
            ids.append(index[ch])
        else:
            ids += [index["<0x%02X>" % c] for c in ch.encode("utf8")]
    while True:
        best, at = None, -1
        for i in range(len(ids) - 1):
            m = index.get(pieces[ids[i]] + pieces[ids[i + 1]])
            if m is not None and (best is None or scores[m] > scores[best]):
                best, at = m, i
        if best is None:
            return ids
        ids[at:at + 2] = [best]
lines = [l for l in open(sys.argv[2], encoding="utf8").read().split("\n") if l]
hf = [json.loads(l) for l in open(sys.argv[3])]
assert len(lines) == len(hf), (len(lines), len(hf))
bad = 0
for line, got in zip(lines, hf):
    want = [1] + encode(line)
    if got != want:
        bad += 1
        if bad <= 3:
            print("differs:", repr(line[:80]), "\n  tokenizers:", got[:24], "\n  llama2.c:  ", want[:24])
tokens = sum(len(h) for h in hf)
print(f"{len(lines) - bad}/{len(lines)} lines ({tokens} tokens) encode identically")
sys.exit(1 if bad else 0)
PY
