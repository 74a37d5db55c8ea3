// The paged KV cache on the GPU, in the CPU pool's block layout
// (kernels/cpu/kv_paged.h): block b of a layer at base + b * block_bytes holds
// K as [n_kv][block_tokens][hd], then V the same, in f32, f16, bf16, fp8 E4M3
// or int8 (code = encode(x / scale), read back as scale * decode(code), a
// scale per kv head). A pool copied between host and device means the same.
//
// A step's rows come from several sequences: row r is at position pos[r] of
// the sequence whose block table starts at tables + table_off[r]; it attends
// positions 0 .. pos[r] of that sequence (its own K/V written first).
#pragma once
#include <cstdint>

namespace condense::kernels::gpu {

class Stream;

enum class GKv : uint8_t { F32, F16, BF16, E4M3, I8 };  // the CPU's KvCode order

struct GpuKvLayer {
  GKv code = GKv::F32;
  uint8_t* base = nullptr;       // device
  int64_t block_bytes = 0;
  int n_kv = 0, hd = 0, block_tokens = 16;
  const float* k_scale = nullptr;  // device [n_kv] (E4M3, I8)
  const float* v_scale = nullptr;
};

struct GpuRows {
  int64_t rows = 0;
  const int32_t* pos = nullptr;        // device [rows]
  const int32_t* table_off = nullptr;  // device [rows]
  const int32_t* tables = nullptr;     // device: the step's block tables, concatenated
};

// k, v: [rows, n_kv * hd] (strides ldk, ldv) written at each row's position.
void kv_write(const GpuKvLayer& kv, const GpuRows& r, const float* k, int64_t ldk, const float* v, int64_t ldv, Stream& s);

// out[r, h * hd ..] = softmax(q_h . K / sqrt(hd)) V over positions 0 .. pos[r]
// (kv head h / (n_heads / n_kv)); q: [rows, n_heads * hd]. Online softmax in
// f32, no [positions] buffer: any context length. hd <= 256, a multiple of the warp / 8.
void attention(const float* q, int64_t ldq, int n_heads, const GpuKvLayer& kv, const GpuRows& r, float* out,
               int64_t ldo, Stream& s);

}  // namespace condense::kernels::gpu
