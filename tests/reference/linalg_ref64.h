// Float64 linear algebra for the compression tests, written with plain loops
// independently of Eigen and src/compress: a Hessian of correlated random
// inputs, Cholesky and Gauss-Jordan inverse.
#pragma once
#include <cstdint>
#include <vector>

namespace ref {

// H = X^T X / n of n correlated random inputs of `cols` features (so H is far
// from diagonal), deterministic for a seed.
std::vector<double> hessian(int64_t cols, int64_t n, uint32_t seed);
// Lower Cholesky factor of a symmetric positive-definite matrix.
std::vector<double> cholesky(const std::vector<double>& a, int64_t n);
// Inverse by Gauss-Jordan elimination with partial pivoting.
std::vector<double> inverse(std::vector<double> a, int64_t n);

}  // namespace ref
