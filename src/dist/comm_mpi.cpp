#include "dist/comm_mpi.h"

// The C API only (Open MPI and MPICH otherwise pull in their deprecated C++ bindings).
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

#include <algorithm>
#include <cstdio>
#include <vector>

#include "core/error.h"
#include "dist/watchdog.h"

namespace condense::dist {

namespace {

bool g_started = false;

std::string mpi_message(int rc) {
  char buf[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(rc, buf, &len) != MPI_SUCCESS) return "MPI error " + std::to_string(rc);
  return std::string(buf, size_t(len));
}

void check(int rc, const char* call) {
  if (rc != MPI_SUCCESS) fail(call, mpi_message(rc), "Another rank may have failed; see its error");
}

// MPI counts are int: large buffers go in slices.
constexpr size_t kMaxCount = size_t(1) << 30;

class Mpi final : public Communicator {
 public:
  Mpi() {
    int provided = 0;
    check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided), "MPI_Init_thread");
    g_started = true;
    threads_ok_ = provided >= MPI_THREAD_SERIALIZED;
    // Errors come back as return codes (a message naming the call) instead of
    // MPI's default abort without context.
    check(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
    check(MPI_Comm_rank(MPI_COMM_WORLD, &rank_), "MPI_Comm_rank");
    check(MPI_Comm_size(MPI_COMM_WORLD, &size_), "MPI_Comm_size");
    char v[MPI_MAX_LIBRARY_VERSION_STRING];
    int len = 0;
    MPI_Get_library_version(v, &len);
    std::string s(v, size_t(len));
    version_ = s.substr(0, s.find_first_of(",\n"));
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string describe() const override { return "mpi (" + version_ + ")"; }
  bool threads_ok() const override { return threads_ok_; }

  void allreduce_sum(float* d, size_t n) override { allreduce(d, n, MPI_FLOAT, MPI_SUM, "MPI_Allreduce (sum, f32)"); }
  void allreduce_sum(double* d, size_t n) override { allreduce(d, n, MPI_DOUBLE, MPI_SUM, "MPI_Allreduce (sum, f64)"); }
  void allreduce_max(float* d, size_t n) override { allreduce(d, n, MPI_FLOAT, MPI_MAX, "MPI_Allreduce (max, f32)"); }

  void broadcast(void* data, size_t bytes, int root) override {
    Deadline dl("MPI_Bcast");
    char* p = static_cast<char*>(data);
    for (size_t o = 0; o < bytes; o += kMaxCount) {
      check(MPI_Bcast(p + o, int(std::min(kMaxCount, bytes - o)), MPI_BYTE, root, MPI_COMM_WORLD), "MPI_Bcast");
    }
  }
  void allgather(const void* in, size_t bytes, void* out) override {
    Deadline dl("MPI_Allgather");
    if (bytes > kMaxCount) fail("MPI_Allgather", "more than 1 GiB per rank");
    check(MPI_Allgather(in, int(bytes), MPI_BYTE, out, int(bytes), MPI_BYTE, MPI_COMM_WORLD), "MPI_Allgather");
  }
  void barrier() override {
    Deadline dl("MPI_Barrier");
    check(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier");
  }
  [[noreturn]] void abort(int code) override {
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, code);
    std::_Exit(code);
  }

 private:
  void allreduce(void* d, size_t n, MPI_Datatype t, MPI_Op op, const char* what) {
    Deadline dl(what);
    int es = 0;
    MPI_Type_size(t, &es);
    char* p = static_cast<char*>(d);
    for (size_t o = 0; o < n; o += kMaxCount) {
      check(MPI_Allreduce(MPI_IN_PLACE, p + o * size_t(es), int(std::min(kMaxCount, n - o)), t, op, MPI_COMM_WORLD), what);
    }
  }

  int rank_ = 0, size_ = 1;
  bool threads_ok_ = false;
  std::string version_;
};

}  // namespace

std::unique_ptr<Communicator> make_mpi_communicator() { return std::make_unique<Mpi>(); }

void finalize_mpi() {
  int done = 0;
  if (g_started && MPI_Finalized(&done) == MPI_SUCCESS && !done) MPI_Finalize();
}

}  // namespace condense::dist
