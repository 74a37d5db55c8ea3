// The GPU entry points in a build without CUDA or HIP: nothing is available,
// and anything that would need a device says how to get one.
#include "kernels/gpu/device_memory.h"
#include "kernels/gpu/device_query.h"

namespace condense::kernels::gpu {
namespace {
[[noreturn]] void no_backend(const char* what) {
  throw GpuError(std::string(what) +
                 ": this condense was built without a GPU backend; configure with -DCONDENSE_CUDA=ON (nvcc) or "
                 "-DCONDENSE_HIP=ON (hipcc) and rebuild");
}
}  // namespace

bool available() { return false; }
void select_device(int) { no_backend("selecting a GPU"); }
const char* backend_name() { return "none"; }
int warp_size() { no_backend("warp_size"); }
int multiprocessors() { no_backend("multiprocessors"); }
Stream::Stream() { no_backend("creating a GPU stream"); }
Stream::~Stream() = default;
void Stream::synchronize() { no_backend("Stream::synchronize"); }
void* device_alloc(size_t bytes) {
  if (bytes == 0) return nullptr;
  no_backend("allocating device memory");
}
void device_free(void*) {}
PoolStats pool_stats() { return {}; }
void release_cached() {}
void copy_h2d(void*, const void*, size_t, Stream&) { no_backend("copy_h2d"); }
void copy_d2h(void*, const void*, size_t, Stream&) { no_backend("copy_d2h"); }
void copy_d2d(void*, const void*, size_t, Stream&) { no_backend("copy_d2d"); }
void memset_async(void*, int, size_t, Stream&) { no_backend("memset_async"); }
DeviceBuffer upload(const void*, size_t, Stream&) { no_backend("upload"); }
void check_launch(const char*) {}
Graph::~Graph() = default;
void Graph::begin_capture(Stream&) { no_backend("Graph::begin_capture"); }
void Graph::end_capture(Stream&) { no_backend("Graph::end_capture"); }
void Graph::replay(Stream&) { no_backend("Graph::replay"); }
Timer::Timer() { no_backend("Timer"); }
Timer::~Timer() = default;
void Timer::start(Stream&) {}
void Timer::stop(Stream&) {}
double Timer::seconds() { return 0; }

}  // namespace condense::kernels::gpu
