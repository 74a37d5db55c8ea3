#include "serve/worker_pool.h"

#include <chrono>

namespace condense {

WorkerPool::WorkerPool(int max_threads, double idle_exit_s) : max_(max_threads < 1 ? 1 : max_threads), idle_s_(idle_exit_s) {}

WorkerPool::~WorkerPool() { shutdown(); }

void WorkerPool::enqueue(std::function<void()> fn) {
  std::lock_guard<std::mutex> lk(mu_);
  jobs_.push_back(std::move(fn));
  if (idle_ > 0) {
    cv_.notify_one();
  } else if (live_ < max_) {
    ++live_;
    std::thread([this] { work(); }).detach();  // shutdown() waits for live_ to reach 0
  }
}

void WorkerPool::work() {
  std::unique_lock<std::mutex> lk(mu_);
  for (;;) {
    if (jobs_.empty()) {
      ++idle_;
      const bool got = cv_.wait_for(lk, std::chrono::duration<double>(idle_s_), [&] { return stop_ || !jobs_.empty(); });
      --idle_;
      if (!got || (stop_ && jobs_.empty())) break;
    }
    auto fn = std::move(jobs_.front());
    jobs_.pop_front();
    lk.unlock();
    fn();
    lk.lock();
  }
  if (--live_ == 0) done_cv_.notify_all();
}

void WorkerPool::shutdown() {
  std::unique_lock<std::mutex> lk(mu_);
  stop_ = true;
  cv_.notify_all();
  done_cv_.wait(lk, [&] { return live_ == 0; });
}

int WorkerPool::threads() const {
  std::lock_guard<std::mutex> lk(mu_);
  return live_;
}

}  // namespace condense
