// DeviceAllReduce: sums f32 buffers that live in GPU memory over the ranks of
// a data-parallel run (NCCL in CUDA builds, one GPU per rank: the rank's
// local index on its machine), so gradients never pass through the host.
#pragma once
#include <cstddef>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "dist/comm.h"

namespace condense::dist {

class DeviceAllReduce {
 public:
  virtual ~DeviceAllReduce() = default;
  // Each buffer summed in place over the ranks, as one group of operations on
  // `stream` (a cudaStream_t); returns when they are done.
  virtual void sum(const std::vector<std::pair<float*, size_t>>& buffers, void* stream) = 0;
  virtual std::string describe() const = 0;
};

// Selects this rank's GPU (local rank modulo the visible devices) and joins
// the ranks of `comm` in a NCCL communicator. Fails, saying what is missing,
// in builds without CUDA and NCCL.
std::unique_ptr<DeviceAllReduce> make_device_allreduce(Communicator& comm);

// This process's index among the ranks on its machine (mpirun's
// OMPI_COMM_WORLD_LOCAL_RANK / MPI_LOCALRANKID), 0 when unknown.
int local_rank();

}  // namespace condense::dist
