// The few SIMD helpers the per-ISA kernel bodies share: target attributes for
// the AVX-512 and AVX2 bodies (the rest of a file stays baseline x86-64), lane
// masks for partial vectors, and the 4-wide GCC vector type of the portable
// bodies (SSE2 on x86-64, NEON on ARM). Only included by kernels/cpu/*.cpp.
#pragma once
#include <immintrin.h>

#include <cstring>

namespace condense::kernels {

#define CONDENSE_AVX512 __attribute__((target("avx512f,fma")))
#define CONDENSE_AVX2 __attribute__((target("avx2,fma,f16c")))
// AVX-512 integer dot products (vpdpbusd): inside the Avx512 ISA, where present.
#define CONDENSE_AVX512_VNNI __attribute__((target("avx512f,avx512bw,avx512vnni,fma")))
// Byte expansion from a mask (vpexpandb): inside the Avx512 ISA, where present.
#define CONDENSE_AVX512_VBMI2 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vbmi2")))
#define CONDENSE_AVX512_VNNI_VBMI2 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi2,fma")))

// Lanes [0, valid) of a zmm set.
CONDENSE_AVX512 inline __mmask16 lane_mask(int valid) {
  return valid >= 16 ? __mmask16(0xffff) : (valid <= 0 ? __mmask16(0) : __mmask16((1u << valid) - 1));
}

// Lanes [0, valid) of a ymm set, for maskload/maskstore.
CONDENSE_AVX2 inline __m256i lane_mask8(int valid) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(valid), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

typedef float vec4f __attribute__((vector_size(16)));

inline vec4f load4(const float* p) {
  vec4f v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

}  // namespace condense::kernels
