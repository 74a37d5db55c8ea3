// The continuous-batching scheduler against `generate` (one sequence, whole
// prompt at once): greedy and seeded sampling give the same tokens alone,
// among many concurrent requests, with tiny per-step budgets (chunked
// prefill) and under preemption; cancellation frees the blocks; and the
// incremental detokenizer against a reference on the whole text.
#include <gtest/gtest.h>

#include <random>
#include <thread>

#include "core/error.h"
#include "runtime/sampler.h"
#include "serve/metrics.h"
#include "serve/text_stream.h"
#include "tests/serve_fixture.h"
#include "tests/spec_test_util.h"

using namespace condense;

namespace {

std::vector<int> prompt_of(int len, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int> p = {1};
  for (int i = 1; i < len; ++i) p.push_back(3 + int(rng() % 256));
  return p;
}

GenRequest request(const std::vector<int>& prompt, int max_tokens, SamplingParams sp = {0.f, 1.f, 0, 1, -1}) {
  GenRequest r;
  r.prompt = prompt;
  r.max_tokens = max_tokens;
  r.sampling = sp;
  r.ignore_eos = true;
  return r;
}

struct Case {
  std::vector<int> prompt;
  int max_tokens;
  SamplingParams sp;
};

// Runs every case concurrently through one scheduler; checks each against the reference.
void expect_like_generate(const Model& m, const std::vector<Case>& cases, const SchedulerOptions& so, int64_t kv_blocks,
                          int64_t* preemptions = nullptr) {
  testutil::ByteTokenizer tok;
  Engine engine(m, EngineOptions{m.config.max_seq, kv_blocks, ""});
  std::vector<std::shared_ptr<testutil::CollectSink>> sinks;
  {
    Scheduler sched(engine, tok, so);
    for (const Case& c : cases) {
      sinks.push_back(std::make_shared<testutil::CollectSink>());
      ASSERT_TRUE(sched.submit(request(c.prompt, c.max_tokens, c.sp), sinks.back()));
    }
    for (auto& s : sinks) s->wait();
    ASSERT_TRUE(sched.wait_idle(5));
    const SchedulerStats st = sched.stats();
    EXPECT_EQ(st.kv_blocks_free, st.kv_blocks_total) << "every block comes back";
    if (preemptions) *preemptions = st.preemptions;
  }
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    const auto want = testutil::reference_tokens(m, c.prompt, c.max_tokens, c.sp.temperature, c.sp.top_p, c.sp.seed, c.sp.top_k, true);
    EXPECT_EQ(sinks[i]->tokens, want) << "request " << i << " (prompt " << c.prompt.size() << " tokens)";
    EXPECT_EQ(sinks[i]->reason, FinishReason::Length);
    EXPECT_EQ(sinks[i]->completion_tokens, c.max_tokens);
    EXPECT_EQ(sinks[i]->prompt_tokens, int(c.prompt.size()));
  }
}

}  // namespace

TEST(Scheduler, GreedyAloneEqualsGenerate) {
  const Model m = testutil::byte_model();
  expect_like_generate(m, {{prompt_of(9, 1), 20, {0.f, 1.f, 0, 1, -1}}}, SchedulerOptions{}, 64);
}

TEST(Scheduler, ThirtyTwoConcurrentGreedyEqualGenerate) {
  const Model m = testutil::byte_model();
  std::vector<Case> cases;
  for (int i = 0; i < 32; ++i) cases.push_back({prompt_of(1 + (i * 7) % 60, 100 + uint32_t(i)), 5 + (i * 5) % 30, {0.f, 1.f, 0, 1, -1}});
  expect_like_generate(m, cases, SchedulerOptions{}, 512);
}

TEST(Scheduler, ChunkedPrefillUnderATinyBudgetEqualsGenerate) {
  // 7 tokens per step: prompts go in chunks, decodes of others share the steps.
  const Model m = testutil::byte_model();
  std::vector<Case> cases;
  for (int i = 0; i < 6; ++i) cases.push_back({prompt_of(20 + 9 * i, 200 + uint32_t(i)), 12, {0.f, 1.f, 0, 1, -1}});
  expect_like_generate(m, cases, SchedulerOptions{.max_batch_tokens = 7}, 512);
}

TEST(Scheduler, PreemptionKeepsOutputs) {
  // 12 blocks (192 positions) for 8 requests that grow to ~100 positions each:
  // the newest are preempted and recomputed, and still produce what they would alone.
  const Model m = testutil::byte_model();
  std::vector<Case> cases;
  for (int i = 0; i < 8; ++i) cases.push_back({prompt_of(30 + 5 * i, 300 + uint32_t(i)), 60, {0.f, 1.f, 0, 1, -1}});
  int64_t preemptions = 0;
  expect_like_generate(m, cases, SchedulerOptions{.watermark = 0}, 12, &preemptions);
  EXPECT_GT(preemptions, 0) << "the pool was meant to run out";
}

TEST(Scheduler, SeededSamplingIsReproducibleAcrossConcurrency) {
  const Model m = testutil::byte_model();
  std::vector<Case> cases;
  for (int i = 0; i < 12; ++i) {
    SamplingParams sp{1.0f, i % 3 == 0 ? 0.9f : 1.f, i % 2 ? 20 : 0, 1000 + uint64_t(i % 4), -1};
    cases.push_back({prompt_of(5 + 3 * i, 400 + uint32_t(i)), 25, sp});
  }
  expect_like_generate(m, cases, SchedulerOptions{.max_batch_tokens = 16}, 40);
}

TEST(Scheduler, CancelledRequestsLeaveAndFreeTheirBlocks) {
  const Model m = testutil::byte_model();
  testutil::ByteTokenizer tok;
  Engine engine(m, EngineOptions{m.config.max_seq, 64, ""});
  Scheduler sched(engine, tok, SchedulerOptions{});
  auto cancelled = std::make_shared<testutil::CollectSink>(3);
  auto normal = std::make_shared<testutil::CollectSink>();
  ASSERT_TRUE(sched.submit(request(prompt_of(10, 1), 80), cancelled));
  ASSERT_TRUE(sched.submit(request(prompt_of(12, 2), 30), normal));
  cancelled->wait();
  normal->wait();
  EXPECT_EQ(cancelled->reason, FinishReason::Cancelled);
  EXPECT_LT(cancelled->tokens.size(), 10u);
  EXPECT_EQ(normal->reason, FinishReason::Length);
  EXPECT_EQ(normal->tokens, testutil::reference_tokens(m, prompt_of(12, 2), 30, 0, 1, 1, 0, true));
  ASSERT_TRUE(sched.wait_idle(5));
  EXPECT_EQ(sched.stats().kv_blocks_free, sched.stats().kv_blocks_total);
  EXPECT_EQ(sched.stats().requests_cancelled, 1);
}

TEST(Scheduler, RefusesWhenTheQueueIsFullOrClosedAndChecksPrompts) {
  const Model m = testutil::byte_model();
  testutil::ByteTokenizer tok;
  Engine engine(m, EngineOptions{m.config.max_seq, 64, ""});
  {
    Scheduler none(engine, tok, SchedulerOptions{.max_queue = 0});
    EXPECT_FALSE(none.submit(request(prompt_of(4, 1), 4), std::make_shared<testutil::CollectSink>()));
  }
  Scheduler sched(engine, tok, SchedulerOptions{});
  EXPECT_THROW(sched.submit(request({}, 4), std::make_shared<testutil::CollectSink>()), Error);
  EXPECT_THROW(sched.submit(request({1, 999}, 4), std::make_shared<testutil::CollectSink>()), Error);
  EXPECT_THROW(sched.submit(request(prompt_of(128, 1), 4), std::make_shared<testutil::CollectSink>()), Error);
  sched.close();
  EXPECT_FALSE(sched.submit(request(prompt_of(4, 1), 4), std::make_shared<testutil::CollectSink>()));
  // A pool that cannot hold one full-context sequence is refused up front.
  Engine small(m, EngineOptions{m.config.max_seq, 7, ""});
  EXPECT_THROW(Scheduler(small, tok, SchedulerOptions{}), Error);
}

TEST(Scheduler, EosStopsAndTheContextBoundsLength) {
  const Model m = testutil::byte_model(11, 64);
  testutil::ByteTokenizer tok;
  Engine engine(m, EngineOptions{m.config.max_seq, 0, ""});
  Scheduler sched(engine, tok, SchedulerOptions{});
  // Up to the end of the context: 60 prompt + 4 generated = 64.
  auto s = std::make_shared<testutil::CollectSink>();
  ASSERT_TRUE(sched.submit(request(prompt_of(60, 3), 1000), s));
  s->wait();
  EXPECT_EQ(s->reason, FinishReason::Length);
  EXPECT_EQ(s->tokens.size(), 4u);
}

TEST(Scheduler, LogprobsAreTheModelsLogSoftmax) {
  const Model m = testutil::byte_model();
  testutil::ByteTokenizer tok;
  Engine engine(m, EngineOptions{m.config.max_seq, 0, ""});
  Scheduler sched(engine, tok, SchedulerOptions{});
  auto s = std::make_shared<testutil::CollectSink>();
  const auto prompt = prompt_of(8, 5);
  ASSERT_TRUE(sched.submit(request(prompt, 3, {0.f, 1.f, 0, 1, 4}), s));
  s->wait();
  // Reference: float64 log-softmax of the engine's logits, fed token by token.
  Engine ref(m, EngineOptions{m.config.max_seq, 0, ""});
  std::vector<float> logits(259);
  std::vector<int> seq = prompt;
  ref.forward(seq.data(), int(seq.size()), 0, logits.data(), 1);
  for (size_t t = 0; t < s->logprobs.size(); ++t) {
    double mx = -1e300, sum = 0;
    for (float v : logits) mx = std::max(mx, double(v));
    for (float v : logits) sum += std::exp(double(v) - mx);
    const TokenOut& o = s->logprobs[t];
    EXPECT_EQ(o.token, argmax(logits.data(), 259));
    EXPECT_NEAR(o.logprob, double(logits[size_t(o.token)]) - mx - std::log(sum), 1e-5);
    ASSERT_EQ(o.top.size(), 4u);
    EXPECT_EQ(o.top[0].token, o.token);
    for (size_t k = 1; k < 4; ++k) EXPECT_LE(o.top[k].logprob, o.top[k - 1].logprob);
    seq.push_back(o.token);
    ref.forward(&seq.back(), 1, int(seq.size()) - 1, logits.data(), 1);
  }
}

TEST(Sampler, TopKKeepsTheKMostLikely) {
  std::vector<float> logits = {0.1f, 2.0f, -1.0f, 1.5f, 0.3f, 1.9f};
  Sampler one(1.0f, 1.0f, 7, 1);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(one.sample(logits.data(), 6), 1);
  Sampler three(1.0f, 1.0f, 7, 3);
  std::vector<int> seen(6, 0);
  for (int i = 0; i < 3000; ++i) ++seen[size_t(three.sample(logits.data(), 6))];
  EXPECT_EQ(seen[0] + seen[2] + seen[4], 0);
  // Renormalised over {1, 5, 3}: e^2, e^1.9, e^1.5 -> 0.389, 0.352, 0.259.
  EXPECT_NEAR(seen[1] / 3000.0, 0.389, 0.03);
  EXPECT_NEAR(seen[5] / 3000.0, 0.352, 0.03);
  EXPECT_NEAR(seen[3] / 3000.0, 0.259, 0.03);
  EXPECT_THROW(Sampler(1.0f, 1.0f, 1, -1), Error);
}

TEST(TextStream, Utf8Helpers) {
  EXPECT_EQ(sanitize_utf8("ab\xC3\xA9"), "ab\xC3\xA9");
  EXPECT_EQ(sanitize_utf8("a\xFF" "b"), "a\xEF\xBF\xBD" "b");
  EXPECT_EQ(sanitize_utf8("\xC0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD");          // overlong NUL
  EXPECT_EQ(sanitize_utf8("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // a surrogate
  EXPECT_EQ(sanitize_utf8("\xF4\x90\x80\x80").substr(0, 3), "\xEF\xBF\xBD");  // past U+10FFFF
  EXPECT_EQ(utf8_incomplete_tail("ab"), 0u);
  EXPECT_EQ(utf8_incomplete_tail("a\xE2\x82"), 2u);
  EXPECT_EQ(utf8_incomplete_tail("a\xE2\x82\xAC"), 0u);
  EXPECT_EQ(utf8_incomplete_tail("\xF0\x9F\x98"), 3u);
  EXPECT_EQ(utf8_incomplete_tail("a\x82"), 0u);  // a stray continuation byte is not waited for
}

TEST(TextStream, MatchesAReferenceOnTheWholeText) {
  // Random byte tokens (ASCII, multi-byte characters cut anywhere, invalid
  // bytes) with random stop strings: the released pieces concatenated equal
  // the whole text up to the first stop string, sanitized.
  testutil::ByteTokenizer tok;
  std::mt19937 rng(42);
  const std::vector<std::string> alphabet = {"a", "b", " ", "\xC3\xA9", "\xE2\x82\xAC", "\xF0\x9F\x98\x80", "\xFF", "\x80", "ab"};
  for (int trial = 0; trial < 2000; ++trial) {
    std::string raw;
    const int n = 1 + int(rng() % 30);
    for (int i = 0; i < n; ++i) raw += alphabet[rng() % alphabet.size()];
    std::vector<std::string> stop;
    const int ns = int(rng() % 3);
    for (int i = 0; i < ns; ++i) {
      std::string s;
      const int len = 1 + int(rng() % 3);
      for (int k = 0; k < len; ++k) s += alphabet[rng() % 6];  // valid UTF-8 only
      stop.push_back(s);
    }
    size_t cut = std::string::npos;
    for (const auto& s : stop) cut = std::min(cut, raw.find(s));
    const std::string want = sanitize_utf8(raw.substr(0, cut));
    TextStream ts(tok, 1, stop);
    std::string got;
    bool stopped = false;
    for (unsigned char c : raw) {
      got += ts.push(int(c) + 3, &stopped);
      if (stopped) break;
    }
    if (!stopped) got += ts.flush();
    EXPECT_EQ(stopped, cut != std::string::npos) << "trial " << trial;
    ASSERT_EQ(got, want) << "trial " << trial;
  }
}

TEST(TextStream, WithholdsOnlyWhatCouldStillMatch) {
  testutil::ByteTokenizer tok;
  TextStream ts(tok, 1, {"END"});
  bool stopped = false;
  EXPECT_EQ(ts.push('x' + 3, &stopped), "x");
  EXPECT_EQ(ts.push('E' + 3, &stopped), "");   // could be the start of END
  EXPECT_EQ(ts.push('N' + 3, &stopped), "");
  EXPECT_EQ(ts.push('o' + 3, &stopped), "ENo");  // it was not
  EXPECT_EQ(ts.push('E' + 3, &stopped), "");
  EXPECT_EQ(ts.push('N' + 3, &stopped), "");
  EXPECT_EQ(ts.push('D' + 3, &stopped), "");
  EXPECT_TRUE(stopped);
  EXPECT_EQ(ts.flush(), "");
}

namespace {
class PromptSink : public testutil::CollectSink {
 public:
  void on_prompt_logprobs(const std::vector<TokenOut>& p) override {
    prompt = p;
    ++calls;
  }
  std::vector<TokenOut> prompt;
  int calls = 0;
};
}  // namespace

TEST(Scheduler, PromptLogprobsAreTheModelsAtEveryPositionWhateverTheChunking) {
  // Reference: the float64 log-softmax of each prefix's last logits, one prefix at a time.
  const Model m = testutil::byte_model();
  testutil::ByteTokenizer tok;
  const auto prompt = prompt_of(40, 9);
  std::vector<double> want(prompt.size(), 0);
  std::vector<int> want_top(prompt.size(), 0);
  {
    Engine ref(m, EngineOptions{m.config.max_seq, 0, ""});
    std::vector<float> logits(259);
    for (size_t i = 1; i < prompt.size(); ++i) {
      ref.forward(prompt.data(), int(i), 0, logits.data(), 1);
      double mx = -1e300, sum = 0;
      for (float v : logits) mx = std::max(mx, double(v));
      for (float v : logits) sum += std::exp(double(v) - mx);
      want[i] = double(logits[size_t(prompt[i])]) - mx - std::log(sum);
      want_top[i] = argmax(logits.data(), 259);
    }
  }
  for (int budget : {512, 7}) {
    for (int max_tokens : {0, 3}) {
      Engine engine(m, EngineOptions{m.config.max_seq, 64, ""});
      Scheduler sched(engine, tok, SchedulerOptions{.max_batch_tokens = budget});
      auto s = std::make_shared<PromptSink>();
      GenRequest r = request(prompt, max_tokens, {0.f, 1.f, 0, 1, 2});
      r.prompt_logprobs = true;
      ASSERT_TRUE(sched.submit(r, s));
      s->wait();
      EXPECT_EQ(s->calls, 1);
      ASSERT_EQ(s->prompt.size(), prompt.size() - 1) << "budget " << budget;
      for (size_t i = 1; i < prompt.size(); ++i) {
        EXPECT_EQ(s->prompt[i - 1].token, prompt[i]);
        EXPECT_NEAR(s->prompt[i - 1].logprob, want[i], 1e-5) << "position " << i << ", budget " << budget;
        ASSERT_EQ(s->prompt[i - 1].top.size(), 2u);
        EXPECT_EQ(s->prompt[i - 1].top[0].token, want_top[i]);
      }
      EXPECT_EQ(s->tokens.size(), size_t(max_tokens));
      if (max_tokens > 0) {
        EXPECT_EQ(s->tokens, testutil::reference_tokens(m, prompt, max_tokens, 0, 1, 1, 0, true));
      }
      EXPECT_EQ(s->reason, FinishReason::Length);
    }
  }
}

namespace {

// Every case concurrently through a scheduler with a draft engine; the greedy
// tokens must be generate's. Returns the scheduler's final stats.
SchedulerStats expect_like_generate_with_draft(const Model& m, const Model& d, const std::vector<Case>& cases, const SchedulerOptions& so,
                                               int64_t kv_blocks) {
  testutil::ByteTokenizer tok;
  Engine engine(m, EngineOptions{m.config.max_seq, kv_blocks, ""});
  Engine draft(d, EngineOptions{m.config.max_seq, kv_blocks + so.max_seqs, ""});
  std::vector<std::shared_ptr<testutil::CollectSink>> sinks;
  SchedulerStats st;
  {
    Scheduler sched(engine, tok, so, &draft, SpecConfig{});
    for (const Case& c : cases) {
      sinks.push_back(std::make_shared<testutil::CollectSink>());
      EXPECT_TRUE(sched.submit(request(c.prompt, c.max_tokens, c.sp), sinks.back()));
    }
    for (auto& s : sinks) s->wait();
    EXPECT_TRUE(sched.wait_idle(5));
    st = sched.stats();
  }
  EXPECT_EQ(st.kv_blocks_free, st.kv_blocks_total) << "every block of the model's pool comes back";
  EXPECT_EQ(st.draft_kv_blocks_free, st.draft_kv_blocks_total) << "every block of the draft's pool comes back";
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    const auto want = testutil::reference_tokens(m, c.prompt, c.max_tokens, 0.f, 1.f, 1, 0, true);
    EXPECT_EQ(sinks[i]->tokens, want) << "request " << i;
    EXPECT_EQ(sinks[i]->completion_tokens, c.max_tokens);
  }
  int64_t per_pos = 0;
  for (size_t i = 0; i < st.spec_accepted_per_pos.size(); ++i) {
    per_pos += st.spec_accepted_per_pos[i];
    if (i > 0) {
      EXPECT_LE(st.spec_accepted_per_pos[i], st.spec_accepted_per_pos[i - 1]);
    }
  }
  EXPECT_EQ(per_pos, st.spec_accepted_tokens);
  EXPECT_LE(st.spec_accepted_tokens, st.spec_draft_tokens);
  EXPECT_GT(st.spec_drafts, 0);
  return st;
}

}  // namespace

// Speculative serving: 16 concurrent greedy requests (chunked prefill under a
// 24-token budget), with the model itself as draft (every proposal accepted)
// and with another model (mostly rejected): token for token generate's output.
TEST(SchedulerSpeculative, GreedyEqualsGenerateWithAnyDraft) {
  const Model m = testutil::byte_model();
  std::vector<Case> cases;
  for (int i = 0; i < 16; ++i) cases.push_back({prompt_of(1 + (i * 7) % 40, 500 + uint32_t(i)), 3 + (i * 5) % 30, {0.f, 1.f, 0, 1, -1}});
  const SchedulerStats self = expect_like_generate_with_draft(m, testutil::byte_model(11), cases, SchedulerOptions{.max_batch_tokens = 24}, 512);
  EXPECT_EQ(self.spec_accepted_tokens, self.spec_draft_tokens) << "the model as its own draft is always right";
  // an untied model with a scaled head disagrees with the byte model (whose tied
  // embeddings make it favour repeating its input)
  Model other_draft = random_model(testutil::tiny_config({.dim = 32, .layers = 1, .heads = 4, .kv = 2, .hd = 8, .ffn = 64, .vocab = 259,
                                                          .max_seq = 128, .tied = false}), 29);
  for (int64_t i = 0; i < other_draft.lm_head.numel(); ++i) other_draft.lm_head.f32()[i] *= 10.f;
  const SchedulerStats other = expect_like_generate_with_draft(m, other_draft, cases, SchedulerOptions{.max_batch_tokens = 24}, 512);
  EXPECT_LT(other.spec_accepted_tokens, other.spec_draft_tokens);
}

// Under preemption (a 12-block pool) the speculating sequences are dropped
// from both engines and recomputed, and still produce generate's tokens.
TEST(SchedulerSpeculative, PreemptionKeepsOutputs) {
  const Model m = testutil::byte_model();
  std::vector<Case> cases;
  for (int i = 0; i < 8; ++i) cases.push_back({prompt_of(30 + 5 * i, 300 + uint32_t(i)), 60, {0.f, 1.f, 0, 1, -1}});
  const SchedulerStats st = expect_like_generate_with_draft(m, testutil::byte_model(11), cases, SchedulerOptions{.watermark = 0}, 12);
  EXPECT_GT(st.preemptions, 0) << "the pool was meant to run out";
}

// Logprobs of speculated tokens come from the model's verification rows: the
// same tokens and logprobs (1e-5) as without a draft.
TEST(SchedulerSpeculative, LogprobsEqualTheModelsWithoutADraft) {
  const Model m = testutil::byte_model();
  Model d = random_model(testutil::tiny_config({.dim = 32, .layers = 1, .heads = 4, .kv = 2, .hd = 8, .ffn = 64, .vocab = 259,
                                                .max_seq = 128, .tied = false}), 29);
  for (int64_t i = 0; i < d.lm_head.numel(); ++i) d.lm_head.f32()[i] *= 10.f;
  testutil::ByteTokenizer tok;
  auto run = [&](bool with_draft) {
    Engine engine(m, EngineOptions{m.config.max_seq, 0, ""});
    Engine draft(d, EngineOptions{m.config.max_seq, 0, ""});
    Scheduler sched(engine, tok, SchedulerOptions{}, with_draft ? &draft : nullptr, SpecConfig{});
    auto s = std::make_shared<testutil::CollectSink>();
    EXPECT_TRUE(sched.submit(request(prompt_of(8, 5), 24, {0.f, 1.f, 0, 1, 3}), s));
    s->wait();
    return s->logprobs;
  };
  const auto want = run(false), got = run(true);
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(got[i].token, want[i].token) << i;
    EXPECT_NEAR(got[i].logprob, want[i].logprob, 1e-5) << i;
    ASSERT_EQ(got[i].top.size(), want[i].top.size());
    for (size_t k = 0; k < want[i].top.size(); ++k) EXPECT_EQ(got[i].top[k].token, want[i].top[k].token) << i << " " << k;
  }
}

// /metrics with a draft: vLLM's spec_decode counters (condense: prefix), one
// accepted-per-position series per draft position; none without a draft.
TEST(SchedulerSpeculative, MetricsCarryTheSpecDecodeCounters) {
  ServerMetrics metrics;
  SchedulerStats s;
  EXPECT_EQ(metrics.prometheus(s).find("spec_decode"), std::string::npos);
  s.spec_drafts = 7;
  s.spec_draft_tokens = 20;
  s.spec_accepted_tokens = 11;
  s.spec_accepted_per_pos = {6, 4, 1, 0};
  const std::string text = metrics.prometheus(s);
  EXPECT_NE(text.find("condense:spec_decode_num_drafts_total 7"), std::string::npos) << text;
  EXPECT_NE(text.find("condense:spec_decode_num_draft_tokens_total 20"), std::string::npos);
  EXPECT_NE(text.find("condense:spec_decode_num_accepted_tokens_total 11"), std::string::npos);
  EXPECT_NE(text.find("condense:spec_decode_num_accepted_tokens_per_pos_total{position=\"2\"} 1"), std::string::npos);
  EXPECT_NE(text.find("# TYPE condense:spec_decode_num_drafts_total counter"), std::string::npos);
}

namespace {

// 3-token samples of many concurrent T = 1 requests through a speculating
// scheduler (k = 2 with the bonus, rows of several sequences in each draft and
// target step), counted over the 216 joint outcomes; returns the chi-square z
// against the target's exact joint distribution.
double scheduler_chi_square_z(SpecConfig::Rule rule, int samples) {
  const ModelConfig cfg = testutil::tiny_config({.dim = 16, .layers = 1, .heads = 2, .kv = 1, .hd = 8, .ffn = 32, .vocab = 6, .max_seq = 16,
                                                 .tied = false});
  Model target = random_model(cfg, 5), draft = random_model(cfg, 6);
  for (Model* m : {&target, &draft}) {
    for (int64_t i = 0; i < m->lm_head.numel(); ++i) m->lm_head.f32()[i] *= 20.f;
  }
  const std::vector<int> prompt{1, 3};
  const std::vector<double> joint = spectest::exact_joint3(target, prompt, 1.f, 0);
  testutil::ByteTokenizer tok;
  Engine te(target, EngineOptions{16, 64, ""}), de(draft, EngineOptions{16, 64 + 32, ""});
  SpecConfig sc;
  sc.k = sc.k_min = sc.k_max = 2;
  sc.adaptive = false;
  sc.rule = rule;
  std::vector<int64_t> count(joint.size(), 0);
  {
    Scheduler sched(te, tok, SchedulerOptions{.max_batch_tokens = 64, .max_seqs = 32, .max_queue = 1 << 20}, &de, sc);
    std::vector<std::shared_ptr<testutil::CollectSink>> sinks;
    for (int n = 0; n < samples; ++n) {
      sinks.push_back(std::make_shared<testutil::CollectSink>());
      EXPECT_TRUE(sched.submit(request(prompt, 3, {1.f, 1.f, 0, uint64_t(n + 1), -1}), sinks.back()));
    }
    for (auto& s : sinks) {
      s->wait();
      EXPECT_EQ(s->tokens.size(), 3u);
      if (s->tokens.size() == 3) ++count[size_t((s->tokens[0] * 6 + s->tokens[1]) * 6 + s->tokens[2])];
    }
    EXPECT_GT(sched.stats().spec_drafts, 0);
  }
  return spectest::chi_square_z(joint, count, samples, rule == SpecConfig::Rule::Exact ? "scheduler, exact rule" : "scheduler, mutant rule");
}

}  // namespace

// Sampled outputs of a speculating server keep the model's distribution: the
// exact rule passes a chi-square test over 12000 requests, a mutant rule
// (resampling from p instead of the residual) fails it by far.
TEST(SchedulerSpeculative, SampledOutputsKeepTheModelsDistribution) {
  EXPECT_LT(scheduler_chi_square_z(SpecConfig::Rule::Exact, 12000), 3.5);
  EXPECT_GT(scheduler_chi_square_z(SpecConfig::Rule::ResampleFromTarget, 12000), 10.0);
}
