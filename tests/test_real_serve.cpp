// `condense serve` on the real stories260K: greedy output through the server,
// alone and among 32 concurrent requests of different prompt lengths, equals
// `condense generate`; 500 concurrent streams against a queue of 256 each
// complete or get 503 + Retry-After; SIGTERM drains a running stream and exits 0.
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <regex>
#include <thread>

#include "core/process_stats.h"
#include "io/model_loader.h"
#include "runtime/generate.h"
#include "serve/http_server.h"
#include "tests/serve_fixture.h"
#include "tests/test_util.h"

using namespace condense;
using nlohmann::json;

extern char** environ;

namespace {

const char* kBin = "models/stories260K/stories260K.bin";

struct RealServer {
  explicit RealServer(SchedulerOptions so = {}, int64_t kv_blocks = 0)
      : lm(load_model(testutil::data(kBin), "", {.effective_f32 = false})),
        engine(lm.model, EngineOptions{lm.model.config.max_seq, kv_blocks, "", kv_blocks > 0 ? 0 : size_t(64) << 20}),
        sched(engine, *lm.tokenizer, so),
        sm(served_model("stories260K", testutil::data(kBin), lm.model.config, *lm.tokenizer, tmpl)),
        server(sched, sm, {}, so),
        port(server.port) {}
  LoadedModel lm;
  ChatTemplate tmpl;
  Engine engine;
  Scheduler sched;
  ServedModel sm;
  testutil::LoopbackServer server;
  int port;
};

// What `condense generate --temperature 0` writes after the prompt.
std::string generate_text(const LoadedModel& lm, const std::string& prompt, int steps) {
  std::vector<int> p = {lm.model.config.bos_id};
  for (int t : lm.tokenizer->encode(prompt)) p.push_back(t);
  Engine e(lm.model, EngineOptions{lm.model.config.max_seq, 0, ""});
  Sampler s(0.f, 1.f, 1);
  std::string out;
  generate(e, p, steps, s, [&](int prev, int t) { out += lm.tokenizer->decode_token(prev, t); });
  return out;
}

std::vector<std::string> prompts(int n) {
  const std::string text = testutil::read_file(testutil::data("text/tinystories/tinystories_valid_head.txt"));
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i) out.push_back(text.substr(size_t(i) * 211 % 5000, size_t(1 + (i * 37) % 400)));
  return out;
}

}  // namespace

TEST(RealServe, GreedyThroughTheServerEqualsGenerateAloneAndAmong32) {
  REQUIRE_DATA(kBin);
  RealServer s(SchedulerOptions{.max_batch_tokens = 128});
  const auto ps = prompts(32);
  std::vector<std::string> want;
  for (const auto& p : ps) want.push_back(generate_text(s.lm, p, 64));
  httplib::Client c("127.0.0.1", s.port);
  // Alone.
  for (int i : {0, 5}) {
    auto r = c.Post("/v1/completions", json{{"prompt", ps[size_t(i)]}, {"max_tokens", 64}, {"temperature", 0}}.dump(), "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(json::parse(r->body)["choices"][0]["text"], want[size_t(i)]) << "prompt " << i;
  }
  // All 32 at once, half streamed.
  std::vector<json> bodies;
  for (int i = 0; i < 32; ++i) bodies.push_back({{"prompt", ps[size_t(i)]}, {"max_tokens", 64}, {"temperature", 0}, {"stream", i % 2 == 1}});
  const std::vector<std::string> got = testutil::post_concurrently(s.port, bodies);
  for (int i = 0; i < 32; ++i) EXPECT_EQ(got[size_t(i)], want[size_t(i)]) << "prompt " << i << " (" << ps[size_t(i)].size() << " chars)";
}

TEST(RealServe, EveryRequestCompletesWithTheSameOutputWhenTheKvPoolIsTooSmall) {
  REQUIRE_DATA(kBin);
  const auto ps = prompts(12);
  std::vector<json> bodies;
  for (int i = 0; i < 12; ++i) bodies.push_back({{"prompt", ps[size_t(i)].substr(0, 300)}, {"max_tokens", 96}, {"temperature", 0}});
  // The pool runs out only when four or more requests run at once; a loaded
  // machine can stagger the twelve posts so that fewer do. Every attempt must
  // give the right outputs; up to five attempts to see a preemption.
  int64_t preemptions = 0;
  for (int attempt = 0; attempt < 5 && preemptions == 0; ++attempt) {
    RealServer s(SchedulerOptions{.watermark = 0}, 40);  // 640 positions for 12 requests of up to ~170
    const std::vector<std::string> got = testutil::post_concurrently(s.port, bodies);
    for (int i = 0; i < 12; ++i) EXPECT_EQ(got[size_t(i)], generate_text(s.lm, ps[size_t(i)].substr(0, 300), 96)) << "prompt " << i;
    preemptions = s.sched.stats().preemptions;
  }
  EXPECT_GT(preemptions, 0) << "the pool was meant to run out";
}

TEST(RealServe, FiveHundredStreamsAgainstAQueueOf256) {
  REQUIRE_DATA(kBin);
  RealServer s(SchedulerOptions{.max_batch_tokens = 256, .max_seqs = 64, .max_queue = 256});
  std::atomic<int> completed{0}, rejected{0}, other{0};
  std::vector<std::thread> ts;
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 500; ++i) {
    ts.emplace_back([&, i] {
      httplib::Client cl("127.0.0.1", s.port);
      cl.set_connection_timeout(30, 0);
      cl.set_read_timeout(120, 0);
      auto r = cl.Post("/v1/completions", json{{"prompt", "Once upon a time"}, {"max_tokens", 32}, {"seed", i}, {"stream", true}}.dump(),
                       "application/json");
      if (r && r->status == 200 && r->body.find("data: [DONE]") != std::string::npos &&
          r->body.find("\"finish_reason\":\"") != std::string::npos) {
        ++completed;
      } else if (r && r->status == 503 && !r->get_header_value("Retry-After").empty()) {
        ++rejected;
      } else {
        ++other;
      }
    });
  }
  for (auto& t : ts) t.join();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("500 streams: %d completed, %d rejected (503), %d other, %.1f s, peak RSS %.0f MB\n", completed.load(), rejected.load(), other.load(),
              secs, double(peak_rss_bytes()) / 1e6);
  EXPECT_EQ(completed + rejected, 500);
  EXPECT_EQ(other, 0);
  EXPECT_GT(completed, 256) << "the queue and the running batch hold more than 256";
  EXPECT_LT(peak_rss_bytes(), size_t(2) << 30) << "RSS bounded";
  EXPECT_TRUE(s.sched.wait_idle(10));
  EXPECT_EQ(s.sched.stats().kv_blocks_free, s.sched.stats().kv_blocks_total);
}

TEST(RealServe, SigtermDrainsAndExitsZero) {
  REQUIRE_DATA(kBin);
  testutil::TempDir d;
  const std::string log = d / "serve.log";
  const std::string model = testutil::data(kBin);
  std::vector<std::string> args = {CONDENSE_BIN, "serve", model, "--port", "0", "--threads", "1", "--kv-memory", "16M", "--drain-seconds", "20"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 2, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  pid_t pid = 0;
  ASSERT_EQ(posix_spawn(&pid, CONDENSE_BIN, &fa, nullptr, argv.data(), environ), 0);
  posix_spawn_file_actions_destroy(&fa);
  int port = 0;
  for (int i = 0; i < 200 && port == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    std::smatch m;
    const std::string text = testutil::read_file(log);
    if (std::regex_search(text, m, std::regex("http://127.0.0.1:([0-9]+)/v1"))) port = std::stoi(m[1]);
  }
  ASSERT_GT(port, 0) << testutil::read_file(log);
  // A long stream; SIGTERM once its first token is out.
  std::atomic<bool> first{false};
  std::string body;
  std::thread client([&] {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(60, 0);
    httplib::Request req;
    req.method = "POST";
    req.path = "/v1/completions";
    req.body = json{{"prompt", "Once"}, {"max_tokens", 400}, {"ignore_eos", true}, {"stream", true}}.dump();
    req.set_header("Content-Type", "application/json");
    req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
      body.append(data, n);
      first = true;
      return true;
    };
    c.send(req);
  });
  while (!first) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  kill(pid, SIGTERM);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  {
    httplib::Client c("127.0.0.1", port);
    auto r = c.Post("/v1/completions", json{{"prompt", "x"}}.dump(), "application/json");
    EXPECT_TRUE(!r || r->status == 503) << "new requests are refused while draining";
  }
  client.join();
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << testutil::read_file(log);
  EXPECT_NE(body.find("data: [DONE]"), std::string::npos) << "the running stream finished";
  EXPECT_NE(body.find("\"finish_reason\":\"length\""), std::string::npos);
}

TEST(RealServe, ChatUsesTheModelFoldersJinjaTemplate) {
  REQUIRE_DATA("models/stories260K-hf/model.safetensors");
  REQUIRE_DATA("models/stories260K/tok512.bin");
  // The real HF folder, linked into a temp folder with a tokenizer_config.json carrying a ChatML template.
  testutil::TempDir d;
  for (const char* f : {"config.json", "model.safetensors"}) {
    std::filesystem::create_symlink(testutil::data(std::string("models/stories260K-hf/") + f), d / f);
  }
  const std::string tmpl =
      "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
      "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
  testutil::write_file(d / "tokenizer_config.json", json{{"chat_template", tmpl}, {"bos_token", "<s>"}, {"eos_token", {{"content", "</s>"}}}}.dump());
  LoadedModel lm = load_model(d.path.string(), testutil::data("models/stories260K/tok512.bin"), {});
  ASSERT_EQ(lm.chat_template, tmpl);
  EXPECT_EQ(lm.bos_text, "<s>");
  EXPECT_EQ(lm.eos_text, "</s>");
  const ChatTemplate t = ChatTemplate::jinja(lm.chat_template, lm.bos_text, lm.eos_text, "model");
  Engine engine(lm.model, EngineOptions{lm.model.config.max_seq, 64, ""});
  Scheduler sched(engine, *lm.tokenizer, SchedulerOptions{});
  const ServedModel sm = served_model("m", d.path.string(), lm.model.config, *lm.tokenizer, t);
  testutil::LoopbackServer server(sched, sm);
  const int port = server.port;
  httplib::Client c("127.0.0.1", port);
  auto r = c.Post("/v1/chat/completions", json{{"messages", {{{"role", "user"}, {"content", "Once upon a time"}}}}, {"max_tokens", 4}}.dump(),
                  "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  const size_t want = 1 + lm.tokenizer->encode("<|im_start|>user\nOnce upon a time<|im_end|>\n<|im_start|>assistant\n").size();
  EXPECT_EQ(json::parse(r->body)["usage"]["prompt_tokens"], want);
}
