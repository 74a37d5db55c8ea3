// When a kernel opens an OpenMP parallel region. Worker threads sleep between
// regions (passive waiting: spinning workers starve a neighbouring process and
// get descheduled mid-work), so waking them and joining costs tens of
// microseconds, more in a VM where an idle vCPU halts. A region is opened only
// for work that takes much longer than that on one thread; below it, one thread
// is faster than two. (Measured: stories110M decode with a busy neighbour core
// ran at 0.84-0.88x of 1 thread at 2 threads when every GEMV forked.)
#pragma once
#include <cstdint>

namespace condense::kernels {

// Compute-bound products: m * n * k multiply-adds (~4M: ~80 us at 1 thread).
inline constexpr int64_t kParallelMacs = int64_t(1) << 22;
// Memory-bound streams (decode GEMV): bytes read (16 MB: ~0.5 ms at 30 GB/s).
inline constexpr int64_t kParallelBytes = int64_t(1) << 24;
// Decode GEMVs that decode codes for f32 inputs (int8 / int4 / fp8 weights)
// are bound by the decoding, at 8-17 GB/s on one Zen 4 core: 256 KB is already
// ~20 us of work. (Measured at 2 threads on the stories110M shape: int4 and fp8
// decode 18-25% faster when these fork; the integer-input kernels, near the
// bandwidth, 12-15% slower, so they keep kParallelBytes.)
inline constexpr int64_t kParallelDecodeBytes = int64_t(1) << 18;
// Element-wise passes over rows of activations: elements touched.
inline constexpr int64_t kParallelElems = int64_t(1) << 18;

}  // namespace condense::kernels
