#include "pipeline/tensor_parallel.h"

#include <cstring>
#include <nlohmann/json.hpp>

#include "core/error.h"

namespace condense::pipeline {
namespace {

enum class Split { Rows, Cols, Replicated };

Split split_of(const WeightRef& w) {
  if (w.kind == WeightKind::Norm) return Split::Replicated;
  if (w.kind == WeightKind::Embedding || w.kind == WeightKind::Head || w.kind == WeightKind::Bias) return Split::Rows;
  const bool cols = w.name.find("o_proj") != std::string::npos || w.name.find("down_proj") != std::string::npos;
  return cols ? Split::Cols : Split::Rows;
}

const char* split_name(Split s) { return s == Split::Rows ? "rows" : s == Split::Cols ? "cols" : "replicated"; }

// Rows [lo, hi) of a [rows, cols] tensor (1-D: elements).
Tensor slice_rows(const Tensor& t, int64_t lo, int64_t hi) {
  const int64_t cols = t.ndim() == 2 ? t.dim(1) : 1;
  Shape sh = t.shape();
  sh[0] = hi - lo;
  Tensor out = Tensor::empty(DType::F32, sh);
  std::memcpy(out.f32(), t.f32() + lo * cols, size_t((hi - lo) * cols) * 4);
  return out;
}
Tensor slice_cols(const Tensor& t, int64_t lo, int64_t hi) {
  const int64_t rows = t.dim(0), cols = t.dim(1), n = hi - lo;
  Tensor out = Tensor::empty(DType::F32, {rows, n});
  for (int64_t r = 0; r < rows; ++r) std::memcpy(out.f32() + r * n, t.f32() + r * cols + lo, size_t(n) * 4);
  return out;
}

// Elements of a [rows, cols] packed weight, picked by (row, col) ranges.
WeightCompression slice_packed(const WeightCompression& wc, int64_t rows, int64_t cols, int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
  const QuantScheme& s = wc.scheme;
  const int64_t nr = r1 - r0, nc = c1 - c0;
  WeightCompression out;
  out.scheme = s;
  if (!wc.codes.empty()) out.codes.resize(size_t(nr * nc));
  if (wc.sparse()) out.mask.assign(size_t((nr * nc + 63) / 64), 0);
  for (int64_t r = 0; r < nr; ++r) {
    for (int64_t c = 0; c < nc; ++c) {
      const int64_t src = (r0 + r) * cols + (c0 + c), dst = r * nc + c;
      if (!wc.codes.empty()) out.codes[size_t(dst)] = wc.codes[size_t(src)];
      if (wc.sparse() && wc.kept(src)) out.mask[size_t(dst >> 6)] |= uint64_t(1) << (dst & 63);
    }
  }
  if (s.quantized()) {
    if (s.granularity == Granularity::PerTensor) {
      out.scales = wc.scales;
      out.zeros = wc.zeros;
    } else {
      const int64_t gpr = s.groups_per_row(cols), g0 = s.granularity == Granularity::Group ? c0 / s.group : 0;
      const int64_t ng = s.groups_per_row(nc);
      for (int64_t r = r0; r < r1; ++r) {
        for (int64_t g = 0; g < ng; ++g) {
          out.scales.push_back(wc.scales[size_t(r * gpr + g0 + g)]);
          if (!wc.zeros.empty()) out.zeros.push_back(wc.zeros[size_t(r * gpr + g0 + g)]);
        }
      }
    }
  }
  return out;
}

// Each rank's weights in for_each_weight order (the same order as the full model's).
std::vector<std::vector<WeightRef>> rank_weight_refs(const std::vector<Model>& ranks) {
  std::vector<std::vector<WeightRef>> refs(ranks.size());
  for (size_t r = 0; r < ranks.size(); ++r) for_each_weight(ranks[r], [&](const WeightRef& w) { refs[r].push_back(w); });
  return refs;
}

// The output rows of a weight per rank; columns for o / down.
int64_t split_extent(const WeightRef& w, Split s) { return s == Split::Cols ? w.shape[1] : w.shape[0]; }

}  // namespace

nlohmann::json tp_split_table(const Model& m) {
  nlohmann::json t = nlohmann::json::object();
  for_each_weight(m, [&](const WeightRef& w) { t[w.name] = split_name(split_of(w)); });
  return t;
}

std::vector<Model> split_tensor_parallel(const Model& m, int n) {
  const ModelConfig& c = m.config;
  if (n < 1) fail("--tp", "the degree must be at least 1");
  auto divides = [&](const char* what, int v) {
    if (v % n) fail("--tp " + std::to_string(n), std::string(what) + " = " + std::to_string(v) + " does not split into " + std::to_string(n) + " equal parts",
                    "Choose a degree that divides the heads, kv heads, FFN width and vocabulary");
  };
  divides("n_heads", c.n_heads);
  divides("n_kv_heads (GQA groups stay whole on a rank)", c.n_kv_heads);
  divides("ffn_dim", c.ffn_dim);
  divides("vocab", c.vocab);
  // Column splits must not cut a quantization group.
  for_each_weight(m, [&](const WeightRef& w) {
    auto it = m.compression.find(w.name);
    if (split_of(w) != Split::Cols || it == m.compression.end() || it->second.scheme.granularity != Granularity::Group) return;
    const int64_t cols = w.shape[1], per = cols / n, g = it->second.scheme.group;
    for (int r = 1; r < n; ++r) {
      if ((r * per) % g) {
        fail(w.name, "a " + std::to_string(n) + "-way split of its " + std::to_string(cols) + " input columns (" + std::to_string(per) +
                         " per rank) cuts its quantization groups of " + std::to_string(g),
             "Choose a degree that keeps groups whole, or quantize with a smaller group");
      }
    }
  });
  std::vector<Model> ranks(static_cast<size_t>(n));
  for (int r = 0; r < n; ++r) {
    Model& rm = ranks[size_t(r)];
    rm.config = c;
    rm.config.n_heads = c.n_heads / n;
    rm.config.n_kv_heads = c.n_kv_heads / n;
    rm.config.ffn_dim = c.ffn_dim / n;
    rm.config.vocab = c.vocab / n;
    rm.format = m.format;
    rm.path = m.path;
    rm.history = m.history;
    rm.activations = m.activations;
    rm.kv_cache = m.kv_cache;
    if (m.kv_cache.quantized() && m.kv_cache.per_head) {
      const int per = c.n_kv_heads / n;
      rm.kv_cache.k_scales.clear();
      rm.kv_cache.v_scales.clear();
      for (int l = 0; l < c.n_layers; ++l) {
        for (int h = r * per; h < (r + 1) * per; ++h) {
          rm.kv_cache.k_scales.push_back(m.kv_cache.k_scales[size_t(l * c.n_kv_heads + h)]);
          rm.kv_cache.v_scales.push_back(m.kv_cache.v_scales[size_t(l * c.n_kv_heads + h)]);
        }
      }
    }
    allocate_weights(rm);
  }
  const std::vector<std::vector<WeightRef>> rank_refs = rank_weight_refs(ranks);
  size_t k = 0;
  for_each_weight(m, [&](const WeightRef& w) {
    const Split s = split_of(w);
    const int64_t rows = w.shape[0], cols = w.shape.size() == 2 ? w.shape[1] : 1, per = split_extent(w, s) / n;
    auto it = m.compression.find(w.name);
    for (int r = 0; r < n; ++r) {
      const WeightRef& dst = rank_refs[size_t(r)][k];
      const int64_t lo = r * per, hi = lo + per;
      if (s == Split::Replicated) *dst.tensor = slice_rows(*w.tensor, 0, rows);
      else if (s == Split::Rows) *dst.tensor = slice_rows(*w.tensor, lo, hi);
      else *dst.tensor = slice_cols(*w.tensor, lo, hi);
      if (dst.tensor->shape() != dst.shape) fail(w.name, "internal error: rank shape " + shape_str(dst.tensor->shape()) + " != " + shape_str(dst.shape));
      if (it != m.compression.end()) {
        ranks[size_t(r)].compression[w.name] = s == Split::Cols ? slice_packed(it->second, rows, cols, 0, rows, lo, hi)
                                              : s == Split::Rows ? slice_packed(it->second, rows, cols, lo, hi, 0, cols)
                                                                 : it->second;
      }
    }
    ++k;
  });
  return ranks;
}

Model merge_tensor_parallel(const std::vector<Model>& ranks, const ModelConfig& full) {
  const int n = int(ranks.size());
  if (n < 1) fail("--merge", "no ranks");
  Model m;
  m.config = full;
  m.format = ranks[0].format;
  m.path = ranks[0].path;
  m.history = ranks[0].history;
  m.activations = ranks[0].activations;
  m.kv_cache = ranks[0].kv_cache;
  for (int r = 0; r < n; ++r) {
    const ModelConfig& rc = ranks[size_t(r)].config;
    if (rc.n_heads * n != full.n_heads || rc.n_kv_heads * n != full.n_kv_heads || rc.ffn_dim * n != full.ffn_dim || rc.vocab * n != full.vocab ||
        rc.dim != full.dim || rc.n_layers != full.n_layers) {
      fail("rank " + std::to_string(r), "config " + rc.summary() + " is not 1/" + std::to_string(n) + " of " + full.summary());
    }
    if (ranks[size_t(r)].activations.scales != m.activations.scales || ranks[size_t(r)].activations.type != m.activations.type) {
      fail("rank " + std::to_string(r), "activation quantization differs from rank 0's (it is replicated)");
    }
  }
  if (m.kv_cache.quantized() && m.kv_cache.per_head) {
    const int per = full.n_kv_heads / n;
    m.kv_cache.k_scales.clear();
    m.kv_cache.v_scales.clear();
    for (int l = 0; l < full.n_layers; ++l) {
      for (int r = 0; r < n; ++r) {
        for (int h = 0; h < per; ++h) {
          m.kv_cache.k_scales.push_back(ranks[size_t(r)].kv_cache.k_scales[size_t(l * per + h)]);
          m.kv_cache.v_scales.push_back(ranks[size_t(r)].kv_cache.v_scales[size_t(l * per + h)]);
        }
      }
    }
  }
  allocate_weights(m);
  const std::vector<std::vector<WeightRef>> rank_refs = rank_weight_refs(ranks);
  size_t k = 0;
  for_each_weight(m, [&](const WeightRef& w) {
    const Split s = split_of(w);
    const int64_t rows = w.shape[0], cols = w.shape.size() == 2 ? w.shape[1] : 1, per = split_extent(w, s) / n;
    float* out = w.tensor->f32();
    const bool packed = ranks[0].compression.count(w.name) != 0;
    WeightCompression merged;
    for (int r = 0; r < n; ++r) {
      const WeightRef& src = rank_refs[size_t(r)][k];
      if (src.name != w.name) fail("rank " + std::to_string(r), "weights out of order ('" + src.name + "' where '" + w.name + "' belongs)");
      if (ranks[size_t(r)].compression.count(w.name) != size_t(packed)) fail(w.name, "packed on some ranks and not on others");
      const float* in = src.tensor->f32();
      const WeightCompression* wc = packed ? &ranks[size_t(r)].compression.at(w.name) : nullptr;
      if (s == Split::Replicated) {
        if (r == 0) {
          std::memcpy(out, in, size_t(rows * cols) * 4);
          if (packed) merged = *wc;
        } else if (std::memcmp(out, in, size_t(rows * cols) * 4) != 0) {
          fail(w.name, "rank " + std::to_string(r) + " holds other values than rank 0 (it is replicated)");
        }
        continue;
      }
      if (s == Split::Rows) {
        std::memcpy(out + r * per * cols, in, size_t(per * cols) * 4);
      } else {
        for (int64_t row = 0; row < rows; ++row) std::memcpy(out + row * cols + r * per, in + row * per, size_t(per) * 4);
      }
      if (!packed) continue;
      const QuantScheme& qs = wc->scheme;
      if (r == 0) {
        merged.scheme = qs;
        if (!wc->codes.empty()) merged.codes.assign(size_t(rows * cols), 0);
        if (wc->sparse()) merged.mask.assign(size_t((rows * cols + 63) / 64), 0);
      } else if (!(qs == merged.scheme)) {
        fail(w.name, "rank " + std::to_string(r) + " stores it as " + qs.describe() + ", rank 0 as " + merged.scheme.describe());
      }
      const int64_t pr = s == Split::Rows ? per : rows, pc = s == Split::Rows ? cols : per;
      for (int64_t i = 0; i < pr * pc; ++i) {
        const int64_t dst = s == Split::Rows ? r * per * cols + i : (i / pc) * cols + r * per + i % pc;
        if (!wc->codes.empty()) merged.codes[size_t(dst)] = wc->codes[size_t(i)];
        if (wc->sparse() && wc->kept(i)) merged.mask[size_t(dst >> 6)] |= uint64_t(1) << (dst & 63);
      }
      if (!qs.quantized()) continue;
      if (qs.granularity == Granularity::PerTensor || (s == Split::Cols && qs.granularity == Granularity::PerChannel)) {
        if (r == 0) {
          merged.scales = wc->scales;
          merged.zeros = wc->zeros;
        } else if (wc->scales != merged.scales || wc->zeros != merged.zeros) {
          fail(w.name, "rank " + std::to_string(r) + "'s scales differ from rank 0's (they are replicated by a column split)");
        }
      } else if (s == Split::Rows) {
        merged.scales.insert(merged.scales.end(), wc->scales.begin(), wc->scales.end());
        merged.zeros.insert(merged.zeros.end(), wc->zeros.begin(), wc->zeros.end());
      } else {  // groups along a column split: rank r's groups follow rank r-1's in every row
        const int64_t g_full = qs.groups_per_row(cols), g_rank = qs.groups_per_row(per);
        if (r == 0) {
          merged.scales.assign(size_t(rows * g_full), 0.f);
          if (!wc->zeros.empty()) merged.zeros.assign(size_t(rows * g_full), 0);
        }
        for (int64_t row = 0; row < rows; ++row) {
          for (int64_t g = 0; g < g_rank; ++g) {
            merged.scales[size_t(row * g_full + r * g_rank + g)] = wc->scales[size_t(row * g_rank + g)];
            if (!wc->zeros.empty()) merged.zeros[size_t(row * g_full + r * g_rank + g)] = wc->zeros[size_t(row * g_rank + g)];
          }
        }
      }
    }
    if (packed) m.compression[w.name] = std::move(merged);
    ++k;
  });
  return m;
}

}  // namespace condense::pipeline
