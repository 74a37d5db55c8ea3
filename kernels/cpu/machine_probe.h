// This machine's limits, measured with the same instructions the kernels use:
// memory read bandwidth (the bound for decode), f32 FMA throughput (prefill,
// batched rows) and int8 / int16 dot-product throughput (integer-activation kernels).
// bench/bench_machine.cpp times these bodies under Google Benchmark;
// `condense bench` measures them once per run (runtime/bench_run.h).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "kernels/cpu/cpu_features.h"

namespace condense::kernels::probe {

// Sums n floats (n a multiple of 64) with isa's vectors, software-prefetching
// `prefetch` floats ahead (0: the hardware prefetcher alone).
float read_sum(Isa isa, const float* p, size_t n, size_t prefetch);
// FLOPs of `iters` rounds of 12 independent FMA chains on isa's vectors
// (portable: multiply then add, as its kernels do).
double fma_chains(Isa isa, int64_t iters);

enum class Int8Dot { Avx2Maddubs, Avx512Maddubs, Avx512Vnni };
bool int8_dot_supported(Int8Dot d);
const char* int8_dot_name(Int8Dot d);  // "avx2_maddubs", "avx512_maddubs", "avx512_vnni"
// Ops (2 per u8 x s8 multiply-add) of `iters` rounds of 8 accumulator chains.
double int8_dots(Int8Dot d, int64_t iters);
// The int8 dot the integer-activation kernels use on this CPU at `isa`, if any.
bool int8_dot_for(Isa isa, Int8Dot* out);

struct Limits {
  int threads = 1;
  double read_gbs = 0;    // GB/s (1e9), best of the passes
  double fma_gflops = 0;  // active ISA
  double int8_gops = 0;   // 0 when the ISA has no int8 dot
  std::string int8_kind;
  double int16_gops = 0;  // int16 pair dots (the a16 kernels), 0 likewise
  std::string int16_kind;
};
// Reads `read_bytes` (rounded to 64 floats) `passes` times with `threads`
// threads (hardware and software prefetch, best), then times the FMA and int8
// bodies for ~50 ms each.
Limits measure(int threads, size_t read_bytes, int passes);

}  // namespace condense::kernels::probe
