#include "model/shapes.h"

#include <cmath>

#include "core/error.h"
#include "model/model.h"

namespace condense {
namespace {

ModelConfig make(int dim, int layers, int heads, int kv_heads, int ffn, int vocab, int max_seq, float theta, float eps) {
  ModelConfig c;
  c.dim = dim; c.n_layers = layers; c.n_heads = heads; c.n_kv_heads = kv_heads; c.head_dim = dim / heads;
  c.ffn_dim = ffn; c.vocab = vocab; c.max_seq = max_seq; c.rope_theta = theta; c.norm_eps = eps;
  c.tied_embeddings = true;
  return c;
}

uint64_t splitmix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

}  // namespace

const std::vector<NamedShape>& standard_shapes() {
  static const std::vector<NamedShape> shapes = [] {
    std::vector<NamedShape> s = {
        {"stories15M", make(288, 6, 6, 6, 768, 32000, 256, 10000.f, 1e-5f)},
        {"stories42M", make(512, 8, 8, 8, 1376, 32000, 1024, 10000.f, 1e-5f)},
        {"stories110M", make(768, 12, 12, 12, 2048, 32000, 1024, 10000.f, 1e-5f)},
        {"tinyllama-1.1B", make(2048, 22, 32, 4, 5632, 32000, 2048, 10000.f, 1e-5f)},
    };
    s.back().config.tied_embeddings = false;  // TinyLlama has its own lm_head
    return s;
  }();
  return shapes;
}

ModelConfig shape_config(const std::string& name) {
  std::string known;
  for (const auto& s : standard_shapes()) {
    if (s.name == name) return s.config;
    known += (known.empty() ? "" : ", ") + s.name;
  }
  fail("--shape " + name, "unknown shape", "Known shapes: " + known);
}

Model random_model(const ModelConfig& config, uint64_t seed) {
  Model m;
  m.config = config;
  m.config.validate("random_model");
  allocate_weights(m);
  m.random_init = true;
  m.format = "random";
  uint64_t stream = 0;
  const float resid_scale = 1.0f / std::sqrt(2.0f * float(config.n_layers));
  for_each_weight(m, [&](const WeightRef& w) {
    float* p = w.tensor->f32();
    const int64_t n = w.tensor->numel();
    if (w.kind == WeightKind::Norm) {
      for (int64_t i = 0; i < n; ++i) p[i] = 1.0f;
    } else {
      const bool resid = w.name.find("o_proj") != std::string::npos || w.name.find("down_proj") != std::string::npos;
      const float sd = 0.02f * (resid ? resid_scale : 1.0f);
      const uint64_t key = splitmix(seed ^ splitmix(++stream));
      // Box-Muller on a counter-based hash: each element depends only on (seed, tensor, index).
#pragma omp parallel for schedule(static)
      for (int64_t i = 0; i < n; i += 2) {
        const uint64_t r = splitmix(key + uint64_t(i));
        const double u1 = (double((r >> 11) & ((1ull << 26) - 1)) + 1.0) / double(1ull << 26);
        const double u2 = double(r >> 37) / double(1ull << 27);
        const double rad = std::sqrt(-2.0 * std::log(u1));
        p[i] = float(sd * rad * std::cos(2 * M_PI * u2));
        if (i + 1 < n) p[i + 1] = float(sd * rad * std::sin(2 * M_PI * u2));
      }
    }
    m.source_dtypes[w.name] = DType::F32;
  });
  return m;
}

}  // namespace condense
