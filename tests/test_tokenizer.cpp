// Tokenizers on synthetic vocabularies: the heap-based llama2.c encoder against
// run.c's quadratic algorithm (tests/reference), tie-breaking, corrupt files.
#include <gtest/gtest.h>

#include <random>

#include "core/error.h"
#include "io/llama2c.h"
#include "io/model_loader.h"
#include "model/tokenizer_llama2c.h"
#include "tests/reference/llama2c_ref64.h"
#include "tests/test_util.h"

using namespace condense;

namespace {

// Byte-fallback pieces 3..258 as llama2.c lays them out, plus a few merges.
std::pair<std::vector<std::string>, std::vector<float>> small_vocab(const std::vector<std::pair<std::string, float>>& extra) {
  std::vector<std::string> p = {"<unk>", "<s>", "</s>"};
  std::vector<float> s = {0, 0, 0};
  for (int b = 0; b < 256; ++b) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "<0x%02X>", b);
    p.push_back(buf);
    s.push_back(0);
  }
  for (const auto& [piece, score] : extra) { p.push_back(piece); s.push_back(score); }
  return {p, s};
}

}  // namespace

TEST(Llama2cTokenizer, TiesMergeLeftmostPairFirst) {
  // " aaa": the pairs (a,a) at 1 and 2 tie and outscore " a"; run.c merges the leftmost -> " ","aa","a".
  auto [p, s] = small_vocab({{" ", -1}, {"a", -1}, {"aa", 5}, {" a", 1}});
  Llama2cTokenizer tok(p, s);
  ref::TokenizerRef r{p, s};
  for (const std::string t : {"aaa", "aaaa", "a aa", "aaaaa a"}) EXPECT_EQ(tok.encode(t), ref::encode_ref(r, t)) << t;
  EXPECT_EQ(tok.encode("aaa"), (std::vector<int>{tok.lookup(" "), tok.lookup("aa"), tok.lookup("a")}));
}

TEST(Llama2cTokenizer, RandomBytesMatchRunC) {
  auto [p, s] = small_vocab({{" ", 0}, {"ab", 3}, {"ba", 3}, {"abc", 4}, {"é", 1}, {"ab ", 2}, {"cab", 3.5f}, {" a", 2.5f}});
  for (const char* c : {"a", "b", "c"}) { p.push_back(c); s.push_back(0); }
  Llama2cTokenizer tok(p, s);
  ref::TokenizerRef r{p, s};
  std::mt19937 g(7);
  const std::string alphabet[] = {"a", "b", "c", " ", "é", "\xff", "\xe2\x82\xac", "\x80"};
  for (int trial = 0; trial < 300; ++trial) {
    std::string t;
    const int len = int(g() % 40);
    for (int i = 0; i < len; ++i) t += alphabet[g() % 8];
    ASSERT_EQ(tok.encode(t), ref::encode_ref(r, t)) << "text '" << t << "'";
  }
}

TEST(TokenizerFiles, CorruptTokenizerBinFailsClearly) {
  testutil::TempDir dir;
  auto [p, s] = small_vocab({{" ", 0}});
  save_llama2c_tokenizer(Llama2cTokenizer(p, s), dir / "tok.bin");
  const std::string good = testutil::read_file(dir / "tok.bin");
  EXPECT_EQ(load_llama2c_tokenizer(dir / "tok.bin")->vocab_size(), int(p.size()));
  testutil::write_file(dir / "trunc.bin", good.substr(0, good.size() - 3));
  try {
    load_llama2c_tokenizer(dir / "trunc.bin");
    FAIL() << "truncated tokenizer loaded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("trunc.bin"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("past the end"), std::string::npos) << e.what();
  }
  std::string bad = good;
  bad[4 + 4] = char(0x7f);  // first token's length -> huge
  testutil::write_file(dir / "bad.bin", bad);
  EXPECT_THROW(load_llama2c_tokenizer(dir / "bad.bin"), Error);
}
