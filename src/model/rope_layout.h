// Row permutations of q/k projection weights between RoPE layouts. Canonical
// (HF) rotates (x[i], x[i + hd/2]); llama2.c and GGUF rotate (x[2i], x[2i+1]).
// Per head, interleaved row 2i + j holds what rotate-half row j*hd/2 + i holds.
#pragma once
#include <cstdint>

namespace condense {

// w: [heads * hd, cols] in interleaved layout -> out in rotate-half layout.
void rope_rows_interleaved_to_half(const float* w, int heads, int hd, int64_t cols, float* out);
// The inverse.
void rope_rows_half_to_interleaved(const float* w, int heads, int hd, int64_t cols, float* out);
// The same maps one row at a time (for packed rows): the interleaved row that
// rotate-half row r comes from, and the rotate-half row interleaved row r comes from.
int64_t rope_row_interleaved_of_half(int64_t r, int heads, int hd);
int64_t rope_row_half_of_interleaved(int64_t r, int heads, int hd);

}  // namespace condense
