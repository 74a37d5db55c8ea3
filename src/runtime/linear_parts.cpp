#include "runtime/linear_parts.h"

#include <cstdlib>

#include "core/error.h"
#include "kernels/cpu/qlinear.h"

namespace condense {

bool sparse_int8_pays(bool int8_activations) {
  const std::string mode = std::getenv("CONDENSE_SPARSE") ? std::getenv("CONDENSE_SPARSE") : "auto";
  if (mode == "always") return true;
  if (mode == "never") return false;
  if (mode != "auto") fail("CONDENSE_SPARSE", "'" + mode + "' is not one of auto, always, never");
  return int8_activations && kernels::sparse_a8_in_registers();
}

bool weight_only_int16() {
  const std::string mode = std::getenv("CONDENSE_WEIGHT_ONLY") ? std::getenv("CONDENSE_WEIGHT_ONLY") : "int16";
  if (mode == "f32") return false;
  if (mode != "int16") fail("CONDENSE_WEIGHT_ONLY", "'" + mode + "' is not one of int16, f32");
  return true;
}

LinearSource linear_source(const Model& m, const std::string& name, const Tensor& t, int64_t rows, int64_t cols, bool sparse_int8) {
  LinearSource src;
  ops::LinearPart& p = src.part;
  p.rows = rows;
  p.cols = cols;
  auto it = m.compression.find(name);
  if (it == m.compression.end() || !it->second.scheme.quantized()) {
    if (!t.defined() || t.dtype() != DType::F32 || t.numel() != rows * cols) {
      fail("engine", "weight '" + name + "' has no f32 values and no packed form the runtime can run");
    }
    p.f32 = t.f32();
    if (it != m.compression.end() && it->second.sparse()) p.mask = it->second.mask.data();  // pruned f32
    return src;
  }
  const WeightCompression& wc = it->second;
  const QuantScheme& s = wc.scheme;
  switch (s.type) {
    case DType::I8: p.code = kernels::WCode::I8; break;
    case DType::I4: p.code = kernels::WCode::I4; break;
    case DType::F8E4M3: p.code = kernels::WCode::E4M3; break;
    default: fail("engine", "weight '" + name + "' is stored as " + s.describe() + ", which the runtime has no kernel for");
  }
  p.per_tensor = s.granularity == Granularity::PerTensor;
  p.group = s.granularity == Granularity::Group ? s.group : 0;
  p.asym = s.type != DType::F8E4M3 && !s.symmetric;
  if (int64_t(wc.codes.size()) != rows * cols || int64_t(wc.scales.size()) != s.num_scales(rows, cols) ||
      (p.asym && wc.zeros.size() != wc.scales.size())) {
    fail("engine", "weight '" + name + "' (" + s.describe() + "): codes, scales or zero points do not match its shape");
  }
  p.scales = wc.scales.data();
  p.zeros = p.asym ? wc.zeros.data() : nullptr;
  p.codes = wc.codes.data();
  if (!wc.sparse()) return src;
  // int8 runs the sparse kernels where they pay (sparse_int8), which never read
  // a pruned code. The rest run dense, so their pruned elements get the code
  // meaning 0: the zero point (asymmetric), else 0 (symmetric integers, E4M3),
  // whatever a writer left there.
  if (s.type == DType::I8 && sparse_int8) {
    p.mask = wc.mask.data();
    return src;
  }
  src.codes = wc.codes;
  for (int64_t i = 0; i < rows * cols; ++i) {
    if (!wc.kept(i)) src.codes[size_t(i)] = p.asym ? wc.zeros[size_t(s.scale_index(i / cols, i % cols, cols))] : 0;
  }
  p.codes = src.codes.data();
  return src;
}

ops::PackedLinear pack_linear(const Model& m, const std::vector<std::pair<std::string, const Tensor*>>& weights,
                              const std::vector<int64_t>& rows, int64_t cols, bool int8_activations,
                              ByteArena* arena) {
  std::vector<LinearSource> srcs;
  srcs.reserve(weights.size());
  for (size_t i = 0; i < weights.size(); ++i) {
    srcs.push_back(linear_source(m, weights[i].first, *weights[i].second, rows[i], cols, sparse_int8_pays(int8_activations)));
  }
  std::vector<ops::LinearPart> parts;
  const bool int16 = !int8_activations && weight_only_int16();
  for (size_t i = 0; i < srcs.size(); ++i) {
    parts.push_back(srcs[i].part);
    parts.back().int8_activations = int8_activations;
    parts.back().int16_activations = int16;
    parts.back().name = weights[i].first.c_str();  // pack errors name the weight
  }
  return ops::PackedLinear::pack_parts(parts, arena);
}

}  // namespace condense
