#include "runtime/kv_pool.h"

#include <cstring>

#include "core/error.h"

namespace condense {

kernels::KvCode kv_code_from_name(const std::string& n) {
  if (n == "f32") return kernels::KvCode::F32;
  if (n == "f16") return kernels::KvCode::F16;
  if (n == "bf16") return kernels::KvCode::BF16;
  if (n == "fp8" || n == "fp8-e4m3") return kernels::KvCode::E4M3;
  if (n == "int8") return kernels::KvCode::I8;
  fail("--kv-dtype", "'" + n + "' is not one of f32, f16, bf16, fp8, int8");
}

const char* kv_code_name(kernels::KvCode c) {
  switch (c) {
    case kernels::KvCode::F32: return "f32";
    case kernels::KvCode::F16: return "f16";
    case kernels::KvCode::BF16: return "bf16";
    case kernels::KvCode::E4M3: return "fp8-e4m3";
    case kernels::KvCode::I8: return "int8";
  }
  return "?";
}

KvPool::KvPool(const ModelConfig& c, int64_t n_blocks, kernels::KvCode code, const KvCacheQuant& q, bool host_storage)
    : code_(code), n_layers_(c.n_layers), n_kv_(c.n_kv_heads), hd_(c.head_dim), n_blocks_(n_blocks) {
  if (n_blocks < 1) fail("KV cache", "needs at least one block");
  block_bytes_ = kernels::kv_block_bytes(code, n_kv_, hd_, kKvBlockTokens);
  const bool scaled = code == kernels::KvCode::E4M3 || code == kernels::KvCode::I8;
  if (scaled) {
    const DType want = code == kernels::KvCode::E4M3 ? DType::F8E4M3 : DType::I8;
    if (q.type != want) {
      fail("KV cache", std::string("a ") + kv_code_name(code) + " cache needs calibrated " + kv_code_name(code) +
                           " scales, and this model has " + (q.quantized() ? "scales for another dtype" : "none"),
           "Add a calibrate_kv stage with that dtype to the recipe, or choose f32, f16 or bf16");
    }
    for (int l = 0; l < n_layers_; ++l) {
      const auto ks = q.layer_scales(q.k_scales, l, n_kv_), vs = q.layer_scales(q.v_scales, l, n_kv_);
      k_scales_.insert(k_scales_.end(), ks.begin(), ks.end());
      v_scales_.insert(v_scales_.end(), vs.begin(), vs.end());
    }
  }
  const int64_t total = n_blocks_ * block_bytes_ * n_layers_;
  // Not cleared: a position is always written before attention reads it (blocks
  // come back from dropped sequences uncleared anyway), and untouched pages of
  // a large pool then cost no memory until sequences reach them.
  if (host_storage) storage_ = Tensor::empty(DType::I8, {total});
  free_.resize(size_t(n_blocks_));
  for (int64_t b = 0; b < n_blocks_; ++b) free_[size_t(b)] = int32_t(n_blocks_ - 1 - b);  // pop_back takes block 0 first
}

void KvPool::reserve(std::vector<int32_t>& table, int64_t positions) {
  const int64_t need = (positions + kKvBlockTokens - 1) / kKvBlockTokens - int64_t(table.size());
  if (need <= 0) return;
  if (need > free_blocks()) {
    fail("KV cache", "out of blocks: a sequence needs " + std::to_string(need) + " more, " + std::to_string(free_blocks()) + " of " +
                         std::to_string(n_blocks_) + " are free (" + std::to_string(kKvBlockTokens) + " positions each, " +
                         std::to_string(bytes() >> 20) + " MiB)",
         "Give the engine more KV blocks (--kv-blocks / --kv-memory) or shorter sequences");
  }
  for (int64_t i = 0; i < need; ++i) {
    table.push_back(free_.back());
    free_.pop_back();
  }
}

void KvPool::copy(const std::vector<int32_t>& from, std::vector<int32_t>& to, int64_t positions) {
  if (!to.empty()) fail("KV cache", "copy into a sequence that holds blocks");
  reserve(to, positions);
  if (!storage_.defined()) return;
  auto* base = static_cast<uint8_t*>(storage_.data());
  for (int l = 0; l < n_layers_; ++l) {
    for (size_t i = 0; i < to.size(); ++i) {
      std::memcpy(base + (int64_t(l) * n_blocks_ + to[i]) * block_bytes_, base + (int64_t(l) * n_blocks_ + from[i]) * block_bytes_,
                  size_t(block_bytes_));
    }
  }
}

void KvPool::shrink(std::vector<int32_t>& table, int64_t positions) {
  const size_t keep = size_t((positions + kKvBlockTokens - 1) / kKvBlockTokens);
  while (table.size() > keep) {
    free_.push_back(table.back());
    table.pop_back();
  }
}

kernels::KvPagedView KvPool::view(int layer, const std::vector<int32_t>& table) {
  if (!storage_.defined()) fail("KV cache", "the blocks of this pool live on a GPU");
  kernels::KvPagedView v;
  v.code = code_;
  v.base = static_cast<uint8_t*>(storage_.data()) + int64_t(layer) * n_blocks_ * block_bytes_;
  v.block_bytes = block_bytes_;
  v.table = table.data();
  v.n_kv = n_kv_;
  v.hd = hd_;
  v.block_tokens = kKvBlockTokens;
  if (!k_scales_.empty()) {
    v.k_scale = k_scales_.data() + size_t(layer) * size_t(n_kv_);
    v.v_scale = v_scales_.data() + size_t(layer) * size_t(n_kv_);
  }
  return v;
}

}  // namespace condense
