#include "model/pretokenize.h"

#include <locale.h>
#include <wctype.h>

#include <algorithm>
#include <cctype>
#include <cstdint>

#include "core/error.h"
#include "model/text_codec.h"

namespace condense {
namespace {

constexpr const char* kGpt2 = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
constexpr const char* kLlama3 =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kQwen2 =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

enum Cls : uint8_t { kLetter, kNumber, kSpace, kOther };

bool is_number(uint32_t c) {
  if (c < 0x80) return c >= '0' && c <= '9';
  static const uint32_t kDigitStarts[] = {0x0660, 0x06F0, 0x07C0, 0x0966, 0x09E6, 0x0A66, 0x0AE6, 0x0B66, 0x0BE6, 0x0C66, 0x0CE6,
                                          0x0D66, 0x0DE6, 0x0E50, 0x0ED0, 0x0F20, 0x1040, 0x1090, 0x17E0, 0x1810, 0x1946, 0x19D0,
                                          0x1A80, 0x1A90, 0x1B50, 0x1BB0, 0x1C40, 0x1C50, 0xA620, 0xA8D0, 0xA900, 0xA9D0, 0xA9F0,
                                          0xAA50, 0xABF0, 0xFF10, 0x104A0, 0x11066, 0x1D7CE};
  for (uint32_t s : kDigitStarts) {
    if (c >= s && c < s + 10) return true;
  }
  return c == 0xB2 || c == 0xB3 || c == 0xB9 || (c >= 0xBC && c <= 0xBE) || (c >= 0x2070 && c <= 0x2079 && c != 0x2071 && c != 0x2072 && c != 0x2073) ||
         (c >= 0x2080 && c <= 0x2089) || (c >= 0x2150 && c <= 0x2189) || (c >= 0x2460 && c <= 0x249B) || (c >= 0x24EA && c <= 0x24FF) ||
         (c >= 0x2776 && c <= 0x2793) || (c >= 0x3007 && c == 0x3007) || (c >= 0x3021 && c <= 0x3029) || (c >= 0x3038 && c <= 0x303A) ||
         (c >= 0x3192 && c <= 0x3195) || (c >= 0x3220 && c <= 0x3229) || (c >= 0x3248 && c <= 0x324F) || (c >= 0x3251 && c <= 0x325F) ||
         (c >= 0x3280 && c <= 0x3289) || (c >= 0x32B1 && c <= 0x32BF) || (c >= 0x1D7CE && c <= 0x1D7FF);
}

Cls classify(uint32_t c) {
  if (c < 0x80) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return kLetter;
    if (c >= '0' && c <= '9') return kNumber;
    if (c == ' ' || (c >= 0x09 && c <= 0x0D)) return kSpace;
    return kOther;
  }
  static const locale_t loc = newlocale(LC_CTYPE_MASK, "C.UTF-8", locale_t(nullptr));
  if (is_number(c)) return kNumber;
  // Unicode White_Space that glibc leaves out of iswspace: NEL, no-break spaces.
  if (c == 0x85 || c == 0xA0 || c == 0x2007 || c == 0x202F) return kSpace;
  if (loc && iswspace_l(wint_t(c), loc)) return kSpace;
  if (loc && iswalpha_l(wint_t(c), loc)) return kLetter;
  return kOther;
}

struct Cp {
  uint32_t c;
  size_t off, len;
  Cls cls;
};

// Code points with byte offsets; an invalid byte becomes a one-byte "other".
std::vector<Cp> decode(std::string_view s) {
  std::vector<Cp> out;
  for (size_t i = 0, len = 0; i < s.size(); i += len) {
    const uint32_t c = text::utf8_decode(s, i, &len);
    const bool invalid = c == 0xFFFD && len == 1 && static_cast<unsigned char>(s[i]) >= 0x80;
    out.push_back({c, i, len, invalid ? kOther : classify(c)});
  }
  return out;
}

bool is_crlf(uint32_t c) { return c == '\r' || c == '\n'; }

// Length (in code points) of a contraction 's 't 're 've 'm 'll 'd at i, or 0.
size_t contraction(const std::vector<Cp>& v, size_t i, bool ignore_case) {
  if (v[i].c != '\'' || i + 1 >= v.size()) return 0;
  auto lower = [&](size_t k) { return k < v.size() ? (ignore_case && v[k].c < 0x80 ? uint32_t(std::tolower(int(v[k].c))) : v[k].c) : 0u; };
  const uint32_t a = lower(i + 1), b = lower(i + 2);
  if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
  if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
  return 0;
}

size_t run(const std::vector<Cp>& v, size_t i, Cls cls) {
  size_t j = i;
  while (j < v.size() && v[j].cls == cls) ++j;
  return j - i;
}

// \s+(?!\S) then \s+ : a whitespace run, leaving its last char when a non-space follows.
size_t whitespace(const std::vector<Cp>& v, size_t i) {
  const size_t n = run(v, i, kSpace);
  if (i + n < v.size() && n > 1) return n - 1;
  return n;
}

size_t match_gpt2(const std::vector<Cp>& v, size_t i) {
  if (size_t n = contraction(v, i, false)) return n;
  const bool sp = v[i].c == ' ' && i + 1 < v.size();
  const size_t j = sp ? i + 1 : i;
  for (Cls cls : {kLetter, kNumber}) {
    if (v[i].cls == cls) return run(v, i, cls);
    if (sp && v[j].cls == cls) return 1 + run(v, j, cls);
  }
  if (v[i].cls == kOther) return run(v, i, kOther);
  if (sp && v[j].cls == kOther) return 1 + run(v, j, kOther);
  return whitespace(v, i);
}

size_t match_llama3(const std::vector<Cp>& v, size_t i, size_t max_digits) {
  if (size_t n = contraction(v, i, true)) return n;
  // [^\r\n\p{L}\p{N}]?\p{L}+
  if (v[i].cls == kLetter) return run(v, i, kLetter);
  if (v[i].cls != kNumber && !is_crlf(v[i].c) && i + 1 < v.size() && v[i + 1].cls == kLetter) return 1 + run(v, i + 1, kLetter);
  // \p{N}{1,max}
  if (v[i].cls == kNumber) return std::min(run(v, i, kNumber), max_digits);
  // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
  const size_t j = (v[i].c == ' ' && i + 1 < v.size()) ? i + 1 : i;
  if (v[j].cls == kOther) {
    size_t k = j + run(v, j, kOther);
    while (k < v.size() && is_crlf(v[k].c)) ++k;
    return k - i;
  }
  // \s*[\r\n]+ : the longest whitespace prefix that ends in a line break
  size_t end = i, k = i;
  while (k < v.size() && v[k].cls == kSpace) {
    ++k;
    if (is_crlf(v[k - 1].c)) end = k;
  }
  if (end > i) return end - i;
  return whitespace(v, i);
}

}  // namespace

PreTokenizer pretokenizer_for_pattern(const std::string& pattern) {
  if (pattern == kGpt2) return PreTokenizer::Gpt2;
  if (pattern == kLlama3) return PreTokenizer::Llama3;
  if (pattern == kQwen2) return PreTokenizer::Qwen2;
  fail("tokenizer.json", "pre-tokenizer regex '" + pattern + "' is not supported",
       "condense knows the GPT-2, Llama 3 and Qwen2 patterns");
}

std::vector<std::string_view> pretokenize(std::string_view text, PreTokenizer kind) {
  if (kind == PreTokenizer::None) return {text};
  const std::vector<Cp> v = decode(text);
  std::vector<std::string_view> out;
  for (size_t i = 0; i < v.size();) {
    size_t n = kind == PreTokenizer::Gpt2 ? match_gpt2(v, i) : match_llama3(v, i, kind == PreTokenizer::Llama3 ? 3 : 1);
    if (n == 0) n = 1;  // cannot happen for these patterns; guards against an endless loop
    const size_t b = v[i].off, e = v[i + n - 1].off + v[i + n - 1].len;
    out.push_back(text.substr(b, e - b));
    i += n;
  }
  return out;
}

}  // namespace condense
