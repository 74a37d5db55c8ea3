// File formats: write -> read round trips are exact in every writable format,
// and malformed files (truncated, wrong magic, bad header JSON, tensor out of
// bounds, shape/config mismatch) raise condense::Error naming the file.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "io/gguf.h"
#include "io/hf_model.h"
#include "io/llama2c.h"
#include "io/model_loader.h"
#include "io/safetensors.h"
#include "model/shapes.h"
#include "tests/test_util.h"
#include "tests/tiny_model.h"

using namespace condense;
namespace fs = std::filesystem;

namespace {

ModelConfig tiny_config(bool tied, bool bias = false) {
  return testutil::tiny_config({.dim = 48, .heads = 6, .kv = 2, .hd = 8, .ffn = 100, .vocab = 300, .max_seq = 64, .tied = tied, .bias = bias});
}

using testutil::expect_error;

}  // namespace

TEST(Llama2cFormat, RoundTripIsExactTiedAndUntied) {
  testutil::TempDir dir;
  for (bool tied : {true, false}) {
    ModelConfig c = tiny_config(tied);
    c.head_dim = c.dim / c.n_heads;
    Model m = random_model(c, 3);
    save_llama2c(m, dir / "m.bin");
    Model back = load_llama2c(dir / "m.bin");
    EXPECT_EQ(back.config.tied_embeddings, tied);
    testutil::expect_same_weights(m, back);
  }
}

TEST(Llama2cFormat, RejectsWhatItCannotHold) {
  testutil::TempDir dir;
  Model m = random_model(tiny_config(true, /*bias=*/true), 1);
  expect_error([&] { save_llama2c(m, dir / "x.bin"); }, {"x.bin", "bias"});
  EXPECT_TRUE(fs::is_empty(dir.path)) << "a failed save left a file behind";
}

TEST(Llama2cFormat, CorruptFilesFailClearly) {
  testutil::TempDir dir;
  ModelConfig c = tiny_config(true);
  c.head_dim = c.dim / c.n_heads;
  save_llama2c(random_model(c, 2), dir / "m.bin");
  const std::string good = testutil::read_file(dir / "m.bin");
  testutil::write_file(dir / "trunc.bin", good.substr(0, good.size() - 100));
  expect_error([&] { load_llama2c(dir / "trunc.bin"); }, {"trunc.bin", "truncated"});
  testutil::write_file(dir / "tiny.bin", good.substr(0, 10));
  expect_error([&] { load_llama2c(dir / "tiny.bin"); }, {"tiny.bin", "past the end"});
  std::string v1 = good;
  std::memcpy(v1.data(), "24ka", 4);  // llama2.c's versioned magic 0x616b3432, little-endian
  testutil::write_file(dir / "v1.bin", v1);
  expect_error([&] { load_llama2c(dir / "v1.bin"); }, {"v1.bin", "version 0"});
  std::string garbage = good;
  garbage[12] = char(0xff); garbage[13] = char(0xff); garbage[14] = char(0xff); garbage[15] = char(0x7f);  // n_heads huge
  testutil::write_file(dir / "garbage.bin", garbage);
  expect_error([&] { load_llama2c(dir / "garbage.bin"); }, {"garbage.bin"});
}

TEST(HfFormat, RoundTripF32IsExactAndHalfTypesAreRounded) {
  testutil::TempDir dir;
  for (bool bias : {false, true}) {
    Model m = random_model(tiny_config(false, bias), 5);
    save_hf_model(m, dir / "f32", DType::F32);
    Model back = load_hf_model(dir / "f32");
    EXPECT_EQ(back.config.qkv_bias, bias);
    testutil::expect_same_weights(m, back);

    for (DType dt : {DType::BF16, DType::F16}) {
      save_hf_model(m, dir / "half", dt);
      Model half = load_hf_model(dir / "half");
      Model rounded = random_model(tiny_config(false, bias), 5);
      for_each_weight(rounded, [&](const WeightRef& w) { *w.tensor = w.tensor->to(dt).to(DType::F32); });
      testutil::expect_same_weights(rounded, half);
      EXPECT_EQ(half.source_dtypes.at("model.embed_tokens.weight"), dt);
    }
  }
}

TEST(HfFormat, ShardedIndexLoads) {
  testutil::TempDir dir;
  Model m = random_model(tiny_config(true), 9);
  save_hf_model(m, dir / "one", DType::F32);
  // Split the single file into two shards plus an index, as large checkpoints come.
  SafetensorsFile one(dir / "one/model.safetensors");
  std::vector<std::pair<std::string, Tensor>> a, b;
  nlohmann::json index = {{"metadata", nlohmann::json::object()}, {"weight_map", nlohmann::json::object()}};
  int i = 0;
  for (const auto& [name, e] : one.entries()) {
    auto& part = (i++ % 2) ? a : b;
    part.emplace_back(name, one.read_f32(name));
    index["weight_map"][name] = (&part == &a) ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
  }
  fs::create_directories(dir / "sharded");
  save_safetensors(dir / "sharded/model-00001-of-00002.safetensors", a);
  save_safetensors(dir / "sharded/model-00002-of-00002.safetensors", b);
  testutil::write_file(dir / "sharded/model.safetensors.index.json", index.dump());
  fs::copy_file(dir / "one/config.json", dir / "sharded/config.json");
  Model back = load_hf_model(dir / "sharded");
  testutil::expect_same_weights(m, back);
}

TEST(HfFormat, CorruptSafetensorsFailClearly) {
  testutil::TempDir dir;
  save_hf_model(random_model(tiny_config(true), 4), dir / "m", DType::F32);
  const std::string st = testutil::read_file(dir / "m/model.safetensors");
  uint64_t hlen;
  std::memcpy(&hlen, st.data(), 8);
  const std::string header = st.substr(8, hlen);

  auto variant = [&](const std::string& name, const std::string& bytes) {
    fs::create_directories(dir / name);
    fs::copy_file(dir / "m/config.json", dir / (name + "/config.json"));
    testutil::write_file(dir / (name + "/model.safetensors"), bytes);
    return dir / name;
  };
  expect_error([&] { load_hf_model(variant("trunc", st.substr(0, st.size() - 64))); }, {"trunc", "outside"});
  expect_error([&] { load_hf_model(variant("short", st.substr(0, 5))); }, {"short", "past the end"});
  std::string big = st;
  const uint64_t huge = uint64_t(1) << 40;
  std::memcpy(big.data(), &huge, 8);
  expect_error([&] { load_hf_model(variant("hugelen", big)); }, {"hugelen", "header length"});
  std::string badjson = st;
  badjson[8] = '[';
  badjson[9] = '}';
  expect_error([&] { load_hf_model(variant("badjson", badjson)); }, {"badjson", "JSON"});

  // A tensor whose data_offsets run past the data.
  nlohmann::json h = nlohmann::json::parse(header);
  const std::string first = h.begin().key() == "__metadata__" ? std::next(h.begin()).key() : h.begin().key();
  auto oob = h;
  oob[first]["data_offsets"][1] = uint64_t(1) << 32;
  std::string hs = oob.dump();
  hs.append((8 - hs.size() % 8) % 8, ' ');
  const uint64_t n = hs.size();
  std::string bytes(reinterpret_cast<const char*>(&n), 8);
  bytes += hs + st.substr(8 + hlen);
  expect_error([&] { load_hf_model(variant("oob", bytes)); }, {"oob", first, "outside"});

  auto wrong_dtype = h;
  wrong_dtype[first]["dtype"] = "F64";
  hs = wrong_dtype.dump();
  hs.append((8 - hs.size() % 8) % 8, ' ');
  const uint64_t n2 = hs.size();
  bytes = std::string(reinterpret_cast<const char*>(&n2), 8) + hs + st.substr(8 + hlen);
  expect_error([&] { load_hf_model(variant("f64", bytes)); }, {"f64", "F64"});
}

TEST(HfFormat, ConfigErrorsNameTheField) {
  const std::string base = R"({"model_type":"llama","hidden_size":64,"num_hidden_layers":2,"num_attention_heads":8,
    "num_key_value_heads":4,"intermediate_size":100,"vocab_size":300,"max_position_embeddings":128})";
  EXPECT_NO_THROW(parse_hf_config(base, "config.json"));
  auto with = [&](const std::string& k, const std::string& v) {
    auto j = nlohmann::json::parse(base);
    j[k] = nlohmann::json::parse(v);
    return j.dump();
  };
  expect_error([&] { parse_hf_config(with("model_type", "\"gpt2\""), "c.json"); }, {"c.json", "model_type", "gpt2"});
  expect_error([&] { parse_hf_config(with("num_key_value_heads", "3"), "c.json"); }, {"n_kv_heads"});
  expect_error([&] { parse_hf_config(with("hidden_act", "\"gelu\""), "c.json"); }, {"hidden_act"});
  expect_error([&] { parse_hf_config(with("rope_scaling", R"({"type":"llama3"})"), "c.json"); }, {"rope_scaling"});
  expect_error([&] { parse_hf_config(with("hidden_size", "\"big\""), "c.json"); }, {"hidden_size", "wrong type"});
  auto j = nlohmann::json::parse(base);
  j.erase("vocab_size");
  expect_error([&] { parse_hf_config(j.dump(), "c.json"); }, {"vocab_size", "missing"});
  expect_error([&] { parse_hf_config("{not json", "c.json"); }, {"c.json", "JSON"});
}

TEST(HfFormat, ShapeMismatchAndMissingTensorsFail) {
  testutil::TempDir dir;
  save_hf_model(random_model(tiny_config(true), 4), dir / "m", DType::F32);
  auto cfg = nlohmann::json::parse(testutil::read_file(dir / "m/config.json"));
  cfg["intermediate_size"] = 101;
  testutil::write_file(dir / "m/config.json", cfg.dump());
  expect_error([&] { load_hf_model(dir / "m"); }, {"gate_proj", "[100, 48]", "[101, 48]"});
  cfg["intermediate_size"] = 100;
  cfg["num_hidden_layers"] = 3;
  testutil::write_file(dir / "m/config.json", cfg.dump());
  expect_error([&] { load_hf_model(dir / "m"); }, {"model.layers.2", "missing"});
}

TEST(ModelLoader, DetectsFormatsAndFindsTokenizers) {
  testutil::TempDir dir;
  ModelConfig c = tiny_config(true);
  c.head_dim = c.dim / c.n_heads;
  save_llama2c(random_model(c, 1), dir / "m.bin");
  EXPECT_EQ(detect_format(dir / "m.bin"), "llama2c");
  LoadedModel lm = load_model(dir / "m.bin");
  EXPECT_FALSE(lm.tokenizer);
  expect_error([&] { require_tokenizer(lm); }, {"--tokenizer"});
  // A Hugging Face folder picks up its tokenizer.json.
  Model hf = random_model(tiny_config(true), 2);
  save_hf_model(hf, dir / "hf", DType::F32);
  nlohmann::json vocab = nlohmann::json::object();
  for (int i = 0; i < hf.config.vocab; ++i) vocab["t" + std::to_string(i)] = i;
  vocab["t"] = 0;  // an alias; the vocabulary size is still the max id + 1
  testutil::write_file(dir / "hf/tokenizer.json", nlohmann::json({{"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", nlohmann::json::array()}}}}).dump());
  LoadedModel with_tok = load_model(dir / "hf");
  ASSERT_TRUE(with_tok.tokenizer);
  EXPECT_EQ(with_tok.tokenizer->vocab_size(), hf.config.vocab);
  EXPECT_NE(with_tok.tokenizer_path.find("tokenizer.json"), std::string::npos);

  testutil::write_file(dir / "x.gguf", "GGU");
  expect_error([&] { detect_format(dir / "x.gguf"); }, {"x.gguf", "GGUF magic"});
  expect_error([&] { load_model(dir / "missing.bin"); }, {"missing.bin", "does not exist"});
}

namespace {

Llama2cTokenizer synthetic_tokenizer(int vocab) {
  std::vector<std::string> p = {"<unk>", "<s>", "</s>"};
  for (int b = 0; b < 256; ++b) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "<0x%02X>", b);
    p.push_back(buf);
  }
  const char* words[] = {" ", "a", "b", " a", "ab", " ab", "ba"};
  for (const char* w : words) p.push_back(w);
  while (int(p.size()) < vocab) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "x%zu", p.size());
    p.push_back(buf);
  }
  std::vector<float> s(p.size());
  for (size_t i = 0; i < s.size(); ++i) s[i] = -float(i);
  return Llama2cTokenizer(p, s);
}

}  // namespace

TEST(GgufFormat, RoundTripF32ExactAndF16Bf16Rounded) {
  testutil::TempDir dir;
  for (bool tied : {true, false}) {
    Model m = random_model(tiny_config(tied), 21);
    const auto tok = synthetic_tokenizer(m.config.vocab);
    save_gguf_model(m, &tok, dir / "m.gguf", DType::F32);
    EXPECT_EQ(detect_format(dir / "m.gguf"), "gguf");
    GgufModel g = load_gguf_model(dir / "m.gguf");
    EXPECT_EQ(g.model.config.tied_embeddings, tied);
    EXPECT_EQ(g.model.config.n_kv_heads, 2);
    testutil::expect_same_weights(m, g.model);
    ASSERT_TRUE(g.tokenizer);
    EXPECT_EQ(g.tokenizer->encode("ab ab ba"), tok.encode("ab ab ba"));
    EXPECT_EQ(g.tokenizer->decode(g.tokenizer->encode("ab ab\xff"), 1), "ab ab\xff");

    for (DType dt : {DType::F16, DType::BF16}) {
      save_gguf_model(m, nullptr, dir / "h.gguf", dt);
      GgufModel h = load_gguf_model(dir / "h.gguf");
      EXPECT_FALSE(h.tokenizer);
      Model rounded = random_model(tiny_config(tied), 21);
      for_each_weight(rounded, [&](const WeightRef& w) {
        if (w.tensor->ndim() == 2) *w.tensor = w.tensor->to(dt).to(DType::F32);  // 1-D weights stay f32, as llama.cpp keeps them
      });
      testutil::expect_same_weights(rounded, h.model);
    }
  }
}

TEST(GgufFormat, CorruptAndUnsupportedFilesFailClearly) {
  testutil::TempDir dir;
  Model m = random_model(tiny_config(true), 22);
  save_gguf_model(m, nullptr, dir / "m.gguf", DType::F32);
  const std::string good = testutil::read_file(dir / "m.gguf");
  testutil::write_file(dir / "trunc.gguf", good.substr(0, good.size() - 1000));
  expect_error([&] { load_gguf_model(dir / "trunc.gguf"); }, {"trunc.gguf", "truncated"});
  testutil::write_file(dir / "head.gguf", good.substr(0, 40));
  expect_error([&] { load_gguf_model(dir / "head.gguf"); }, {"head.gguf", "more than its 40 bytes can hold"});
  std::string v2 = good;
  v2[4] = 2;
  testutil::write_file(dir / "v2.gguf", v2);
  expect_error([&] { load_gguf_model(dir / "v2.gguf"); }, {"v2.gguf", "version 2"});
  std::string magic = good;
  magic[0] = 'X';
  testutil::write_file(dir / "magic.gguf", magic);
  expect_error([&] { load_model(dir / "magic.gguf"); }, {"magic.gguf", "GGUF magic"});
  // Mark the first tensor as I32 (ggml type 26, as many bytes as F32, so the data layout
  // still checks out): the error must name the type.
  const std::string name = "token_embd.weight";
  const size_t at = good.find(name);
  ASSERT_NE(at, std::string::npos);
  std::string q = good;
  const size_t type_at = at + name.size() + 4 + 2 * 8;  // n_dims u32, two u64 dims
  q[type_at] = 26;
  testutil::write_file(dir / "i32.gguf", q);
  expect_error([&] { load_gguf_model(dir / "i32.gguf"); }, {"i32.gguf", "token_embd.weight", "I32", "not read yet"});
  // As Q4_K (type 12) the 48-wide rows are not whole 256-element blocks.
  q[type_at] = 12;
  testutil::write_file(dir / "q4k.gguf", q);
  expect_error([&] { load_gguf_model(dir / "q4k.gguf"); }, {"q4k.gguf", "token_embd.weight", "Q4_K", "block of 256"});
}
