// The load benchmark: metrics as vLLM's bench defines them (numpy's linear
// percentiles, TPOT per request, goodput), arrivals, and whole runs against
// the in-process scheduler and over HTTP against the server.
#include <gtest/gtest.h>

#include <cmath>
#include <thread>

#include "core/error.h"
#include "serve/http_server.h"
#include "serve/load_bench.h"
#include "tests/serve_fixture.h"

using namespace condense;
using nlohmann::json;

TEST(LoadMetrics, PercentilesInterpolateLikeNumpy) {
  // numpy.percentile values (linear interpolation):
  EXPECT_DOUBLE_EQ(percentile_linear({1, 2, 3, 4}, 50), 2.5);
  EXPECT_NEAR(percentile_linear({1, 2, 3, 4}, 99), 3.97, 1e-12);
  EXPECT_NEAR(percentile_linear({4, 1, 3, 2}, 90), 3.7, 1e-12);  // unsorted input
  EXPECT_DOUBLE_EQ(percentile_linear({10}, 99), 10);
  EXPECT_DOUBLE_EQ(percentile_linear({3, 1, 2}, 0), 1);
  EXPECT_DOUBLE_EQ(percentile_linear({3, 1, 2}, 100), 3);
  EXPECT_DOUBLE_EQ(percentile_linear({}, 50), 0);
}

TEST(LoadMetrics, SummaryFollowsVllmDefinitions) {
  std::vector<RequestRecord> rs(4);
  // 5 tokens: TTFT 0.1 s, chunks 0.02 apart -> latency 0.18, TPOT 20 ms.
  rs[0] = {true, "", 10, 5, 0.0, 0.1, 0.18, {0.02, 0.02, 0.02, 0.02}};
  // 3 tokens: TTFT 0.3, latency 0.5 -> TPOT 100 ms.
  rs[1] = {true, "", 20, 3, 0.05, 0.3, 0.5, {0.1, 0.1}};
  // 1 token: no TPOT.
  rs[2] = {true, "", 30, 1, 0.1, 0.2, 0.2, {}};
  rs[3] = {false, "HTTP 503", 40, 0, 0.2, 0, 0, {}};
  Slo slo;
  slo.ttft_ms = 250;
  slo.tpot_ms = 50;
  const json j = summarize_load(rs, 2.0, {50, 99}, slo);
  EXPECT_EQ(j["completed"], 3);
  EXPECT_EQ(j["failed"], 1);
  EXPECT_EQ(j["total_input_tokens"], 60);
  EXPECT_EQ(j["total_output_tokens"], 9);
  EXPECT_DOUBLE_EQ(j["request_throughput"].get<double>(), 1.5);
  EXPECT_DOUBLE_EQ(j["output_throughput"].get<double>(), 4.5);
  EXPECT_DOUBLE_EQ(j["total_token_throughput"].get<double>(), 34.5);
  EXPECT_NEAR(j["mean_tpot_ms"].get<double>(), 60, 1e-9);        // (20 + 100) / 2
  EXPECT_NEAR(j["median_tpot_ms"].get<double>(), 60, 1e-9);
  EXPECT_NEAR(j["std_tpot_ms"].get<double>(), 40, 1e-9);         // population std
  EXPECT_NEAR(j["mean_ttft_ms"].get<double>(), 200, 1e-9);
  EXPECT_NEAR(j["p99_ttft_ms"].get<double>(), 200 + 100 * 0.98, 1e-9);  // sorted 100, 200, 300; rank 1.98
  EXPECT_NEAR(j["mean_itl_ms"].get<double>(), (4 * 20 + 2 * 100) / 6.0, 1e-9);
  EXPECT_NEAR(j["mean_e2el_ms"].get<double>(), (180 + 500 + 200) / 3.0, 1e-9);
  // Goodput: request 0 meets both SLOs, 1 misses TTFT and TPOT, 2 has no TPOT (0 <= 50) and TTFT 200 <= 250.
  EXPECT_DOUBLE_EQ(j["request_goodput"].get<double>(), 1.0);
  EXPECT_EQ(j["max_concurrent_requests"], 3);  // [0, 0.18], [0.05, 0.55], [0.1, 0.3] overlap
  EXPECT_EQ(j["max_output_tokens_per_s"], 9);
  EXPECT_TRUE(summarize_load(rs, 2.0, {50}, Slo{})["request_goodput"].is_null());
}

TEST(LoadMetrics, SloParsing) {
  const Slo s = parse_slo("ttft:500,tpot:50,e2el:2000");
  EXPECT_EQ(s.ttft_ms, 500);
  EXPECT_EQ(s.tpot_ms, 50);
  EXPECT_EQ(s.e2el_ms, 2000);
  EXPECT_THROW(parse_slo("ttft=5"), Error);
  EXPECT_THROW(parse_slo("latency:5"), Error);
  EXPECT_THROW(parse_slo("ttft:-1"), Error);
  EXPECT_THROW(parse_slo("ttft:5ms"), Error);
}

TEST(LoadArrivals, GammaGapsRescaledToNOverRate) {
  const auto inf = arrival_times(10, INFINITY, 1, 1);
  for (double t : inf) EXPECT_EQ(t, 0);
  const int n = 4000;
  for (double burst : {1.0, 0.25}) {
    const auto t = arrival_times(n, 20.0, burst, 3);
    EXPECT_NEAR(t.back(), n / 20.0, 1e-9);
    double prev = 0, sum = 0, sq = 0;
    for (double x : t) {
      EXPECT_GE(x, prev);
      const double g = x - prev;
      sum += g;
      sq += g * g;
      prev = x;
    }
    const double mean = sum / n, cv = std::sqrt(sq / n - mean * mean) / mean;
    EXPECT_NEAR(mean, 1 / 20.0, 1e-9);
    EXPECT_NEAR(cv, 1 / std::sqrt(burst), 0.1 / std::sqrt(burst)) << "gamma shape " << burst;  // CV of gamma(k) = 1/sqrt(k)
  }
  EXPECT_THROW(arrival_times(3, -1, 1, 1), Error);
}

TEST(LoadRun, InProcessUnderAConcurrencyLimit) {
  const Model m = testutil::byte_model();
  testutil::ByteTokenizer tok;
  Engine engine(m, EngineOptions{m.config.max_seq, 128, ""});
  Scheduler sched(engine, tok, SchedulerOptions{});
  auto target = engine_target(sched);
  LoadTestOptions o;
  o.num_prompts = 24;
  o.output_len = 10;
  o.ignore_eos = true;
  o.max_concurrency = 3;
  const auto prompts = synthetic_prompts(5, 12, 1, 3, 259, 7);
  for (const auto& p : prompts) {
    ASSERT_EQ(p.tokens.size(), 12u);
    EXPECT_EQ(p.tokens[0], 1);
  }
  int last = -1;
  const json j = run_load(*target, prompts, o, [&](int done, int total) {
    EXPECT_EQ(total, 24);
    EXPECT_GE(done, last);
    last = done;
  });
  EXPECT_EQ(j["completed"], 24);
  EXPECT_EQ(j["total_output_tokens"], 240);
  EXPECT_EQ(j["total_input_tokens"], 24 * 12);
  EXPECT_LE(j["max_concurrent_requests"].get<int>(), 3);
  EXPECT_GT(j["p99_tpot_ms"].get<double>(), 0);
  EXPECT_EQ(j["detail"]["itls"][0].size(), 9u);
  EXPECT_EQ(last, 24);
}

TEST(LoadRun, OverHttpAgainstTheServer) {
  const Model m = testutil::byte_model();
  testutil::ByteTokenizer tok;
  ChatTemplate tmpl;
  Engine engine(m, EngineOptions{m.config.max_seq, 128, ""});
  SchedulerOptions so;
  Scheduler sched(engine, tok, so);
  const ServedModel sm = served_model("tiny", "memory", m.config, tok, tmpl);
  testutil::LoopbackServer server(sched, sm, {}, so);
  const int port = server.port;
  {
    auto target = http_target("http://127.0.0.1:" + std::to_string(port) + "/v1", "", "");
    EXPECT_EQ(target->describe()["model"], "tiny");  // from /v1/models
    LoadTestOptions o;
    o.num_prompts = 16;
    o.output_len = 12;
    o.ignore_eos = true;
    o.request_rate = 200;
    const json j = run_load(*target, synthetic_prompts(16, 9, 1, 3, 259, 1), o);
    EXPECT_EQ(j["completed"], 16) << j["errors"].dump();
    EXPECT_EQ(j["total_output_tokens"], 16 * 12);  // usage.completion_tokens
    EXPECT_EQ(j["total_input_tokens"], 16 * 9);
    EXPECT_GT(j["duration"].get<double>(), 15 / 200.0 * 0.9) << "arrivals spread over n / rate";
    EXPECT_TRUE(j["server"].contains("process_resident_memory_bytes"));
    // A wrong model name fails every request with the server's 404, counted.
    auto bad = http_target("http://127.0.0.1:" + std::to_string(port), "nope", "");
    LoadTestOptions fo;
    fo.num_prompts = 2;
    fo.output_len = 3;
    const json f = run_load(*bad, synthetic_prompts(2, 4, 1, 3, 259, 1), fo);
    EXPECT_EQ(f["failed"], 2);
    EXPECT_NE(f["errors"][0]["error"].get<std::string>().find("404"), std::string::npos);
  }
  EXPECT_THROW(http_target("http://127.0.0.1:1/v1", "", ""), Error);  // nothing listens there
  EXPECT_THROW(http_target("https://example.com", "", ""), Error);
}
