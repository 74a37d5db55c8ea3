// Runtime CPU dispatch: one place decides which instruction set the hot kernels
// use, so a portable build runs everywhere and uses AVX2 + FMA or AVX-512 where
// the CPU has them. Tests force each supported ISA to check every path.
#pragma once

namespace condense::kernels {

// Ordered: a later ISA implies the earlier ones (AVX-512 here means F + FMA,
// and every AVX-512 CPU also has AVX2 + FMA).
enum class Isa { Portable, Avx2, Avx512 };

inline constexpr Isa kAllIsas[] = {Isa::Avx512, Isa::Avx2, Isa::Portable};

// Whether this CPU (and OS) can run the ISA's kernels.
bool isa_supported(Isa isa);
// AVX-512 VNNI + BW (vpdpbusd on zmm): the Avx512 path's integer dot products
// use it when present, else the AVX2 bodies.
bool avx512_vnni_supported();
// Byte expansion (vpexpandb) inside the Avx512 ISA, where present.
bool avx512_vbmi2_supported();
// The best supported ISA.
Isa best_isa();
// The ISA the kernels use: force_isa()'s, else the CONDENSE_ISA environment
// variable's ("avx512", "avx2" or "portable"), else best_isa(). Throws
// std::runtime_error naming the variable when CONDENSE_ISA is unknown or names
// an ISA this CPU lacks.
Isa active_isa();
// Throws std::runtime_error when the CPU lacks `isa`.
void force_isa(Isa isa);
// Back to the CONDENSE_ISA (or detected) choice.
void clear_forced_isa();
const char* isa_name(Isa isa);
// "avx512", "avx2" or "portable"; throws std::runtime_error on anything else.
Isa parse_isa(const char* name);

// CPUs this process may really use: its affinity mask, further bounded by a
// cgroup (v2 cpu.max or v1 cfs quota) CPU limit, rounded up; at least 1.
int available_cpus();
// The CPU's brand string (e.g. "AMD EPYC 9R14"), or "unknown".
const char* cpu_name();

}  // namespace condense::kernels
