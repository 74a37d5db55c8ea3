#include "dist/watchdog.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <thread>

#include "dist/comm.h"
#include "dist/rank_output.h"

namespace condense::dist {

namespace {

using clock = std::chrono::steady_clock;

// A collective on the main thread and one on the gradient thread can wait at once.
constexpr int kSlots = 8;
std::atomic<int64_t> g_deadline[kSlots];  // clock ticks; 0: free
std::atomic<const char*> g_operation[kSlots];
std::mutex g_mu;
std::string g_context;
double g_timeout = -1;  // < 0: not read yet
std::once_flag g_started;

int64_t now_ticks() { return clock::now().time_since_epoch().count(); }

double read_timeout() {
  const char* e = std::getenv("CONDENSE_COMM_TIMEOUT");
  if (!e || !*e) return 300;
  char* end = nullptr;
  const double v = std::strtod(e, &end);
  return end && *end == 0 ? v : 300;
}

[[noreturn]] void expire(int slot) {
  std::string ctx;
  {
    std::lock_guard<std::mutex> l(g_mu);
    ctx = g_context;
  }
  std::fflush(stderr);
  dprintf(error_fd(),
               "condense: error: rank %d: %s%s%s did not complete within %.0f s: another rank has died or stalled "
               "(raise --comm-timeout for slow networks). Exiting; states are replaced only by rename, so the last one written is intact.\n",
               world().rank(), g_operation[slot].load() ? g_operation[slot].load() : "a collective", ctx.empty() ? "" : " during ", ctx.c_str(), comm_timeout());
  std::_Exit(3);
}

void watch() {
  for (;;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    const int64_t t = now_ticks();
    for (int i = 0; i < kSlots; ++i) {
      const int64_t d = g_deadline[i].load();
      if (d != 0 && t > d) expire(i);
    }
  }
}

}  // namespace

void set_comm_timeout(double seconds) {
  std::lock_guard<std::mutex> l(g_mu);
  g_timeout = seconds;
}

double comm_timeout() {
  std::lock_guard<std::mutex> l(g_mu);
  if (g_timeout < 0) g_timeout = read_timeout();
  return g_timeout;
}

void set_comm_context(const std::string& what) {
  std::lock_guard<std::mutex> l(g_mu);
  g_context = what;
}

Deadline::Deadline(const char* operation) : slot_(-1) {
  const double t = comm_timeout();
  if (t <= 0) return;
  std::call_once(g_started, [] { std::thread(watch).detach(); });
  const int64_t d = now_ticks() + std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(t)).count();
  for (int i = 0; i < kSlots; ++i) {
    int64_t free = 0;
    if (g_deadline[i].compare_exchange_strong(free, d)) {
      g_operation[i].store(operation);
      slot_ = i;
      return;
    }
  }
}

Deadline::~Deadline() {
  if (slot_ >= 0) g_deadline[slot_].store(0);
}

}  // namespace condense::dist
