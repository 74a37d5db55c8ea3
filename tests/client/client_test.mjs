// condense serve through the official OpenAI Node SDK (openai@6): models,
// completions and chat, streamed and not, usage, logprobs, and errors raised
// as the SDK's APIError subclasses with the right status. Retries are off so
// a server error is not hidden by a retry. Usage: node client_test.mjs BASE_URL MODEL_ID KEY
import assert from "node:assert/strict";
import OpenAI from "openai";

const [baseURL, modelId, apiKey] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 60_000 });
let checks = 0;
const check = async (name, fn) => {
  await fn();
  checks += 1;
  console.log(`ok ${checks} - ${name}`);
};

await check("models.list", async () => {
  const models = await client.models.list();
  assert.equal(models.data.length, 1);
  assert.equal(models.data[0].id, modelId);
  assert.equal(models.data[0].object, "model");
});

let greedy;
await check("completions.create", async () => {
  const r = await client.completions.create({ model: modelId, prompt: "Once upon a time", max_tokens: 24, temperature: 0 });
  assert.equal(r.object, "text_completion");
  assert.equal(typeof r.choices[0].text, "string");
  assert.ok(["stop", "length"].includes(r.choices[0].finish_reason));
  assert.ok(r.usage.completion_tokens > 0 && r.usage.completion_tokens <= 24);
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
  greedy = r.choices[0].text;
});

await check("completions.create stream (same greedy text, usage at the end)", async () => {
  const stream = await client.completions.create({
    model: modelId, prompt: "Once upon a time", max_tokens: 24, temperature: 0, stream: true, stream_options: { include_usage: true },
  });
  let text = "";
  let usage = null;
  let finish = null;
  for await (const chunk of stream) {
    if (chunk.choices.length) {
      text += chunk.choices[0].text;
      finish = chunk.choices[0].finish_reason ?? finish;
    }
    if (chunk.usage) usage = chunk.usage;
  }
  assert.equal(text, greedy);
  assert.ok(["stop", "length"].includes(finish));
  assert.ok(usage && usage.completion_tokens > 0);
});

await check("chat.completions.create", async () => {
  const r = await client.chat.completions.create({
    model: modelId, messages: [{ role: "system", content: "Tell a story." }, { role: "user", content: "A cat" }], max_tokens: 16, temperature: 0,
    logprobs: true, top_logprobs: 2,
  });
  assert.equal(r.object, "chat.completion");
  assert.equal(r.choices[0].message.role, "assistant");
  assert.equal(typeof r.choices[0].message.content, "string");
  assert.equal(r.choices[0].logprobs.content.length, r.usage.completion_tokens);
  for (const t of r.choices[0].logprobs.content) {
    assert.ok(t.logprob <= 0);
    assert.equal(t.top_logprobs.length, 2);
  }
});

await check("chat.completions.create stream", async () => {
  const stream = await client.chat.completions.create({
    model: modelId, messages: [{ role: "user", content: "A dog" }], max_tokens: 16, temperature: 0, stream: true,
    stream_options: { include_usage: true },
  });
  let content = "";
  let role = null;
  let usage = null;
  let id = null;
  for await (const chunk of stream) {
    id ??= chunk.id;
    assert.equal(chunk.id, id);
    if (chunk.choices.length) {
      role ??= chunk.choices[0].delta.role;
      content += chunk.choices[0].delta.content ?? "";
    }
    if (chunk.usage) usage = chunk.usage;
  }
  assert.equal(role, "assistant");
  assert.ok(usage.completion_tokens > 0);
  const again = await client.chat.completions.create({ model: modelId, messages: [{ role: "user", content: "A dog" }], max_tokens: 16, temperature: 0 });
  assert.equal(again.choices[0].message.content, content);
});

const expectError = async (name, promise, cls, status, param) => {
  await check(name, async () => {
    await assert.rejects(promise, (e) => {
      assert.ok(e instanceof OpenAI.APIError, `not an APIError: ${e}`);
      assert.ok(e instanceof cls, `${e.constructor.name} is not ${cls.name}`);
      assert.equal(e.status, status);
      if (param !== undefined) assert.equal(e.param, param);
      assert.equal(typeof e.message, "string");
      return true;
    });
  });
};
await expectError("unknown model -> NotFoundError 404",
  client.completions.create({ model: "no-such-model", prompt: "x", max_tokens: 2 }), OpenAI.NotFoundError, 404, "model");
await expectError("negative max_tokens -> BadRequestError 400 naming the field",
  client.completions.create({ model: modelId, prompt: "x", max_tokens: -1 }), OpenAI.BadRequestError, 400, "max_tokens");
await expectError("wrong type -> BadRequestError 400",
  client.chat.completions.create({ model: modelId, messages: "hello" }), OpenAI.BadRequestError, 400, "messages");
const wrongKey = new OpenAI({ baseURL, apiKey: "wrong", maxRetries: 0 });
await expectError("wrong API key -> AuthenticationError 401",
  wrongKey.models.list(), OpenAI.AuthenticationError, 401);

await check("the server still serves", async () => {
  const r = await client.completions.create({ model: modelId, prompt: "The end", max_tokens: 4, temperature: 0 });
  assert.ok(r.usage.completion_tokens > 0);
});
console.log(`all ${checks} checks passed`);
