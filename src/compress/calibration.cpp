#include "compress/calibration.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/ops/gemm.h"
#include "dist/comm.h"
#include "train/model_graph.h"

namespace condense::compress {

using train::ModelGraph;

const char* site_name(Site s) {
  switch (s) {
    case Site::AttnIn: return "attn_in";
    case Site::AttnOut: return "attn_out";
    case Site::FfnIn: return "ffn_in";
    case Site::FfnHidden: return "ffn_hidden";
  }
  return "?";
}

std::vector<Tensor*> site_weights(LayerWeights& w, Site s) {
  switch (s) {
    case Site::AttnIn: return {&w.wq, &w.wk, &w.wv};
    case Site::AttnOut: return {&w.wo};
    case Site::FfnIn: return {&w.w_gate, &w.w_up};
    case Site::FfnHidden: return {&w.w_down};
  }
  return {};
}

LayerwiseCalibrator::LayerwiseCalibrator(const Model& m, std::vector<int> inputs, int n_seq, int seq, int chunk,
                                         dist::Communicator* comm)
    : m_(m), inputs_(std::move(inputs)), n_seq_(n_seq), seq_(seq), comm_(comm && comm->size() > 1 ? comm : nullptr) {
  if (n_seq <= 0 || seq <= 0) fail("calibration", "needs at least one sequence of at least one token");
  if (int64_t(inputs_.size()) != int64_t(n_seq) * seq) fail("calibration", "token count does not match n_seq * seq");
  if (comm_) {
    const int ranks = comm_->size();
    if (n_seq < ranks) {
      fail("calibration", std::to_string(ranks) + " ranks share " + std::to_string(n_seq) + " calibration sequences; each needs one",
           "Raise calibration.samples to at least " + std::to_string(ranks));
    }
    std::vector<int> mine;
    for (int i = comm_->rank(); i < n_seq; i += ranks) mine.insert(mine.end(), inputs_.begin() + int64_t(i) * seq, inputs_.begin() + int64_t(i + 1) * seq);
    inputs_ = std::move(mine);
    n_seq_ = n_seq = int(inputs_.size() / size_t(seq));
  }
  chunk_ = std::max(1, std::min(chunk, n_seq));
  while (n_seq % chunk_ != 0) --chunk_;  // equal chunks: the graph has a fixed batch
  const int64_t d = m.config.dim;
  hidden_ = Tensor::empty(DType::F32, {int64_t(n_seq) * seq, d});
  float* h = hidden_.f32();
  for (size_t i = 0; i < inputs_.size(); ++i) {
    const int t = inputs_[i];
    if (t < 0 || t >= m.config.vocab) fail("calibration", "token id " + std::to_string(t) + " is outside the vocabulary");
    std::memcpy(h + int64_t(i) * d, m.embed.f32() + int64_t(t) * d, size_t(d) * 4);
  }
  graph_ = std::make_unique<ModelGraph>(m.config, chunk_, seq, false);
  const int64_t widest = std::max<int64_t>({d, m.config.q_dim(), m.config.ffn_dim});
  hess_chunk_ = Tensor::empty(DType::F32, {widest, widest});
}

LayerwiseCalibrator::~LayerwiseCalibrator() = default;

size_t LayerwiseCalibrator::bytes() const {
  return hidden_.nbytes() + graph_->activation_bytes() + hess_chunk_.nbytes();
}

std::array<SiteStats, kNumSites> LayerwiseCalibrator::collect(int layer, unsigned sites, bool hessian) {
  using Act = ModelGraph::Act;
  const Act acts[kNumSites] = {Act::AttnNormOut, Act::Attention, Act::FfnNormOut, Act::FfnHidden};
  std::array<SiteStats, kNumSites> st;
  const int64_t rows = int64_t(chunk_) * seq_;
  ops::Mat all = ops::mat(hidden_);
  for (int c = 0; c < n_seq_ / chunk_; ++c) {
    graph_->forward_block(m_, layer, all.rows_slice(int64_t(c) * rows, rows));
    for (int si = 0; si < kNumSites; ++si) {
      if (!((sites >> si) & 1u)) continue;
      const ops::Mat x = graph_->activation(layer, acts[si]);
      SiteStats& s = st[size_t(si)];
      const int64_t k = x.cols;
      if (s.cols == 0) {
        s.cols = k;
        if (hessian) s.hessian.assign(size_t(k * k), 0.0);
        s.abs_mean.assign(size_t(k), 0.0);
        s.abs_max.assign(size_t(k), 0.f);
      }
      if (hessian) {
        // f32 GEMM per chunk (at most chunk*seq rows summed), float64 across chunks
        ops::Mat hc{hess_chunk_.f32(), k, k, k};
        ops::matmul(x, true, x, false, hc);
        for (int64_t i = 0; i < k * k; ++i) s.hessian[size_t(i)] += double(hc.data[i]);
      }
      for (int64_t r = 0; r < x.rows; ++r) {
        const float* xr = x.row(r);
        for (int64_t j = 0; j < k; ++j) {
          s.abs_mean[size_t(j)] += std::fabs(double(xr[j]));
          s.abs_max[size_t(j)] = std::max(s.abs_max[size_t(j)], std::fabs(xr[j]));
        }
      }
      s.samples += x.rows;
    }
  }
  if (comm_) {
    // sums over every rank's sequences: the same set statistics on all of them
    for (SiteStats& s : st) {
      if (s.cols == 0) continue;
      double n = double(s.samples);
      comm_->allreduce_sum(&n, 1);
      s.samples = int64_t(n);
      if (!s.hessian.empty()) comm_->allreduce_sum(s.hessian.data(), s.hessian.size());
      comm_->allreduce_sum(s.abs_mean.data(), s.abs_mean.size());
      comm_->allreduce_max(s.abs_max.data(), s.abs_max.size());
    }
  }
  for (SiteStats& s : st) {
    if (s.samples == 0) continue;
    const double inv = 1.0 / double(s.samples);
    for (double& v : s.hessian) v *= inv;
    for (double& v : s.abs_mean) v *= inv;
  }
  return st;
}

void LayerwiseCalibrator::kv_absmax(int layer, std::vector<float>& k_amax, std::vector<float>& v_amax) {
  const int n_kv = m_.config.n_kv_heads;
  k_amax.assign(size_t(n_kv), 0.f);
  v_amax.assign(size_t(n_kv), 0.f);
  const int64_t rows = int64_t(chunk_) * seq_;
  ops::Mat all = ops::mat(hidden_);
  for (int c = 0; c < n_seq_ / chunk_; ++c) {
    graph_->forward_block(m_, layer, all.rows_slice(int64_t(c) * rows, rows));
    for (auto [act, out] : {std::pair{ModelGraph::Act::Keys, &k_amax}, {ModelGraph::Act::Values, &v_amax}}) {
      const ops::Mat x = graph_->activation(layer, act);  // [chunk][n_kv][seq] rows of head_dim
      for (int64_t r = 0; r < x.rows; ++r) {
        const int h = int((r / seq_) % n_kv);
        const float* p = x.row(r);
        float& a = (*out)[size_t(h)];
        for (int64_t j = 0; j < x.cols; ++j) a = std::max(a, std::fabs(p[j]));
      }
    }
  }
  if (comm_) {
    comm_->allreduce_max(k_amax.data(), k_amax.size());
    comm_->allreduce_max(v_amax.data(), v_amax.size());
  }
}

void LayerwiseCalibrator::advance(int layer) {
  const int64_t rows = int64_t(chunk_) * seq_;
  ops::Mat all = ops::mat(hidden_);
  for (int c = 0; c < n_seq_ / chunk_; ++c) {
    ops::Mat x = all.rows_slice(int64_t(c) * rows, rows);
    const ops::Mat y = graph_->forward_block(m_, layer, x);
    for (int64_t r = 0; r < rows; ++r) std::memcpy(x.row(r), y.row(r), size_t(x.cols) * 4);
  }
}

}  // namespace condense::compress
