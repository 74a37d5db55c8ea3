// How the global batch of one optimizer step (grad_accum micro-batches of
// `batch` windows, as the recipe says) is split over the ranks of a
// data-parallel run, so that N ranks compute the single-process step:
// whole micro-batches per rank when grad_accum is a multiple of N (rank r runs
// micro-batches r, r + N, ...), else an equal slice of every micro-batch's
// windows when batch is. Windows are a pure function of (seed, step,
// micro-batch, window), so the split never changes what is trained on.
#pragma once
#include <vector>

namespace condense::train {

struct StepShard {
  int rows = 0;             // windows per local forward
  int first_window = 0;     // within each micro-batch
  std::vector<int> micros;  // the global micro-batches this rank runs, in order
  float scale = 1.f;        // loss scale per local forward: the global step's mean
};

StepShard shard_step(int batch, int accum, int rank, int ranks);

}  // namespace condense::train
