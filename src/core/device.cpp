#include "core/device.h"

#include "core/error.h"
#include "kernels/gpu/device_memory.h"

namespace condense {

const char* device_name(Device d) {
  switch (d) {
    case Device::CPU: return "cpu";
    case Device::CUDA: return "cuda";
    case Device::HIP: return "hip";
  }
  return "?";
}

Device device_from_name(const std::string& n) {
  if (n == "cpu") return Device::CPU;
  if (n == "cuda") return Device::CUDA;
  if (n == "hip") return Device::HIP;
  fail("--device", "'" + n + "' is not one of cpu, cuda, hip");
}

bool device_usable(Device d, std::string* why) {
  if (d == Device::CPU) return true;
  const std::string backend = kernels::gpu::backend_name();
  const std::string want = device_name(d);
  if (backend == "none") {
    *why = "this condense was built without a GPU backend (configure with -DCONDENSE_CUDA=ON or -DCONDENSE_HIP=ON)";
    return false;
  }
  if (backend != want) {
    *why = "this condense was built for " + backend + ", not " + want + " (use --device " + backend + ")";
    return false;
  }
  if (!kernels::gpu::available()) {
    *why = "no " + want + " device is visible (driver missing, no GPU, or CUDA_VISIBLE_DEVICES / HIP_VISIBLE_DEVICES empty)";
    return false;
  }
  return true;
}

}  // namespace condense
