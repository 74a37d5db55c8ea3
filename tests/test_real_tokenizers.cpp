// Tokenizers on real files from ../shared/data: the llama2.c encoder against
// run.c's algorithm (tests/reference) on real text, SentencePiece, and
// encode/decode round trips.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <sstream>
#include <nlohmann/json.hpp>

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


namespace {

// tokenizer.json as Hugging Face's LlamaConverter writes it for a SentencePiece
// BPE model: vocab from the pieces; merges = every split of a piece into two
// pieces, ordered by (left id, right id) within a piece and then by the piece's
// score, highest first (a stable sort, as Python's).
std::string llama_tokenizer_json(const Llama2cTokenizer& t) {
  const std::string meta = "\xe2\x96\x81";
  std::vector<std::string> pieces;
  std::map<std::string, int> vocab;
  for (int i = 0; i < t.vocab_size(); ++i) {
    std::string p = i == 0 ? "<unk>" : i == 1 ? "<s>" : i == 2 ? "</s>" : "";  // llama2.c renamed BOS/EOS
    if (p.empty()) {
      for (char c : t.piece(i)) p += c == ' ' ? meta : std::string(1, c);
    }
    pieces.push_back(p);
    vocab.emplace(p, i);
  }
  struct M { std::string l, r; float score; };
  std::vector<M> merges;
  for (int i = 0; i < t.vocab_size(); ++i) {
    const std::string& p = pieces[size_t(i)];
    std::vector<M> local;
    for (size_t cut = 1; cut < p.size(); ++cut) {
      if ((static_cast<unsigned char>(p[cut]) & 0xC0) == 0x80) continue;  // split at code points only
      const std::string l = p.substr(0, cut), r = p.substr(cut);
      if (vocab.count(l) && vocab.count(r)) local.push_back({l, r, t.score(i)});
    }
    std::sort(local.begin(), local.end(), [&](const M& a, const M& b) {
      return std::make_pair(vocab[a.l], vocab[a.r]) < std::make_pair(vocab[b.l], vocab[b.r]);
    });
    merges.insert(merges.end(), local.begin(), local.end());
  }
  std::stable_sort(merges.begin(), merges.end(), [](const M& a, const M& b) { return a.score > b.score; });
  nlohmann::json j;
  j["model"] = {{"type", "BPE"}, {"vocab", vocab}, {"byte_fallback", true}, {"unk_token", "<unk>"}};
  j["model"]["merges"] = nlohmann::json::array();
  for (const M& m : merges) j["model"]["merges"].push_back(m.l + " " + m.r);
  j["added_tokens"] = nlohmann::json::array();
  for (int i = 0; i < 3; ++i) j["added_tokens"].push_back({{"id", i}, {"content", pieces[size_t(i)]}, {"special", true}});
  nlohmann::json prepend = {{"type", "Prepend"}, {"prepend", meta}}, replace = {{"type", "Replace"}, {"content", meta}};
  replace["pattern"] = {{"String", " "}};
  j["normalizer"] = {{"type", "Sequence"}, {"normalizers", nlohmann::json::array({prepend, replace})}};
  j["pre_tokenizer"] = nullptr;
  return j.dump();
}

}  // namespace

TEST(HfTokenizerJson, ConvertedLlamaTokenizerMatchesSentencePiece) {
  REQUIRE_DATA("models/llama2c-tokenizer-32k/tokenizer.bin");
  REQUIRE_DATA("models/llama2c-tokenizer-32k/tokenizer.model");
  REQUIRE_DATA("text/tinystories/tinystories_valid_head.txt");
  REQUIRE_DATA("text/wikitext-2/valid.txt");
  const auto bin = load_llama2c_tokenizer(testutil::data("models/llama2c-tokenizer-32k/tokenizer.bin"));
  testutil::TempDir dir;
  testutil::write_file(dir / "tokenizer.json", llama_tokenizer_json(*bin));
  const auto hf = load_tokenizer_file(dir / "tokenizer.json");
  const auto sp = load_tokenizer_file(testutil::data("models/llama2c-tokenizer-32k/tokenizer.model"));
  EXPECT_EQ(hf->vocab_size(), 32000);
  EXPECT_EQ(hf->kind(), "hf-bpe-sentencepiece");
  for (const char* file : {"text/tinystories/tinystories_valid_head.txt", "text/wikitext-2/valid.txt"}) {
    for (auto chunk : text_chunks(testutil::read_file(testutil::data(file)), 2000, 6)) {
      // WikiText spells out "<unk>": Hugging Face matches added tokens such as
      // <unk> before BPE (real HF behaviour), SentencePiece treats them as text.
      for (size_t p = 0; (p = chunk.find("<unk>", p)) != std::string::npos;) chunk.replace(p, 5, "[unk]");
      const auto ids = hf->encode(chunk), want = sp->encode(chunk);
      if (ids != want) {
        size_t k = 0;
        while (k < ids.size() && k < want.size() && ids[k] == want[k]) ++k;
        auto show = [&](const std::vector<int>& v) {
          std::ostringstream s;
          for (size_t i = k; i < std::min(v.size(), k + 6); ++i) s << "[" << v[i] << " '" << sp->decode_token(-2, v[i]) << "'] ";
          return s.str();
        };
        FAIL() << file << ": first difference at token " << k << "\n  hf-bpe:        " << show(ids) << "\n  sentencepiece: " << show(want);
      }
      EXPECT_EQ(hf->decode(ids), chunk);
    }
  }
}
