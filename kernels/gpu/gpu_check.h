// GPU_CHECK(call): throws GpuError "<call> failed: <message> (file:line)".
// For .cu files only (needs gpu_runtime.h).
#pragma once
#include "kernels/gpu/device_memory.h"
#include "kernels/gpu/gpu_runtime.h"

namespace condense::kernels::gpu {
[[noreturn]] void throw_gpu_error(gpuError_t e, const char* call, const char* file, int line);
}  // namespace condense::kernels::gpu

#define GPU_CHECK(call)                                                                           \
  do {                                                                                            \
    const gpuError_t condense_gpu_err_ = (call);                                                  \
    if (condense_gpu_err_ != gpuSuccess)                                                          \
      ::condense::kernels::gpu::throw_gpu_error(condense_gpu_err_, #call, __FILE__, __LINE__);   \
  } while (0)
