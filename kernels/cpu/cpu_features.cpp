#include "kernels/cpu/cpu_features.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

namespace condense::kernels {
namespace {

Isa detect() {
  const char* env = std::getenv("CONDENSE_ISA");
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma");
  if (env && std::strcmp(env, "portable") == 0) return Isa::Portable;
  return avx512 ? Isa::Avx512 : Isa::Portable;
}

std::atomic<int> g_forced{-1};

}  // namespace

Isa active_isa() {
  static const Isa detected = detect();
  const int f = g_forced.load(std::memory_order_relaxed);
  return f < 0 ? detected : Isa(f);
}

void force_isa(Isa isa) {
  if (isa == Isa::Avx512 && !(__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma"))) return;
  g_forced.store(int(isa), std::memory_order_relaxed);
}

void clear_forced_isa() { g_forced.store(-1, std::memory_order_relaxed); }

const char* isa_name(Isa isa) { return isa == Isa::Avx512 ? "avx512" : "portable"; }

}  // namespace condense::kernels
