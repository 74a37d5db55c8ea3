#include "report/pareto.h"

#include <algorithm>
#include <cmath>

namespace condense::report {

std::vector<bool> pareto_front(const std::vector<std::array<double, 2>>& points) {
  const size_t n = points.size();
  std::vector<bool> front(n, false);
  std::vector<size_t> order;
  for (size_t i = 0; i < n; ++i) {
    if (!std::isnan(points[i][0]) && !std::isnan(points[i][1])) order.push_back(i);
  }
  // By x, then y: a point is dominated exactly when an earlier group (smaller
  // x) reached a y <= its own, or its own x-group holds a smaller y.
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return points[a][0] != points[b][0] ? points[a][0] < points[b][0] : points[a][1] < points[b][1];
  });
  double best = 0;  // the least y among smaller x (none before the first group: y = +inf is on the front then)
  bool any = false;
  for (size_t g = 0; g < order.size();) {
    size_t e = g;
    while (e < order.size() && points[order[e]][0] == points[order[g]][0]) ++e;
    const double y = points[order[g]][1];  // the group's least y
    if (!any || y < best) {
      for (size_t i = g; i < e && points[order[i]][1] == y; ++i) front[order[i]] = true;
      best = y;
      any = true;
    }
    g = e;
  }
  return front;
}

}  // namespace condense::report
