#include "tests/tiny_model.h"

#include <gtest/gtest.h>

#include <cstring>

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

}  // namespace testutil
