#include "train/grad_reducer.h"

#include <algorithm>
#include <chrono>
#include <cstring>

namespace condense::train {

using clock = std::chrono::steady_clock;

GradientReducer::GradientReducer(dist::Communicator& comm, std::vector<std::vector<Tensor*>> groups, size_t bucket_bytes)
    : comm_(comm), groups_(std::move(groups)), bucket_floats_(std::max<size_t>(1, bucket_bytes / 4)) {
  size_t n = 0;
  for (const auto& g : groups_) {
    offset_.push_back(n);
    for (const Tensor* t : g) n += size_t(t->numel());
  }
  offset_.push_back(n);
  flat_.resize(n);
  // Without MPI_THREAD_SERIALIZED only the main thread may call MPI: then
  // every bucket is reduced in finish(), after the backward (no overlap).
  if (comm_.threads_ok() && comm_.size() > 1) worker_ = std::thread([this] { work(); });
}

GradientReducer::~GradientReducer() {
  if (!worker_.joinable()) return;
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  worker_.join();
}

void GradientReducer::work() {
  for (;;) {
    std::pair<size_t, size_t> job;
    {
      std::unique_lock<std::mutex> l(mu_);
      cv_.wait(l, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;
      job = queue_.front();
      queue_.pop_front();
    }
    const auto t0 = clock::now();
    try {
      if (!error_) comm_.allreduce_sum(flat_.data() + job.first, job.second);
    } catch (...) {
      std::lock_guard<std::mutex> l(mu_);
      error_ = std::current_exception();
    }
    const double s = std::chrono::duration<double>(clock::now() - t0).count();
    {
      std::lock_guard<std::mutex> l(mu_);
      stats_.comm_s += s;
      ++done_;
    }
    cv_.notify_all();
  }
}

void GradientReducer::launch(size_t end) {
  if (end <= sent_) return;
  ++stats_.buckets;
  stats_.bytes += double(end - sent_) * 4;
  if (worker_.joinable()) {
    {
      std::lock_guard<std::mutex> l(mu_);
      queue_.emplace_back(sent_, end - sent_);
      ++launched_;
    }
    cv_.notify_all();
  } else {
    const auto t0 = clock::now();
    comm_.allreduce_sum(flat_.data() + sent_, end - sent_);
    const double s = std::chrono::duration<double>(clock::now() - t0).count();
    stats_.comm_s += s;
    stats_.exposed_s += s;
  }
  sent_ = end;
}

void GradientReducer::ready(int group) {
  // every group up to this one (a hook that did not fire is made up here),
  // with a bucket boundary after each group that fills one: the same
  // boundaries on every rank, whatever the timing
  for (; next_group_ <= group && next_group_ < int(groups_.size()); ++next_group_) {
    size_t o = offset_[size_t(next_group_)];
    for (Tensor* t : groups_[size_t(next_group_)]) {
      std::memcpy(flat_.data() + o, t->f32(), size_t(t->numel()) * 4);
      o += size_t(t->numel());
      if (t == sparse_) {  // from here on the tensor collects only the rows to send sparsely
        std::memset(t->f32(), 0, t->nbytes());
        sparse_copied_ = true;
      }
    }
    if (o - cut_ >= bucket_floats_) {
      cut_ = o;
      if (worker_.joinable()) launch(o);
      else cuts_.push_back(o);
    }
  }
}

void GradientReducer::set_sparse_tail(Tensor* t, int64_t row_len) {
  sparse_ = t;
  sparse_row_ = row_len;
}

void GradientReducer::finish(const std::vector<int>& touched_rows) {
  // exposed: from the end of the backward until the last sum is back (the
  // clock starts before the last launch: the helper may take the core first)
  const auto t0 = clock::now();
  ready(int(groups_.size()) - 1);
  if (!worker_.joinable()) {
    cuts_.push_back(offset_.back());
    for (size_t c : cuts_) launch(c);
  } else {
    launch(offset_.back());
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait(l, [&] { return done_ == launched_; });
    stats_.exposed_s += std::chrono::duration<double>(clock::now() - t0).count();
    if (error_) std::rethrow_exception(error_);
  }
  cuts_.clear();
  cut_ = 0;
  // The sparse tail: the rows the backward added after the tensor went with
  // the dense buckets. Each rank's touched rows gathered (and added in rank
  // order: the same sums everywhere), unless gathering N ranks' rows would move
  // more bytes than a ring all-reduce of the whole tensor (big batches touch
  // most of a vocabulary): then that, as in a plain all-reduce.
  const auto t1 = clock::now();
  const bool tail = sparse_ && sparse_copied_;
  std::vector<int> rows;
  std::vector<int64_t> counts;
  int64_t most = 0;
  bool dense_tail = false;
  if (tail) {
    rows = touched_rows;
    std::sort(rows.begin(), rows.end());
    rows.erase(std::unique(rows.begin(), rows.end()), rows.end());
    const int n = comm_.size();
    const int64_t mine = int64_t(rows.size());
    counts.resize(static_cast<size_t>(n));
    comm_.allgather(&mine, sizeof mine, counts.data());
    for (int64_t c : counts) most = std::max(most, c);
    const double gather = double(n) * double(most) * double(sparse_row_ + 1) * 4;
    const double ring = 2.0 * double(n - 1) / double(n) * double(sparse_->nbytes());
    dense_tail = gather > ring;
    if (dense_tail) {
      comm_.allreduce_sum(sparse_->f32(), size_t(sparse_->numel()));
      stats_.sparse_bytes += ring;
    }
  }
  std::vector<float> vals;
  if (tail && !dense_tail) {
    vals.resize(size_t(most * sparse_row_), 0.f);
    for (size_t i = 0; i < rows.size(); ++i) {
      std::memcpy(vals.data() + i * size_t(sparse_row_), sparse_->f32() + int64_t(rows[i]) * sparse_row_, size_t(sparse_row_) * 4);
    }
  }
  for (size_t g = 0; g < groups_.size(); ++g) {
    size_t o = offset_[g];
    for (Tensor* t : groups_[g]) {
      float* d = t->f32();
      if (t == sparse_ && dense_tail) {
        for (int64_t i = 0; i < t->numel(); ++i) d[i] += flat_[o + size_t(i)];
      } else {
        std::memcpy(d, flat_.data() + o, size_t(t->numel()) * 4);
      }
      o += size_t(t->numel());
    }
  }
  if (tail && !dense_tail) {
    const int n = comm_.size();
    rows.resize(size_t(most), -1);
    std::vector<int> all_rows(size_t(n * most));
    std::vector<float> all_vals(size_t(n * most * sparse_row_));
    comm_.allgather(rows.data(), rows.size() * 4, all_rows.data());
    comm_.allgather(vals.data(), vals.size() * 4, all_vals.data());
    float* t = sparse_->f32();
    for (int r = 0; r < n; ++r) {
      for (int64_t i = 0; i < counts[size_t(r)]; ++i) {
        float* dst = t + int64_t(all_rows[size_t(r * most + i)]) * sparse_row_;
        const float* src = all_vals.data() + (r * most + i) * sparse_row_;
        for (int64_t j = 0; j < sparse_row_; ++j) dst[j] += src[j];
      }
    }
    stats_.sparse_bytes += double(all_vals.size() + all_rows.size()) * 4;
  }
  if (tail) {
    const double s = std::chrono::duration<double>(clock::now() - t1).count();
    stats_.comm_s += s;
    stats_.exposed_s += s;
    ++(dense_tail ? stats_.dense_tails : stats_.sparse_tails);
  }
  sparse_copied_ = false;
  next_group_ = 0;
  sent_ = 0;
  ++stats_.steps;
}

}  // namespace condense::train
