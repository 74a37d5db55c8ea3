// The device's memory read bandwidth, measured: the physical limit a
// memory-bound kernel (decode GEMV) is compared with in the same run.
#pragma once
#include <cstddef>

namespace condense::kernels::gpu {

class Stream;

// Best of `reps` passes of a kernel that reads `bytes` once (16-byte loads,
// every SM busy) and keeps one sum per block; bytes / second.
double read_bandwidth(size_t bytes, int reps, Stream& s);
// The same for a device-to-device copy (reads + writes counted).
double copy_bandwidth(size_t bytes, int reps, Stream& s);

}  // namespace condense::kernels::gpu
