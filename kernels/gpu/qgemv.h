// Linear layers on the GPU over weights kept in their stored encoding:
// y[m, n] = sum_k x[m, k] * w(n, k), w(n, k) = scale * (q - zero) for int8 /
// int4 codes, scale * e4m3(q) for fp8, the value itself for f32 / bf16.
//
// Layout (what the .cpk stores, rows padded): codes row-major, row r at
// codes + r * row_bytes, row_bytes a multiple of 16 (each lane reads 16 bytes
// at a time); int4 two codes per byte along k, element 2i in the low nibble
// (signed two's complement when symmetric, unsigned when asymmetric, as
// model/quantized_weight.h holds them); int8 signed (symmetric) or unsigned
// (asymmetric); fp8 OCP E4M3 bytes; bf16 / f32 the values. Scales f32
// [n][groups] (per-channel: group == k; per-tensor: one scale), zero points
// u8 [n][groups].
//
// Arithmetic: f32 accumulation. Codes are decoded in registers; a group's
// codes are summed against x first and scaled once (s * (sum x q - z sum x)),
// so results differ from the CPU kernels' (which scale every weight) by
// rounding only: tests bound the difference by the float64 reference's
// sum |x w| * k * 2^-23.
#pragma once
#include <cstdint>
#include <vector>

#include "kernels/common/host_device.h"

namespace condense::kernels::gpu {

class Stream;

enum class GCode : uint8_t { F32, BF16, I8, I4, E4M3 };

struct GpuQMatrix {
  GCode code = GCode::F32;
  int64_t n = 0, k = 0;
  int64_t group = 0;         // columns per scale group (== k: per-channel); ignored when per_tensor
  bool per_tensor = false;
  bool asym = false;         // I8 / I4 only
  int64_t row_bytes = 0;
  const void* codes = nullptr;   // device
  const float* scales = nullptr; // device; null for F32 / BF16
  const uint8_t* zeros = nullptr;// device; asym only

  CONDENSE_HD int64_t groups() const { return per_tensor ? 1 : (k + group - 1) / group; }
  CONDENSE_HD int64_t scale_count() const { return per_tensor ? 1 : n * groups(); }
};

// Host-side packing: bytes per row, and the packed rows from one code byte per
// element (int4: the low nibble; f32: floats; bf16: uint16 values).
int64_t gpu_row_bytes(GCode code, int64_t k);
std::vector<uint8_t> pack_gpu_codes(GCode code, int64_t n, int64_t k, const void* elements);

// x: [m, k] device f32 with row stride ldx (a multiple of 4, 16-byte aligned);
// y: [m, n] device f32, stride ldy; y must not alias x. Rows of x go through
// in chunks of up to 8, each chunk reading the weights once.
void linear(const float* x, int64_t m, int64_t ldx, const GpuQMatrix& w, float* y, int64_t ldy, Stream& s);

// Row r of w decoded to f32 (k values) at out (device): embedding lookups from
// a quantized (tied) table. rows: device int32 [count]; out: [count, k].
void decode_rows(const GpuQMatrix& w, const int32_t* rows, int64_t count, float* out, int64_t ldo, Stream& s);

}  // namespace condense::kernels::gpu
