#include "train/data_shard.h"

#include <string>

#include "core/error.h"

namespace condense::train {

StepShard shard_step(int batch, int accum, int rank, int ranks) {
  StepShard s;
  if (accum % ranks == 0) {
    s.rows = batch;
    for (int a = rank; a < accum; a += ranks) s.micros.push_back(a);
    s.scale = 1.f / float(accum);
  } else if (batch % ranks == 0) {
    s.rows = batch / ranks;
    s.first_window = rank * s.rows;
    for (int a = 0; a < accum; ++a) s.micros.push_back(a);
    s.scale = 1.f / (float(accum) * float(ranks));
  } else {
    fail("train", "a step of " + std::to_string(accum) + " micro-batch(es) of " + std::to_string(batch) +
                      " windows cannot be split evenly over " + std::to_string(ranks) + " ranks",
         "Make training.grad_accum or training.batch a multiple of " + std::to_string(ranks));
  }
  return s;
}

}  // namespace condense::train
