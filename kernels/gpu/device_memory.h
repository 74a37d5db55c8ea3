// Device memory, streams and timing for the CUDA and HIP builds, behind plain
// C++ types (no GPU header needed to use them). Every failing runtime call
// throws GpuError naming the call, the runtime's message and the source line.
//
// Allocation goes through a caching pool: a freed block is kept under its
// rounded size and handed out again, so a serving or training step reuses
// memory instead of calling cudaMalloc/hipMalloc (each of which synchronizes
// the device). When the driver is out of memory the pool gives its cached
// blocks back and tries once more before throwing.
#pragma once
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace condense::kernels::gpu {

struct GpuError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// True when this build has a GPU backend and a device is visible. Never throws.
bool available();
const char* backend_name();  // "cuda", "hip", or "none"
int warp_size();             // of the current device (32 NVIDIA, 64 AMD CDNA)
int multiprocessors();       // SMs / CUs of the current device

class Stream {
 public:
  Stream();
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  void* handle() const { return h_; }  // a cudaStream_t / hipStream_t
  void synchronize();

 private:
  void* h_ = nullptr;
};

void* device_alloc(size_t bytes);  // 256-byte aligned; bytes == 0 gives nullptr
void device_free(void* p);         // nullptr is ignored
struct PoolStats {
  size_t in_use = 0, cached = 0, peak_in_use = 0;
  int64_t driver_allocs = 0, reuses = 0;
};
PoolStats pool_stats();
void release_cached();  // returns every cached block to the driver

// Owns one pool block.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t bytes) : p_(device_alloc(bytes)), n_(bytes) {}
  ~DeviceBuffer() { device_free(p_); }
  DeviceBuffer(DeviceBuffer&& o) noexcept : p_(o.p_), n_(o.n_) { o.p_ = nullptr; o.n_ = 0; }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
      device_free(p_);
      p_ = o.p_;
      n_ = o.n_;
      o.p_ = nullptr;
      o.n_ = 0;
    }
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void* data() const { return p_; }
  template <class T> T* as() const { return static_cast<T*>(p_); }
  size_t bytes() const { return n_; }

 private:
  void* p_ = nullptr;
  size_t n_ = 0;
};

// Asynchronous on `s` (host memory must stay valid until s.synchronize()).
void copy_h2d(void* dst, const void* src, size_t bytes, Stream& s);
void copy_d2h(void* dst, const void* src, size_t bytes, Stream& s);
void copy_d2d(void* dst, const void* src, size_t bytes, Stream& s);
void memset_async(void* dst, int value, size_t bytes, Stream& s);
// A buffer holding a copy of host bytes (synchronous: the host bytes may go).
DeviceBuffer upload(const void* src, size_t bytes, Stream& s);

// Raises GpuError if a kernel launch on this thread failed (bad launch shape,
// no kernel image for this device), naming `what`.
void check_launch(const char* what);

// A recorded sequence of launches on a stream, replayed with one call (CUDA /
// HIP graphs): decode steps of many small kernels without a launch each.
class Graph {
 public:
  Graph() = default;
  ~Graph();
  Graph(const Graph&) = delete;
  Graph& operator=(const Graph&) = delete;
  void begin_capture(Stream& s);  // launches on s are recorded, not run
  void end_capture(Stream& s);    // ... until here; then replay()
  void replay(Stream& s);

 private:
  void* graph_ = nullptr;
  void* exec_ = nullptr;
};

// Elapsed device time between two points of a stream (events).
class Timer {
 public:
  Timer();
  ~Timer();
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;
  void start(Stream& s);
  void stop(Stream& s);
  double seconds();  // waits for stop

 private:
  void* a_ = nullptr;
  void* b_ = nullptr;
};

}  // namespace condense::kernels::gpu
