// One query head attending over a kv head's cached positions held in blocks of
// 16 (the paged cache's blocks, or a contiguous cache cut in 16s): the decode
// path of kv_paged.cpp, vectorized for AVX-512 and AVX2. It reduces exactly as
// transformer_f32.cpp's attention_row does (dot_f32's 16 partial sums and
// folding tree per score; every output element a sequential chain over the
// positions, separate multiply and add), so its results are bitwise those of
// the scalar path on every ISA. Only included by kernels/cpu/*.cpp.
#pragma once
#include <cstdint>

#include "kernels/cpu/kv_paged.h"

namespace condense::kernels {

// A row's cached positions in blocks of 16, in two forms. block(ctx, values, b)
// gives block b's keys (or values) of every kv head as f32 [n_kv][16][hd] (the
// paged cache's own layout in place, or a block converted into a buffer that
// stays valid until the next call): the AVX2 bodies and head_dim 8 read it.
// raw(ctx, values, b) gives the block in its stored dtype `code` (same layout,
// kv_paged.h), with the per-kv-head scales of the scaled codes: AVX-512 with
// head_dim a multiple of 16 decodes it in registers as the scores and value
// sums read it (the floats block() would give, so the same results).
struct RowBlocks {
  const float* (*block)(void* ctx, bool values, int64_t b);
  void* ctx;
  int64_t n_vis;  // positions attended: [0, n_vis)
  int n_kv, group, hd;  // query head h reads kv head h / group
  const uint8_t* (*raw)(void* ctx, bool values, int64_t b);
  KvCode code;
  const float* k_scale;  // [n_kv] (E4M3, I8), else unused
  const float* v_scale;
};

// o[n_kv * group][hd] = softmax(scale * K q_h) V per query head h of q (rows of
// hd floats, head-major), scores[n_kv * group][n_vis] as scratch. The blocks
// are walked in order, every head of a block at once (one contiguous read per
// block instead of one 16-position piece per head, far apart). False (nothing
// written) when the active ISA has no vector body for this hd (a multiple of 16, or 8):
// the caller runs its scalar path.
bool attention_row_blocks(const float* q, const RowBlocks& b, float scale, float* scores, float* o);

}  // namespace condense::kernels
