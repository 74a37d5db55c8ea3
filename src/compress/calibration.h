// Layer-by-layer calibration with bounded memory. The hidden states of the
// calibration set ([n_seq * seq, dim] f32) are the only whole-set buffer: each
// block runs on them a chunk of sequences at a time, statistics of its linear
// layers' inputs are accumulated (second moments for GPTQ / SparseGPT / AWQ's
// loss, mean |x| for AWQ and Wanda), and after the caller has changed the
// block's weights, advance() replaces the states by that block's outputs, so
// later blocks see the compressed earlier ones (as GPTQ does).
#pragma once
#include <array>
#include <memory>
#include <vector>

#include "model/model.h"

namespace condense::train {
class ModelGraph;
}
namespace condense::dist {
class Communicator;
}

namespace condense::compress {

// The four places a block's linear layers read their input from.
enum class Site { AttnIn, AttnOut, FfnIn, FfnHidden };  // q/k/v, o_proj, gate/up, down_proj
inline constexpr int kNumSites = 4;

struct SiteStats {
  int64_t cols = 0, samples = 0;
  std::vector<double> hessian;   // [cols, cols]: mean of x x^T over calibration tokens
  std::vector<double> abs_mean;  // [cols]: mean |x_j|
  std::vector<float> abs_max;    // [cols]: max |x_j|
};

class LayerwiseCalibrator {
 public:
  // inputs: n_seq windows of seq token ids (each starting with BOS).
  // chunk: sequences per block run (memory vs speed). With a communicator of
  // N ranks this rank keeps sequences rank, rank + N, ... and every statistic
  // is summed (maxima: maximised) over the ranks, so all get the whole set's.
  LayerwiseCalibrator(const Model& m, std::vector<int> inputs, int n_seq, int seq, int chunk,
                      dist::Communicator* comm = nullptr);
  ~LayerwiseCalibrator();

  // Runs block `layer` with its current weights over the whole set and
  // returns the statistics of the input sites in `sites` (bit i: Site i; the
  // others stay empty). The hidden states are not changed. Without `hessian`
  // only the per-channel |x| statistics are gathered (cheap).
  std::array<SiteStats, kNumSites> collect(int layer, unsigned sites = 0xf, bool hessian = true);
  // Largest |key| (after RoPE) and |value| per kv head of block `layer` over
  // the whole set: [n_kv] each. The hidden states are not changed.
  void kv_absmax(int layer, std::vector<float>& k_amax, std::vector<float>& v_amax);
  // Runs block `layer` with its current weights and keeps the outputs as the
  // next block's inputs.
  void advance(int layer);

  // Bytes held: hidden states + one block's activations for a chunk.
  size_t bytes() const;
  int64_t tokens() const { return int64_t(n_seq_) * seq_; }

 private:
  const Model& m_;
  std::vector<int> inputs_;
  int n_seq_, seq_, chunk_;
  dist::Communicator* comm_;  // null or one rank: alone
  Tensor hidden_;  // [n_seq * seq, dim]
  std::unique_ptr<train::ModelGraph> graph_;
  Tensor hess_chunk_;
};

// The weights of a block that read each site, by canonical name suffix.
std::vector<Tensor*> site_weights(LayerWeights& w, Site s);
const char* site_name(Site s);

}  // namespace condense::compress
