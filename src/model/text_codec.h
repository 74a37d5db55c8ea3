// Small text helpers every tokenizer shares: UTF-8 code points, SentencePiece's
// U+2581 space marker, and byte-fallback pieces "<0xNN>".
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

namespace condense::text {

inline const std::string kMetaSpace = "\xe2\x96\x81";  // U+2581 stands for ' ' in SentencePiece pieces

// Length of the UTF-8 sequence that starts with lead byte `b` (1 for an invalid lead).
inline size_t utf8_len(unsigned char b) { return b < 0x80 ? 1 : (b >> 5) == 6 ? 2 : (b >> 4) == 14 ? 3 : (b >> 3) == 30 ? 4 : 1; }
inline bool is_continuation(unsigned char b) { return (b & 0xC0) == 0x80; }
// The code point at s[i] and its byte length; an invalid or truncated sequence
// reads as U+FFFD of length 1.
uint32_t utf8_decode(std::string_view s, size_t i, size_t* len);
std::string utf8_encode(uint32_t cp);

std::string replace_all(std::string s, const std::string& from, const std::string& to);
// "<0xNN>" for byte b, and the byte a piece of that form stands for (-1 if none).
std::string byte_piece(int b);
int parse_byte_piece(const std::string& piece);

}  // namespace condense::text
