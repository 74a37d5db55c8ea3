// The HTTP server's threads: started on demand up to a limit, and ended after
// a while idle. A fixed pool of hundreds of threads (one per streaming
// request the queue may hold) parks them all on one futex, whose hash chain
// every other futex call of the process in that bucket then walks; measured
// as 2-4x longer TPOT tails on a small model. Jobs beyond the limit wait.
#pragma once
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>

namespace condense {

class WorkerPool {
 public:
  explicit WorkerPool(int max_threads, double idle_exit_s = 10.0);
  ~WorkerPool();
  void enqueue(std::function<void()> fn);
  // Runs what is queued, then waits for every thread to end.
  void shutdown();
  int threads() const;

 private:
  void work();
  const int max_;
  const double idle_s_;
  mutable std::mutex mu_;
  std::condition_variable cv_, done_cv_;
  std::deque<std::function<void()>> jobs_;
  int live_ = 0, idle_ = 0;  // threads running (detached), and of those waiting for a job
  bool stop_ = false;
};

}  // namespace condense
