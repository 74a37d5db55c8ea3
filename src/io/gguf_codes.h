// Exact maps between condense's packed weights (model/quantized_weight.h) and
// ggml blocks, so a conversion loses nothing where the encodings agree:
//
//   int8 g32 (sym, or asym with a zero of 127/128 per group) <-> Q8_0
//   int4 g32 (sym, or asym with a zero of 7/8 per group)     <-> Q4_0
//   int4 g32 asym, -scale*zero exact in f16                   ->  Q4_1
//
// ggml's reference quantizers give Q4_0 blocks a negative d whenever the
// largest-magnitude element is positive (d = max / -8, that element's code 0);
// condense scales are never negative, so such a block reads as an asymmetric
// group with zero point 7 and codes 15 - q (the same values). Scales must be
// exact in f16 (a .cpk stores them so when they are; see round_scale_up).
#pragma once
#include <cstdint>
#include <optional>
#include <string>

#include "model/quantized_weight.h"

namespace condense {

// Whether `wc` ([rows, cols]) maps exactly onto ggml type `t`; when not, `why`
// says what differs. Masked (pruned) entries encode as exact zeros.
bool codes_fit_ggml(const WeightCompression& wc, int64_t rows, int64_t cols, uint32_t t, std::string* why);
// Row r of `wc` as blocks of `t` (codes_fit_ggml must hold).
void encode_codes_row(const WeightCompression& wc, int64_t r, int64_t cols, uint32_t t, uint8_t* dst);
// Q8_0 / Q4_0 rows as condense codes ([rows, cols] blocks back to back); other
// types give nullopt. The result's dequantized values equal ggml's.
std::optional<WeightCompression> codes_from_ggml(uint32_t t, const uint8_t* data, int64_t rows, int64_t cols);

}  // namespace condense
