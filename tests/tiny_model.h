// Small models for unit tests: a config in one call (fields named, defaults
// for the rest) and a byte-for-byte comparison of two models' weights.
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "compress/quantize_model.h"
#include "model/model.h"
#include "train/token_data.h"
#include "train/trainer.h"

namespace testutil {

struct TinyShape {
  int dim = 32, layers = 2, heads = 4, kv = 2, hd = 8, ffn = 48, vocab = 40, max_seq = 32;
  bool tied = true, bias = false;
  float rope_theta = 10000.f;
};

// The config of `s`, validated.
condense::ModelConfig tiny_config(const TinyShape& s);
// Every weight of a and b has the same shape and the same bytes.
void expect_same_weights(const condense::Model& a, const condense::Model& b);

// A text of n random words (sentences of 7-9), written to `text`, and a
// SentencePiece tokenizer of `vocab` pieces learned from it, written to
// `tokenizer`: for models trained from scratch in tests.
void write_corpus_and_tokenizer(const std::string& text, const std::string& tokenizer, int n, int vocab, uint32_t seed);

// A random teacher of `shape` (vocabulary 300, context 64) with a learned
// tokenizer, for sweeps: dir/text.txt (the corpus), dir/teacher (HF folder with
// tokenizer.model). Returns the spec's common part: name, teacher, data, eval
// (2 windows of 32), bench (tiny), output.dir = dir/out.
nlohmann::json tiny_sweep_spec(const std::string& dir, TinyShape shape);

// n values drawn from N(0, sd^2), deterministic for a seed.
std::vector<float> randn(int64_t n, uint32_t seed, float sd = 0.05f);
// n_seq windows of seq tokens (BOS, then a fixed pattern below `vocab`), two per chunk.
condense::compress::CalibrationSet pattern_calibration(int n_seq, int seq, int vocab = 40);
// A learnable token stream (each token mostly follows from the previous one),
// its first 300 tokens also the validation split.
condense::train::TokenDataset pattern_data(int vocab, uint32_t seed);
// Short-run training options: steps at a constant-then-cosine lr, no decay.
condense::train::TrainOptions short_run(int64_t steps, int batch, int seq, double lr);

}  // namespace testutil
