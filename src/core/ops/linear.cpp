#include "core/ops/linear.h"

#include <cmath>
#include <cstdio>
#include <cstring>

#include "core/error.h"
#include "kernels/common/minifloat.h"

namespace condense::ops {
namespace {

bool a8(const LinearPart& p) {
  return p.int8_activations && (p.code == kernels::WCode::I8 || p.code == kernels::WCode::I4);
}

bool a16(const LinearPart& p) {
  return !a8(p) && p.int16_activations && !p.mask && (p.code == kernels::WCode::I8 || p.code == kernels::WCode::I4);
}

bool sparse(const LinearPart& p) {
  return p.mask && (a8(p) ? p.code == kernels::WCode::I8 : p.code == kernels::WCode::F32 || p.code == kernels::WCode::I8);
}

bool same_encoding(const LinearPart& a, const LinearPart& b) {
  if (a.code != b.code || a8(a) != a8(b) || a16(a) != a16(b) || sparse(a) != sparse(b)) return false;
  if (a.code == kernels::WCode::F32) return true;
  return !a.per_tensor && !b.per_tensor && a.group == b.group && a.asym == b.asym;
}

int64_t scale_count(const LinearPart& p) {
  if (p.per_tensor) return 1;
  const int64_t g = p.group > 0 ? p.group : p.cols;
  return p.rows * ((p.cols + g - 1) / g);
}

// Rows of fused parts, as pack_sparse reads them.
struct SparseRows {
  std::vector<const LinearPart*> parts;
  std::vector<int64_t> row0;
  // The part holding fused row `row`, and the element's index in it.
  const LinearPart& at(int64_t row, int64_t col, int64_t* e) const {
    size_t i = parts.size() - 1;
    while (row < row0[i]) --i;
    *e = (row - row0[i]) * parts[i]->cols + col;
    return *parts[i];
  }
  static bool kept(const void* self, int64_t row, int64_t col) {
    int64_t e;
    const LinearPart& p = static_cast<const SparseRows*>(self)->at(row, col, &e);
    return (p.mask[e >> 6] >> (e & 63)) & 1;
  }
  static const void* code(const void* self, int64_t row, int64_t col) {
    int64_t e;
    const LinearPart& p = static_cast<const SparseRows*>(self)->at(row, col, &e);
    return p.code == kernels::WCode::F32 ? static_cast<const void*>(p.f32 + e) : static_cast<const void*>(p.codes + e);
  }
};

const char* code_name(kernels::WCode c) {
  switch (c) {
    case kernels::WCode::F32: return "f32";
    case kernels::WCode::I8: return "int8";
    case kernels::WCode::I4: return "int4";
    case kernels::WCode::E4M3: return "fp8-e4m3";
  }
  return "?";
}

// "weight 'NAME' (fp8-e4m3) <what>", or "a fp8-e4m3 weight <what>" when unnamed.
std::string refused(const LinearPart& p, const std::string& what) {
  const std::string enc = code_name(p.code);
  return (p.name ? "weight '" + std::string(p.name) + "' (" + enc + ") " : "a " + enc + " weight ") + what;
}

Tensor zeroed_bytes(int64_t n, ByteArena* arena) {
  if (arena) return arena->zeroed(n);
  Tensor t = Tensor::empty(DType::I8, {std::max<int64_t>(n, 1)});
  std::memset(t.data(), 0, size_t(std::max<int64_t>(n, 1)));
  return t;
}

}  // namespace

PackedLinear PackedLinear::pack(const std::vector<const Tensor*>& parts) {
  std::vector<LinearPart> lp;
  for (const Tensor* t : parts) {
    check(t->ndim() == 2 && t->dtype() == DType::F32, "PackedLinear::pack", "dense weights must be 2-D f32, got " + shape_str(t->shape()));
    LinearPart p;
    p.rows = t->dim(0);
    p.cols = t->dim(1);
    p.f32 = t->f32();
    lp.push_back(p);
  }
  return pack_parts(lp);
}

PackedLinear PackedLinear::pack_parts(const std::vector<LinearPart>& parts, ByteArena* arena) {
  PackedLinear out;
  check(!parts.empty(), "PackedLinear::pack", "no weights given");
  out.k_ = parts[0].cols;
  for (const LinearPart& p : parts) {
    check(p.cols == out.k_ && p.rows > 0, "PackedLinear::pack", "weights to fuse must have equal input width");
    check(p.code == kernels::WCode::F32 ? p.f32 != nullptr : (p.codes && p.scales && (!p.asym || p.zeros)), "PackedLinear::pack",
          "a part is missing its values, codes, scales or zero points");
    check(p.code == kernels::WCode::F32 || p.group >= 0, "PackedLinear::pack", "negative group size");
  }
  for (size_t i = 0; i < parts.size();) {
    size_t j = i + 1;
    while (j < parts.size() && same_encoding(parts[i], parts[j])) ++j;
    Segment s;
    s.col0 = out.n_;
    kernels::QLayout& L = s.w.layout;
    L.code = parts[i].code;
    L.k = out.k_;
    L.group = parts[i].group;
    L.per_tensor = parts[i].per_tensor;
    L.asym = parts[i].asym;
    L.a8 = a8(parts[i]);
    L.a16 = a16(parts[i]);
    L.sparse = sparse(parts[i]);
    L.f16_scales = true;
    L.small_scales = true;
    for (size_t q = i; q < j; ++q) {
      L.n += parts[q].rows;
      if (L.sparse) {
        for (int64_t e = 0; e < parts[q].rows * parts[q].cols; ++e) L.kept += (parts[q].mask[e >> 6] >> (e & 63)) & 1;
      }
      if (L.code == kernels::WCode::F32) continue;
      for (int64_t e = 0; e < scale_count(parts[q]); ++e) {
        const float v = parts[q].scales[e];
        if (!std::isfinite(v)) check(false, "PackedLinear::pack", refused(parts[q], "has a non-finite scale at index " + std::to_string(e)));
        if (minifloat::f16_to_f32(minifloat::f32_to_f16(v)) != v) L.f16_scales = false;
        if (!(std::fabs(v) < 256.f)) L.small_scales = false;
      }
      if (L.code == kernels::WCode::E4M3) {
        const int64_t n = parts[q].rows * parts[q].cols;
        for (int64_t e = 0; e < n; ++e) {
          const bool kept = !parts[q].mask || ((parts[q].mask[e >> 6] >> (e & 63)) & 1);
          if ((parts[q].codes[e] & 0x7f) == 0x7f && kept) {
            check(false, "PackedLinear::pack", refused(parts[q], "holds the E4M3 NaN code at element " + std::to_string(e)));
          }
        }
      }
    }
    if (L.code == kernels::WCode::F32) L.f16_scales = false;
    s.codes = zeroed_bytes(L.code_bytes(), arena);
    s.scales = zeroed_bytes(L.scale_bytes(), arena);
    s.zeros = zeroed_bytes(L.zero_bytes(), arena);
    s.masks = zeroed_bytes(L.mask_bytes(), arena);
    int64_t row0 = 0;
    for (size_t q = i; q < j; ++q) {
      const LinearPart& p = parts[q];
      const void* values = p.code == kernels::WCode::F32 ? static_cast<const void*>(p.f32) : static_cast<const void*>(p.codes);
      kernels::pack_q_rows(L, values, p.scales, p.zeros, p.rows, row0, L.sparse ? nullptr : static_cast<uint8_t*>(s.codes.data()),
                           s.scales.data(), static_cast<uint8_t*>(s.zeros.data()));
      row0 += p.rows;
    }
    if (L.sparse) {
      SparseRows ctx;
      for (size_t q = i; q < j; ++q) {
        ctx.row0.push_back(ctx.parts.empty() ? 0 : ctx.row0.back() + ctx.parts.back()->rows);
        ctx.parts.push_back(&parts[q]);
      }
      auto* masks = reinterpret_cast<uint32_t*>(s.masks.data());
      auto* starts = reinterpret_cast<int64_t*>(masks + L.panels() * (L.a8 ? L.a8_kp() : L.k));
      (L.a8 ? kernels::pack_sparse_a8 : kernels::pack_sparse)(L, &SparseRows::kept, &SparseRows::code, &ctx,
                                                              static_cast<uint8_t*>(s.codes.data()), masks, starts);
      s.w.masks = masks;
      s.w.panel_start = starts;
    }
    s.w.codes = static_cast<const uint8_t*>(s.codes.data());
    s.w.scales = s.scales.data();
    s.w.zeros = static_cast<const uint8_t*>(s.zeros.data());
    out.n_ += L.n;
    out.segs_.push_back(std::move(s));
    i = j;
  }
  return out;
}

size_t PackedLinear::weight_bytes() const {
  size_t b = 0;
  for (const Segment& s : segs_) b += size_t(s.w.layout.bytes());
  return b;
}

bool PackedLinear::integer_activations() const {
  for (const Segment& s : segs_) {
    if (!s.w.layout.a8) return false;
  }
  return !segs_.empty();
}

bool PackedLinear::int16_activations() const {
  for (const Segment& s : segs_) {
    if (!s.w.layout.a16) return false;
  }
  return !segs_.empty();
}

std::string PackedLinear::describe() const {
  std::string d;
  for (const Segment& s : segs_) {
    const kernels::QLayout& L = s.w.layout;
    std::string e = code_name(L.code);
    if (L.code != kernels::WCode::F32) {
      e += L.per_tensor ? " per-tensor" : L.group > 0 ? " g" + std::to_string(L.group) : " per-channel";
      if (L.asym) e += " asym";
      if (L.a8) e += " x int8";
      if (L.a16) e += " x int16";
    }
    if (L.sparse) {
      char pct[32];
      std::snprintf(pct, sizeof pct, " %.0f%% sparse", 100.0 * (1.0 - double(L.kept) / double(L.n * L.k)));
      e += pct;
    }
    if (d.find(e) == std::string::npos) d += (d.empty() ? "" : " + ") + e;
  }
  return d;
}

void PackedLinear::row(int64_t r, float* out) const {
  if (r < 0 || r >= n_) check(false, "PackedLinear::row", "row " + std::to_string(r) + " is outside [0, " + std::to_string(n_) + ")");
  for (const Segment& s : segs_) {
    if (r < s.col0 + s.w.layout.n) return kernels::decode_row(s.w, r - s.col0, out);
  }
}

void PackedLinear::apply(const Mat& x, const Mat& y) const {
  // The message is built only on failure: apply runs per layer per token.
  if (!(x.cols == k_ && y.cols == n_ && x.rows == y.rows)) check(false, "linear",
        "x [" + std::to_string(x.rows) + ", " + std::to_string(x.cols) + "] . W^T [" + std::to_string(k_) + ", " +
            std::to_string(n_) + "] -> y [" + std::to_string(y.rows) + ", " + std::to_string(y.cols) + "] do not match");
  for (const Segment& s : segs_) kernels::linear_q(x.data, x.rows, x.ld, s.w, y.data + s.col0, y.ld);
}

}  // namespace condense::ops
