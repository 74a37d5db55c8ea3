// ModelGraph: forward and backward of a Llama-family Model over a batch of
// `batch` sequences of `seq` tokens (each starting at position 0), written once
// against the ops layer. With keep_activations it keeps what backward needs per
// layer; without (a frozen teacher) one set of buffers is reused by every layer.
#pragma once
#include <functional>
#include <vector>

#include "core/ops/mat.h"
#include "core/ops/transformer.h"
#include "model/model.h"

namespace condense::train {

// Called with a layer index and that layer's output (the residual stream after
// the block): forward hooks read it, backward hooks add a loss's gradient to it.
using LayerHook = std::function<void(int layer, const ops::Mat& x)>;

class ModelGraph {
 public:
  ModelGraph(const ModelConfig& cfg, int batch, int seq, bool keep_activations);

  int rows() const { return batch_ * seq_; }
  // tokens: [batch * seq] ids. Returns the final-normed hidden states [rows, dim]
  // (valid until the next forward).
  ops::Mat forward(const Model& m, const int* tokens, const LayerHook& on_output = {});
  // d_final: the loss's gradient w.r.t. forward()'s result (overwritten). Adds
  // every weight's gradient into `grads` (a Model of the same config).
  // inject(l, dx) may add a gradient w.r.t. layer l's output before the
  // backward pass goes through layer l. Needs keep_activations.
  void backward(const Model& m, const ops::Mat& d_final, Model& grads, const LayerHook& inject = {});

  // Runs block `layer` alone on x_in [rows, dim] (graphs without kept
  // activations: layer-by-layer calibration). Returns its output [rows, dim],
  // valid until the next call.
  ops::Mat forward_block(const Model& m, int layer, const ops::Mat& x_in);

  // Bytes held for activations and backward scratch.
  size_t activation_bytes() const;

  // Activations of layer l from the last forward (without kept activations:
  // of the last block run, whatever l), for importance and calibration: the two RMSNorm outputs, the attention output
  // before o_proj [rows, q_dim] and the SwiGLU output before down_proj [rows, ffn].
  // Keys (after RoPE) and Values come head-major: [batch * n_kv * seq, head_dim].
  enum class Act { AttnNormOut, FfnNormOut, Attention, FfnHidden, Keys, Values };
  ops::Mat activation(int layer, Act which);

 private:
  struct Saved {
    Tensor x_in, xn1, q, k, v, att, x_mid, xn2, gate, up, h;  // k, v head-major [batch][n_kv][seq][hd]
  };
  void run_block(LayerWeights& w, Saved& s, Tensor& out);
  void scatter_heads(const ops::Mat& rows, Tensor& head_major) const;
  void gather_heads(const Tensor& head_major, const ops::Mat& rows) const;

  ModelConfig cfg_;
  int batch_, seq_;
  bool keep_;
  std::vector<Saved> saved_;
  Tensor x_final_, xn_final_, k_rows_, v_rows_;
  Tensor dx_, dxn_, dh_, dq_, dk_rows_, dv_rows_, dk_, dv_;  // backward scratch (keep mode only)
  std::vector<int> tokens_;
  ops::RopeTable rope_;
};

}  // namespace condense::train
