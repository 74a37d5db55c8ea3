// Communicator: the processes of one data-parallel run and the collectives
// training and calibration need. world() is MPI's COMM_WORLD when the process
// was started by mpirun (and condense was built with MPI), else a one-rank
// communicator whose collectives do nothing: every caller is written once for
// N ranks and runs unchanged alone.
//
// Every collective blocks until all ranks arrive; the watchdog (dist/watchdog.h)
// ends the process with an error naming the operation when one does not
// finish within the timeout (a rank died or stalled), instead of hanging.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace condense::dist {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // "single" or "mpi (<library version>)".
  virtual std::string describe() const = 0;
  // Whether another thread than the one that started MPI may run collectives
  // while the main thread makes no MPI call (MPI_THREAD_SERIALIZED or better):
  // gradient buckets are then reduced on a helper thread during the backward.
  virtual bool threads_ok() const = 0;

  // In place, identical result on every rank.
  virtual void allreduce_sum(float* data, size_t n) = 0;
  virtual void allreduce_sum(double* data, size_t n) = 0;
  virtual void allreduce_max(float* data, size_t n) = 0;
  virtual void broadcast(void* data, size_t bytes, int root) = 0;
  // out: size() * bytes, rank i's `in` at i * bytes.
  virtual void allgather(const void* in, size_t bytes, void* out) = 0;
  virtual void barrier() = 0;
  // Ends every rank's process (after a local error that the others cannot see).
  [[noreturn]] virtual void abort(int code) = 0;

  bool root() const { return rank() == 0; }
};

// Root's `s` on every rank (e.g. an error only the root saw, so all fail alike).
std::string broadcast_string(Communicator& comm, const std::string& s, int root);

// The run's communicator, created on first use (MPI_Init then). Under mpirun
// with a build without MPI it refuses, rather than running N separate trainings.
Communicator& world();
// world() when it exists and has more than one rank, else null (for error
// paths, which must not start MPI).
Communicator* started_world();
// Whether this process was started as one of several ranks (mpirun's environment).
bool launched_as_rank();
// Ends MPI cleanly when world() started it; call once before exit.
void finalize();

}  // namespace condense::dist
