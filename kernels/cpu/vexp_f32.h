// Vectorised exponential for softmax-like kernels:
//   out[j] = exp((x[j] - shift) * mul), returns sum_j out[j] (summed in float64
//   across 16 f32 lane partials).
// AVX-512: Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2, degree-6 Taylor
// polynomial (truncation 1.2e-7 relative, ~1 ulp), scaled by 2^n with scalef
// (underflows to 0 below about -87). out may alias x.
#pragma once
#include <cstdint>

namespace condense::kernels {

double exp_shift_f32(const float* x, float shift, float mul, int64_t n, float* out);

}  // namespace condense::kernels
