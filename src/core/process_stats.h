// This process's memory, from /proc/self/status (0 where it is not available).
#pragma once
#include <cstddef>

namespace condense {

size_t current_rss_bytes();  // VmRSS
size_t peak_rss_bytes();     // VmHWM: the most resident so far
// Starts the peak over from the current RSS (Linux >= 4.0; no-op elsewhere).
void reset_peak_rss();

}  // namespace condense
