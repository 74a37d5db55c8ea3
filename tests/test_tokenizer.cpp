// Tokenizers on synthetic vocabularies: the heap-based llama2.c encoder against
// run.c's quadratic algorithm (tests/reference), tie-breaking, corrupt files.
#include <gtest/gtest.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <random>

#include "core/error.h"
#include "io/hf_tokenizer_json.h"
#include "io/llama2c.h"
#include "model/pretokenize.h"
#include "io/model_loader.h"
#include "model/tokenizer_llama2c.h"
#include "tests/reference/llama2c_ref64.h"
#include "tests/test_util.h"
#include "train/tokenizer_training.h"

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

// ---------------------------------------------------------------- HF BPE ---

namespace {

std::vector<std::string> split(const std::string& text, PreTokenizer kind) {
  std::vector<std::string> out;
  for (auto w : pretokenize(text, kind)) out.emplace_back(w);
  return out;
}

// GPT-2's bytes_to_unicode, written out again here: printable bytes map to
// themselves, the other 68 to U+0100.. in byte order.
std::string byte_char(int b) {
  int next = 256, c = -1;
  for (int x = 0; x < 256; ++x) {
    const bool printable = (x >= 33 && x <= 126) || (x >= 161 && x <= 172) || x >= 174;
    const int cx = printable ? x : next++;
    if (x == b) c = cx;
  }
  std::string s;
  if (c < 0x80) s += char(c);
  else { s += char(0xC0 | (c >> 6)); s += char(0x80 | (c & 0x3F)); }
  return s;
}

// Naive BPE: rescan for the lowest-rank adjacent pair, merge it, repeat.
std::vector<std::string> naive_bpe(std::vector<std::string> sym, const std::vector<std::pair<std::string, std::string>>& merges) {
  while (true) {
    size_t best = merges.size(), at = 0;
    for (size_t i = 0; i + 1 < sym.size(); ++i) {
      for (size_t r = 0; r < best; ++r) {
        if (merges[r].first == sym[i] && merges[r].second == sym[i + 1]) { best = r; at = i; break; }
      }
    }
    if (best == merges.size()) return sym;
    sym[at] += sym[at + 1];
    sym.erase(sym.begin() + long(at) + 1);
  }
}

}  // namespace

TEST(PreTokenizer, Gpt2SplitsAsItsRegex) {
  EXPECT_EQ(split("Hello world's  test\n\n 123abc!!  ", PreTokenizer::Gpt2),
            (std::vector<std::string>{"Hello", " world", "'s", " ", " test", "\n\n", " 123", "abc", "!!", "  "}));
  EXPECT_EQ(split("I'M", PreTokenizer::Gpt2), (std::vector<std::string>{"I", "'", "M"}));  // contractions are case-sensitive
  EXPECT_EQ(split("na\xc3\xafve caf\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87 \xd9\xa3\xd9\xa4", PreTokenizer::Gpt2),
            (std::vector<std::string>{"na\xc3\xafve", " caf\xc3\xa9", " \xe4\xb8\xad\xe6\x96\x87", " \xd9\xa3\xd9\xa4"}));
}

TEST(PreTokenizer, Llama3AndQwen2SplitAsTheirRegexes) {
  EXPECT_EQ(split("Hello world's  test\n\n 123456abc!!  (x)", PreTokenizer::Llama3),
            (std::vector<std::string>{"Hello", " world", "'s", " ", " test", "\n\n", " ", "123", "456", "abc", "!!", " ", " (", "x", ")"}));
  EXPECT_EQ(split("I'M (ok)\r\n", PreTokenizer::Llama3), (std::vector<std::string>{"I", "'M", " (", "ok", ")\r\n"}));
  EXPECT_EQ(split("a 2024!", PreTokenizer::Qwen2), (std::vector<std::string>{"a", " ", "2", "0", "2", "4", "!"}));
  EXPECT_EQ(split("x  \n  y", PreTokenizer::Llama3), (std::vector<std::string>{"x", "  \n", " ", " y"}));
  EXPECT_THROW(pretokenizer_for_pattern("\\w+"), Error);
}

TEST(HfBpeTokenizer, ByteLevelMatchesNaiveBpeAndRoundTrips) {
  nlohmann::json vocab = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) vocab[byte_char(b)] = b;
  const std::vector<std::pair<std::string, std::string>> merges = {
      {byte_char(' '), "t"}, {"h", "e"}, {byte_char(' ') + "t", "he"}, {"a", "b"}, {"ab", "ab"}, {"b", "a"}, {"ba", "b"}, {"1", "2"}};
  std::vector<std::string> merge_strings;
  for (const auto& [a, b] : merges) {
    vocab[a + b] = int(vocab.size());
    merge_strings.push_back(a + " " + b);
  }
  const int end_id = int(vocab.size());  // added tokens follow the vocabulary, as in real files
  const nlohmann::json spec = {
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merge_strings}}},
      {"added_tokens", {{{"id", end_id}, {"content", "<|end|>"}, {"special", true}}}},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
      {"decoder", {{"type", "ByteLevel"}}}};
  const auto tok = parse_hf_tokenizer_json(spec.dump(), "test.json");
  EXPECT_EQ(tok->kind(), "hf-bpe-bytelevel");
  const auto ids = tok->encode(" the abab<|end|>12");
  EXPECT_EQ(tok->decode(ids, -1), " the abab12");  // the special token decodes to nothing
  EXPECT_EQ(ids[0], vocab[byte_char(' ') + "the"].get<int>());
  EXPECT_EQ(std::count(ids.begin(), ids.end(), end_id), 1);

  std::mt19937 g(3);
  const std::string alphabet[] = {"a", "b", " ", "t", "h", "e", "1", "2", "\n", "\xc3\xa9", "\xf0\x9f\x98\x80", "\xff", "'s"};
  for (int trial = 0; trial < 200; ++trial) {
    std::string text;
    for (int i = int(g() % 30); i > 0; --i) text += alphabet[g() % 13];
    std::vector<int> want;
    for (auto w : pretokenize(text, PreTokenizer::Gpt2)) {
      std::vector<std::string> sym;
      for (unsigned char c : w) sym.push_back(byte_char(c));
      for (const auto& s : naive_bpe(sym, merges)) want.push_back(vocab[s].get<int>());
    }
    ASSERT_EQ(tok->encode(text), want) << "text '" << text << "'";
    ASSERT_EQ(tok->decode(want, -1), text);
  }
}

TEST(HfBpeTokenizer, SentencePieceStyleUsesMetaSpaceAndByteFallback) {
  const std::string m = "\xe2\x96\x81";
  nlohmann::json vocab = {{"<unk>", 0}, {"<s>", 1}, {"</s>", 2}};
  for (int b = 0; b < 256; ++b) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "<0x%02X>", b);
    vocab[buf] = 3 + b;
  }
  for (const std::string& p : std::vector<std::string>{m, "a", "b", m + "a", "ab", m + "ab"}) vocab[p] = int(vocab.size());
  nlohmann::json spec;
  spec["model"] = {{"type", "BPE"}, {"vocab", vocab}, {"merges", {m + " a", "a b", m + "a b"}}, {"byte_fallback", true}, {"unk_token", "<unk>"}};
  spec["added_tokens"] = nlohmann::json::array({{{"id", 1}, {"content", "<s>"}, {"special", true}}});
  nlohmann::json prepend = {{"type", "Prepend"}, {"prepend", m}};
  nlohmann::json replace = {{"type", "Replace"}, {"content", m}};
  replace["pattern"] = {{"String", " "}};
  spec["normalizer"] = {{"type", "Sequence"}, {"normalizers", nlohmann::json::array({prepend, replace})}};
  spec["pre_tokenizer"] = nullptr;
  const auto tok = parse_hf_tokenizer_json(spec.dump(), "sp.json");
  const auto ids = tok->encode("ab ab\xc3\xa9");
  const int mab = vocab[m + "ab"].get<int>();
  EXPECT_EQ(ids, (std::vector<int>{mab, mab, 3 + 0xc3, 3 + 0xa9}));
  EXPECT_EQ(tok->decode(ids, -1), "ab ab\xc3\xa9");
}

TEST(HfBpeTokenizer, UnsupportedFilesFailNamingTheJsonPath) {
  auto err = [](const std::string& text) {
    try {
      parse_hf_tokenizer_json(text, "t.json");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(err(R"({"model":{"type":"Unigram","vocab":[]}})").find("Unigram"), std::string::npos);
  EXPECT_NE(err(R"({"model":{"type":"BPE","vocab":{"a":0},"merges":[]},"normalizer":{"type":"Lowercase"}})").find("normalizer"), std::string::npos);
  EXPECT_NE(err(R"({"model":{"type":"BPE","vocab":{"a":0},"merges":[]},"pre_tokenizer":{"type":"Sequence","pretokenizers":[{"type":"Whitespace"}]}})")
                .find("pre_tokenizer.pretokenizers[0]"),
            std::string::npos);
  EXPECT_NE(err(R"({"model":{"type":"BPE","vocab":{"a":0},"merges":["a b"]}})").find("model.merges"), std::string::npos);
  EXPECT_NE(err("{oops").find("JSON"), std::string::npos);
}

// A tokenizer learned from text (for models trained from scratch): the vocab
// asked for, Llama's special ids, and every string round-trips through it,
// characters it never saw included (byte fallback); bad options are named.
TEST(TokenizerTraining, LearnsAVocabularyThatRoundTripsAnyText) {
  testutil::TempDir d;
  std::mt19937 g(3);
  const char* words[] = {"the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "far", "away", "quickly", "over", "hill"};
  std::string text;
  for (int i = 0; i < 20000; ++i) text += std::string(words[g() % 14]) + (i % 11 == 10 ? ".\n" : " ");
  testutil::write_file(d / "corpus.txt", text);
  condense::train::TokenizerTraining o;
  o.vocab = 300;
  testutil::write_file(d / "tok.model", condense::train::train_tokenizer({d / "corpus.txt"}, o));
  const auto tok = load_tokenizer_file(d / "tok.model");
  EXPECT_EQ(tok->vocab_size(), 300);
  for (const std::string& s : {std::string("the cat sat on a mat."), std::string("Zebras ünïcode ☃ 42!"), std::string("tab\there")}) {
    const std::vector<int> ids = tok->encode(s);
    std::string back;
    int prev = 1;  // BOS
    for (int t : ids) {
      back += tok->decode_token(prev, t);
      prev = t;
    }
    EXPECT_EQ(back, s) << "ids " << ids.size();
  }
  EXPECT_LT(tok->encode("the cat sat on a mat").size(), 12u) << "learned pieces, not bytes";
  o.vocab = 100;
  EXPECT_THROW(condense::train::train_tokenizer({d / "corpus.txt"}, o), Error);
  o.vocab = 300;
  EXPECT_THROW(condense::train::train_tokenizer({d / "missing.txt"}, o), Error);
}
