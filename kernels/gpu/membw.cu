#include <algorithm>

#include "kernels/gpu/gpu_check.h"
#include "kernels/gpu/membw.h"

namespace condense::kernels::gpu {

namespace {
__global__ void read_kernel(const uint4* __restrict__ p, size_t n, float* out) {
  uint32_t acc = 0;
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    const uint4 v = p[i];
    acc ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  // One store per block, so the loads cannot be removed and the writes cost nothing.
  if (acc == 0x9e3779b9u) out[blockIdx.x] = float(acc);
}
}  // namespace

double read_bandwidth(size_t bytes, int reps, Stream& s) {
  bytes = bytes / 16 * 16;
  DeviceBuffer buf(bytes), out(size_t(1) << 20);
  memset_async(buf.data(), 1, bytes, s);
  const unsigned blocks = unsigned(std::min<int64_t>(int64_t(multiprocessors()) * 8, 1 << 16));
  Timer t;
  double best = 0;
  for (int r = 0; r < reps + 1; ++r) {  // the first pass warms up
    t.start(s);
    read_kernel<<<blocks, 512, 0, static_cast<gpuStream_t>(s.handle())>>>(buf.as<uint4>(), bytes / 16, out.as<float>());
    check_launch("read_bandwidth");
    t.stop(s);
    const double sec = t.seconds();
    if (r > 0) best = std::max(best, double(bytes) / sec);
  }
  return best;
}

double copy_bandwidth(size_t bytes, int reps, Stream& s) {
  DeviceBuffer a(bytes), b(bytes);
  memset_async(a.data(), 1, bytes, s);
  Timer t;
  double best = 0;
  for (int r = 0; r < reps + 1; ++r) {
    t.start(s);
    copy_d2d(b.data(), a.data(), bytes, s);
    t.stop(s);
    const double sec = t.seconds();
    if (r > 0) best = std::max(best, 2.0 * double(bytes) / sec);
  }
  return best;
}

}  // namespace condense::kernels::gpu
