#include "core/ops/gemm.h"

#include "kernels/cpu/gemm_f32.h"

namespace condense::ops {

void matmul(const Mat& a, bool trans_a, const Mat& b, bool trans_b, const Mat& c, float alpha, float beta) {
  const int64_t m = trans_a ? a.cols : a.rows, k = trans_a ? a.rows : a.cols;
  const int64_t kb = trans_b ? b.cols : b.rows, n = trans_b ? b.rows : b.cols;
  check(k == kb && c.rows == m && c.cols == n, "matmul",
        "op(A) is " + std::to_string(m) + "x" + std::to_string(k) + ", op(B) " + std::to_string(kb) + "x" + std::to_string(n) +
            ", C " + std::to_string(c.rows) + "x" + std::to_string(c.cols));
  const int64_t a_rs = trans_a ? 1 : a.ld, a_cs = trans_a ? a.ld : 1;
  const int64_t b_rs = trans_b ? 1 : b.ld, b_cs = trans_b ? b.ld : 1;
  kernels::gemm_f32(m, n, k, alpha, a.data, a_rs, a_cs, b.data, b_rs, b_cs, beta, c.data, c.ld);
}

}  // namespace condense::ops
