// Greedy continuations of a GGUF file by llama.cpp (node-llama-cpp's prebuilt
// CPU build; no GPU, no source build). Each prompt is fed as [BOS] + its
// tokens (llama.cpp's own tokenizer, from the file), as condense generate
// feeds it; prints one JSON line per prompt with the generated token ids and
// their text. Usage: node llama_cpp_generate.mjs MODEL.gguf TOKENS PROMPT...
import {getLlama} from "node-llama-cpp";

const [modelPath, maxTokens, ...prompts] = process.argv.slice(2);
const llama = await getLlama({gpu: false, build: "never", logLevel: "error"});
const model = await llama.loadModel({modelPath});
for (const prompt of prompts) {
  const context = await model.createContext({contextSize: 256, threads: 1});
  const sequence = context.getSequence();
  const input = [model.tokens.bos, ...model.tokenize(prompt)];
  const out = [];
  for await (const token of sequence.evaluate(input, {temperature: 0})) {
    if (token === model.tokens.eos || out.length >= Number(maxTokens)) break;
    out.push(token);
  }
  console.log(JSON.stringify({prompt, prompt_tokens: input, tokens: out, text: model.detokenize(out)}));
  await context.dispose();
}
await model.dispose();
