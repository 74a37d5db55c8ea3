// A paged KV cache layer in its stored dtype, and attention over it. Blocks
// of `block_tokens` positions; a sequence's block table maps its position p to
// block table[p / block_tokens], slot p % block_tokens. Block b of a layer
// starts at base + b * block_bytes and holds K as [n_kv][block_tokens][hd],
// then V the same, each element in the dtype: f32, f16, bf16 (rounded to
// nearest even), fp8 E4M3 or int8 (code = encode(x / scale) with a scale per
// kv head; read back as fl(scale * decode(code))).
#pragma once
#include <cstdint>

namespace condense::kernels {

enum class KvCode : uint8_t { F32, F16, BF16, E4M3, I8 };
int kv_code_bytes(KvCode c);

struct KvPagedView {
  KvCode code = KvCode::F32;
  uint8_t* base = nullptr;
  int64_t block_bytes = 0;
  const int32_t* table = nullptr;
  int n_kv = 0, hd = 0, block_tokens = 16;
  const float* k_scale = nullptr;  // [n_kv] (E4M3, I8)
  const float* v_scale = nullptr;
};

// Bytes of one block (K and V) of a layer.
int64_t kv_block_bytes(KvCode c, int n_kv, int hd, int block_tokens);

// Writes one position's keys and values (n_kv * hd each, head-major).
void kv_paged_write(const KvPagedView& kv, const float* k_row, const float* v_row, int64_t pos);
// Reads n consecutive positions from pos0 of kv head h (keys, or values when
// `values`) as f32 [n][hd]. Uses the active ISA's vector body.
void kv_paged_read(const KvPagedView& kv, bool values, int h, int64_t pos0, int64_t n, float* out);

// Causal attention of `rows` queries at positions pos0.. (as attention_f32)
// against positions 0 .. pos0 + rows - 1 of the paged cache. The cache is read
// back into f32 and then reduced exactly as attention_f32 does, so an f32 cache
// gives attention_f32's result bit for bit, and a quantized one the result of
// attention_f32 over the read-back values.
void attention_paged_f32(const float* q, int64_t ldq, int64_t rows, int64_t pos0, int n_heads, const KvPagedView& kv,
                         float* out, int64_t ldo);

}  // namespace condense::kernels
