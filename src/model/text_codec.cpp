#include "model/text_codec.h"

#include <cstdio>

namespace condense::text {

uint32_t utf8_decode(std::string_view s, size_t i, size_t* len) {
  const auto b = static_cast<unsigned char>(s[i]);
  const size_t n = utf8_len(b);
  uint32_t c = n == 1 ? b : n == 2 ? (b & 0x1F) : n == 3 ? (b & 0x0F) : (b & 0x07);
  bool ok = (n == 1 && b < 0x80) || (n > 1 && i + n <= s.size());
  for (size_t k = 1; ok && k < n; ++k) {
    const auto cb = static_cast<unsigned char>(s[i + k]);
    ok = is_continuation(cb);
    c = (c << 6) | (cb & 0x3F);
  }
  *len = ok ? n : 1;
  return ok ? c : 0xFFFD;
}

std::string utf8_encode(uint32_t c) {
  std::string s;
  if (c < 0x80) {
    s += char(c);
  } else if (c < 0x800) {
    s += char(0xC0 | (c >> 6));
    s += char(0x80 | (c & 0x3F));
  } else if (c < 0x10000) {
    s += char(0xE0 | (c >> 12));
    s += char(0x80 | ((c >> 6) & 0x3F));
    s += char(0x80 | (c & 0x3F));
  } else {
    s += char(0xF0 | (c >> 18));
    s += char(0x80 | ((c >> 12) & 0x3F));
    s += char(0x80 | ((c >> 6) & 0x3F));
    s += char(0x80 | (c & 0x3F));
  }
  return s;
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t p = 0; (p = s.find(from, p)) != std::string::npos; p += to.size()) s.replace(p, from.size(), to);
  return s;
}

std::string byte_piece(int b) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "<0x%02X>", b & 0xFF);
  return buf;
}

int parse_byte_piece(const std::string& p) {
  if (p.size() != 6 || p.compare(0, 3, "<0x") != 0 || p[5] != '>') return -1;
  unsigned v = 0;
  return std::sscanf(p.c_str() + 3, "%2X", &v) == 1 ? int(v) : -1;
}

}  // namespace condense::text
