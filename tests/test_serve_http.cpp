// The HTTP server on loopback with a random byte-level model: OpenAI's
// response and stream shapes, greedy output equal to `generate`, every error
// in OpenAI's shape with the right status (and the server still serving after
// each), API keys, a full queue, a client that disconnects, a slow client.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <set>
#include <thread>

#include "serve/http_server.h"
#include "serve/text_stream.h"
#include "tests/serve_fixture.h"

using namespace condense;
using nlohmann::json;

namespace {

struct TestServer {
  explicit TestServer(SchedulerOptions so = {}, HttpOptions ho = {}, Model model = testutil::byte_model(), int64_t kv_blocks = 256)
      : m(std::move(model)),
        engine(m, EngineOptions{m.config.max_seq, kv_blocks, ""}),
        sched(engine, tok, so),
        sm(served_model("tiny", "memory", m.config, tok, tmpl)),
        server(sched, sm, ho, so),
        port(server.port) {}
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(30, 0);
    return c;
  }
  httplib::Result post(const std::string& path, const json& body, const httplib::Headers& h = {}) const {
    return client().Post(path.c_str(), h, body.dump(), "application/json");
  }
  bool still_serves() const {
    auto r = post("/v1/completions", {{"prompt", "ok"}, {"max_tokens", 2}, {"ignore_eos", true}});
    return r && r->status == 200 && json::parse(r->body)["usage"]["completion_tokens"] == 2;
  }
  Model m;
  testutil::ByteTokenizer tok;
  ChatTemplate tmpl;
  Engine engine;
  Scheduler sched;
  ServedModel sm;
  testutil::LoopbackServer server;
  int port;
};

std::string expected_text(const TestServer& s, const std::string& prompt, int n) {
  std::vector<int> p = {1};
  for (int t : s.tok.encode(prompt)) p.push_back(t);
  const auto toks = testutil::reference_tokens(s.m, p, n, 0, 1, 1, 0, true);
  std::string raw;
  for (int t : toks) raw += s.tok.decode_token(0, t);
  return sanitize_utf8(raw);
}

// A raw connection, for clients that misbehave.
int connect_raw(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(uint16_t(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  return fd;
}

std::string http_request(const std::string& path, const std::string& body) {
  return "POST " + path + " HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}

double metric(const TestServer& s, const std::string& line_prefix) {
  auto r = s.client().Get("/metrics");
  EXPECT_TRUE(r && r->status == 200);
  const size_t p = r->body.find("\n" + line_prefix + " ");
  if (p == std::string::npos) return -1;
  return std::stod(r->body.substr(p + line_prefix.size() + 2));
}

}  // namespace

TEST(ServeHttp, ModelsHealthMetrics) {
  TestServer s;
  auto r = s.client().Get("/v1/models");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  const json j = json::parse(r->body);
  EXPECT_EQ(j["object"], "list");
  EXPECT_EQ(j["data"][0]["id"], "tiny");
  EXPECT_EQ(j["data"][0]["object"], "model");
  EXPECT_EQ(j["data"][0]["root"], "memory");
  EXPECT_TRUE(j["data"][0]["created"].is_number_integer());
  r = s.client().Get("/health");
  EXPECT_EQ(r->status, 200);
  r = s.client().Get("/metrics");
  EXPECT_EQ(r->status, 200);
  for (const char* name : {"condense:num_requests_running", "condense:num_requests_waiting", "condense:kv_blocks_used", "condense:kv_blocks_free",
                           "condense:num_preemptions_total", "condense:prompt_tokens_total", "condense:generation_tokens_total",
                           "condense:time_to_first_token_seconds_bucket", "condense:time_per_output_token_seconds_bucket"}) {
    EXPECT_NE(r->body.find(name), std::string::npos) << name;
  }
}

TEST(ServeHttp, CompletionGreedyEqualsGenerateStreamedOrNot) {
  TestServer s;
  const std::string want = expected_text(s, "hello", 24);
  auto r = s.post("/v1/completions", {{"model", "tiny"}, {"prompt", "hello"}, {"max_tokens", 24}, {"temperature", 0}});
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  const json j = json::parse(r->body);
  EXPECT_EQ(j["object"], "text_completion");
  EXPECT_EQ(j["choices"][0]["text"], want);
  EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(j["usage"]["prompt_tokens"], 6);
  EXPECT_EQ(j["usage"]["completion_tokens"], 24);
  EXPECT_EQ(j["usage"]["total_tokens"], 30);

  r = s.post("/v1/completions", {{"prompt", "hello"}, {"max_tokens", 24}, {"temperature", 0}, {"stream", true}});
  ASSERT_EQ(r->status, 200);
  EXPECT_EQ(r->get_header_value("Content-Type").rfind("text/event-stream", 0), 0u);
  const auto ev = testutil::sse_data(r->body);
  ASSERT_GE(ev.size(), 2u);
  EXPECT_EQ(ev.back(), "[DONE]");
  std::string text;
  std::string id;
  for (size_t i = 0; i + 1 < ev.size(); ++i) {
    const json c = json::parse(ev[i]);
    EXPECT_EQ(c["object"], "text_completion");
    if (id.empty()) id = c["id"];
    EXPECT_EQ(c["id"], id);
    EXPECT_FALSE(c.contains("usage")) << "no usage unless stream_options.include_usage";
    text += c["choices"][0]["text"].get<std::string>();
    EXPECT_EQ(c["choices"][0]["finish_reason"].is_null(), i + 2 < ev.size());
  }
  EXPECT_EQ(text, want);
}

TEST(ServeHttp, ChatStreamShapeAndUsage) {
  TestServer s;
  auto r = s.post("/v1/chat/completions", {{"messages", {{{"role", "system"}, {"content", "be brief"}}, {{"role", "user"}, {"content", "hi"}}}},
                                           {"max_tokens", 6}, {"temperature", 0}, {"stream", true}, {"stream_options", {{"include_usage", true}}}});
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200);
  const auto ev = testutil::sse_data(r->body);
  ASSERT_GE(ev.size(), 4u);
  EXPECT_EQ(ev.back(), "[DONE]");
  const json first = json::parse(ev[0]);
  EXPECT_EQ(first["object"], "chat.completion.chunk");
  EXPECT_EQ(first["choices"][0]["delta"]["role"], "assistant");
  EXPECT_TRUE(first.contains("usage") && first["usage"].is_null());
  const json usage = json::parse(ev[ev.size() - 2]);
  EXPECT_TRUE(usage["choices"].empty());
  const int prompt_len = 1 + int(ChatTemplate().apply({{"system", "be brief"}, {"user", "hi"}}).size());
  EXPECT_EQ(usage["usage"]["prompt_tokens"], prompt_len);
  EXPECT_EQ(usage["usage"]["completion_tokens"], 6);
  const json last = json::parse(ev[ev.size() - 3]);
  EXPECT_EQ(last["choices"][0]["finish_reason"], "length");
  // Non-streaming: the same text in one message.
  r = s.post("/v1/chat/completions", {{"messages", {{{"role", "system"}, {"content", "be brief"}}, {{"role", "user"}, {"content", "hi"}}}},
                                      {"max_tokens", 6}, {"temperature", 0}});
  const json j = json::parse(r->body);
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["choices"][0]["message"]["role"], "assistant");
  std::string streamed;
  for (size_t i = 0; i + 2 < ev.size(); ++i) {
    const json c = json::parse(ev[i]);
    if (c["choices"][0]["delta"].contains("content")) streamed += c["choices"][0]["delta"]["content"].get<std::string>();
  }
  EXPECT_EQ(j["choices"][0]["message"]["content"], streamed);
}

TEST(ServeHttp, StopStringsEndTheText) {
  TestServer s;
  const std::string full = expected_text(s, "abc", 30);
  // A stop string taken from the middle of what the model writes.
  const std::string stop = full.substr(10, 3);
  const size_t cut = full.find(stop);
  auto r = s.post("/v1/completions", {{"prompt", "abc"}, {"max_tokens", 30}, {"temperature", 0}, {"stop", {stop}}});
  const json j = json::parse(r->body);
  EXPECT_EQ(j["choices"][0]["text"], full.substr(0, cut));
  EXPECT_EQ(j["choices"][0]["finish_reason"], "stop");
}

TEST(ServeHttp, EchoWithPromptLogprobs) {
  // lm-eval-harness's scoring request: token ids, echo, logprobs, max_tokens 0 or 1.
  TestServer s;
  const std::vector<int> ids = {1, 3 + 'a', 3 + 'b', 3 + 'c', 3 + 'd'};
  auto r = s.post("/v1/completions", {{"prompt", ids}, {"echo", true}, {"logprobs", 1}, {"max_tokens", 0}, {"temperature", 0}});
  ASSERT_EQ(r->status, 200) << r->body;
  json j = json::parse(r->body);
  EXPECT_EQ(j["choices"][0]["text"], "abcd");
  const json& lp = j["choices"][0]["logprobs"];
  ASSERT_EQ(lp["token_logprobs"].size(), ids.size());
  EXPECT_TRUE(lp["token_logprobs"][0].is_null());
  for (size_t i = 1; i < ids.size(); ++i) EXPECT_LT(lp["token_logprobs"][i].get<double>(), 0.0);
  EXPECT_EQ(lp["tokens"][1], "a");
  EXPECT_EQ(lp["text_offset"][2], 1);
  EXPECT_EQ(j["usage"]["completion_tokens"], 0);
  // One generated token after the echo: its entry follows the prompt's.
  r = s.post("/v1/completions", {{"prompt", ids}, {"echo", true}, {"logprobs", 1}, {"max_tokens", 1}, {"temperature", 0}, {"ignore_eos", true}});
  j = json::parse(r->body);
  EXPECT_EQ(j["choices"][0]["logprobs"]["token_logprobs"].size(), ids.size() + 1);
  EXPECT_EQ(j["choices"][0]["text"].get<std::string>().rfind("abcd", 0), 0u);
  EXPECT_EQ(j["choices"][0]["logprobs"]["text_offset"][ids.size()], 4);
  // Streamed: the prompt first, then the tokens.
  r = s.post("/v1/completions", {{"prompt", "xy"}, {"echo", true}, {"max_tokens", 2}, {"stream", true}, {"ignore_eos", true}});
  const auto ev = testutil::sse_data(r->body);
  EXPECT_EQ(json::parse(ev[0])["choices"][0]["text"], "xy");
  // max_tokens 0 needs echo; chat has no echo.
  EXPECT_EQ(s.post("/v1/completions", {{"prompt", "x"}, {"max_tokens", 0}})->status, 400);
  EXPECT_EQ(s.post("/v1/chat/completions", {{"messages", {{{"role", "user"}, {"content", "x"}}}}, {"echo", true}})->status, 400);
}

TEST(ServeHttp, SeveralPromptsAreSeveralChoices) {
  TestServer s;
  const std::vector<std::string> prompts = {"ab", "hello there", "x"};
  auto r = s.post("/v1/completions", {{"prompt", prompts}, {"max_tokens", 7}, {"temperature", 0}, {"ignore_eos", true}});
  ASSERT_EQ(r->status, 200) << r->body;
  const json j = json::parse(r->body);
  ASSERT_EQ(j["choices"].size(), 3u);
  int prompt_tokens = 0;
  for (size_t i = 0; i < prompts.size(); ++i) {
    EXPECT_EQ(j["choices"][i]["index"], int(i));
    EXPECT_EQ(j["choices"][i]["text"], expected_text(s, prompts[i], 7)) << "choice " << i;
    prompt_tokens += 1 + int(prompts[i].size());
  }
  EXPECT_EQ(j["usage"]["prompt_tokens"], prompt_tokens);
  EXPECT_EQ(j["usage"]["completion_tokens"], 21);
  // Streamed: chunks of all choices interleave, each carrying its index; usage once, after all.
  r = s.post("/v1/completions", {{"prompt", prompts}, {"max_tokens", 7}, {"temperature", 0}, {"ignore_eos", true}, {"stream", true},
                                 {"stream_options", {{"include_usage", true}}}});
  const auto ev = testutil::sse_data(r->body);
  ASSERT_GE(ev.size(), 3u);
  EXPECT_EQ(ev.back(), "[DONE]");
  std::vector<std::string> text(3);
  int finished = 0;
  for (size_t k = 0; k + 2 < ev.size(); ++k) {
    const json c = json::parse(ev[k]);
    ASSERT_EQ(c["choices"].size(), 1u);
    const int i = c["choices"][0]["index"];
    text[size_t(i)] += c["choices"][0]["text"].get<std::string>();
    finished += c["choices"][0]["finish_reason"].is_null() ? 0 : 1;
  }
  EXPECT_EQ(finished, 3);
  for (size_t i = 0; i < prompts.size(); ++i) EXPECT_EQ(text[i], expected_text(s, prompts[i], 7));
  const json usage = json::parse(ev[ev.size() - 2]);
  EXPECT_EQ(usage["usage"]["completion_tokens"], 21);
  // Token-id prompts (as lm-evaluation-harness sends them), echoed with their logprobs.
  r = s.post("/v1/completions", {{"prompt", {{1, 3 + 'a', 3 + 'b'}, {1, 3 + 'c'}}}, {"echo", true}, {"logprobs", 0}, {"max_tokens", 0}});
  const json e = json::parse(r->body);
  ASSERT_EQ(e["choices"].size(), 2u);
  EXPECT_EQ(e["choices"][0]["text"], "ab");
  EXPECT_EQ(e["choices"][1]["text"], "c");
  EXPECT_EQ(e["choices"][1]["logprobs"]["token_logprobs"].size(), 2u);
}

TEST(ServeHttp, NSamplesPerPrompt) {
  TestServer s;
  const json body = {{"prompt", {"ab", "cd"}}, {"n", 3}, {"max_tokens", 12}, {"temperature", 1.0}, {"seed", 5}, {"ignore_eos", true}};
  auto r = s.post("/v1/completions", body);
  ASSERT_EQ(r->status, 200) << r->body;
  const json j = json::parse(r->body);
  ASSERT_EQ(j["choices"].size(), 6u);
  std::set<std::string> distinct;
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(j["choices"][i]["index"], i);
    distinct.insert(j["choices"][i]["text"].get<std::string>());
  }
  EXPECT_GE(distinct.size(), 5u) << "different samples per choice";
  EXPECT_EQ(j["usage"]["completion_tokens"], 72);
  EXPECT_EQ(json::parse(s.post("/v1/completions", body)->body)["choices"], j["choices"]) << "the same seed, the same choices";
  // Greedy: n copies of the one answer.
  const json g = json::parse(s.post("/v1/chat/completions", {{"messages", {{{"role", "user"}, {"content", "hi"}}}}, {"n", 2}, {"max_tokens", 5}, {"temperature", 0}})->body);
  ASSERT_EQ(g["choices"].size(), 2u);
  EXPECT_EQ(g["choices"][0]["message"]["content"], g["choices"][1]["message"]["content"]);
  EXPECT_EQ(g["choices"][1]["index"], 1);
}

TEST(ServeHttp, SeedGivesTheSameSample) {
  TestServer s;
  const json body = {{"prompt", "x"}, {"max_tokens", 20}, {"temperature", 1.0}, {"top_p", 0.95}, {"top_k", 50}, {"seed", 1234}};
  const std::string a = json::parse(s.post("/v1/completions", body)->body)["choices"][0]["text"];
  const std::string b = json::parse(s.post("/v1/completions", body)->body)["choices"][0]["text"];
  EXPECT_EQ(a, b);
  json other = body;
  other["seed"] = 99;
  EXPECT_NE(json::parse(s.post("/v1/completions", other)->body)["choices"][0]["text"], a);
}

TEST(ServeHttp, ErrorsInOpenAIShapeAndTheServerGoesOn) {
  TestServer s;
  struct Bad {
    std::string path, body;
    int status;
    std::string param;
  };
  const std::vector<Bad> bad = {
      {"/v1/completions", "{\"prompt\": \"x\"", 400, ""},
      {"/v1/completions", "[1, 2]", 400, ""},
      {"/v1/completions", R"({"prompt": "x", "max_tokens": "5"})", 400, "max_tokens"},
      {"/v1/completions", R"({"prompt": "x", "max_tokens": -1})", 400, "max_tokens"},
      {"/v1/completions", R"({"prompt": "x", "max_tokens": 0})", 400, "max_tokens"},
      {"/v1/completions", R"({"prompt": "x", "echo": "yes"})", 400, "echo"},
      {"/v1/completions", R"({"prompt": "x", "max_tokens": 1e30})", 400, "max_tokens"},
      {"/v1/completions", R"({"prompt": "x", "max_tokens": 99999999999999999999})", 400, "max_tokens"},
      {"/v1/completions", R"({"prompt": "x", "max_tokens": 5000})", 400, "max_tokens"},
      {"/v1/completions", R"({"prompt": "x", "temperature": "hot"})", 400, "temperature"},
      {"/v1/completions", R"({"prompt": "x", "temperature": -1})", 400, "temperature"},
      {"/v1/completions", R"({"prompt": "x", "top_p": 0})", 400, "top_p"},
      {"/v1/completions", R"({"prompt": "x", "stream": "yes"})", 400, "stream"},
      {"/v1/completions", R"({"prompt": "x", "stop": 3})", 400, "stop"},
      {"/v1/completions", R"({"prompt": "x", "seed": 1.5})", 400, "seed"},
      {"/v1/completions", R"({"prompt": "x", "logprobs": 21})", 400, "logprobs"},
      {"/v1/completions", R"({"prompt": "x", "n": 0})", 400, "n"},
      {"/v1/completions", R"({"prompt": "x", "n": 65})", 400, "n"},
      {"/v1/completions", R"({"prompt": "x", "stream_options": {"include_usage": true}})", 400, "stream_options"},
      {"/v1/completions", R"({"prompt": 5})", 400, "prompt"},
      {"/v1/completions", R"({"prompt": []})", 400, "prompt"},
      {"/v1/completions", R"({"prompt": [1, 99999]})", 400, "prompt"},
      {"/v1/completions", R"({"prompt": [1, -3]})", 400, "prompt"},
      {"/v1/completions", R"({"prompt": ["a", 5]})", 400, "prompt[1]"},
      {"/v1/completions", R"({"prompt": [[1, 4], []]})", 400, "prompt"},
      {"/v1/completions", R"({"max_tokens": 3})", 400, "prompt"},
      {"/v1/completions", "{\"prompt\": \"\xff\xfe\"}", 400, ""},
      {"/v1/completions", R"({"prompt": "\ud800"})", 400, ""},  // a lone surrogate: not valid JSON
      {"/v1/completions", R"({"prompt": "x", "model": "other"})", 404, "model"},
      {"/v1/completions", R"({"prompt": "x", "model": 7})", 400, "model"},
      {"/v1/completions", "{\"prompt\": \"" + std::string(200, 'a') + "\"}", 400, "prompt"},
      {"/v1/chat/completions", R"({"messages": "hi"})", 400, "messages"},
      {"/v1/chat/completions", R"({"messages": []})", 400, "messages"},
      {"/v1/chat/completions", R"({"messages": [{"role": "wizard", "content": "x"}]})", 400, "messages[0].role"},
      {"/v1/chat/completions", R"({"messages": [{"content": "x"}]})", 400, "messages[0].role"},
      {"/v1/chat/completions", R"({"messages": [{"role": "user", "content": 5}]})", 400, "messages[0].content"},
      {"/v1/chat/completions", R"({"messages": [{"role": "user", "content": "x"}], "top_logprobs": 3})", 400, "top_logprobs"},
      {"/v1/nothing", "{}", 404, ""},
  };
  for (const Bad& b : bad) {
    auto r = s.client().Post(b.path.c_str(), b.body, "application/json");
    ASSERT_TRUE(r) << b.body;
    EXPECT_EQ(r->status, b.status) << b.body << " -> " << r->body;
    const json j = json::parse(r->body, nullptr, false);
    ASSERT_TRUE(j.is_object() && j.contains("error")) << r->body;
    EXPECT_TRUE(j["error"]["message"].is_string());
    EXPECT_TRUE(j["error"]["type"].is_string());
    EXPECT_TRUE(j["error"].contains("param") && j["error"].contains("code"));
    if (!b.param.empty()) {
      EXPECT_EQ(j["error"]["param"], b.param) << b.body;
    }
    EXPECT_TRUE(s.still_serves()) << "after " << b.body;
  }
  // GET on a POST route, and a 10 MB body.
  auto r = s.client().Get("/v1/completions");
  EXPECT_EQ(r->status, 404);
  const std::string big = "{\"prompt\": \"" + std::string(10 << 20, 'a') + "\"}";
  r = s.client().Post("/v1/completions", big, "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 413);
  EXPECT_TRUE(json::parse(r->body).contains("error"));
  EXPECT_TRUE(s.still_serves());
}

TEST(ServeHttp, ApiKey) {
  HttpOptions ho;
  ho.api_key = "sekret";
  TestServer s({}, ho);
  auto r = s.client().Get("/v1/models");
  EXPECT_EQ(r->status, 401);
  EXPECT_EQ(json::parse(r->body)["error"]["code"], "invalid_api_key");
  r = s.client().Get("/v1/models", {{"Authorization", "Bearer wrong"}});
  EXPECT_EQ(r->status, 401);
  r = s.post("/v1/completions", {{"prompt", "x"}}, {{"Authorization", "Bearer wrong"}});
  EXPECT_EQ(r->status, 401);
  r = s.post("/v1/completions", {{"prompt", "x"}, {"max_tokens", 2}}, {{"Authorization", "Bearer sekret"}});
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(s.client().Get("/health")->status, 200) << "health needs no key";
}

TEST(ServeHttp, CorsForBrowserClients) {
  TestServer s;
  auto r = s.client().Options("/v1/chat/completions");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 204);
  EXPECT_EQ(r->get_header_value("Access-Control-Allow-Origin"), "*");
  EXPECT_NE(r->get_header_value("Access-Control-Allow-Headers").find("Authorization"), std::string::npos);
  r = s.post("/v1/completions", {{"prompt", "x"}, {"max_tokens", 1}});
  EXPECT_EQ(r->get_header_value("Access-Control-Allow-Origin"), "*");
  r = s.post("/v1/completions", {{"prompt", 3}});
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ(r->get_header_value("Access-Control-Allow-Origin"), "*") << "errors too, so a page can read them";
}

TEST(ServeHttp, FullQueueAnswers503WithRetryAfter) {
  TestServer s(SchedulerOptions{.max_queue = 0});
  auto r = s.post("/v1/completions", {{"prompt", "x"}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 503);
  EXPECT_FALSE(r->get_header_value("Retry-After").empty());
  EXPECT_EQ(json::parse(r->body)["error"]["code"], "server_overloaded");
}

TEST(ServeHttp, ClientThatDisconnectsCancelsItsSequence) {
  // A bigger, slower model so the request is still running when the client leaves.
  Model big = random_model(testutil::tiny_config({.dim = 256, .layers = 4, .heads = 8, .kv = 4, .hd = 32, .ffn = 512, .vocab = 259, .max_seq = 4096}), 3);
  TestServer s({}, {}, std::move(big), 256);
  for (bool stream : {true, false}) {
    const int fd = connect_raw(s.port);
    const std::string req = http_request("/v1/completions", json{{"prompt", "go"}, {"max_tokens", 4000}, {"ignore_eos", true}, {"stream", stream}}.dump());
    ASSERT_EQ(::write(fd, req.data(), req.size()), ssize_t(req.size()));
    char buf[512];
    ASSERT_GT(::read(fd, buf, sizeof buf), 0);  // the response has begun (the status line at least)
    ::close(fd);
    const auto t0 = std::chrono::steady_clock::now();
    double cancelled = 0;
    while (std::chrono::steady_clock::now() - t0 < std::chrono::seconds(20)) {
      cancelled = metric(s, "condense:request_success_total{finished_reason=\"cancelled\"}");
      if (cancelled >= (stream ? 1 : 2)) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    EXPECT_EQ(cancelled, stream ? 1 : 2) << (stream ? "streaming" : "non-streaming");
    EXPECT_LT(metric(s, "condense:generation_tokens_total"), 4000 * (stream ? 1 : 2)) << "stopped early";
  }
  EXPECT_TRUE(s.sched.wait_idle(5));
  EXPECT_EQ(metric(s, "condense:kv_blocks_used"), 0);
  EXPECT_TRUE(s.still_serves());
}

TEST(ServeHttp, SlowClientDoesNotHoldUpOthers) {
  TestServer s;
  const int fd = connect_raw(s.port);
  const std::string req = http_request("/v1/completions", R"({"prompt": "slow", "max_tokens": 3})");
  std::thread slow([&] {
    for (char c : req) {
      if (::write(fd, &c, 1) != 1) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(15));
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_TRUE(s.still_serves());
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 1.0);
  slow.join();
  char buf[4096];
  const ssize_t n = ::read(fd, buf, sizeof buf);
  ASSERT_GT(n, 0);
  EXPECT_EQ(std::string(buf, size_t(n)).rfind("HTTP/1.1 200", 0), 0u);
  ::close(fd);
}
