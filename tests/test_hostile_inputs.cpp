// Hostile input (issue 14): one regression test per class of defect an outside
// test found with mutated files and bad command lines. Each file is made here
// from a small model condense writes, then mutated the way the outside test
// did; the load must fail with an error naming the file and the field, never
// crash, allocate gigabytes, hang or load a silently different model.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <climits>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>

#include "compress/rtn.h"
#include "core/error.h"
#include "core/process_stats.h"
#include "io/cpk.h"
#include "io/crc32c.h"
#include "io/gguf.h"
#include "io/hf_model.h"
#include "io/hf_tokenizer_json.h"
#include "io/llama2c.h"
#include "io/model_loader.h"
#include "io/safetensors.h"
#include "io/train_state.h"
#include "model/shapes.h"
#include "pipeline/preflight.h"
#include "pipeline/recipe.h"
#include "tests/test_util.h"
#include "tests/tiny_model.h"

using namespace condense;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

using testutil::expect_error;

Model tiny(uint64_t seed = 1) { return random_model(testutil::tiny_config({}), seed); }  // dim 32, 2 layers, vocab 40

template <typename T>
void poke(std::string& bytes, size_t at, T v) {
  ASSERT_LE(at + sizeof v, bytes.size());
  std::memcpy(bytes.data() + at, &v, sizeof v);
}

// Where things are in a GGUF file, read from the published layout (not with
// condense's reader): each metadata value's offset and each tensor info's
// name and offset fields.
struct GgufMap {
  std::map<std::string, size_t> value_at;  // key -> offset of its value
  std::vector<std::pair<std::string, size_t>> tensors;  // name, offset of the name's length field
  std::map<std::string, size_t> offset_at;              // name -> offset of its u64 data offset
};

GgufMap map_gguf(const std::string& b) {
  GgufMap m;
  size_t p = 8;
  auto u32 = [&] { uint32_t v; std::memcpy(&v, b.data() + p, 4); p += 4; return v; };
  auto u64 = [&] { uint64_t v; std::memcpy(&v, b.data() + p, 8); p += 8; return v; };
  auto str = [&] { const uint64_t n = u64(); std::string s = b.substr(p, n); p += n; return s; };
  const uint64_t nt = u64(), nkv = u64();
  for (uint64_t i = 0; i < nkv; ++i) {
    const std::string key = str();
    const uint32_t type = u32();
    m.value_at[key] = p;
    if (type == 8) str();       // STRING
    else if (type == 4 || type == 6) p += 4;  // U32, F32 (all the writer uses without a tokenizer)
    else ADD_FAILURE() << "unexpected metadata type " << type;
  }
  for (uint64_t i = 0; i < nt; ++i) {
    const size_t at = p;
    const std::string name = str();
    const uint32_t nd = u32();
    p += 8 * nd + 4;
    m.tensors.emplace_back(name, at);
    m.offset_at[name] = p;
    p += 8;
  }
  return m;
}

// A .cpk with its header JSON changed by `edit`, the checksum recomputed and
// the data moved to the new aligned start: a well-formed file that lies.
void rewrite_cpk_header(const std::string& in, const std::string& out, const std::function<void(json&)>& edit) {
  const std::string b = testutil::read_file(in);
  uint64_t hlen;
  std::memcpy(&hlen, b.data() + 16, 8);
  json h = json::parse(b.substr(32, hlen));
  edit(h);
  const std::string h2 = h.dump();
  auto align = [](uint64_t v) { return (v + 63) / 64 * 64; };
  std::string o = b.substr(0, 32);
  const uint64_t n2 = h2.size();
  const uint32_t crc = crc32c(h2.data(), h2.size());
  std::memcpy(o.data() + 16, &n2, 8);
  std::memcpy(o.data() + 24, &crc, 4);
  o += h2;
  o.append(align(32 + n2) - o.size(), '\0');
  o += b.substr(align(32 + hlen));
  testutil::write_file(out, o);
}

// safetensors written from a header object and raw data, by the published layout.
void write_safetensors(const std::string& path, const json& header, const std::string& data) {
  std::string h = header.dump();
  h.append((8 - h.size() % 8) % 8, ' ');
  std::string o(8, '\0');
  const uint64_t n = h.size();
  std::memcpy(o.data(), &n, 8);
  testutil::write_file(path, o + h + data);
}

}  // namespace

// ---- 1. memory safety ---------------------------------------------------

TEST(HostileTokenizerJson, AddedTokenIdsOutsideTheTableAreRefused) {
  json vocab = json::object();
  for (int i = 0; i < 8; ++i) vocab[std::string(1, char('a' + i))] = i;
  for (const json& id : {json(-1), json(INT_MAX), json(100000000), json(uint64_t(1) << 63), json(1.5), json("3")}) {
    const json spec = {{"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", json::array()}}},
                       {"added_tokens", {{{"id", id}, {"content", "<x>"}, {"special", true}}}}};
    expect_error([&] { parse_hf_tokenizer_json(spec.dump(), "t.json"); }, {"t.json", "added_tokens[0].id"});
  }
  json bad_vocab = vocab;
  bad_vocab["z"] = 100000000;  // a 10^8 id would size the token table at 10^8 strings
  const json spec = {{"model", {{"type", "BPE"}, {"vocab", bad_vocab}, {"merges", json::array()}}}};
  expect_error([&] { parse_hf_tokenizer_json(spec.dump(), "t.json"); }, {"t.json", "model.vocab[\"z\"]", "out of range"});
}

TEST(HostileShapes, ElementCountsThatOverflowAreRefused) {
  testutil::TempDir dir;
  // 2^40 x 2^40 wraps int64; 2^31 x 2^31 fits but its f32 byte count does not fit size arithmetic.
  for (const json& shape : {json({int64_t(1) << 40, int64_t(1) << 40}), json({int64_t(1) << 31, int64_t(1) << 31})}) {
    write_safetensors(dir / "huge.safetensors", {{"w", {{"dtype", "F32"}, {"shape", shape}, {"data_offsets", {0, 0}}}}}, "");
    expect_error([&] { SafetensorsFile f(dir / "huge.safetensors"); }, {"overflow"});
  }
}

TEST(HostileLlama2c, VocabularyOfMinusTwoToThe31IsRefused) {
  testutil::TempDir dir;
  save_llama2c(tiny(), dir / "m.bin");
  std::string b = testutil::read_file(dir / "m.bin");
  poke<int32_t>(b, 20, INT_MIN);  // vocab_size: its sign says "untied", its magnitude has no int32 absolute value
  testutil::write_file(dir / "m.bin", b);
  expect_error([&] { load_llama2c(dir / "m.bin"); }, {"m.bin", "vocab_size", "-2147483648"});
}

// ---- 2. sizes checked before anything is allocated ----------------------

TEST(HostileSizes, HugeLayerCountsAndWidthsFailBeforeAllocating) {
  testutil::TempDir dir;
  const Model m = tiny();
  save_gguf_model(m, nullptr, dir / "m.gguf", DType::F32);
  const std::string good = testutil::read_file(dir / "m.gguf");
  const GgufMap g = map_gguf(good);
  const size_t rss0 = current_rss_bytes();

  std::string b = good;
  poke<uint32_t>(b, g.value_at.at("llama.block_count"), 1000000);
  testutil::write_file(dir / "layers.gguf", b);
  expect_error([&] { load_gguf_model(dir / "layers.gguf"); }, {"layers.gguf", "llama.block_count", "out of range"});
  // Within the limits but far beyond the file: 1000 layers of dim 65536 and
  // ffn 2^19 would be ~1 PB of f32 weights; the shapes are checked first.
  poke<uint32_t>(b, g.value_at.at("llama.block_count"), 1000);
  poke<uint32_t>(b, g.value_at.at("llama.embedding_length"), 65536);
  poke<uint32_t>(b, g.value_at.at("llama.feed_forward_length"), 1 << 19);
  testutil::write_file(dir / "wide.gguf", b);
  expect_error([&] { load_gguf_model(dir / "wide.gguf"); }, {"wide.gguf", "shape"});

  save_hf_model(m, dir / "hf", DType::F32);
  json cfg = json::parse(testutil::read_file(dir / "hf/config.json"));
  cfg["num_hidden_layers"] = 1000000;
  testutil::write_file(dir / "hf/config.json", cfg.dump());
  expect_error([&] { load_hf_model(dir / "hf"); }, {"config.json", "n_layers", "limit"});
  cfg["num_hidden_layers"] = 1000;
  cfg["hidden_size"] = 65536;
  cfg["head_dim"] = 8;
  cfg["num_attention_heads"] = 1024;
  cfg["num_key_value_heads"] = 1024;
  testutil::write_file(dir / "hf/config.json", cfg.dump());
  expect_error([&] { load_hf_model(dir / "hf"); }, {"shape"});

  save_cpk(m, dir / "m.cpk", {});
  rewrite_cpk_header(dir / "m.cpk", dir / "layers.cpk", [](json& h) { h["model"]["n_layers"] = 1000000; });
  expect_error([&] { load_cpk(dir / "layers.cpk"); }, {"layers.cpk", "n_layers", "limit"});
  rewrite_cpk_header(dir / "m.cpk", dir / "wide.cpk", [](json& h) {
    h["model"]["n_layers"] = 1000;
    h["model"]["dim"] = 65536;
  });
  expect_error([&] { load_cpk(dir / "wide.cpk"); }, {"wide.cpk"});
  // None of the refusals above made anything near the claimed sizes resident.
  EXPECT_LT(current_rss_bytes(), rss0 + (size_t(256) << 20));
}

// ---- 3. silently wrong models --------------------------------------------

TEST(HostileGguf, OverlappingShiftedDuplicateAndLeftOverTensorsAreRefused) {
  testutil::TempDir dir;
  save_gguf_model(tiny(), nullptr, dir / "m.gguf", DType::F32);
  const std::string good = testutil::read_file(dir / "m.gguf");
  const GgufMap g = map_gguf(good);
  ASSERT_GE(g.tensors.size(), 3u);
  const std::string first = g.tensors[0].first, second = g.tensors[1].first;

  std::string b = good;
  poke<uint64_t>(b, g.offset_at.at(second), 0);  // the second tensor reads the first one's bytes
  testutil::write_file(dir / "overlap.gguf", b);
  expect_error([&] { load_gguf_model(dir / "overlap.gguf"); }, {"overlap.gguf", second, "expected"});

  b = good;
  poke<uint64_t>(b, g.offset_at.at(first), 32);  // shifted by one alignment unit
  testutil::write_file(dir / "shift.gguf", b);
  expect_error([&] { load_gguf_model(dir / "shift.gguf"); }, {"shift.gguf", first});

  b = good;  // the name of blk.1's q projection made blk.0's (same length): two tensors, one name
  const size_t at = b.find("blk.1.attn_q.weight");
  ASSERT_NE(at, std::string::npos);
  b[at + 4] = '0';
  testutil::write_file(dir / "dup.gguf", b);
  expect_error([&] { load_gguf_model(dir / "dup.gguf"); }, {"dup.gguf", "blk.0.attn_q.weight", "twice"});

  b = good;
  poke<uint32_t>(b, g.value_at.at("llama.block_count"), 1);  // blk.1.* left over, not ignored
  testutil::write_file(dir / "extra.gguf", b);
  expect_error([&] { load_gguf_model(dir / "extra.gguf"); }, {"extra.gguf", "blk.1.", "not part of the model"});

  b = good;
  poke<uint32_t>(b, g.value_at.at("llama.context_length"), 0xffffffffu);  // does not fit an int: refused, not truncated
  testutil::write_file(dir / "ctx.gguf", b);
  expect_error([&] { load_gguf_model(dir / "ctx.gguf"); }, {"ctx.gguf", "llama.context_length", "out of range"});
}

TEST(HostileSafetensors, OverlappingShiftedAndTrailingDataAreRefused) {
  testutil::TempDir dir;
  const std::string data(32, '\x01');  // two f32 [4] tensors
  auto entry = [](uint64_t b, uint64_t e) { return json{{"dtype", "F32"}, {"shape", {4}}, {"data_offsets", {b, e}}}; };
  write_safetensors(dir / "ok.safetensors", {{"a", entry(0, 16)}, {"b", entry(16, 32)}}, data);
  EXPECT_EQ(SafetensorsFile(dir / "ok.safetensors").entries().size(), 2u);
  write_safetensors(dir / "overlap.safetensors", {{"a", entry(0, 16)}, {"b", entry(0, 16)}}, data);
  expect_error([&] { SafetensorsFile f(dir / "overlap.safetensors"); }, {"overlap.safetensors", "overlap"});
  write_safetensors(dir / "shift.safetensors", {{"a", entry(4, 20)}, {"b", entry(20, 36)}}, data + "\x01\x01\x01\x01");
  expect_error([&] { SafetensorsFile f(dir / "shift.safetensors"); }, {"shift.safetensors", "starts at data byte 4"});
  write_safetensors(dir / "tail.safetensors", {{"a", entry(0, 16)}}, data);
  expect_error([&] { SafetensorsFile f(dir / "tail.safetensors"); }, {"tail.safetensors", "trailing"});
}

TEST(HostileHfConfig, IntegersOutOfRangeAreRefusedNotTruncated) {
  const json base = json::parse(hf_config_json(testutil::tiny_config({}), "float32"));
  for (const auto& [key, value] : std::vector<std::pair<std::string, json>>{{"bos_token_id", json(uint64_t(1) << 63)},
                                                                           {"hidden_size", json((int64_t(1) << 32) + 32)},
                                                                           {"vocab_size", json(40.5)}}) {
    json c = base;
    c[key] = value;
    expect_error([&] { parse_hf_config(c.dump(), "config.json"); }, {"config.json", key});
  }
}

TEST(HostileTokenizerJson, UnknownTypesAndMalformedSequencesAreRefused) {
  json vocab = json::object();
  for (int i = 0; i < 8; ++i) vocab[std::string(1, char('a' + i))] = i;
  const json model = {{"type", "BPE"}, {"vocab", vocab}, {"merges", json::array()}};
  auto refused = [&](json spec, const std::string& needle) {
    expect_error([&] { parse_hf_tokenizer_json(spec.dump(), "t.json"); }, {"t.json", needle});
  };
  json m = model;
  m["type"] = "Unigram";
  refused({{"model", m}}, "Unigram");
  refused({{"model", model}, {"decoder", {{"type", "WordPiece"}}}}, "WordPiece");
  refused({{"model", model}, {"normalizer", {{"type", "Sequence"}, {"normalizers", nullptr}}}}, "normalizer.normalizers");
  refused({{"model", model}, {"pre_tokenizer", {{"type", "Sequence"}, {"pretokenizers", nullptr}}}}, "pre_tokenizer.pretokenizers");
  refused({{"model", model}, {"normalizer", {{"type", "Sequence"}, {"normalizers", {nullptr}}}}}, "normalizer.normalizers[0]");
  refused({{"model", model}, {"decoder", {{"type", "Sequence"}, {"decoders", {{{"type", "Replace"}, {"pattern", {{"String", "x"}}}, {"content", " "}}}}}}},
          "decoder.decoders[0]");
  json wrong = model;
  wrong["byte_fallback"] = "yes";  // a field of the wrong type names the file, not "internal error"
  refused({{"model", wrong}}, "malformed");
}

TEST(HostileCpk, UnknownEnumsAndMismatchedGroupsAreRefused) {
  testutil::TempDir dir;
  Model m = tiny();
  const QuantScheme g16 = QuantScheme::of(DType::I4, Granularity::Group, 16, false);
  const std::string name = "model.layers.0.mlp.up_proj.weight";
  m.compression[name] = compress::quantize_rtn(g16, m.layers[0].w_up.f32(), 48, 32, {}, m.layers[0].w_up.f32());
  save_cpk(m, dir / "m.cpk", {});
  ASSERT_NO_THROW(load_cpk(dir / "m.cpk"));
  auto tensor = [&](json& h) -> json& {
    for (json& t : h["tensors"]) {
      if (t["name"] == name) return t;
    }
    throw std::runtime_error("no tensor");
  };
  auto refused = [&](const std::function<void(json&)>& edit, const std::vector<std::string>& needles) {
    rewrite_cpk_header(dir / "m.cpk", dir / "bad.cpk", edit);
    expect_error([&] { load_cpk(dir / "bad.cpk"); }, needles);
  };
  refused([](json& h) { h["format"] = "condense-cpk-9"; }, {"bad.cpk", "format"});
  refused([&](json& h) { tensor(h)["format"] = "int3"; }, {"bad.cpk", "int3"});
  refused([&](json& h) { tensor(h)["quant"]["zeros"]["packing"] = "u5"; }, {"bad.cpk", "packing", "u5"});
  // 32 columns in groups of 16: two scales per row. A group of 17 gives two as
  // well (ceil(32/17)) and would decode differently: refused as not a power of two.
  refused([&](json& h) { tensor(h)["quant"]["group"] = 17; }, {"bad.cpk", "group size 17"});
  refused([&](json& h) { tensor(h)["quant"]["group"] = 32; }, {"bad.cpk", "scales"});  // one scale per row: the count differs
  refused([&](json& h) { h["tensors"].push_back(tensor(h)); }, {"bad.cpk", name, "twice"});
  refused([&](json& h) { h["model"]["bos_id"] = uint64_t(1) << 63; }, {"bad.cpk", "bos_id"});
  refused([](json& h) { h["sections"][1]["offset"] = h["sections"][0]["offset"]; }, {"bad.cpk", "section 1"});  // two sections, one range
}

// ---- 4. what the command line and the file system hand over ----------------

TEST(HostilePaths, AFifoIsRefusedInsteadOfWaitedOn) {
  testutil::TempDir dir;
  const std::string fifo = dir / "model.bin";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  expect_error([&] { load_model(fifo); }, {"model.bin", "FIFO"});  // a hang would be killed by ctest's timeout
  expect_error([&] { read_text_file(fifo); }, {"FIFO"});
  expect_error([&] { load_tokenizer_file(fifo); }, {"FIFO"});
}

TEST(HostileCommandLine, NonFiniteNumbersAndHugeThreadCountsAreHandled) {
  const std::string bin = CONDENSE_BIN;
  for (const char* args : {"generate m.bin --temperature nan", "generate m.bin --top-p inf", "train m.bin --text t --out o --lr nan",
                           "bench --model m.bin --request-rate 1 --burstiness nan"}) {
    const auto r = testutil::run_command(bin + " " + args);
    EXPECT_NE(r.status, 0) << args;
    EXPECT_NE(r.output.find("finite"), std::string::npos) << args << ": " << r.output;
  }
  testutil::TempDir dir;
  save_llama2c(tiny(), dir / "m.bin");
  const auto r = testutil::run_command(bin + " info " + (dir / "m.bin") + " --threads 100000");
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("threads requested"), std::string::npos) << r.output;
  const auto u = testutil::run_command(bin + " frobnicate x");
  EXPECT_NE(u.output.find("unknown command 'frobnicate'"), std::string::npos) << u.output;
}

// ---- 5. a dry run promises what the run will accept ------------------------

TEST(HostileRecipes, DryRunRefusesWhatTheRunWouldRefuse) {
  testutil::TempDir dir;
  save_hf_model(tiny(), dir / "teacher", DType::F32);  // 2 layers, context 32
  testutil::write_file(dir / "text.txt", "once upon a time there was a model\n");
  const json base = {{"teacher", {{"model", dir / "teacher"}}},
                     {"data", {{"text", {dir / "text.txt"}}}},
                     {"student", {{"init", "from_teacher"}, {"layers", {0, 1}}}},
                     {"stages", {{{"type", "distill"}, {"steps", 1}, {"batch", 1}, {"seq", 16}}}},
                     {"output", {{"dir", dir / "out"}}}};
  ASSERT_NO_THROW(pipeline::preflight(pipeline::parse_recipe(base, "")));
  auto refused = [&](const std::function<void(json&)>& edit, const std::vector<std::string>& needles) {
    json j = base;
    edit(j);
    expect_error([&] { pipeline::preflight(pipeline::parse_recipe(j, "")); }, needles);
  };
  refused([](json& j) { j["student"]["layers"] = {0, 5}; }, {"$.student.layers[1]", "layer 5", "2 layers"});
  refused([](json& j) { j["student"]["layers"] = {1, 1}; }, {"$.student.layers[1]", "repeated"});
  refused([&](json& j) { j["teacher"]["model"] = dir / "nowhere"; }, {"$.teacher.model", "nowhere"});
  refused([](json& j) { j["stages"][0]["seq"] = 64; }, {"$.stages[0].seq", "64", "context of 32"});
  refused([&](json& j) { j["data"]["text"] = {dir / "missing.txt"}; }, {"$.data.text[0]", "missing.txt"});
  refused([](json& j) { j["stages"] = {{{"type", "prune"}, {"sparsity", 0.5}, {"targets", {"model.layers.*.mlp.nothing*"}}}}; },
          {"matches no weight"});
  refused([](json& j) { j["stages"] = {{{"type", "quantize"}, {"weights", {{"type", "int8"}}}, {"targets", {"lm_head*"}}}}; },
          {"lm_head*", "matches no weight"});  // tied: there is no lm_head.weight
  // A --set value that is neither JSON nor UTF-8 (the fuzzer's find): an error quoting it, not an internal error.
  json raw = base;
  pipeline::apply_set(raw, "stages[0].steps=\xff\xfe");
  expect_error([&] { pipeline::parse_recipe(raw, ""); }, {"$.stages[0].steps", "\xef\xbf\xbd"});  // U+FFFD in the message
  expect_error([&] { json bad = base; pipeline::apply_set(bad, "stages[x].steps=1"); }, {"'[x]' is not an index"});
  // A key of thousands of parts (the fuzzer's find: copying the value it built overflowed the stack).
  std::string deep;
  for (int i = 0; i < 5000; ++i) deep += "a.";
  expect_error([&] { json bad = base; pipeline::apply_set(bad, deep + "b=1"); }, {"more than 32 parts"});
  json shallow = base;
  pipeline::apply_set(shallow, "x.y.z=1");  // a few levels are fine
  EXPECT_EQ(shallow["x"]["y"]["z"], 1);
  // The command line's --dry-run runs the same checks.
  testutil::write_file(dir / "r.json", base.dump());
  const auto ok = testutil::run_command(std::string(CONDENSE_BIN) + " run " + (dir / "r.json") + " --dry-run");
  EXPECT_EQ(ok.status, 0) << ok.output;
  const auto bad = testutil::run_command(std::string(CONDENSE_BIN) + " run " + (dir / "r.json") + " --dry-run --set 'student.layers=[0,7]'");
  EXPECT_EQ(bad.status, 1) << bad.output;
  EXPECT_NE(bad.output.find("layer 7"), std::string::npos) << bad.output;
}

TEST(HostileTrainState, DamagedOrForeignStatesAreRefusedBeforeHdf5ParsesThem) {
  testutil::TempDir dir;
  Tensor a = Tensor::from_f32({1.f, 2.f, 3.f, 4.f}, {4});
  write_train_state(dir / "s.h5", "{}", {{"param/a", &a}});
  const std::string good = testutil::read_file(dir / "s.h5");
  for (size_t at : {size_t(600), good.size() / 2, good.size() - 1}) {  // a byte anywhere HDF5 would read
    std::string b = good;
    b[at] ^= 0x40;
    testutil::write_file(dir / "bad.h5", b);
    expect_error([&] { read_train_state_meta(dir / "bad.h5"); }, {"bad.h5", "checksum mismatch"});
  }
  testutil::write_file(dir / "short.h5", good.substr(0, good.size() - 8));
  expect_error([&] { read_train_state_meta(dir / "short.h5"); }, {"short.h5", "truncated"});
  testutil::write_file(dir / "foreign.h5", good.substr(512));  // a plain HDF5 file: not condense's
  expect_error([&] { read_train_state_meta(dir / "foreign.h5"); }, {"foreign.h5", "CONDENSE-STATE"});
}
