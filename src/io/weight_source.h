// Where a writer gets each weight's data: from a Model in memory, or streamed
// one weight at a time from a file (a .cpk: io/cpk.h open_cpk_stream), so a
// conversion holds one tensor, not the model.
#pragma once
#include "model/model.h"

namespace condense {

struct WeightView {
  const Tensor* values = nullptr;            // f32 values; undefined (or null) when only the packed form is held
  const WeightCompression* packed = nullptr; // null when the weight is plain f32
};

class WeightSource {
 public:
  virtual ~WeightSource() = default;
  // The weight `w` of the model (as for_each_weight names it); valid until the
  // next call, which may release it.
  virtual WeightView get(const WeightRef& w) = 0;
};

// The weights of a Model held in memory.
class ModelWeights : public WeightSource {
 public:
  explicit ModelWeights(const Model& m) : m_(m) {}
  WeightView get(const WeightRef& w) override {
    auto it = m_.compression.find(w.name);
    return {w.tensor, it == m_.compression.end() ? nullptr : &it->second};
  }

 private:
  const Model& m_;
};

}  // namespace condense
