#include "compress/bit_allocation.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"

namespace condense::compress {

namespace {

// The DP over `units` budget units; sizes in units (rounded down).
std::optional<Allocation> solve(const std::vector<AllocationItem>& items, const std::vector<std::vector<int64_t>>& u, int64_t units) {
  constexpr double inf = std::numeric_limits<double>::infinity();
  const size_t n = items.size(), B = size_t(units) + 1;
  // best[b]: least loss of the items so far using exactly b units; pick[i][b]: item i's option there
  std::vector<double> best(B, inf), next(B);
  std::vector<std::vector<int>> pick(n, std::vector<int>(B, -1));
  best[0] = 0;
  for (size_t i = 0; i < n; ++i) {
    std::fill(next.begin(), next.end(), inf);
    for (size_t b = 0; b < B; ++b) {
      if (best[b] == inf) continue;
      for (size_t o = 0; o < u[i].size(); ++o) {
        const size_t nb = b + size_t(u[i][o]);
        if (nb >= B) continue;
        const double l = best[b] + items[i].loss[o];
        if (l < next[nb]) next[nb] = l, pick[i][nb] = int(o);
      }
    }
    best.swap(next);
  }
  size_t at = B;
  for (size_t b = 0; b < B; ++b) {
    if (best[b] < inf && (at == B || best[b] < best[at])) at = b;
  }
  if (at == B) return std::nullopt;
  Allocation a;
  a.choice.assign(n, 0);
  for (size_t i = n; i-- > 0;) {
    const int o = pick[i][at];
    a.choice[i] = o;
    at -= size_t(u[i][size_t(o)]);
  }
  for (size_t i = 0; i < n; ++i) {
    a.size += items[i].size[size_t(a.choice[i])];
    a.loss += items[i].loss[size_t(a.choice[i])];
  }
  return a;
}

}  // namespace

std::optional<Allocation> allocate(const std::vector<AllocationItem>& items, double budget, int grid) {
  if (!(budget >= 0) || !std::isfinite(budget)) fail("allocation", "the budget must be a finite non-negative number");
  if (grid < 1) fail("allocation", "the grid must be positive");
  for (const AllocationItem& it : items) {
    if (it.size.empty() || it.size.size() != it.loss.size()) fail("allocation", "every item needs one size and one loss per option");
    for (size_t o = 0; o < it.size.size(); ++o) {
      if (!(it.size[o] >= 0) || !std::isfinite(it.size[o]) || !std::isfinite(it.loss[o])) fail("allocation", "sizes and losses must be finite (sizes >= 0)");
    }
  }
  const double unit = std::max(1.0, budget / grid);
  int64_t units = int64_t(std::floor(budget / unit));
  std::vector<std::vector<int64_t>> u;
  for (const AllocationItem& it : items) {
    u.emplace_back();
    for (double s : it.size) u.back().push_back(int64_t(std::floor(s / unit)));
  }
  for (;;) {
    std::optional<Allocation> a = solve(items, u, units);
    if (!a || a->size <= budget) return a;
    // rounding down let it past the budget: tighten by the overshoot and solve again
    units -= std::max<int64_t>(1, int64_t(std::ceil((a->size - budget) / unit)));
    if (units < 0) return std::nullopt;
  }
}

}  // namespace condense::compress
