// One query head attending over a kv head's cached positions held in blocks of
// 16 (the paged cache's blocks, or a contiguous cache cut in 16s): the decode
// path of kv_paged.cpp, vectorized for AVX-512 and AVX2. It reduces exactly as
// transformer_f32.cpp's attention_row does (dot_f32's 16 partial sums and
// folding tree per score; every output element a sequential chain over the
// positions, separate multiply and add), so its results are bitwise those of
// the scalar path on every ISA. Only included by kernels/cpu/*.cpp.
#pragma once
#include <cstdint>

namespace condense::kernels {

struct RowBlocks {
  const float* const* k;  // k[b]: positions [16b, 16b + 16) as [16][hd] f32 (the last block partial)
  const float* const* v;
  int64_t n_vis;  // positions attended: [0, n_vis)
  int hd;
};

// o[hd] = softmax(scale * K qh) V, scores[n_vis] as scratch. False (and nothing
// written) when the active ISA has no vector body for this hd (hd % 16 != 0):
// the caller runs its scalar path.
bool attention_row_blocks(const float* qh, const RowBlocks& b, float scale, float* scores, float* o);

}  // namespace condense::kernels
