// Incremental detokenization for streaming: the text a token adds is released
// only once it is valid UTF-8 (a character split over byte tokens waits for
// its last byte) and cannot be the start of a stop string; a stop string ends
// the text just before it. Invalid bytes become U+FFFD, so every piece can go
// into JSON.
#pragma once
#include <string>
#include <vector>

#include "model/tokenizer.h"

namespace condense {

// `s` with every invalid UTF-8 sequence replaced by U+FFFD.
std::string sanitize_utf8(const std::string& s);
// Bytes at the end of `s` that begin a UTF-8 character still missing bytes (0..3).
size_t utf8_incomplete_tail(const std::string& s);

class TextStream {
 public:
  // `prev` is the token before the first one pushed (the prompt's last).
  TextStream(const Tokenizer& tok, int prev, std::vector<std::string> stop);

  // Adds one generated token; returns the text released by it (possibly
  // empty). Sets *stopped when the text now holds a stop string; the text
  // released then ends just before it and nothing follows.
  std::string push(int token, bool* stopped);
  // The end of the stream (length, EOS): everything withheld, sanitized.
  std::string flush();
  // The raw text of `token` after the previous one (for logprobs' token strings).
  const std::string& last_piece() const { return piece_; }

 private:
  std::string release(size_t end);
  const Tokenizer& tok_;
  int prev_;
  std::vector<std::string> stop_;
  std::string text_, piece_;
  size_t released_ = 0;
  bool stopped_ = false;
};

}  // namespace condense
