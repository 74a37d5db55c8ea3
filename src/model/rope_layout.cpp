#include "model/rope_layout.h"

#include <cstring>

namespace condense {
namespace {

void permute(const float* w, int heads, int hd, int64_t cols, float* out, bool to_half) {
  const int half = hd / 2;
  for (int h = 0; h < heads; ++h) {
    for (int i = 0; i < half; ++i) {
      for (int j = 0; j < 2; ++j) {
        const int64_t inter = int64_t(h) * hd + 2 * i + j;
        const int64_t rh = int64_t(h) * hd + j * half + i;
        const int64_t src = to_half ? inter : rh, dst = to_half ? rh : inter;
        std::memcpy(out + dst * cols, w + src * cols, size_t(cols) * sizeof(float));
      }
    }
  }
}

}  // namespace

void rope_rows_interleaved_to_half(const float* w, int heads, int hd, int64_t cols, float* out) {
  permute(w, heads, hd, cols, out, true);
}
void rope_rows_half_to_interleaved(const float* w, int heads, int hd, int64_t cols, float* out) {
  permute(w, heads, hd, cols, out, false);
}

int64_t rope_row_interleaved_of_half(int64_t r, int heads, int hd) {
  (void)heads;
  const int64_t h = r / hd, k = r % hd, half = hd / 2;
  return h * hd + 2 * (k % half) + k / half;
}
int64_t rope_row_half_of_interleaved(int64_t r, int heads, int hd) {
  (void)heads;
  const int64_t h = r / hd, k = r % hd, half = hd / 2;
  return h * hd + (k % 2) * half + k / 2;
}

}  // namespace condense
