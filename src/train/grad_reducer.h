// GradientReducer: sums the gradients of a data-parallel step over all ranks,
// overlapped with the backward. Gradient tensors come in groups, in the order
// the backward finishes them (head and final norm, the last block, ..., the
// first block, the embedding); ready(g) copies group g into a flat buffer and,
// once `bucket_bytes` have gathered, hands that bucket to a helper thread that
// all-reduces it while the backward goes on. finish() sends the rest, waits,
// and copies the sums back. Buckets are fixed by the groups and the size, so
// every rank reduces the same ranges in the same order.
#pragma once
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "core/tensor.h"
#include "dist/comm.h"

namespace condense::train {

struct ReduceStats {
  double comm_s = 0;     // time spent inside all-reduce calls
  double exposed_s = 0;  // time the training thread waited for them (not hidden by the backward)
  double bytes = 0;      // gradient bytes all-reduced (per rank)
  double sparse_bytes = 0;  // the sparse tail's bytes (rows gathered, or the dense fallback's ring bytes)
  int64_t sparse_tails = 0, dense_tails = 0;  // steps whose tail went as rows / as a dense all-reduce
  int64_t buckets = 0, steps = 0;
  // Fraction of all-reduce time hidden behind the backward.
  double hidden_fraction() const { return comm_s > 0 ? std::max(0.0, 1.0 - exposed_s / comm_s) : 0.0; }
};

class GradientReducer {
 public:
  GradientReducer(dist::Communicator& comm, std::vector<std::vector<Tensor*>> groups, size_t bucket_bytes);
  ~GradientReducer();
  GradientReducer(const GradientReducer&) = delete;
  GradientReducer& operator=(const GradientReducer&) = delete;

  // Group g's gradients are final for this step (groups arrive in order; a
  // skipped group is sent with the next).
  void ready(int group);
  // An embedding-style gradient (rows of `row_len`) that the end of the
  // backward only adds rows to: its tensor sits in an early group, and
  // ready() zeroes it once copied, so what the backward adds afterwards (the
  // lookup's rows, at most one per input token) is reduced sparsely in
  // finish(): each rank's touched rows gathered and added in rank order.
  // This lets the big embedding gradient travel during the backward.
  void set_sparse_tail(Tensor* t, int64_t row_len);
  // Sends what is left, waits for every bucket and writes the sums back.
  // touched_rows: the rows of the sparse tail the backward may have added to
  // since ready() copied it (e.g. the last micro-batch's input tokens).
  void finish(const std::vector<int>& touched_rows = {});
  int groups() const { return int(groups_.size()); }
  const ReduceStats& stats() const { return stats_; }
  size_t bytes_per_step() const { return flat_.size() * 4; }
  bool overlapped() const { return worker_.joinable(); }

 private:
  void launch(size_t end);  // [sent_, end) as one bucket
  void work();
  void reduce_sparse_tail(const std::vector<int>& touched_rows);

  dist::Communicator& comm_;
  std::vector<std::vector<Tensor*>> groups_;
  std::vector<size_t> offset_;  // per group, in floats; offset_[G] = total
  std::vector<float> flat_;
  size_t bucket_floats_;
  int next_group_ = 0;
  size_t sent_ = 0;          // floats handed to all-reduce this step
  size_t cut_ = 0;           // the last bucket boundary
  std::vector<size_t> cuts_;  // boundaries not yet sent (no helper thread)
  Tensor* sparse_ = nullptr;
  int64_t sparse_row_ = 0;
  bool sparse_copied_ = false;

  std::thread worker_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::pair<size_t, size_t>> queue_;  // (offset, count)
  size_t launched_ = 0, done_ = 0;
  bool stop_ = false;
  std::exception_ptr error_;
  ReduceStats stats_;
};

}  // namespace condense::train
