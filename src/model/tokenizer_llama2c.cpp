#include "model/tokenizer_llama2c.h"

#include <algorithm>
#include <cstdio>
#include <queue>

#include "core/error.h"

namespace condense {

Llama2cTokenizer::Llama2cTokenizer(std::vector<std::string> pieces, std::vector<float> scores, int bos_id)
    : pieces_(std::move(pieces)), scores_(std::move(scores)), bos_id_(bos_id) {
  if (pieces_.size() != scores_.size()) fail("Llama2cTokenizer", "pieces and scores differ in count");
  for (size_t i = 0; i < pieces_.size(); ++i) index_.emplace(pieces_[i], int(i));  // first wins on duplicates
  for (int b = 0; b < 256; ++b) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "<0x%02X>", b);
    const int id = lookup(buf);
    byte_ids_[b] = id >= 0 ? id : std::min(b + 3, int(pieces_.size()) - 1);
  }
}

int Llama2cTokenizer::lookup(const std::string& piece) const {
  auto it = index_.find(piece);
  return it == index_.end() ? -1 : it->second;
}

// run.c rescans all pairs after each merge (quadratic). A heap ordered by
// (score desc, left position asc) picks the same pair each time: merged symbols
// keep their left symbol's position, so positions stay ordered; entries whose
// symbols have since changed are skipped when popped.
std::vector<int> Llama2cTokenizer::encode(const std::string& text) const {
  std::vector<int> ids;
  if (text.empty()) return ids;
  if (int sp = lookup(" "); sp >= 0) ids.push_back(sp);
  for (size_t i = 0; i < text.size();) {
    size_t len = 1;
    while (i + len < text.size() && len < 4 && (static_cast<unsigned char>(text[i + len]) & 0xC0) == 0x80) ++len;
    const int id = lookup(text.substr(i, len));
    if (id >= 0) {
      ids.push_back(id);
    } else {
      for (size_t b = 0; b < len; ++b) ids.push_back(byte_ids_[static_cast<unsigned char>(text[i + b])]);
    }
    i += len;
  }

  const int n = int(ids.size());
  std::vector<int> prev(static_cast<size_t>(n)), next(static_cast<size_t>(n));
  std::vector<int> version(size_t(n), 0);
  for (int i = 0; i < n; ++i) { prev[size_t(i)] = i - 1; next[size_t(i)] = i + 1 < n ? i + 1 : -1; }
  struct Cand { float score; int left, right, merged, vl, vr; };
  auto worse = [](const Cand& a, const Cand& b) { return a.score != b.score ? a.score < b.score : a.left > b.left; };
  std::priority_queue<Cand, std::vector<Cand>, decltype(worse)> heap(worse);
  auto consider = [&](int l) {
    const int r = next[size_t(l)];
    if (l < 0 || r < 0) return;
    const int m = lookup(pieces_[size_t(ids[size_t(l)])] + pieces_[size_t(ids[size_t(r)])]);
    if (m >= 0) heap.push({scores_[size_t(m)], l, r, m, version[size_t(l)], version[size_t(r)]});
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
  for (int i = n > 0 ? 0 : -1; i >= 0; i = next[size_t(i)]) out.push_back(ids[size_t(i)]);
  return out;
}

std::string Llama2cTokenizer::decode_token(int prev, int token) const {
  if (token < 0 || token >= vocab_size()) fail("Llama2cTokenizer::decode_token", "id " + std::to_string(token) + " is outside the vocabulary");
  const std::string& p = pieces_[size_t(token)];
  if (p.size() == 6 && p[0] == '<' && p[1] == '0' && p[2] == 'x' && p[5] == '>') {
    unsigned v = 0;
    if (std::sscanf(p.c_str(), "<0x%02X>", &v) == 1) return std::string(1, char(v));
  }
  if (prev == bos_id_ && !p.empty() && p[0] == ' ') return p.substr(1);
  return p;
}

}  // namespace condense
