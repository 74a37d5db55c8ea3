#include "compress/fold_scales.h"

#include "core/error.h"

namespace condense::compress {

namespace {

void multiply_cols(Tensor& w, const std::vector<float>& s) {
  const int64_t rows = w.dim(0), cols = w.dim(1);
  float* p = w.f32();
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) p[r * cols + c] *= s[size_t(c)];
  }
}

void divide_rows(Tensor& w, const std::vector<float>& s) {
  const int64_t rows = w.dim(0), cols = w.ndim() == 2 ? w.dim(1) : 1;
  float* p = w.f32();
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) p[r * cols + c] /= s[size_t(r)];
  }
}

}  // namespace

bool site_foldable(const ModelConfig& c, Site site) { return site != Site::AttnOut || c.n_heads == c.n_kv_heads; }

Tensor* fold_input_scales(const ModelConfig& c, LayerWeights& w, Site site, const std::vector<float>& s) {
  if (!site_foldable(c, site)) fail("scale folding", "o_proj's input scales cannot be folded into v_proj when kv heads are shared");
  for (Tensor* t : site_weights(w, site)) multiply_cols(*t, s);
  switch (site) {
    case Site::AttnIn: divide_rows(w.attn_norm, s); return nullptr;
    case Site::FfnIn: divide_rows(w.ffn_norm, s); return nullptr;
    case Site::AttnOut:
      divide_rows(w.wv, s);
      if (c.qkv_bias) divide_rows(w.bv, s);
      return &w.wv;
    case Site::FfnHidden: divide_rows(w.w_up, s); return &w.w_up;
  }
  return nullptr;
}

}  // namespace condense::compress
