// The paged KV cache of an engine: one pool of fixed-size blocks (16 positions)
// shared by every sequence, each layer's K and V in the pool's dtype (f32, f16,
// bf16, fp8 E4M3 or int8 with per-kv-head scales; kernels/cpu/kv_paged.h). A
// sequence owns a block table, the same for every layer; blocks are taken as it
// grows and given back when it is truncated or dropped.
#pragma once
#include <string>
#include <vector>

#include "core/tensor.h"
#include "kernels/cpu/kv_paged.h"
#include "model/config.h"
#include "model/kv_cache_quant.h"

namespace condense {

inline constexpr int kKvBlockTokens = 16;

// "f32" | "f16" | "bf16" | "fp8" (E4M3) | "int8".
kernels::KvCode kv_code_from_name(const std::string& name);
const char* kv_code_name(kernels::KvCode c);

class KvPool {
 public:
  KvPool() = default;
  // `scales` gives per-layer, per-kv-head K and V scales (required for fp8/int8).
  // host_storage false: the blocks' bytes live elsewhere (a GPU engine's device
  // memory); the pool only hands out block numbers and copy() only reserves.
  KvPool(const ModelConfig& c, int64_t n_blocks, kernels::KvCode code, const KvCacheQuant& scales, bool host_storage = true);

  kernels::KvCode code() const { return code_; }
  int64_t total_blocks() const { return n_blocks_; }
  int64_t free_blocks() const { return int64_t(free_.size()); }
  size_t bytes() const { return size_t(n_blocks_ * block_bytes_ * n_layers_); }
  // Bytes one cached position takes over all layers (K and V).
  size_t bytes_per_token() const { return size_t(block_bytes_ * n_layers_ / kKvBlockTokens); }

  // Grows `table` to cover `positions` positions, all or nothing; throws when
  // the pool has too few free blocks, saying how many it has.
  void reserve(std::vector<int32_t>& table, int64_t positions);
  // `to` (empty) gets copies of the blocks of `from` covering `positions`.
  void copy(const std::vector<int32_t>& from, std::vector<int32_t>& to, int64_t positions);
  // Gives back the blocks past the first ceil(positions / 16).
  void shrink(std::vector<int32_t>& table, int64_t positions);
  kernels::KvPagedView view(int layer, const std::vector<int32_t>& table);
  // [n_layers][n_kv] (empty unless fp8 / int8).
  const std::vector<float>& k_scales() const { return k_scales_; }
  const std::vector<float>& v_scales() const { return v_scales_; }

 private:
  kernels::KvCode code_ = kernels::KvCode::F32;
  int n_layers_ = 0, n_kv_ = 0, hd_ = 0;
  int64_t n_blocks_ = 0, block_bytes_ = 0;
  Tensor storage_;  // [n_layers][n_blocks][block_bytes]
  std::vector<int32_t> free_;
  std::vector<float> k_scales_, v_scales_;  // [n_layers][n_kv]
};

}  // namespace condense
