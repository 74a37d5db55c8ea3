// Pre-tokenization of byte-level BPE tokenizers: text split into words exactly
// as the regexes of GPT-2, Llama 3 and Qwen2 split it, written out by hand
// because std::regex has no Unicode classes (\p{L}, \p{N}) and is slow.
//   GPT-2:  's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//   Llama3: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}
//           | ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//   Qwen2:  the Llama 3 pattern with \p{N} instead of \p{N}{1,3}
// Unicode classes: letters and white space from glibc's C.UTF-8 tables, numbers
// from a table of Unicode number ranges (decimal digits of the major scripts,
// super/subscripts, fractions, Roman and circled numerals). Rare numerals outside
// that table count as letters, where Rust's regex crate would call them numbers.
#pragma once
#include <string>
#include <string_view>
#include <vector>

namespace condense {

enum class PreTokenizer { None, Gpt2, Llama3, Qwen2 };

// The pre-tokenizer whose regex is exactly `pattern`, or throws naming it.
PreTokenizer pretokenizer_for_pattern(const std::string& pattern);
std::vector<std::string_view> pretokenize(std::string_view text, PreTokenizer kind);

}  // namespace condense
