#include "model/tokenizer_llama2c.h"

#include <algorithm>
#include <cstdio>

#include "core/error.h"
#include "model/bpe_merge.h"
#include "model/text_codec.h"

namespace condense {

Llama2cTokenizer::Llama2cTokenizer(std::vector<std::string> pieces, std::vector<float> scores, int bos_id)
    : pieces_(std::move(pieces)), scores_(std::move(scores)), bos_id_(bos_id) {
  if (pieces_.size() != scores_.size()) fail("Llama2cTokenizer", "pieces and scores differ in count");
  for (size_t i = 0; i < pieces_.size(); ++i) index_.emplace(pieces_[i], int(i));  // first wins on duplicates
  for (int b = 0; b < 256; ++b) {
    const int id = lookup(text::byte_piece(b));
    byte_ids_[b] = id >= 0 ? id : std::min(b + 3, int(pieces_.size()) - 1);
  }
}

int Llama2cTokenizer::lookup(const std::string& piece) const {
  auto it = index_.find(piece);
  return it == index_.end() ? -1 : it->second;
}

std::vector<int> Llama2cTokenizer::encode(const std::string& input) const {
  std::vector<int> ids;
  if (input.empty()) return ids;
  if (int sp = lookup(" "); sp >= 0) ids.push_back(sp);
  for (size_t i = 0; i < input.size();) {
    size_t len = 1;
    while (i + len < input.size() && len < 4 && text::is_continuation(static_cast<unsigned char>(input[i + len]))) ++len;
    const int id = lookup(input.substr(i, len));
    if (id >= 0) {
      ids.push_back(id);
    } else {
      for (size_t b = 0; b < len; ++b) ids.push_back(byte_ids_[static_cast<unsigned char>(input[i + b])]);
    }
    i += len;
  }

  // run.c rescans every pair after each merge (quadratic); bpe_merge picks the same pairs.
  bpe_merge(ids, [this](int l, int r) {
    const int m = lookup(pieces_[size_t(l)] + pieces_[size_t(r)]);
    return m >= 0 ? MergeCandidate{true, scores_[size_t(m)], m} : MergeCandidate{};
  });
  return ids;
}

std::string Llama2cTokenizer::decode_token(int prev, int token) const {
  if (token < 0 || token >= vocab_size()) fail("Llama2cTokenizer::decode_token", "id " + std::to_string(token) + " is outside the vocabulary");
  const std::string& p = pieces_[size_t(token)];
  if (const int b = text::parse_byte_piece(p); b >= 0) return std::string(1, char(b));
  if (prev == bos_id_ && !p.empty() && p[0] == ' ') return p.substr(1);
  return p;
}

}  // namespace condense
