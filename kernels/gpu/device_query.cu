#include "kernels/gpu/device_query.h"
#include "kernels/gpu/gpu_check.h"
#include "kernels/gpu/gpu_runtime.h"

namespace condense::kernels::gpu {

std::vector<DeviceInfo> list_devices() {
  std::vector<DeviceInfo> out;
  int n = 0;
  if (gpuGetDeviceCount(&n) != gpuSuccess) return out;
  for (int i = 0; i < n; ++i) {
    gpuDeviceProp p;
    if (gpuGetDeviceProperties(&p, i) != gpuSuccess) continue;
    out.push_back({p.name, p.warpSize, double(p.totalGlobalMem) / double(1ull << 30), p.major, p.minor});
  }
  return out;
}

void select_device(int index) { GPU_CHECK(gpuSetDevice(index)); }

}  // namespace condense::kernels::gpu
