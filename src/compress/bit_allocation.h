// Mixed precision: one storage option per tensor (int4 g32, int8, ...) chosen
// to minimise the summed quality loss (each tensor's measured sensitivity, e.g.
// the KL to the reference when only it is compressed) within a budget on the
// summed size. Treating the losses as additive is the usual first-order model
// (HAWQ, llama.cpp's importance-guided types); the sweep measures the chosen
// mix end to end.
#pragma once
#include <optional>
#include <vector>

namespace condense::compress {

struct AllocationItem {
  std::vector<double> size;  // per option (e.g. bytes)
  std::vector<double> loss;  // per option, same length
};

struct Allocation {
  std::vector<int> choice;   // an option per item
  double size = 0, loss = 0;
};

// The choice with the least summed loss whose summed size is <= budget: the
// multiple-choice knapsack solved by dynamic programming over the budget cut
// into at most `grid` units (exact when every size is a whole number of units,
// i.e. integer sizes and budget <= grid; otherwise sizes are rounded down to
// units and the budget tightened until the true sum fits, so the result never
// exceeds it). A unit is never below 1, so give sizes in units where 1 is
// negligible (bytes, nanoseconds). Ties go to the smaller size, then to lower option indices.
// Empty when even the smallest options exceed the budget.
std::optional<Allocation> allocate(const std::vector<AllocationItem>& items, double budget, int grid = 1 << 16);

}  // namespace condense::compress
