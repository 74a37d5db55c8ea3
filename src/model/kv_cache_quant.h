// How a model's KV cache is stored: f32 (none), fp8 E4M3 or int8 codes with
// calibrated scales per layer, for the whole layer's keys/values (per-tensor)
// or per kv head. A cached value is scale * decode(encode(x / scale)); the
// evaluation engine applies exactly that, so measured quality is what a
// runtime storing the codes would get.
#pragma once
#include <vector>

#include "core/dtype.h"

namespace condense {

struct KvCacheQuant {
  DType type = DType::F32;       // F32 (not quantized), F8E4M3 or I8
  bool per_head = false;
  std::vector<float> k_scales, v_scales;  // [n_layers][per_head ? n_kv_heads : 1]

  bool quantized() const { return type != DType::F32; }
  // Scales of one layer, expanded to one per kv head.
  std::vector<float> layer_scales(const std::vector<float>& all, int layer, int n_kv) const;
};

}  // namespace condense
