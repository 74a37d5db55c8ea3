// Builds without CUDA + NCCL (CPU-only, HIP: no RCCL here): GPU ranks cannot
// sum their gradients on the device, and say so.
#include "core/error.h"
#include "dist/device_allreduce.h"

namespace condense::dist {

std::unique_ptr<DeviceAllReduce> make_device_allreduce(Communicator& comm) {
  fail("train", "data-parallel training on GPUs (" + std::to_string(comm.size()) +
                    " ranks) needs NCCL, which this build does not have (it needs -DCONDENSE_CUDA=ON with NCCL in the CUDA toolkit, and MPI)",
       "Run the ranks on CPUs (--device cpu), or one rank on the GPU");
}

}  // namespace condense::dist
