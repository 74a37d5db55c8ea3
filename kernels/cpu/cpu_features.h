// Runtime CPU dispatch: fast paths use AVX-512 only when the CPU has it, so a
// portable build runs everywhere. Tests force the portable path to check it too.
#pragma once

namespace condense::kernels {

enum class Isa { Portable, Avx512 };

// The best ISA this CPU supports, unless forced by force_isa() or by the
// CONDENSE_ISA environment variable ("portable" or "avx512").
Isa active_isa();
void force_isa(Isa isa);
// Back to the detected (or CONDENSE_ISA) choice.
void clear_forced_isa();
const char* isa_name(Isa isa);

}  // namespace condense::kernels
