// DeviceAllReduce over NCCL (CUDA builds with MPI): rank 0 makes the NCCL
// id, MPI broadcasts it, every rank joins with its own GPU.
#include <cuda_runtime.h>
#include <nccl.h>

#include <cstdlib>

#include "core/error.h"
#include "dist/device_allreduce.h"
#include "dist/watchdog.h"
#include "kernels/gpu/device_query.h"

namespace condense::dist {

namespace {

void nccl_check(ncclResult_t r, const char* call) {
  if (r != ncclSuccess) fail(call, ncclGetErrorString(r), "Another rank may have failed; see its error");
}

class Nccl final : public DeviceAllReduce {
 public:
  explicit Nccl(Communicator& comm) : rank_(comm.rank()), size_(comm.size()) {
    const std::vector<kernels::gpu::DeviceInfo> devs = kernels::gpu::list_devices();
    if (devs.empty()) fail("train", "rank " + std::to_string(rank_) + " sees no GPU", "Give every rank a GPU (CUDA_VISIBLE_DEVICES)");
    device_ = local_rank() % int(devs.size());
    kernels::gpu::select_device(device_);
    ncclUniqueId id;
    if (comm.root()) nccl_check(ncclGetUniqueId(&id), "ncclGetUniqueId");
    comm.broadcast(&id, sizeof id, 0);
    Deadline dl("ncclCommInitRank");
    nccl_check(ncclCommInitRank(&nccl_, size_, id, rank_), "ncclCommInitRank");
    int v = 0;
    ncclGetVersion(&v);
    version_ = std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." + std::to_string(v % 100);
  }
  ~Nccl() override {
    if (nccl_) ncclCommDestroy(nccl_);
  }
  void sum(const std::vector<std::pair<float*, size_t>>& buffers, void* stream) override {
    auto s = static_cast<cudaStream_t>(stream);
    Deadline dl("ncclAllReduce");
    nccl_check(ncclGroupStart(), "ncclGroupStart");
    for (const auto& [p, n] : buffers) {
      if (p && n) nccl_check(ncclAllReduce(p, p, n, ncclFloat32, ncclSum, nccl_, s), "ncclAllReduce");
    }
    nccl_check(ncclGroupEnd(), "ncclGroupEnd");
    const cudaError_t e = cudaStreamSynchronize(s);
    if (e != cudaSuccess) fail("ncclAllReduce", cudaGetErrorString(e));
  }
  std::string describe() const override { return "nccl " + version_ + " (GPU " + std::to_string(device_) + ")"; }

 private:
  int rank_, size_, device_ = 0;
  ncclComm_t nccl_ = nullptr;
  std::string version_;
};

}  // namespace

std::unique_ptr<DeviceAllReduce> make_device_allreduce(Communicator& comm) { return std::make_unique<Nccl>(comm); }

}  // namespace condense::dist
