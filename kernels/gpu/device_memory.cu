#include <algorithm>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "kernels/gpu/device_memory.h"
#include "kernels/gpu/gpu_check.h"

namespace condense::kernels::gpu {

void throw_gpu_error(gpuError_t e, const char* call, const char* file, int line) {
  std::string f = file;
  const auto slash = f.rfind("kernels/");
  if (slash != std::string::npos) f = f.substr(slash);
  throw GpuError(std::string(CONDENSE_GPU_BACKEND) + ": " + call + " failed: " + gpuGetErrorString(e) + " (" + f + ":" +
                 std::to_string(line) + ")");
}

bool available() {
  int n = 0;
  if (gpuGetDeviceCount(&n) != gpuSuccess) {
    (void)gpuGetLastError();  // clear the sticky "no driver" error for later calls
    return false;
  }
  return n > 0;
}
const char* backend_name() { return CONDENSE_GPU_BACKEND; }

namespace {
struct DeviceShape {
  int warp = 0, sms = 0;
};
DeviceShape& shape() {
  static DeviceShape s = [] {
    int dev = 0;
    GPU_CHECK(gpuGetDevice(&dev));
    gpuDeviceProp p;
    GPU_CHECK(gpuGetDeviceProperties(&p, dev));
    return DeviceShape{p.warpSize, p.multiProcessorCount};
  }();
  return s;
}
}  // namespace
int warp_size() { return shape().warp; }
int multiprocessors() { return shape().sms; }

Stream::Stream() {
  gpuStream_t s;
  GPU_CHECK(gpuStreamCreateWithFlags(&s, gpuStreamNonBlocking));
  h_ = s;
}
Stream::~Stream() {
  if (h_) (void)gpuStreamDestroy(static_cast<gpuStream_t>(h_));
}
void Stream::synchronize() { GPU_CHECK(gpuStreamSynchronize(static_cast<gpuStream_t>(h_))); }

namespace {
// Sizes are rounded so that blocks of nearby sizes are interchangeable: to
// 512 bytes below 1 MiB, to 2 MiB above (the driver's own granularity).
size_t round_size(size_t n) {
  const size_t g = n < (size_t(1) << 20) ? 512 : (size_t(2) << 20);
  return (n + g - 1) / g * g;
}
struct Pool {
  std::mutex mu;
  std::multimap<size_t, void*> free_blocks;      // rounded size -> block
  std::unordered_map<void*, size_t> live;        // block -> rounded size
  PoolStats stats;

  void release_all_locked() {
    for (auto& [n, p] : free_blocks) (void)gpuFree(p);
    free_blocks.clear();
    stats.cached = 0;
  }
};
Pool& pool() {
  static Pool* p = new Pool;  // never destroyed: blocks may be freed during static destruction
  return *p;
}
}  // namespace

void* device_alloc(size_t bytes) {
  if (bytes == 0) return nullptr;
  const size_t n = round_size(bytes);
  Pool& P = pool();
  std::lock_guard<std::mutex> lock(P.mu);
  // A cached block up to 2x the size serves (beyond that the waste outweighs a fresh allocation).
  auto it = P.free_blocks.lower_bound(n);
  if (it != P.free_blocks.end() && it->first <= 2 * n) {
    void* p = it->second;
    const size_t got = it->first;
    P.free_blocks.erase(it);
    P.stats.cached -= got;
    P.live[p] = got;
    P.stats.in_use += got;
    P.stats.peak_in_use = std::max(P.stats.peak_in_use, P.stats.in_use);
    ++P.stats.reuses;
    return p;
  }
  void* p = nullptr;
  gpuError_t e = gpuMalloc(&p, n);
  if (e == gpuErrorMemoryAllocation && !P.free_blocks.empty()) {
    (void)gpuGetLastError();
    P.release_all_locked();
    e = gpuMalloc(&p, n);
  }
  if (e != gpuSuccess) {
    (void)gpuGetLastError();
    size_t free_b = 0, total_b = 0;
    (void)gpuMemGetInfo(&free_b, &total_b);
    throw GpuError(std::string(CONDENSE_GPU_BACKEND) + ": allocating " + std::to_string(n >> 20) + " MiB of device memory failed: " +
                   gpuGetErrorString(e) + " (device: " + std::to_string(free_b >> 20) + " of " + std::to_string(total_b >> 20) +
                   " MiB free; condense holds " + std::to_string(P.stats.in_use >> 20) + " MiB)");
  }
  P.live[p] = n;
  P.stats.in_use += n;
  P.stats.peak_in_use = std::max(P.stats.peak_in_use, P.stats.in_use);
  ++P.stats.driver_allocs;
  return p;
}

void device_free(void* p) {
  if (!p) return;
  Pool& P = pool();
  std::lock_guard<std::mutex> lock(P.mu);
  auto it = P.live.find(p);
  if (it == P.live.end()) return;  // not ours: never pass a foreign pointer to the driver
  P.free_blocks.emplace(it->second, p);
  P.stats.in_use -= it->second;
  P.stats.cached += it->second;
  P.live.erase(it);
}

PoolStats pool_stats() {
  std::lock_guard<std::mutex> lock(pool().mu);
  return pool().stats;
}
void release_cached() {
  std::lock_guard<std::mutex> lock(pool().mu);
  pool().release_all_locked();
}


static gpuStream_t S(Stream& s) { return static_cast<gpuStream_t>(s.handle()); }
void copy_h2d(void* dst, const void* src, size_t bytes, Stream& s) {
  if (bytes) GPU_CHECK(gpuMemcpyAsync(dst, src, bytes, gpuMemcpyHostToDevice, S(s)));
}
void copy_d2h(void* dst, const void* src, size_t bytes, Stream& s) {
  if (bytes) GPU_CHECK(gpuMemcpyAsync(dst, src, bytes, gpuMemcpyDeviceToHost, S(s)));
}
void copy_d2d(void* dst, const void* src, size_t bytes, Stream& s) {
  if (bytes) GPU_CHECK(gpuMemcpyAsync(dst, src, bytes, gpuMemcpyDeviceToDevice, S(s)));
}
void memset_async(void* dst, int value, size_t bytes, Stream& s) {
  if (bytes) GPU_CHECK(gpuMemsetAsync(dst, value, bytes, S(s)));
}
DeviceBuffer upload(const void* src, size_t bytes, Stream& s) {
  DeviceBuffer b(bytes);
  copy_h2d(b.data(), src, bytes, s);
  s.synchronize();
  return b;
}

void check_launch(const char* what) {
  const gpuError_t e = gpuGetLastError();
  if (e != gpuSuccess)
    throw GpuError(std::string(CONDENSE_GPU_BACKEND) + ": launching " + what + " failed: " + gpuGetErrorString(e));
}

Graph::~Graph() {
  if (exec_) (void)gpuGraphExecDestroy(static_cast<gpuGraphExec_t>(exec_));
  if (graph_) (void)gpuGraphDestroy(static_cast<gpuGraph_t>(graph_));
}
void Graph::begin_capture(Stream& s) { GPU_CHECK(gpuStreamBeginCapture(S(s), gpuStreamCaptureModeThreadLocal)); }
void Graph::end_capture(Stream& s) {
  gpuGraph_t g;
  GPU_CHECK(gpuStreamEndCapture(S(s), &g));
  graph_ = g;
  gpuGraphExec_t e;
  GPU_CHECK(gpuGraphInstantiate(&e, g));
  exec_ = e;
}
void Graph::replay(Stream& s) { GPU_CHECK(gpuGraphLaunch(static_cast<gpuGraphExec_t>(exec_), S(s))); }

Timer::Timer() {
  gpuEvent_t a, b;
  GPU_CHECK(gpuEventCreate(&a));
  GPU_CHECK(gpuEventCreate(&b));
  a_ = a;
  b_ = b;
}
Timer::~Timer() {
  (void)gpuEventDestroy(static_cast<gpuEvent_t>(a_));
  (void)gpuEventDestroy(static_cast<gpuEvent_t>(b_));
}
void Timer::start(Stream& s) { GPU_CHECK(gpuEventRecord(static_cast<gpuEvent_t>(a_), S(s))); }
void Timer::stop(Stream& s) { GPU_CHECK(gpuEventRecord(static_cast<gpuEvent_t>(b_), S(s))); }
double Timer::seconds() {
  GPU_CHECK(gpuEventSynchronize(static_cast<gpuEvent_t>(b_)));
  float ms = 0;
  GPU_CHECK(gpuEventElapsedTime(&ms, static_cast<gpuEvent_t>(a_), static_cast<gpuEvent_t>(b_)));
  return double(ms) * 1e-3;
}

}  // namespace condense::kernels::gpu
