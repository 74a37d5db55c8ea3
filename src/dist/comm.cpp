#include "dist/comm.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>

#include "core/error.h"
#include "dist/comm_mpi.h"
#include "dist/device_allreduce.h"

namespace condense::dist {

namespace {

class SingleProcess final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string describe() const override { return "single"; }
  bool threads_ok() const override { return true; }
  void allreduce_sum(float*, size_t) override {}
  void allreduce_sum(double*, size_t) override {}
  void allreduce_max(float*, size_t) override {}
  void broadcast(void*, size_t, int) override {}
  void allgather(const void* in, size_t bytes, void* out) override { std::memcpy(out, in, bytes); }
  void barrier() override {}
  [[noreturn]] void abort(int code) override { std::exit(code); }
};

int env_int(const char* name) {
  const char* e = std::getenv(name);
  return e && *e ? std::atoi(e) : -1;
}

std::unique_ptr<Communicator> g_world;
std::once_flag g_once;

}  // namespace

std::string broadcast_string(Communicator& comm, const std::string& s, int root) {
  if (comm.size() == 1) return s;
  uint64_t n = s.size();
  comm.broadcast(&n, sizeof n, root);
  std::string out = comm.rank() == root ? s : std::string(size_t(n), '\0');
  if (n) comm.broadcast(out.data(), size_t(n), root);
  return out;
}

int local_rank() {
  for (const char* n : {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID"}) {
    if (env_int(n) >= 0) return env_int(n);
  }
  return 0;
}

bool launched_as_rank() { return env_int("OMPI_COMM_WORLD_SIZE") > 0 || env_int("PMI_SIZE") > 0 || env_int("PMIX_RANK") >= 0; }

Communicator& world() {
  std::call_once(g_once, [] {
    if (launched_as_rank()) {
      g_world = make_mpi_communicator();  // null without MPI
      if (!g_world) {
        const int n = std::max(env_int("OMPI_COMM_WORLD_SIZE"), env_int("PMI_SIZE"));
        if (n > 1) {
          fail("mpirun", "this condense was built without MPI (-DCONDENSE_MPI=OFF, or no MPI found at configure time), but it was started as one of " +
                             std::to_string(n) + " ranks: each would train alone",
               "Install libopenmpi-dev and rebuild, or run it without mpirun");
        }
      }
    }
    if (!g_world) g_world = std::make_unique<SingleProcess>();
  });
  return *g_world;
}

Communicator* started_world() { return g_world && g_world->size() > 1 ? g_world.get() : nullptr; }

void finalize() {
  if (g_world) finalize_mpi();
}

}  // namespace condense::dist
