// Tokenizers on real files from ../shared/data: the llama2.c encoder against
// run.c's algorithm (tests/reference) on real text, SentencePiece, and
// encode/decode round trips.
#include <gtest/gtest.h>

#include "io/llama2c.h"
#include "io/model_loader.h"
#include "tests/reference/llama2c_ref64.h"
#include "tests/test_util.h"

using namespace condense;

namespace {

// `count` chunks of `chunk` bytes from spread-out places in the text.
std::vector<std::string> text_chunks(const std::string& text, size_t chunk, size_t count) {
  std::vector<std::string> out;
  for (size_t i = 0; i < count && (i + 1) * chunk <= text.size(); ++i) out.push_back(text.substr(i * chunk * 7 % (text.size() - chunk), chunk));
  return out;
}

}  // namespace

TEST(Llama2cTokenizer, Tok512MatchesRunCOnRealText) {
  REQUIRE_DATA("models/stories260K/tok512.bin");
  REQUIRE_DATA("text/tinystories/tinystories_valid_head.txt");
  const auto tok = load_llama2c_tokenizer(testutil::data("models/stories260K/tok512.bin"));
  const auto r = ref::load_tokenizer_ref(testutil::data("models/stories260K/tok512.bin"), 512);
  const std::string text = testutil::read_file(testutil::data("text/tinystories/tinystories_valid_head.txt"));
  for (const auto& chunk : text_chunks(text, 1500, 8)) {
    const auto ids = tok->encode(chunk);
    ASSERT_EQ(ids, ref::encode_ref(r, chunk));
    EXPECT_EQ(tok->decode(ids, /*prev=*/1), chunk);  // after BOS the dummy-prefix space is dropped
  }
  EXPECT_TRUE(tok->encode("").empty());
}

TEST(Llama2cTokenizer, Llama32kMatchesRunCOnShakespeareAndWikitext) {
  REQUIRE_DATA("models/llama2c-tokenizer-32k/tokenizer.bin");
  REQUIRE_DATA("text/tinyshakespeare/input.txt");
  REQUIRE_DATA("text/wikitext-2/valid.txt");
  const std::string path = testutil::data("models/llama2c-tokenizer-32k/tokenizer.bin");
  const auto tok = load_llama2c_tokenizer(path);
  ASSERT_EQ(tok->vocab_size(), 32000);
  const auto r = ref::load_tokenizer_ref(path, 32000);
  for (const char* file : {"text/tinyshakespeare/input.txt", "text/wikitext-2/valid.txt"}) {
    for (const auto& chunk : text_chunks(testutil::read_file(testutil::data(file)), 800, 4)) {
      const auto ids = tok->encode(chunk);
      ASSERT_EQ(ids, ref::encode_ref(r, chunk)) << file;
      EXPECT_EQ(tok->decode(ids, 1), chunk);
    }
  }
}

TEST(SentencePieceTokenizer, RoundTripsRealText) {
  REQUIRE_DATA("models/llama2c-tokenizer-32k/tokenizer.model");
  REQUIRE_DATA("text/tinystories/tinystories_valid_head.txt");
  const auto tok = load_tokenizer_file(testutil::data("models/llama2c-tokenizer-32k/tokenizer.model"));
  EXPECT_EQ(tok->vocab_size(), 32000);
  EXPECT_EQ(tok->kind(), "sentencepiece");
  const auto bin = load_llama2c_tokenizer(testutil::data("models/llama2c-tokenizer-32k/tokenizer.bin"));
  const std::string text = testutil::read_file(testutil::data("text/tinystories/tinystories_valid_head.txt"));
  int same = 0, total = 0;
  for (const auto& chunk : text_chunks(text, 600, 10)) {
    const auto ids = tok->encode(chunk);
    ASSERT_FALSE(ids.empty());
    EXPECT_EQ(tok->decode(ids), chunk);
    same += ids == bin->encode(chunk);
    ++total;
  }
  // llama2.c's tokenizer.bin is an export of this model; its merge rule should
  // agree with SentencePiece's BPE on ordinary English.
  EXPECT_EQ(same, total);
}

