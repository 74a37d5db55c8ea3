// Token ids of each line of a text file by Hugging Face tokenizers (the Rust
// library's Node binding) reading a tokenizer.json: one JSON array per line.
// Usage: node hf_tokenize.mjs tokenizer.json TEXT_FILE
import {readFileSync} from "node:fs";
import {Tokenizer} from "tokenizers";

const tok = Tokenizer.fromFile(process.argv[2]);
for (const line of readFileSync(process.argv[3], "utf8").split("\n")) {
  if (!line) continue;
  const enc = await tok.encode(line);
  console.log(JSON.stringify(enc.getIds()));
}
