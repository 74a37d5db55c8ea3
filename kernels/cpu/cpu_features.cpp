#include "kernels/cpu/cpu_features.h"

#include <sched.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define CONDENSE_X86 1
#endif

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

namespace condense::kernels {
namespace {

// __builtin_cpu_supports also checks that the OS saves the wider registers
// (XCR0), so a hypervisor that hides AVX-512 state is treated as AVX2-only.
#ifdef CONDENSE_X86
bool has_avx512() { return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma"); }
// F16C from CPUID leaf 1 (ECX bit 29): clang's __builtin_cpu_supports does not know "f16c".
bool has_f16c() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  return __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29));
}
bool has_avx2() { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && has_f16c(); }
#else
bool has_avx512() { return false; }
bool has_avx2() { return false; }
#endif

Isa from_env() {
  const char* env = std::getenv("CONDENSE_ISA");
  if (!env || !*env) return best_isa();
  Isa isa;
  try {
    isa = parse_isa(env);
  } catch (const std::exception& e) {
    throw std::runtime_error(std::string("CONDENSE_ISA: ") + e.what());
  }
  if (!isa_supported(isa)) {
    throw std::runtime_error(std::string("CONDENSE_ISA=") + env + ": this CPU (" + cpu_name() + ") lacks " + isa_name(isa) +
                             "; it supports up to " + isa_name(best_isa()) + ". Unset CONDENSE_ISA or choose a supported one.");
  }
  return isa;
}

std::atomic<int> g_forced{-1};

// Reads one integer pair "QUOTA PERIOD" or two single-value files; returns the
// CPU limit as quota / period, or 0 when unlimited or unreadable.
double cgroup_cpu_limit() {
  if (FILE* f = std::fopen("/sys/fs/cgroup/cpu.max", "r")) {  // cgroup v2
    char quota[32] = {};
    long period = 0;
    const int got = std::fscanf(f, "%31s %ld", quota, &period);
    std::fclose(f);
    if (got == 2 && std::strcmp(quota, "max") != 0 && period > 0) return std::atof(quota) / double(period);
    return 0;
  }
  long quota = -1, period = 0;
  if (FILE* f = std::fopen("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "r")) {  // cgroup v1
    if (std::fscanf(f, "%ld", &quota) != 1) quota = -1;
    std::fclose(f);
  }
  if (FILE* f = std::fopen("/sys/fs/cgroup/cpu/cpu.cfs_period_us", "r")) {
    if (std::fscanf(f, "%ld", &period) != 1) period = 0;
    std::fclose(f);
  }
  return quota > 0 && period > 0 ? double(quota) / double(period) : 0;
}

}  // namespace

bool isa_supported(Isa isa) {
  switch (isa) {
    case Isa::Avx512: return has_avx512();
    case Isa::Avx2: return has_avx2();
    case Isa::Portable: return true;
  }
  return false;
}

bool avx512_vbmi2_supported() {
#ifdef CONDENSE_X86
  return has_avx512() && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vbmi2");
#else
  return false;
#endif
}

bool avx512_vnni_supported() {
#ifdef CONDENSE_X86
  return has_avx512() && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vnni");
#else
  return false;
#endif
}

Isa best_isa() { return has_avx512() ? Isa::Avx512 : has_avx2() ? Isa::Avx2 : Isa::Portable; }

Isa active_isa() {
  const int f = g_forced.load(std::memory_order_relaxed);
  if (f >= 0) return Isa(f);
  static const Isa chosen = from_env();  // a throw leaves it unset, so the error repeats
  return chosen;
}

void force_isa(Isa isa) {
  if (!isa_supported(isa)) {
    throw std::runtime_error(std::string("cannot force ") + isa_name(isa) + ": this CPU (" + cpu_name() + ") lacks it");
  }
  g_forced.store(int(isa), std::memory_order_relaxed);
}

void clear_forced_isa() { g_forced.store(-1, std::memory_order_relaxed); }

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Avx512: return "avx512";
    case Isa::Avx2: return "avx2";
    case Isa::Portable: return "portable";
  }
  return "?";
}

Isa parse_isa(const char* name) {
  for (Isa isa : kAllIsas) {
    if (std::strcmp(name, isa_name(isa)) == 0) return isa;
  }
  throw std::runtime_error(std::string("unknown ISA '") + name + "' (expected avx512, avx2 or portable)");
}

int available_cpus() {
  cpu_set_t set;
  int n = 0;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) n = CPU_COUNT(&set);
  if (n <= 0) n = 1;
  const double limit = cgroup_cpu_limit();
  if (limit > 0) n = std::max(1, std::min(n, int(std::ceil(limit))));
  return n;
}

const char* cpu_name() {
  static const std::string name = [] {
#ifndef CONDENSE_X86
    return std::string("unknown");
#else
    unsigned regs[12] = {};
    unsigned max_ext = __get_cpuid_max(0x80000000u, nullptr);
    if (max_ext < 0x80000004u) return std::string("unknown");
    for (unsigned i = 0; i < 3; ++i) __get_cpuid(0x80000002u + i, &regs[4 * i], &regs[4 * i + 1], &regs[4 * i + 2], &regs[4 * i + 3]);
    std::string s(reinterpret_cast<const char*>(regs), sizeof(regs));
    s = s.c_str();
    const size_t a = s.find_first_not_of(' '), b = s.find_last_not_of(' ');
    return a == std::string::npos ? std::string("unknown") : s.substr(a, b - a + 1);
#endif
  }();
  return name.c_str();
}

}  // namespace condense::kernels
