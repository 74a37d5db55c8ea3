// The Pareto front of compressed variants (docs: the report draws it for
// quality against latency and against size). Every objective is minimised:
// pass -x for one to maximise (top-1 agreement, throughput).
#pragma once
#include <array>
#include <vector>

namespace condense::report {

// front[i]: no other point is at least as good in both objectives and strictly
// better in one. Equal points dominate neither each other, so duplicates are
// on the front together; a point with a NaN is never on it and dominates
// nothing. O(n log n).
std::vector<bool> pareto_front(const std::vector<std::array<double, 2>>& points);

}  // namespace condense::report
