#include "serve/text_stream.h"

#include <algorithm>

namespace condense {
namespace {

// Length of the valid UTF-8 character starting at s[i], or 0 when invalid or
// cut short (RFC 3629: no overlongs, no surrogates, nothing past U+10FFFF).
size_t utf8_char_len(const std::string& s, size_t i) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = b(i);
  size_t n;
  unsigned char lo = 0x80, hi = 0xBF;
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) n = 2;
  else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  if (b(i + 1) < lo || b(i + 1) > hi) return 0;
  for (size_t k = 2; k < n; ++k) {
    if (b(i + k) < 0x80 || b(i + k) > 0xBF) return 0;
  }
  return n;
}

}  // namespace

std::string sanitize_utf8(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const size_t n = utf8_char_len(s, i);
    if (n == 0) {
      out += "\xEF\xBF\xBD";
      ++i;
    } else {
      out.append(s, i, n);
      i += n;
    }
  }
  return out;
}

size_t utf8_incomplete_tail(const std::string& s) {
  // A lead byte within the last 3 bytes whose character needs more bytes than
  // remain, with only continuation bytes after it.
  for (size_t back = 1; back <= std::min<size_t>(3, s.size()); ++back) {
    const auto c = static_cast<unsigned char>(s[s.size() - back]);
    if ((c & 0xC0) == 0x80) continue;  // continuation: look further back
    const size_t need = c >= 0xF0 && c <= 0xF4 ? 4 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xC2 && c <= 0xDF ? 2 : 1;
    return need > back ? back : 0;
  }
  return 0;
}

TextStream::TextStream(const Tokenizer& tok, int prev, std::vector<std::string> stop) : tok_(tok), prev_(prev), stop_(std::move(stop)) {
  stop_.erase(std::remove_if(stop_.begin(), stop_.end(), [](const std::string& s) { return s.empty(); }), stop_.end());
}

std::string TextStream::release(size_t end) {
  if (end <= released_) return {};
  std::string out = sanitize_utf8(text_.substr(released_, end - released_));
  released_ = end;
  return out;
}

std::string TextStream::push(int token, bool* stopped) {
  *stopped = false;
  if (stopped_) return {};
  piece_ = tok_.decode_token(prev_, token);
  prev_ = token;
  text_ += piece_;
  // The earliest stop string that now appears (it can only start where
  // unreleased text could still hold it).
  size_t stop_at = std::string::npos;
  for (const std::string& s : stop_) {
    const size_t from = released_ >= s.size() ? released_ - s.size() + 1 : 0;
    const size_t p = text_.find(s, std::min(from, released_));
    if (p != std::string::npos) stop_at = std::min(stop_at, p);
  }
  if (stop_at != std::string::npos) {
    stopped_ = *stopped = true;
    return release(std::max(stop_at, released_));
  }
  // Withhold the longest tail that could begin a stop string, and an unfinished character.
  size_t safe = text_.size() - utf8_incomplete_tail(text_);
  for (const std::string& s : stop_) {
    for (size_t k = std::min(s.size() - 1, text_.size()); k > 0; --k) {
      if (text_.compare(text_.size() - k, k, s, 0, k) == 0) {
        safe = std::min(safe, text_.size() - k);
        break;
      }
    }
  }
  return release(safe);
}

std::string TextStream::flush() {
  if (stopped_) return {};
  return release(text_.size());
}

}  // namespace condense
