// What GPUs the process can see (CUDA or HIP build), for `info` and for GPU
// tests to skip cleanly on machines without one. Plain C++ header: no GPU types.
#pragma once
#include <string>
#include <vector>

namespace condense::kernels::gpu {

struct DeviceInfo {
  std::string name;
  int warp_size = 0;          // 32 on NVIDIA, 64 on AMD CDNA
  double memory_gib = 0;
  int compute_major = 0, compute_minor = 0;
};

// Empty when no device is visible (or the driver is missing); never throws.
std::vector<DeviceInfo> list_devices();
// Makes device `index` this process's (before it allocates anything): one
// GPU per rank in data-parallel runs. Throws GpuError when it cannot.
void select_device(int index);

}  // namespace condense::kernels::gpu
