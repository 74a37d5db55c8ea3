#include "tests/tiny_model.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <random>

#include "io/hf_model.h"
#include "model/shapes.h"
#include "tests/test_util.h"
#include "train/tokenizer_training.h"

namespace testutil {

condense::ModelConfig tiny_config(const TinyShape& s) {
  condense::ModelConfig c;
  c.dim = s.dim;
  c.n_layers = s.layers;
  c.n_heads = s.heads;
  c.n_kv_heads = s.kv;
  c.head_dim = s.hd;
  c.ffn_dim = s.ffn;
  c.vocab = s.vocab;
  c.max_seq = s.max_seq;
  c.rope_theta = s.rope_theta;
  c.tied_embeddings = s.tied;
  c.qkv_bias = s.bias;
  c.validate("test");
  return c;
}

void expect_same_weights(const condense::Model& a, const condense::Model& b) {
  std::vector<const condense::Tensor*> wa, wb;
  condense::for_each_weight(a, [&](const condense::WeightRef& w) { wa.push_back(w.tensor); });
  condense::for_each_weight(b, [&](const condense::WeightRef& w) { wb.push_back(w.tensor); });
  ASSERT_EQ(wa.size(), wb.size());
  for (size_t i = 0; i < wa.size(); ++i) {
    ASSERT_EQ(wa[i]->shape(), wb[i]->shape());
    ASSERT_EQ(std::memcmp(wa[i]->data(), wb[i]->data(), wa[i]->nbytes()), 0) << "weight " << i;
  }
}

std::vector<float> randn(int64_t n, uint32_t seed, float sd) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.f, sd);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = d(rng);
  return v;
}

condense::compress::CalibrationSet pattern_calibration(int n_seq, int seq, int vocab) {
  condense::compress::CalibrationSet c;
  c.n_seq = n_seq;
  c.seq = seq;
  c.chunk = 2;
  for (int s = 0; s < n_seq; ++s) {
    c.inputs.push_back(1);
    for (int t = 1; t < seq; ++t) c.inputs.push_back((s * 7 + t * 13) % vocab);
  }
  return c;
}

condense::train::TokenDataset pattern_data(int vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int> ids{1};
  for (int i = 1; i < 4000; ++i) ids.push_back(rng() % 10 == 0 ? 1 + int(rng() % uint32_t(vocab - 1)) : 1 + (ids.back() * 3 + 1) % (vocab - 1));
  return condense::train::TokenDataset::from_tokens(ids, std::vector<int>(ids.begin(), ids.begin() + 300), "test");
}

condense::train::TrainOptions short_run(int64_t steps, int batch, int seq, double lr) {
  condense::train::TrainOptions o;
  o.steps = steps;
  o.batch = batch;
  o.seq = seq;
  o.schedule.lr = lr;
  o.schedule.total_steps = steps;
  o.adam.weight_decay = 0;
  return o;
}

void write_corpus_and_tokenizer(const std::string& text, const std::string& tokenizer, int n, int vocab, uint32_t seed) {
  static const char* const words[] = {"sun", "moon", "star", "sky", "sea", "wave", "wind", "rain", "red", "cat", "runs", "fast"};
  std::mt19937 g(seed);
  std::string t;
  for (int i = 0; i < n; ++i) t += std::string(words[g() % 12]) + (i % (7 + int(g() % 3)) == 6 ? ".\n" : " ");
  write_file(text, t);
  condense::train::TokenizerTraining o;
  o.vocab = vocab;
  write_file(tokenizer, condense::train::train_tokenizer({text}, o));
}

nlohmann::json tiny_sweep_spec(const std::string& dir, TinyShape shape) {
  const std::filesystem::path d = dir;
  write_corpus_and_tokenizer((d / "text.txt").string(), (d / "tok.model").string(), 3000, 300, 4);
  shape.vocab = 300;
  shape.max_seq = 64;
  const condense::Model m = condense::random_model(tiny_config(shape), 5);
  condense::save_hf_model(m, (d / "teacher").string(), condense::DType::F32, {});
  std::filesystem::copy_file(d / "tok.model", d / "teacher/tokenizer.model");
  return {{"name", "tiny"},
          {"teacher", {{"model", (d / "teacher").string()}}},
          {"data", {{"text", (d / "text.txt").string()}}},
          {"eval", {{"text", (d / "text.txt").string()}, {"ctx", 32}, {"max_windows", 2}}},
          {"bench", {{"prefill", 8}, {"context", 8}, {"decode_tokens", 4}, {"probe_mb", 8}}},
          {"output", {{"dir", (d / "out").string()}}}};
}

}  // namespace testutil
