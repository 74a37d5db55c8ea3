// Parameterised kernel tests run once per ISA with it forced (skipped, with the
// reason, where the CPU lacks it), and the random inputs they use.
#pragma once
#include <gtest/gtest.h>

#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_features.h"

namespace condense::kernels {
// So a failure names the ISA instead of printing the enum's bytes.
inline void PrintTo(Isa isa, std::ostream* os) { *os << isa_name(isa); }
}  // namespace condense::kernels

namespace testutil {

class ForcedIsa : public ::testing::TestWithParam<condense::kernels::Isa> {
 protected:
  void SetUp() override {
    namespace kc = condense::kernels;
    if (!kc::isa_supported(GetParam())) GTEST_SKIP() << "this CPU lacks " << kc::isa_name(GetParam());
    kc::force_isa(GetParam());
  }
  void TearDown() override { condense::kernels::clear_forced_isa(); }
};

inline std::string isa_test_name(const ::testing::TestParamInfo<condense::kernels::Isa>& i) {
  return condense::kernels::isa_name(i.param);
}

// n values from N(0, sd^2), deterministic for a seed.
inline std::vector<float> normal(size_t n, uint32_t seed, float sd = 1.f) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.f, sd);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

}  // namespace testutil
