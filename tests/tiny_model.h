// Small models for unit tests: a config in one call (fields named, defaults
// for the rest) and a byte-for-byte comparison of two models' weights.
#pragma once
#include "model/model.h"

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

}  // namespace testutil
