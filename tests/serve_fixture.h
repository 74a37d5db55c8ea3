// Shared by the serving tests: a byte-level tokenizer (ids 3..258 are the
// bytes 0..255, 1 BOS, 2 EOS), a random model over it, and sinks that collect
// what the scheduler streams.
#pragma once
#include <condition_variable>
#include <mutex>
#include <string>
#include <vector>

#include "model/shapes.h"
#include "model/tokenizer.h"
#include "runtime/engine.h"
#include "runtime/generate.h"
#include "serve/http_server.h"
#include "serve/scheduler.h"
#include <gtest/gtest.h>
#include <httplib.h>

#include <thread>
#include "tests/tiny_model.h"

namespace testutil {

class ByteTokenizer : public condense::Tokenizer {
 public:
  std::vector<int> encode(const std::string& text) const override {
    std::vector<int> ids;
    for (unsigned char c : text) ids.push_back(int(c) + 3);
    return ids;
  }
  std::string decode_token(int, int token) const override { return token >= 3 && token < 259 ? std::string(1, char(token - 3)) : ""; }
  int vocab_size() const override { return 259; }
  std::string kind() const override { return "bytes"; }
};

inline condense::Model byte_model(uint64_t seed = 11, int max_seq = 128) {
  return condense::random_model(tiny_config({.dim = 48, .layers = 2, .heads = 4, .kv = 2, .hd = 12, .ffn = 96, .vocab = 259, .max_seq = max_seq}), seed);
}

// Records one request's stream; wait() blocks until it finishes.
class CollectSink : public condense::RequestSink {
 public:
  explicit CollectSink(int cancel_after = -1) : cancel_after_(cancel_after) {}
  void on_token(const condense::TokenOut& t, const std::string& text) override {
    std::lock_guard<std::mutex> lk(mu_);
    tokens.push_back(t.token);
    logprobs.push_back(t);
    this->text += text;
  }
  void on_finish(const std::string& rest, condense::FinishReason why, int p, int c, const std::string& err) override {
    std::lock_guard<std::mutex> lk(mu_);
    text += rest;
    reason = why;
    prompt_tokens = p;
    completion_tokens = c;
    error = err;
    done = true;
    cv_.notify_all();
  }
  bool cancelled() const override {
    std::lock_guard<std::mutex> lk(mu_);
    return cancel_after_ >= 0 && int(tokens.size()) >= cancel_after_;
  }
  void wait() {
    std::unique_lock<std::mutex> lk(mu_);
    cv_.wait(lk, [&] { return done; });
  }
  std::vector<int> tokens;
  std::vector<condense::TokenOut> logprobs;
  std::string text, error;
  condense::FinishReason reason = condense::FinishReason::Error;
  int prompt_tokens = 0, completion_tokens = 0;
  bool done = false;

 private:
  int cancel_after_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
};

// What `condense generate` produces: the prompt in one forward, then one token at a time.
inline std::vector<int> reference_tokens(const condense::Model& m, const std::vector<int>& prompt, int steps, float temperature, float top_p,
                                         uint64_t seed, int top_k, bool ignore_eos) {
  condense::Engine e(m, condense::EngineOptions{m.config.max_seq, 0, ""});
  condense::Sampler s(temperature, top_p, seed, top_k);
  std::vector<int> out;
  condense::generate(e, prompt, steps, s, {}, &out, !ignore_eos);
  return out;
}

// An HttpServer on a free loopback port, listening on its own thread until destroyed.
struct LoopbackServer {
  LoopbackServer(condense::Scheduler& sched, const condense::ServedModel& m, condense::HttpOptions ho = {}, const condense::SchedulerOptions& so = {}) {
    ho.port = 0;
    http = std::make_unique<condense::HttpServer>(sched, m, ho, so);
    port = http->bind();
    th = std::thread([this] { http->listen(); });
  }
  ~LoopbackServer() {
    http->shutdown(5);
    th.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port); }
  std::unique_ptr<condense::HttpServer> http;
  std::thread th;
  int port = 0;
};

// The data payloads of an SSE body, in order (every other event must be a comment).
inline std::vector<std::string> sse_data(const std::string& body) {
  std::vector<std::string> out;
  size_t p = 0;
  while (p < body.size()) {
    size_t e = body.find("\n\n", p);
    if (e == std::string::npos) e = body.size();
    const std::string ev = body.substr(p, e - p);
    if (ev.rfind("data: ", 0) == 0) out.push_back(ev.substr(6));
    else EXPECT_TRUE(ev.empty() || ev[0] == ':') << "not an SSE event: " << ev;
    p = e + 2;
  }
  return out;
}

// A completion's text, from a streamed (SSE) or whole JSON response body.
inline std::string completion_text(const std::string& body, bool streamed) {
  if (!streamed) return nlohmann::json::parse(body)["choices"][0]["text"];
  std::string text;
  for (const std::string& d : sse_data(body)) {
    if (d != "[DONE]") text += nlohmann::json::parse(d)["choices"][0]["text"].get<std::string>();
  }
  return text;
}

// POSTs every body to /v1/completions at once, a client each; the texts
// (empty where a request failed, which is printed).
inline std::vector<std::string> post_concurrently(int port, const std::vector<nlohmann::json>& bodies) {
  std::vector<std::string> got(bodies.size());
  std::vector<std::thread> ts;
  for (size_t i = 0; i < bodies.size(); ++i) {
    ts.emplace_back([&, i] {
      httplib::Client cl("127.0.0.1", port);
      cl.set_read_timeout(120, 0);
      auto r = cl.Post("/v1/completions", bodies[i].dump(), "application/json");
      if (!r || r->status != 200) {
        std::printf("request %zu: %s\n", i, r ? (std::to_string(r->status) + " " + r->body).c_str() : httplib::to_string(r.error()).c_str());
        return;
      }
      got[i] = completion_text(r->body, bodies[i].value("stream", false));
    });
  }
  for (auto& t : ts) t.join();
  return got;
}

}  // namespace testutil
