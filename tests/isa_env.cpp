// Linked into every test binary: when CONDENSE_ISA names an ISA this CPU lacks
// (ctest runs the kernel and training tests once per ISA), every test skips
// with the reason instead of failing; an unknown name fails. Prints the ISA in use.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <exception>

#include "kernels/cpu/cpu_features.h"

namespace {

class IsaEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    namespace kc = condense::kernels;
    const char* env = std::getenv("CONDENSE_ISA");
    if (env && *env) {
      kc::Isa isa;
      try {
        isa = kc::parse_isa(env);
      } catch (const std::exception& e) {
        FAIL() << "CONDENSE_ISA: " << e.what();
      }
      if (!kc::isa_supported(isa)) GTEST_SKIP() << "CONDENSE_ISA=" << env << " but this CPU (" << kc::cpu_name() << ") lacks it";
    }
    std::printf("kernels: %s on %s\n", kc::isa_name(kc::active_isa()), kc::cpu_name());
  }
};

[[maybe_unused]] const auto* const kRegistered = ::testing::AddGlobalTestEnvironment(new IsaEnvironment);

}  // namespace
