#include "model/tokenizer_hf_bpe.h"

#include <algorithm>

#include "core/error.h"
#include "model/bpe_merge.h"
#include "model/text_codec.h"

namespace condense {
using text::kMetaSpace;

HfBpeTokenizer::HfBpeTokenizer(HfBpeSpec spec, const std::string& where) : spec_(std::move(spec)) {
  // The reader bounds ids by the file's token count; a spec built elsewhere is checked here too.
  const int64_t limit = int64_t(spec_.vocab.size() + spec_.added.size());
  int n = 0;
  for (const auto& [tok, id] : spec_.vocab) {
    if (id < 0 || id >= limit) fail(where, "token '" + tok + "' has id " + std::to_string(id) + ", outside [0, " + std::to_string(limit) + ")");
    n = std::max(n, id + 1);
  }
  for (const auto& a : spec_.added) {
    if (a.id < 0 || a.id >= limit) fail(where, "added token '" + a.content + "' has id " + std::to_string(a.id) + ", outside [0, " + std::to_string(limit) + ")");
    n = std::max(n, a.id + 1);
  }
  tokens_.assign(size_t(n), "");
  special_.assign(size_t(n), false);
  for (const auto& [tok, id] : spec_.vocab) {
    if (id < 0) fail(where, "token '" + tok + "' has a negative id");
    tokens_[size_t(id)] = tok;
  }
  for (const auto& a : spec_.added) {
    tokens_[size_t(a.id)] = a.content;
    special_[size_t(a.id)] = a.special;
  }
  std::sort(spec_.added.begin(), spec_.added.end(), [](auto& a, auto& b) { return a.content.size() > b.content.size(); });
  for (size_t r = 0; r < spec_.merges.size(); ++r) {
    const auto& [a, b] = spec_.merges[r];
    const int ia = id_of(a), ib = id_of(b), im = id_of(a + b);
    if (ia < 0 || ib < 0 || im < 0) fail(where, "model.merges[" + std::to_string(r) + "] '" + a + " " + b + "' uses tokens missing from model.vocab");
    merge_.emplace((uint64_t(uint32_t(ia)) << 32) | uint32_t(ib), std::make_pair(int(r), im));  // first rank wins
  }
  // GPT-2's bytes_to_unicode: printable bytes stand for themselves, the rest
  // take code points 256, 257, ... in byte order.
  int next = 256;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
    const uint32_t c = printable ? uint32_t(b) : uint32_t(next++);
    byte_char_[b] = text::utf8_encode(c);
    char_byte_[c] = uint8_t(b);
  }
  for (int b = 0; b < 256; ++b) {
    byte_fallback_ids_[b] = id_of(text::byte_piece(b));
    if (spec_.byte_level && id_of(byte_char_[b]) < 0) fail(where, "byte-level vocabulary lacks the token for byte " + std::to_string(b));
  }
}

int HfBpeTokenizer::id_of(const std::string& s) const {
  auto it = spec_.vocab.find(s);
  return it == spec_.vocab.end() ? -1 : it->second;
}

void HfBpeTokenizer::encode_word(const std::string& word, std::vector<int>& out) const {
  if (word.empty()) return;
  std::string mapped;
  if (spec_.byte_level) {
    for (unsigned char b : word) mapped += byte_char_[b];
  } else {
    mapped = word;
  }
  if (spec_.ignore_merges) {
    if (int id = id_of(mapped); id >= 0) { out.push_back(id); return; }
  }
  std::vector<int> ids;
  if (spec_.byte_level) {
    for (unsigned char b : word) ids.push_back(id_of(byte_char_[b]));
  } else {
    for (size_t i = 0; i < word.size();) {
      size_t len = 1;
      while (i + len < word.size() && text::is_continuation(static_cast<unsigned char>(word[i + len]))) ++len;
      const int id = id_of(word.substr(i, len));
      if (id >= 0) {
        ids.push_back(id);
      } else if (spec_.byte_fallback && byte_fallback_ids_[static_cast<unsigned char>(word[i])] >= 0) {
        for (size_t k = 0; k < len; ++k) ids.push_back(byte_fallback_ids_[static_cast<unsigned char>(word[i + k])]);
      } else if (spec_.unk_id >= 0) {
        ids.push_back(spec_.unk_id);
      } else {
        fail("HfBpeTokenizer", "character '" + word.substr(i, len) + "' is not in the vocabulary and there is no unk token or byte fallback");
      }
      i += len;
    }
  }
  bpe_merge(ids, [this](int l, int r) {
    auto it = merge_.find((uint64_t(uint32_t(l)) << 32) | uint32_t(r));
    return it == merge_.end() ? MergeCandidate{} : MergeCandidate{true, -float(it->second.first), it->second.second};
  });
  out.insert(out.end(), ids.begin(), ids.end());
}

std::vector<int> HfBpeTokenizer::encode(const std::string& text) const {
  std::vector<int> out;
  std::unordered_map<std::string, std::vector<int>> cache;  // words repeat a lot in real text
  bool first_segment = true;
  auto encode_segment = [&](const std::string& seg) {
    std::string s = seg;
    if (spec_.sp_spaces) s = text::replace_all(s, " ", kMetaSpace);
    if (spec_.sp_prepend && (first_segment || !spec_.sp_prepend_first_only)) s = kMetaSpace + s;
    first_segment = false;
    std::vector<std::string_view> words;
    if (spec_.sp_split) {
      for (size_t b = 0; b < s.size();) {
        size_t e = s.find(kMetaSpace, b + 1);
        if (e == std::string::npos) e = s.size();
        words.push_back(std::string_view(s).substr(b, e - b));
        b = e;
      }
    } else {
      words = pretokenize(s, spec_.pre);
    }
    for (std::string_view w : words) {
      std::string key(w);
      auto it = cache.find(key);
      if (it == cache.end()) {
        std::vector<int> ids;
        encode_word(key, ids);
        it = cache.emplace(std::move(key), std::move(ids)).first;
      }
      out.insert(out.end(), it->second.begin(), it->second.end());
    }
  };
  size_t start = 0;
  for (size_t i = 0; i < text.size();) {
    const HfBpeSpec::Added* hit = nullptr;
    for (const auto& a : spec_.added) {  // longest first
      if (!a.content.empty() && text.compare(i, a.content.size(), a.content) == 0) { hit = &a; break; }
    }
    if (!hit) { ++i; continue; }
    if (i > start) encode_segment(text.substr(start, i - start));
    out.push_back(hit->id);
    first_segment = false;
    i += hit->content.size();
    start = i;
  }
  if (start < text.size()) encode_segment(text.substr(start));
  return out;
}

std::string HfBpeTokenizer::decode_token(int prev, int token) const {
  if (token < 0 || token >= vocab_size()) fail("HfBpeTokenizer::decode_token", "id " + std::to_string(token) + " is outside the vocabulary");
  if (special_[size_t(token)]) return "";
  const std::string& t = tokens_[size_t(token)];
  if (spec_.byte_level) {
    std::string out;
    for (size_t i = 0, len = 0; i < t.size(); i += len) {
      const uint32_t c = text::utf8_decode(t, i, &len);
      auto it = char_byte_.find(c);
      out += it != char_byte_.end() ? std::string(1, char(it->second)) : t.substr(i, len);  // added tokens are plain text
    }
    return out;
  }
  if (const int b = text::parse_byte_piece(t); b >= 0) return std::string(1, char(b));
  std::string out = text::replace_all(t, kMetaSpace, " ");
  // The decoder strips the prepended space at the start of the text.
  if (spec_.sp_prepend && (prev < 0 || special_[size_t(prev)]) && !out.empty() && out[0] == ' ') out.erase(0, 1);
  return out;
}

}  // namespace condense
