#include "train/width_prune.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"
#include "train/model_graph.h"

namespace condense::train {

Importance measure_importance(const Model& m, const TokenDataset& data, int windows, int seq, int bos, uint64_t seed) {
  const ModelConfig& c = m.config;
  if (windows <= 0) fail("measure_importance", "need at least one calibration window");
  Importance imp;
  imp.ffn.assign(size_t(c.n_layers), std::vector<double>(size_t(c.ffn_dim), 0.0));
  imp.group.assign(size_t(c.n_layers), std::vector<double>(size_t(c.n_kv_heads), 0.0));
  imp.hidden.assign(size_t(c.dim), 0.0);
  constexpr int kBatch = 4;
  ModelGraph g(c, kBatch, seq, true);
  std::vector<int> in(size_t(kBatch) * size_t(seq)), tg(in.size());
  const int group = c.n_heads / c.n_kv_heads, hd = c.head_dim;
  int64_t rows = 0;
  for (int w0 = 0; w0 < windows; w0 += kBatch) {
    data.sample(seed, w0, 0, kBatch, seq, bos, in.data(), tg.data());
    g.forward(m, in.data());
    rows += int64_t(kBatch) * seq;
    for (int l = 0; l < c.n_layers; ++l) {
      const ops::Mat h = g.activation(l, ModelGraph::Act::FfnHidden), a = g.activation(l, ModelGraph::Act::Attention);
      for (int64_t r = 0; r < h.rows; ++r) {
        const float* hr = h.row(r);
        for (int j = 0; j < c.ffn_dim; ++j) imp.ffn[size_t(l)][size_t(j)] += std::fabs(hr[j]);
        const float* ar = a.row(r);
        for (int q = 0; q < c.n_heads; ++q) {
          double ss = 0;
          for (int i = 0; i < hd; ++i) ss += double(ar[q * hd + i]) * ar[q * hd + i];
          imp.group[size_t(l)][size_t(q / group)] += std::sqrt(ss);
        }
      }
      for (ModelGraph::Act which : {ModelGraph::Act::AttnNormOut, ModelGraph::Act::FfnNormOut}) {
        const ops::Mat x = g.activation(l, which);
        for (int64_t r = 0; r < x.rows; ++r) {
          const float* xr = x.row(r);
          for (int j = 0; j < c.dim; ++j) imp.hidden[size_t(j)] += std::fabs(xr[j]);
        }
      }
    }
  }
  for (auto& v : imp.ffn) for (double& x : v) x /= double(rows);
  for (auto& v : imp.group) for (double& x : v) x /= double(rows);
  for (double& x : imp.hidden) x /= double(rows) * 2 * c.n_layers;
  return imp;
}

namespace {
// Indices of the `keep` largest scores, ascending (ties: lower index first).
std::vector<int> top(const std::vector<double>& score, int keep) {
  std::vector<int> idx(score.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](int a, int b) { return score[size_t(a)] > score[size_t(b)]; });
  idx.resize(size_t(keep));
  std::sort(idx.begin(), idx.end());
  return idx;
}

std::vector<int> all(int n) {
  std::vector<int> v(static_cast<size_t>(n));
  std::iota(v.begin(), v.end(), 0);
  return v;
}

// Expands block indices (heads, groups) to the rows/columns they span.
std::vector<int> expand(const std::vector<int>& blocks, int width) {
  std::vector<int> out;
  for (int b : blocks) for (int i = 0; i < width; ++i) out.push_back(b * width + i);
  return out;
}

// t[rows_keep][cols_keep] of a 2-D tensor (or t[rows_keep] of a 1-D one).
Tensor slice(const Tensor& t, const std::vector<int>& rows, const std::vector<int>& cols) {
  if (!t.defined()) return {};
  if (t.ndim() == 1) {
    Tensor o = Tensor::empty(DType::F32, {int64_t(rows.size())});
    for (size_t i = 0; i < rows.size(); ++i) o.f32()[i] = t.f32()[rows[i]];
    return o;
  }
  const int64_t ld = t.dim(1);
  Tensor o = Tensor::empty(DType::F32, {int64_t(rows.size()), int64_t(cols.size())});
  for (size_t i = 0; i < rows.size(); ++i) {
    const float* src = t.f32() + int64_t(rows[i]) * ld;
    float* dst = o.f32() + int64_t(i) * int64_t(cols.size());
    for (size_t j = 0; j < cols.size(); ++j) dst[j] = src[cols[j]];
  }
  return o;
}
}  // namespace

Model shrink_width(const Model& m, const Importance& imp, const WidthTarget& t) {
  const ModelConfig& c = m.config;
  const int group = c.n_heads / c.n_kv_heads, hd = c.head_dim;
  const int ffn = t.ffn_dim > 0 ? t.ffn_dim : c.ffn_dim, heads = t.n_heads > 0 ? t.n_heads : c.n_heads, dim = t.dim > 0 ? t.dim : c.dim;
  if (ffn > c.ffn_dim || heads > c.n_heads || dim > c.dim) {
    fail("shrink_width", "targets (ffn_dim " + std::to_string(ffn) + ", n_heads " + std::to_string(heads) + ", dim " + std::to_string(dim) +
                             ") must not exceed the model's (" + std::to_string(c.ffn_dim) + ", " + std::to_string(c.n_heads) + ", " +
                             std::to_string(c.dim) + ")");
  }
  if (heads % group != 0) {
    fail("shrink_width", "n_heads " + std::to_string(heads) + " is not a multiple of the " + std::to_string(group) +
                             " query heads per kv head (whole kv groups are kept or dropped)");
  }
  Model s;
  s.config = c;
  s.config.ffn_dim = ffn;
  s.config.n_heads = heads;
  s.config.n_kv_heads = heads / group;
  s.config.dim = dim;
  s.config.validate("shrink_width");
  const std::vector<int> d = dim < c.dim ? top(imp.hidden, dim) : all(c.dim), one = {0};
  const std::vector<int> vocab = all(c.vocab);
  s.embed = slice(m.embed, vocab, d);
  s.final_norm = slice(m.final_norm, d, one);
  if (!c.tied_embeddings) s.lm_head = slice(m.lm_head, vocab, d);
  for (int l = 0; l < c.n_layers; ++l) {
    const LayerWeights& w = m.layers[size_t(l)];
    const std::vector<int> f = ffn < c.ffn_dim ? top(imp.ffn[size_t(l)], ffn) : all(c.ffn_dim);
    const std::vector<int> groups = heads < c.n_heads ? top(imp.group[size_t(l)], heads / group) : all(c.n_kv_heads);
    std::vector<int> qh;
    for (int g : groups) for (int i = 0; i < group; ++i) qh.push_back(g * group + i);
    const std::vector<int> q_rows = expand(qh, hd), kv_rows = expand(groups, hd);
    LayerWeights o;
    o.attn_norm = slice(w.attn_norm, d, one);
    o.ffn_norm = slice(w.ffn_norm, d, one);
    o.wq = slice(w.wq, q_rows, d);
    o.wk = slice(w.wk, kv_rows, d);
    o.wv = slice(w.wv, kv_rows, d);
    o.wo = slice(w.wo, d, q_rows);
    if (c.qkv_bias) {
      o.bq = slice(w.bq, q_rows, one);
      o.bk = slice(w.bk, kv_rows, one);
      o.bv = slice(w.bv, kv_rows, one);
    }
    o.w_gate = slice(w.w_gate, f, d);
    o.w_up = slice(w.w_up, f, d);
    o.w_down = slice(w.w_down, d, f);
    s.layers.push_back(std::move(o));
  }
  s.format = m.format;
  s.path = m.path;
  return s;
}

}  // namespace condense::train
