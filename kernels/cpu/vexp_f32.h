// Vectorised exponential for softmax-like kernels:
//   out[j] = exp((x[j] - shift) * mul), returns sum_j out[j] (lane partials
//   summed in float64).
// Every ISA runs the same algorithm: arguments clamped to [-104, 88.7],
// Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2, degree-6 Taylor polynomial
// (truncation 1.2e-7 relative, ~1 ulp), scaled by 2^n (AVX-512: scalef; AVX2
// and portable: two exponent-field factors 2^(n/2) 2^(n - n/2), so the
// subnormal range underflows gradually as scalef does). out may alias x.
#pragma once
#include <cstdint>

namespace condense::kernels {

double exp_shift_f32(const float* x, float shift, float mul, int64_t n, float* out);

}  // namespace condense::kernels
