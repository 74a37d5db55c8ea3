// Unstructured and N:M pruning of one weight matrix [rows, cols] (rows =
// output features). A criterion scores every element; the lowest-scoring ones
// are removed, compared over the whole matrix (magnitude), within each output
// row (Wanda), or within each group of m consecutive inputs of a row (N:M).
// SparseGPT (Frantar & Alistarh 2023) instead chooses the mask block by block
// from w^2 / [H^-1]_jj^2 and compensates every removed weight on the columns
// not yet visited, through the inverse Hessian as GPTQ does for rounding.
// Elements an existing mask already removed stay removed and count toward the
// target sparsity.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "model/quantized_weight.h"

namespace condense::compress {

// Keep n of every m consecutive weights of a row (2:4); m == 0: unstructured.
struct NmPattern {
  int n = 0, m = 0;
  bool active() const { return m > 0; }
  double sparsity() const { return active() ? 1.0 - double(n) / double(m) : 0.0; }
};

enum class Compare { Matrix, Row };

// Bitmap (1 = kept) removing round(sparsity * count) elements with the lowest
// `score` within each comparison group (the matrix, each row, or each N:M
// group when nm is active, where sparsity is ignored). Elements already removed
// by `existing` are removed again and counted first. Ties keep the earlier index.
std::vector<uint64_t> select_mask(const std::vector<float>& score, int64_t rows, int64_t cols, double sparsity, Compare cmp,
                                  const NmPattern& nm, const std::vector<uint64_t>& existing = {});

// |w|, and Wanda's |w_ij| * ||x_j|| (the root of H_jj, H = mean x x^T).
std::vector<float> magnitude_scores(const float* w, int64_t n);
std::vector<float> wanda_scores(const float* w, int64_t rows, int64_t cols, const std::vector<double>& hessian);

struct SparseGptOptions {
  double damp = 0.01;  // fraction of mean(diag H) added to the diagonal
  int block = 128;     // columns whose mask is chosen together
};

struct SparseGptReport {
  double damp_used = 0;
  int retries = 0;
};

// Prunes w in place (removed elements become 0, the rest are compensated) and
// returns the mask. nm active: n of every m inside each block, chosen when the
// group's first column is reached.
std::vector<uint64_t> sparsegpt_prune(float* w, int64_t rows, int64_t cols, const std::vector<double>& hessian, double sparsity,
                                      const NmPattern& nm, const SparseGptOptions& opt, const std::vector<uint64_t>& existing = {},
                                      SparseGptReport* report = nullptr);

// Sets the removed elements of w to 0 (masks: model/quantized_weight.h).
void apply_mask(float* w, int64_t n, const std::vector<uint64_t>& mask);

}  // namespace condense::compress
