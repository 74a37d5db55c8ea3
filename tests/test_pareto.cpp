// The report's Pareto front against the definition checked pair by pair, on
// random points with many ties and duplicates (coordinates from a small grid),
// infinities, NaNs, one point and none.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

#include "report/pareto.h"

using condense::report::pareto_front;

namespace {

std::vector<bool> brute_force(const std::vector<std::array<double, 2>>& p) {
  std::vector<bool> f(p.size(), false);
  for (size_t i = 0; i < p.size(); ++i) {
    if (std::isnan(p[i][0]) || std::isnan(p[i][1])) continue;
    bool dominated = false;
    for (size_t j = 0; j < p.size() && !dominated; ++j) {
      if (std::isnan(p[j][0]) || std::isnan(p[j][1])) continue;
      dominated = p[j][0] <= p[i][0] && p[j][1] <= p[i][1] && (p[j][0] < p[i][0] || p[j][1] < p[i][1]);
    }
    f[i] = !dominated;
  }
  return f;
}

}  // namespace

TEST(Pareto, MatchesTheDefinitionOnRandomPointsWithTies) {
  std::mt19937 g(5);
  const double special[] = {std::numeric_limits<double>::infinity(), -std::numeric_limits<double>::infinity(),
                            std::numeric_limits<double>::quiet_NaN()};
  int on_front = 0;
  for (int trial = 0; trial < 2000; ++trial) {
    const int n = int(g() % 40), grid = 2 + int(g() % 8);
    std::vector<std::array<double, 2>> p(static_cast<size_t>(n));
    for (auto& q : p) {
      for (double& c : q) c = g() % 50 == 0 ? special[g() % 3] : double(g() % unsigned(grid)) - grid / 2.0;
    }
    if (n > 1 && g() % 3 == 0) p[size_t(n - 1)] = p[0];  // an exact duplicate
    const auto f = pareto_front(p), b = brute_force(p);
    ASSERT_EQ(f, b) << "trial " << trial;
    for (bool x : f) on_front += x;
  }
  EXPECT_GT(on_front, 2000);  // the trials were not all trivial
}

TEST(Pareto, EdgeCases) {
  EXPECT_TRUE(pareto_front({}).empty());
  EXPECT_EQ(pareto_front({{1.0, 2.0}}), std::vector<bool>{true});
  EXPECT_EQ(pareto_front({{1.0, 2.0}, {1.0, 2.0}}), (std::vector<bool>{true, true}));      // duplicates together
  EXPECT_EQ(pareto_front({{1.0, 2.0}, {1.0, 3.0}}), (std::vector<bool>{true, false}));     // tie in x
  EXPECT_EQ(pareto_front({{1.0, 2.0}, {0.5, 2.0}}), (std::vector<bool>{false, true}));     // tie in y
  EXPECT_EQ(pareto_front({{1.0, 3.0}, {2.0, 1.0}, {3.0, 3.0}}), (std::vector<bool>{true, true, false}));
  const double nan = std::numeric_limits<double>::quiet_NaN();
  EXPECT_EQ(pareto_front({{nan, 0.0}, {5.0, 5.0}}), (std::vector<bool>{false, true}));
}
