// The one-time repack of stored codes into the panel layout of qlinear.h.
#include <bit>
#include <cstring>

#include "kernels/common/minifloat.h"
#include "kernels/cpu/qlinear.h"

namespace condense::kernels {

int64_t QLayout::a8_kp() const {
  const int64_t last = k - (groups() - 1) * group_len();
  return (groups() - 1) * a8_group_span() + (last + a8_unit() - 1) / a8_unit() * a8_unit();
}

int64_t QLayout::code_bytes() const {
  if (sparse) return kept * (code == WCode::F32 ? 4 : 1) + 64;
  const int64_t per_k = code == WCode::F32 ? 32 * 4 : code == WCode::I4 ? 16 : 32;
  return panels() * (int_acts() ? a8_kp() : k) * per_k;
}

int64_t QLayout::scale_count() const {
  if (code == WCode::F32) return 0;
  return per_tensor ? 1 : panels() * groups() * 32;
}

int64_t QLayout::zero_bytes() const {
  if (!asym) return 0;
  return per_tensor ? 1 : panels() * groups() * (code == WCode::I4 ? 16 : 32);
}

namespace {

void put_scale(const QLayout& L, void* out, int64_t i, float s) {
  if (L.f16_scales) {
    const uint16_t h = minifloat::f32_to_f16(s);
    std::memcpy(static_cast<uint8_t*>(out) + 2 * i, &h, 2);
  } else {
    std::memcpy(static_cast<uint8_t*>(out) + 4 * i, &s, 4);
  }
}

// Byte `j` of a 16-byte nibble pair block holds rows j (low) and j + 16 (high).
void put_nibble(uint8_t* block, int row_in_panel, uint8_t v) {
  uint8_t& b = block[row_in_panel & 15];
  if (row_in_panel < 16) b = uint8_t((b & 0xf0) | (v & 0x0f));
  else b = uint8_t((b & 0x0f) | ((v & 0x0f) << 4));
}

// The padded position of column c in the integer-activation layouts.
int64_t int_pos(const QLayout& L, int64_t c) { return (c / L.group_len()) * L.a8_group_span() + c % L.group_len(); }

}  // namespace

void pack_q_rows(const QLayout& L, const void* values, const float* scales, const uint8_t* zeros, int64_t rows,
                 int64_t row0, uint8_t* codes_out, void* scales_out, uint8_t* zeros_out) {
  const int64_t K = L.k, G = L.groups();
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t row = row0 + r, p = row / 32;
    const int j = int(row % 32);
    if (L.code == WCode::F32 && !codes_out) continue;
    if (codes_out) switch (L.code) {
      case WCode::F32: {
        const float* src = static_cast<const float*>(values) + r * K;
        float* dst = reinterpret_cast<float*>(codes_out) + p * K * 32 + j;
        for (int64_t c = 0; c < K; ++c) dst[c * 32] = src[c];
        continue;  // no scales
      }
      case WCode::I8:
      case WCode::E4M3: {
        const uint8_t* src = static_cast<const uint8_t*>(values) + r * K;
        if (L.int_acts()) {  // a8 and a16: the VNNI order
          uint8_t* dst = codes_out + p * L.a8_kp() * 32;
          for (int64_t c = 0; c < K; ++c) {
            const int64_t pos = (c / L.group_len()) * L.a8_group_span() + c % L.group_len();
            dst[(pos / 4) * 128 + j * 4 + pos % 4] = L.asym ? src[c] : uint8_t(src[c] ^ 0x80);  // q + 128
          }
          break;
        }
        uint8_t* dst = codes_out + p * K * 32 + j;
        for (int64_t c = 0; c < K; ++c) dst[c * 32] = src[c];
        break;
      }
      case WCode::I4: {
        const uint8_t* src = static_cast<const uint8_t*>(values) + r * K;
        if (L.int_acts()) {  // a8 and a16: the VNNI order
          uint8_t* dst = codes_out + p * L.a8_kp() * 16;
          for (int64_t c = 0; c < K; ++c) {
            const int64_t pos = (c / L.group_len()) * L.a8_group_span() + c % L.group_len();
            const uint8_t u = L.asym ? uint8_t(src[c] & 15) : uint8_t((src[c] + 8) & 15);  // q + 8
            uint8_t& b = dst[(pos / 8) * 128 + j * 4 + pos % 4];
            b = pos % 8 < 4 ? uint8_t((b & 0xf0) | u) : uint8_t((b & 0x0f) | (u << 4));
          }
          break;
        }
        uint8_t* dst = codes_out + p * K * 16;
        for (int64_t c = 0; c < K; ++c) put_nibble(dst + c * 16, j, src[c]);
        break;
      }
    }
    if (L.per_tensor) {
      if (row == 0) {
        put_scale(L, scales_out, 0, scales[0]);
        if (L.asym) zeros_out[0] = zeros[0];
      }
      continue;
    }
    for (int64_t g = 0; g < G; ++g) {
      const int64_t slot = (p * G + g) * 32 + j;
      put_scale(L, scales_out, slot, scales[r * G + g]);
      if (!L.asym) continue;
      if (L.code == WCode::I4) put_nibble(zeros_out + (p * G + g) * 16, j, zeros[r * G + g]);
      else zeros_out[slot] = zeros[r * G + g];
    }
  }
}

void pack_sparse(const QLayout& L, bool (*kept)(const void*, int64_t, int64_t), const void* (*code_at)(const void*, int64_t, int64_t),
                 const void* ctx, uint8_t* codes_out, uint32_t* masks_out, int64_t* panel_start_out) {
  const int64_t esz = L.code == WCode::F32 ? 4 : 1;
  int64_t idx = 0;
  for (int64_t p = 0; p < L.panels(); ++p) {
    panel_start_out[p] = idx;
    for (int64_t c = 0; c < L.k; ++c) {
      uint32_t m = 0;
      for (int j = 0; j < 32; ++j) {
        const int64_t row = p * 32 + j;
        if (row >= L.n || !kept(ctx, row, c)) continue;
        m |= uint32_t(1) << j;
        std::memcpy(codes_out + idx * esz, code_at(ctx, row, c), size_t(esz));
        ++idx;
      }
      masks_out[p * L.k + c] = m;
    }
  }
}

void pack_sparse_a8(const QLayout& L, bool (*kept)(const void*, int64_t, int64_t), const void* (*code_at)(const void*, int64_t, int64_t),
                    const void* ctx, uint8_t* codes_out, uint32_t* masks_out, int64_t* panel_start_out) {
  const int64_t steps = L.a8_kp() / 4, span = L.a8_group_span(), glen = L.group_len();
  int64_t idx = 0;
  for (int64_t p = 0; p < L.panels(); ++p) {
    panel_start_out[p] = idx;
    for (int64_t u = 0; u < steps; ++u) {
      uint32_t* m = masks_out + (p * steps + u) * 4;
      m[0] = m[1] = m[2] = m[3] = 0;
      for (int b = 0; b < 128; ++b) {
        const int64_t row = p * 32 + b / 4, pos = u * 4 + b % 4, off = pos % span, c = (pos / span) * glen + off;
        if (row >= L.n || off >= glen || c >= L.k || !kept(ctx, row, c)) continue;
        const uint8_t code = *static_cast<const uint8_t*>(code_at(ctx, row, c));
        codes_out[idx++] = L.asym ? code : uint8_t(code ^ 0x80);  // q + 128
        m[b / 32] |= uint32_t(1) << (b % 32);
      }
    }
  }
}

namespace {

float scale_at(const QMatrix& w, int64_t slot) {
  float s;
  if (w.layout.f16_scales) {
    uint16_t h;
    std::memcpy(&h, static_cast<const uint8_t*>(w.scales) + 2 * slot, 2);
    s = minifloat::f16_to_f32(h);
  } else {
    std::memcpy(&s, static_cast<const uint8_t*>(w.scales) + 4 * slot, 4);
  }
  return s;
}

}  // namespace

void decode_row(const QMatrix& w, int64_t r, float* out) {
  const QLayout& L = w.layout;
  const int64_t K = L.k, G = L.groups(), glen = L.group_len(), p = r / 32;
  const int j = int(r % 32);
  if (L.sparse && L.a8) {
    // Row j's bytes of a step are mask bits 4j..4j+3; its kept codes sit after
    // the step's kept bytes of the rows before it.
    const int64_t steps = L.a8_kp() / 4, span = L.a8_group_span();
    int64_t idx = w.panel_start[p];
    for (int64_t c = 0; c < K; ++c) out[c] = 0.f;
    const int word = j / 8, shift = 4 * (j % 8);
    for (int64_t u = 0; u < steps; ++u) {
      const uint32_t* m = w.masks + (p * steps + u) * 4;
      int64_t at = idx;
      for (int q = 0; q < word; ++q) at += std::popcount(m[q]);
      at += std::popcount(m[word] & ((uint32_t(1) << shift) - 1));
      for (int b = 0; b < 4; ++b) {
        if (!((m[word] >> (shift + b)) & 1)) continue;
        const int64_t pos = u * 4 + b, c = (pos / span) * glen + pos % span;
        const int64_t slot = L.per_tensor ? 0 : (p * G + pos / span) * 32 + j;
        const int zero = L.asym ? (L.per_tensor ? w.zeros[0] : w.zeros[slot]) : 128;
        out[c] = scale_at(w, slot) * float(int(w.codes[at++]) - zero);
      }
      idx += std::popcount(m[0]) + std::popcount(m[1]) + std::popcount(m[2]) + std::popcount(m[3]);
    }
    return;
  }
  if (L.sparse) {
    // The row's kept codes, found by counting the kept lanes below it per k-step.
    int64_t idx = w.panel_start[p];
    for (int64_t c = 0; c < K; ++c) {
      const uint32_t m = w.masks[p * K + c];
      float v = 0.f;
      if ((m >> j) & 1) {
        const int64_t at = idx + std::popcount(m & ((uint32_t(1) << j) - 1));
        if (L.code == WCode::F32) {
          std::memcpy(&v, w.codes + 4 * at, 4);
        } else {
          const int64_t slot = L.per_tensor ? 0 : (p * G + c / glen) * 32 + j;
          const uint8_t b = w.codes[at];
          v = scale_at(w, slot) * float(L.asym ? int(b) - int(w.zeros[slot]) : int(int8_t(b)));
        }
      }
      out[c] = v;
      idx += std::popcount(m);
    }
    return;
  }
  if (L.code == WCode::F32) {
    const float* src = reinterpret_cast<const float*>(w.codes) + p * K * 32 + j;
    for (int64_t c = 0; c < K; ++c) out[c] = src[c * 32];
    return;
  }
  for (int64_t c = 0; c < K; ++c) {
    const int64_t g = c / glen, slot = L.per_tensor ? 0 : (p * G + g) * 32 + j;
    const float s = scale_at(w, slot);
    int zero = 0;
    if (L.asym) {
      if (L.per_tensor) zero = w.zeros[0];
      else if (L.code == WCode::I4) zero = (w.zeros[(p * G + g) * 16 + (j & 15)] >> (j < 16 ? 0 : 4)) & 15;
      else zero = w.zeros[slot];
    }
    const int64_t pos = int_pos(L, c);  // a8 / a16 only
    switch (L.code) {
      case WCode::I8: {
        uint8_t b = L.int_acts() ? w.codes[p * L.a8_kp() * 32 + (pos / 4) * 128 + j * 4 + pos % 4] : w.codes[p * K * 32 + c * 32 + j];
        if (L.int_acts() && !L.asym) b ^= 0x80;
        out[c] = s * float(L.asym ? int(b) - zero : int(int8_t(b)));
        break;
      }
      case WCode::I4: {
        int nib = L.int_acts() ? (w.codes[p * L.a8_kp() * 16 + (pos / 8) * 128 + j * 4 + pos % 4] >> (pos % 8 < 4 ? 0 : 4)) & 15
                         : (w.codes[p * K * 16 + c * 16 + (j & 15)] >> (j < 16 ? 0 : 4)) & 15;
        if (L.int_acts() && !L.asym) nib = (nib - 8) & 15;
        out[c] = s * float(L.asym ? nib - zero : nib - ((nib & 8) ? 16 : 0));
        break;
      }
      case WCode::E4M3: out[c] = s * minifloat::e4m3_to_f32(w.codes[p * K * 32 + c * 32 + j]); break;
      case WCode::F32: break;
    }
  }
}

}  // namespace condense::kernels
