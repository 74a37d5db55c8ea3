// The ISA dispatch itself: names, refusals of an ISA the CPU lacks (in the
// library and in the CLI), the CPU count threads are bounded by, and the
// AVX2 and AVX-512 GEMM paths agreeing bit for bit (same blocking, same FMA
// order per element), so a divergence in either body shows up here.
#include <gtest/gtest.h>
#include <sched.h>

#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/gemm_f32.h"
#include "tests/test_util.h"

namespace kc = condense::kernels;

namespace {

std::string run(const std::string& cmd) {
  const testutil::CommandResult r = testutil::run_command(cmd);
  return r.output + "[exit " + std::to_string(r.status) + "]";
}

}  // namespace

TEST(Isa, NamesRoundTripAndUnknownNamesAreRefused) {
  for (kc::Isa isa : kc::kAllIsas) EXPECT_EQ(kc::parse_isa(kc::isa_name(isa)), isa);
  EXPECT_THROW(kc::parse_isa("sse9"), std::runtime_error);
  EXPECT_THROW(kc::parse_isa("AVX2"), std::runtime_error);
  EXPECT_TRUE(kc::isa_supported(kc::Isa::Portable));
  EXPECT_TRUE(kc::isa_supported(kc::best_isa()));
  // AVX-512 here implies AVX2 + FMA.
  if (kc::isa_supported(kc::Isa::Avx512)) {
    EXPECT_TRUE(kc::isa_supported(kc::Isa::Avx2));
  }
}

TEST(Isa, ForcingAnIsaTheCpuLacksThrowsAndChangesNothing) {
  const kc::Isa before = kc::active_isa();
  for (kc::Isa isa : kc::kAllIsas) {
    if (kc::isa_supported(isa)) continue;
    EXPECT_THROW(kc::force_isa(isa), std::runtime_error) << kc::isa_name(isa);
    EXPECT_EQ(kc::active_isa(), before);
  }
  kc::force_isa(kc::Isa::Portable);
  EXPECT_EQ(kc::active_isa(), kc::Isa::Portable);
  kc::clear_forced_isa();
  EXPECT_EQ(kc::active_isa(), before);
}

TEST(Isa, AvailableCpusIsBoundedByTheAffinityMask) {
  cpu_set_t set;
  ASSERT_EQ(sched_getaffinity(0, sizeof(set), &set), 0);
  EXPECT_GE(kc::available_cpus(), 1);
  EXPECT_LE(kc::available_cpus(), CPU_COUNT(&set));
}

TEST(Isa, Avx2AndAvx512GemmAgreeBitForBit) {
  if (!kc::isa_supported(kc::Isa::Avx512)) GTEST_SKIP() << "needs AVX-512 to compare with AVX2";
  std::mt19937 g(7);
  std::normal_distribution<float> d;
  const int64_t m = 203, n = 77, k = 300;  // partial MR blocks, partial panels, two KC slabs
  std::vector<float> a(size_t(m * k)), b(size_t(k * n)), c512(size_t(m * n)), c2(size_t(m * n));
  for (float& v : a) v = d(g);
  for (float& v : b) v = d(g);
  for (int tb = 0; tb < 2; ++tb) {
    const int64_t b_rs = tb ? 1 : n, b_cs = tb ? k : 1;
    kc::force_isa(kc::Isa::Avx512);
    kc::gemm_f32(m, n, k, 0.75f, a.data(), k, 1, b.data(), b_rs, b_cs, 0.f, c512.data(), n);
    kc::force_isa(kc::Isa::Avx2);
    kc::gemm_f32(m, n, k, 0.75f, a.data(), k, 1, b.data(), b_rs, b_cs, 0.f, c2.data(), n);
    kc::clear_forced_isa();
    for (size_t i = 0; i < c2.size(); ++i) ASSERT_EQ(c2[i], c512[i]) << "element " << i << " tb=" << tb;
  }
}

TEST(Isa, CliRefusesAnUnknownOrUnsupportedIsa) {
  const std::string bin = CONDENSE_BIN;
  std::string out = run("CONDENSE_ISA=avx3 " + bin + " --version");
  EXPECT_NE(out.find("unknown ISA 'avx3'"), std::string::npos) << out;
  EXPECT_NE(out.find("[exit 1]"), std::string::npos) << out;
  for (kc::Isa isa : kc::kAllIsas) {
    out = run(std::string("CONDENSE_ISA=") + kc::isa_name(isa) + " " + bin + " --version");
    if (kc::isa_supported(isa)) {
      EXPECT_NE(out.find("[exit 0]"), std::string::npos) << out;
    } else {
      EXPECT_NE(out.find("lacks"), std::string::npos) << out;
      EXPECT_NE(out.find("[exit 1]"), std::string::npos) << out;
    }
  }
}
