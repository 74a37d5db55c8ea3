#include "train/student_init.h"

#include "core/error.h"

namespace condense::train {

namespace {
Tensor copy(const Tensor& t) { return t.defined() ? t.clone() : Tensor{}; }
}  // namespace

Model student_from_teacher(const Model& t, const std::vector<int>& layers) {
  for (size_t i = 0; i < layers.size(); ++i) {
    if (layers[i] < 0 || layers[i] >= t.config.n_layers) {
      fail("student_from_teacher", "layer " + std::to_string(layers[i]) + " is not one of the teacher's " +
                                       std::to_string(t.config.n_layers) + " layers (0.." + std::to_string(t.config.n_layers - 1) + ")");
    }
    if (i > 0 && layers[i] <= layers[i - 1]) fail("student_from_teacher", "layers must be strictly increasing");
  }
  Model s;
  s.config = t.config;
  s.config.n_layers = int(layers.size());
  s.embed = copy(t.embed);
  s.final_norm = copy(t.final_norm);
  s.lm_head = copy(t.lm_head);
  for (int l : layers) {
    const LayerWeights& w = t.layers[size_t(l)];
    s.layers.push_back({copy(w.attn_norm), copy(w.wq), copy(w.wk), copy(w.wv), copy(w.wo), copy(w.bq), copy(w.bk), copy(w.bv),
                        copy(w.ffn_norm), copy(w.w_gate), copy(w.w_up), copy(w.w_down)});
  }
  s.format = "from_teacher";
  s.path = t.path;
  return s;
}

}  // namespace condense::train
