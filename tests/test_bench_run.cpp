// `condense bench` (runtime/bench_run.h) on a small quantized .cpk: the JSON
// follows docs/BENCH.md, every measured figure is positive and finite, every
// ratio is its figure over its bound, entries past max_seq are skipped with a
// reason, and the engine's memory is the packed size, not f32.
#include <gtest/gtest.h>

#include <cmath>

#include "compress/quantize_model.h"
#include "io/cpk.h"
#include "model/shapes.h"
#include "runtime/bench_run.h"
#include "test_util.h"
#include "tiny_model.h"

using namespace condense;

TEST(BenchRun, FollowsTheSchemaWithBoundsFromTheSameRun) {
  testutil::TempDir dir;
  Model m = random_model(testutil::tiny_config({.dim = 64, .heads = 4, .kv = 2, .hd = 16, .ffn = 128, .vocab = 96, .max_seq = 48}), 2);
  compress::QuantizeOptions q;
  q.scheme = QuantScheme::of(DType::I4, Granularity::Group, 32);
  q.targets = {"model.layers.*_proj.weight", "model.embed_tokens.weight"};
  compress::quantize_model(m, q, nullptr);
  const std::string path = dir / "m.cpk";
  save_cpk(m, path, {});
  BenchOptions o;
  o.prefill = {16, 64};
  o.batches = {1, 3};
  o.contexts = {8, 46, 60};
  o.decode_tokens = 4;
  o.reps = 1;
  o.probe_bytes = size_t(8) << 20;
  int calls = 0;
  const auto j = run_bench(path, o, [&](int done, int total, const std::string&) {
    ++calls;
    EXPECT_LE(done, total);
  });
  EXPECT_EQ(calls, 2 + 2 + 6);
  EXPECT_EQ(j["schema"], "condense-bench/1");
  EXPECT_EQ(j["kind"], "offline");
  EXPECT_FALSE(j["condense"]["revision"].get<std::string>().empty());  // the build that measured it
  for (const char* k : {"read_gbs", "fma_gflops"}) EXPECT_GT(j["machine"][k].get<double>(), 0) << k;
  EXPECT_EQ(j["model"]["linears"], "blocks: int4 g32 x int16; head: int4 g32 x int16; embedding: the head's");
  ASSERT_EQ(j["prefill"].size(), 2u);
  EXPECT_GT(j["prefill"][0]["tok_s"].get<double>(), 0);
  EXPECT_NEAR(j["prefill"][0]["fraction_of_bound"].get<double>(),
              j["prefill"][0]["tok_s"].get<double>() / j["prefill"][0]["compute_bound_tok_s"].get<double>(), 1e-9);
  EXPECT_TRUE(j["prefill"][1].contains("skipped"));  // 64 > max_seq 48
  EXPECT_DOUBLE_EQ(j["ttft_s"].get<double>(), j["prefill"][0]["seconds"].get<double>());
  ASSERT_EQ(j["decode"].size(), 6u);
  for (const auto& d : j["decode"]) {
    if (d["context"] == 60) {
      EXPECT_TRUE(d.contains("skipped")) << d.dump();  // longer than max_seq 48
      continue;
    }
    if (d.contains("requested_context")) {
      EXPECT_EQ(d["requested_context"], 46);
      EXPECT_EQ(d["context"], 48 - 4 - 1);  // moved back so the 4 steps end at max_seq
    }
    EXPECT_EQ(d["tokens"].get<int>(), d["batch"].get<int>() * 4);
    const double bound = std::min(d["bandwidth_bound_tok_s"].get<double>(), d["compute_bound_tok_s"].get<double>());
    EXPECT_NEAR(d["fraction_of_bound"].get<double>(), d["tok_s"].get<double>() / bound, 1e-9);
    EXPECT_TRUE(std::isfinite(d["step_ms_p50"].get<double>()) && d["step_ms_p50"].get<double>() > 0);
    EXPECT_GE(d["step_ms_p99"].get<double>(), d["step_ms_p50"].get<double>());
  }
  // Weights held in their packed encodings: about the .cpk's tensor bytes (int4 g32 = 4.5 bits), not 32 bits.
  const CpkInfo info = read_cpk_info(path);
  uint64_t stored = 0;
  for (const auto& t : info.tensors) stored += t.bytes;
  EXPECT_LE(j["model"]["weight_bytes"].get<double>(), 1.15 * double(stored));
  EXPECT_GT(j["memory"]["rss_after_load_bytes"].get<double>(), 0);
}

// --draft: batch-1 speculative decoding against plain, greedy and T = 1, with
// vLLM's spec_decode_* numbers; the model as its own draft accepts every
// greedy proposal (acceptance 100%, tokens per target step > 1).
TEST(BenchRun, DraftAddsTheSpeculativePoints) {
  testutil::TempDir dir;
  const Model m = random_model(testutil::tiny_config({.vocab = 96, .max_seq = 64}), 2);
  const std::string path = dir / "m.cpk";
  save_cpk(m, path, {});
  BenchOptions o;
  o.prefill = {8};
  o.batches = {1};
  o.contexts = {8};
  o.decode_tokens = 4;
  o.reps = 1;
  o.probe_bytes = size_t(8) << 20;
  o.draft = path;
  o.draft_steps = 40;
  const auto j = run_bench(path, o);
  ASSERT_TRUE(j.contains("speculative")) << j.dump(2);
  const auto& s = j["speculative"];
  EXPECT_EQ(s["generated_per_prompt"], 40);
  for (const char* k : {"greedy", "sampled_t1"}) {
    SCOPED_TRACE(k);
    for (const char* f : {"tok_s", "plain_tok_s", "speedup", "spec_decode_acceptance_length"}) EXPECT_GT(s[k][f].get<double>(), 0) << f;
    EXPECT_GT(s[k]["spec_decode_num_drafts"].get<int64_t>(), 0);
    EXPECT_NEAR(s[k]["draft_time_share"].get<double>() + s[k]["target_time_share"].get<double>(), 1.0, 1e-9);
  }
  EXPECT_DOUBLE_EQ(s["greedy"]["spec_decode_acceptance_rate"].get<double>(), 100.0);
  EXPECT_EQ(s["greedy"]["spec_decode_draft_tokens"], s["greedy"]["spec_decode_accepted_tokens"]);
}
