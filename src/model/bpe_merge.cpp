#include "model/bpe_merge.h"

#include <queue>

namespace condense {

void bpe_merge(std::vector<int>& ids, const std::function<MergeCandidate(int, int)>& candidate) {
  const int n = int(ids.size());
  if (n < 2) return;
  std::vector<int> prev(static_cast<size_t>(n)), next(static_cast<size_t>(n)), version(static_cast<size_t>(n), 0);
  for (int i = 0; i < n; ++i) { prev[size_t(i)] = i - 1; next[size_t(i)] = i + 1 < n ? i + 1 : -1; }
  struct Cand { float priority; int left, right, merged, vl, vr; };
  auto worse = [](const Cand& a, const Cand& b) { return a.priority != b.priority ? a.priority < b.priority : a.left > b.left; };
  std::priority_queue<Cand, std::vector<Cand>, decltype(worse)> heap(worse);
  auto consider = [&](int l) {
    if (l < 0) return;
    const int r = next[size_t(l)];
    if (r < 0) return;
    const MergeCandidate c = candidate(ids[size_t(l)], ids[size_t(r)]);
    if (c.ok) heap.push({c.priority, l, r, c.merged, version[size_t(l)], version[size_t(r)]});
  };
  for (int i = 0; i + 1 < n; ++i) consider(i);
  while (!heap.empty()) {
    const Cand c = heap.top();
    heap.pop();
    if (version[size_t(c.left)] != c.vl || version[size_t(c.right)] != c.vr || next[size_t(c.left)] != c.right) continue;
    ids[size_t(c.left)] = c.merged;
    ++version[size_t(c.left)];
    version[size_t(c.right)] = -1;  // dead
    next[size_t(c.left)] = next[size_t(c.right)];
    if (next[size_t(c.right)] >= 0) prev[size_t(next[size_t(c.right)])] = c.left;
    consider(prev[size_t(c.left)]);
    consider(c.left);
  }
  std::vector<int> out;
  out.reserve(size_t(n));
  for (int i = 0; i >= 0; i = next[size_t(i)]) out.push_back(ids[size_t(i)]);
  ids.swap(out);
}

}  // namespace condense
