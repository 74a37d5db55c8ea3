// A float64 reference of the canonical Llama-family model (Hugging Face layout:
// rotate-half RoPE, weights [out, in]) and of the training objective (CE, T^2 KL
// distillation, hidden-state MSE through a projection), written with plain
// loops independently of src/train. Whole-model gradient checks take central
// differences of its loss.
#pragma once
#include <vector>

namespace condense {
struct Model;
}

namespace ref {

struct Ref64Config {
  int dim, n_layers, n_heads, n_kv, hd, ffn, vocab;
  double theta, eps;
  bool tied, bias;
};

struct Ref64Layer {
  std::vector<double> attn_norm, wq, wk, wv, wo, bq, bk, bv, ffn_norm, wg, wu, wd;
};

struct Ref64Model {
  Ref64Config c;
  std::vector<double> embed, final_norm, lm_head;
  std::vector<Ref64Layer> layers;
  // Every parameter vector, in one fixed order (for perturbing along a direction).
  std::vector<std::vector<double>*> params();
};

// The weights of a condense::Model, read into float64 (the only link to production types).
Ref64Model ref_from_model(const condense::Model& m);

// Logits [T * vocab] of one sequence at positions 0..T-1; layer_out[l] receives
// layer l's output [T * dim] when not null.
std::vector<double> forward64(const Ref64Model& m, const std::vector<int>& tokens, std::vector<std::vector<double>>* layer_out);

struct Ref64Objective {
  double ce = 1, kd = 0, temperature = 1, hidden_beta = 0;
  std::vector<std::pair<int, int>> hidden;  // (student layer, teacher layer)
};

// The objective over `batch` sequences of `seq` tokens, as a mean per scored token
// (targets < 0 are not scored) plus, per hidden pair, beta * mean((xs P^T - xt)^2)
// with P [dt * ds] (empty: identity).
double loss64(const Ref64Model& student, const Ref64Model* teacher, const std::vector<std::vector<double>>& proj,
              const Ref64Objective& o, const std::vector<int>& inputs, const std::vector<int>& targets, int batch, int seq);

}  // namespace ref
