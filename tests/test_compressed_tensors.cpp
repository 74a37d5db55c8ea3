// compressed-tensors export: read by the test's own safetensors parser and
// unpacker (written from compressed-tensors' published packing rule), every
// quantized linear decodes to the model's values exactly; condense reads the
// folder back with the same codes, scales, activation and KV scales; sharded
// folders load as single ones; unsupported checkpoints fail naming the field.
#include <gtest/gtest.h>

#include <cstring>
#include <set>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "compress/rtn.h"
#include "io/cpk.h"
#include "io/model_loader.h"
#include "model/shapes.h"
#include "pipeline/convert.h"
#include "tests/test_util.h"
#include "tests/tiny_model.h"

using namespace condense;
namespace fs = std::filesystem;
using json = nlohmann::json;
using testutil::expect_error;

namespace {

// compressed-tensors' pack_to_int32 read back: element i of a row is bits
// [i*b, i*b + b) of the row's words, LSB first, minus 2^(b-1).
std::vector<int> unpack_row(const uint32_t* words, int64_t n, int bits) {
  std::vector<int> q(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const int64_t bit = i * bits;
    q[size_t(i)] = int((words[bit / 32] >> (bit % 32)) & ((1u << bits) - 1)) - (1 << (bits - 1));
  }
  return q;
}

double half_to_double(uint16_t h) {
  const int s = h >> 15, e = (h >> 10) & 31, f = h & 1023;
  const double v = e == 0 ? std::ldexp(f, -24) : std::ldexp(f + 1024, e - 25);
  return s ? -v : v;
}

double e4m3_to_double(uint8_t c) {
  const int s = c >> 7, e = (c >> 3) & 15, f = c & 7;
  const double v = e == 0 ? std::ldexp(f, -9) : std::ldexp(8 + f, e - 10);
  return s ? -v : v;
}

// A folder's tensors, from the index or the single file: name -> (dtype, shape, bytes).
struct Stored { std::string dtype; std::vector<int64_t> shape; std::string bytes; };
std::map<std::string, Stored> read_folder(const std::string& dir) {
  std::vector<std::string> files;
  if (fs::exists(dir + "/model.safetensors.index.json")) {
    const json idx = json::parse(testutil::read_file(dir + "/model.safetensors.index.json"));
    std::set<std::string> f;
    for (const auto& [k, v] : idx["weight_map"].items()) f.insert(v.get<std::string>());
    files.assign(f.begin(), f.end());
  } else {
    files = {"model.safetensors"};
  }
  std::map<std::string, Stored> out;
  for (const std::string& f : files) {
    const std::string b = testutil::read_file(dir + "/" + f);
    uint64_t n;
    std::memcpy(&n, b.data(), 8);
    const json h = json::parse(b.substr(8, n));
    for (const auto& [name, e] : h.items()) {
      if (name == "__metadata__") continue;
      const uint64_t s = e["data_offsets"][0], t = e["data_offsets"][1];
      out[name] = {e["dtype"], e["shape"].get<std::vector<int64_t>>(), b.substr(8 + n + s, t - s)};
    }
  }
  return out;
}

double scalar(const Stored& s, size_t i) {
  if (s.dtype == "F32") { float v; std::memcpy(&v, s.bytes.data() + 4 * i, 4); return v; }
  if (s.dtype == "F16") { uint16_t v; std::memcpy(&v, s.bytes.data() + 2 * i, 2); return half_to_double(v); }
  ADD_FAILURE() << "scale dtype " << s.dtype;
  return 0;
}

// One linear decoded by compressed-tensors' rule x = (q - zp) * scale.
std::vector<double> decode_linear(const std::map<std::string, Stored>& t, const std::string& mod, const json& args, const std::string& format,
                                  int64_t rows, int64_t cols) {
  std::vector<double> x(static_cast<size_t>(rows * cols));
  const bool sym = args["symmetric"];
  const std::string strategy = args["strategy"];
  const Stored& sc = t.at(mod + ".weight_scale");
  if (format == "pack-quantized") {
    const int bits = args["num_bits"];
    const int64_t groups = strategy == "group" ? cols / args["group_size"].get<int64_t>() : 1, words = (cols * bits + 31) / 32;
    const Stored& p = t.at(mod + ".weight_packed");
    EXPECT_EQ(p.shape, (std::vector<int64_t>{rows, words}));
    const auto* w = reinterpret_cast<const uint32_t*>(p.bytes.data());
    std::vector<std::vector<int>> zp;  // [rows][groups]
    if (!sym) {
      const Stored& z = t.at(mod + ".weight_zero_point");
      const auto* zw = reinterpret_cast<const uint32_t*>(z.bytes.data());
      const int64_t zrows = z.shape[0];
      zp.assign(size_t(rows), std::vector<int>(size_t(groups)));
      for (int64_t g = 0; g < groups; ++g) {  // packed along dim 0: column g of the [zrows, groups] words
        std::vector<uint32_t> col(static_cast<size_t>(zrows));
        for (int64_t k = 0; k < zrows; ++k) col[size_t(k)] = zw[k * groups + g];
        const std::vector<int> v = unpack_row(col.data(), rows, bits);
        for (int64_t r = 0; r < rows; ++r) zp[size_t(r)][size_t(g)] = v[size_t(r)];
      }
    }
    for (int64_t r = 0; r < rows; ++r) {
      const std::vector<int> q = unpack_row(w + r * words, cols, bits);
      for (int64_t c = 0; c < cols; ++c) {
        const int64_t g = c / (cols / groups);
        const double z = sym ? 0 : zp[size_t(r)][size_t(g)];
        x[size_t(r * cols + c)] = (q[size_t(c)] - z) * scalar(sc, size_t(r * groups + g));
      }
    }
  } else {
    const Stored& w = t.at(mod + ".weight");
    const bool fp8 = format == "float-quantized";
    EXPECT_EQ(w.dtype, fp8 ? "F8_E4M3" : "I8");
    for (int64_t r = 0; r < rows; ++r) {
      const size_t si = strategy == "tensor" ? 0 : size_t(r);
      const double zero = sym ? 0 : double(int8_t(t.at(mod + ".weight_zero_point").bytes[si]));
      for (int64_t c = 0; c < cols; ++c) {
        const uint8_t b = uint8_t(w.bytes[size_t(r * cols + c)]);
        const double q = fp8 ? e4m3_to_double(b) : double(int8_t(b));
        x[size_t(r * cols + c)] = (q - zero) * scalar(sc, si);
      }
    }
  }
  return x;
}

const testutil::TinyShape kShape{.dim = 64, .layers = 2, .heads = 4, .kv = 2, .hd = 16, .ffn = 96, .vocab = 80, .max_seq = 32, .tied = false};

// Every block linear in `scheme` (RTN), effective values set.
Model model_in(const QuantScheme& scheme, uint64_t seed) {
  Model m = random_model(testutil::tiny_config(kShape), seed);
  for_each_weight(m, [&](const WeightRef& w) {
    if (w.kind == WeightKind::Linear) m.compression[w.name] = compress::quantize_rtn(scheme, w.tensor->f32(), w.shape[0], w.shape[1], {}, w.tensor->f32());
  });
  return m;
}

json convert_ct(const Model& m, const std::string& dir, const std::string& dtype = "f16", uint64_t shard = 0) {
  pipeline::ConvertOptions o;
  o.to = "compressed-tensors";
  o.out = dir + "/ct";
  o.hf_dtype = dtype;
  o.max_shard_bytes = shard;
  save_cpk(m, dir + "/m.cpk", {});
  return pipeline::convert_model(dir + "/m.cpk", o);
}

}  // namespace

TEST(CompressedTensors, PackingRuleTestVector) {
  // INTEROP.md B.2: a row [-8, ..., 7] packs to 0x76543210 and 0xFEDCBA98.
  const uint32_t words[2] = {0x76543210u, 0xFEDCBA98u};
  const std::vector<int> q = unpack_row(words, 16, 4);
  for (int i = 0; i < 16; ++i) EXPECT_EQ(q[size_t(i)], i - 8);
}

// Each encoding condense stores, decoded from the folder by the rules above,
// equals the model's dequantized values exactly, and reads back into the same
// packed form (codes, scales, zero points) with the same activation and KV scales.
TEST(CompressedTensors, EveryEncodingDecodesExactlyAndReadsBack) {
  struct Case { QuantScheme s; DType acts; const char* format; };
  const Case cases[] = {
      {QuantScheme::of(DType::I4, Granularity::Group, 32, true), DType::F32, "pack-quantized"},
      {QuantScheme::of(DType::I4, Granularity::Group, 32, false), DType::F32, "pack-quantized"},
      {QuantScheme::of(DType::I8, Granularity::Group, 32, true), DType::F32, "pack-quantized"},
      {QuantScheme::of(DType::I4, Granularity::PerChannel, 0, false), DType::F32, "pack-quantized"},
      {QuantScheme::of(DType::I8, Granularity::PerChannel, 0, true), DType::I8, "int-quantized"},
      {QuantScheme::of(DType::I8, Granularity::PerChannel, 0, false), DType::I8, "int-quantized"},
      {QuantScheme::of(DType::F8E4M3, Granularity::PerChannel, 0, true), DType::F8E4M3, "float-quantized"},
      {QuantScheme::of(DType::F8E4M3, Granularity::PerTensor, 0, true), DType::F32, "float-quantized"},
  };
  int k = 0;
  for (const Case& cs : cases) {
    SCOPED_TRACE(cs.s.describe() + " / activations " + name(cs.acts));
    testutil::TempDir dir;
    Model m = model_in(cs.s, 40 + k++);
    m.activations.type = cs.acts;
    if (cs.acts == DType::F8E4M3) {
      for (int i = 0; i < kShape.layers * ActivationQuant::kSites; ++i) m.activations.scales.push_back(0.01f * float(i + 1));
    }
    m.kv_cache.type = DType::F8E4M3;
    for (int l = 0; l < kShape.layers; ++l) m.kv_cache.k_scales.push_back(0.02f * float(l + 1)), m.kv_cache.v_scales.push_back(0.03f * float(l + 1));
    const json r = convert_ct(m, dir.path.string());
    const json cfg = json::parse(testutil::read_file(dir / "ct/config.json"));
    const json& qc = cfg["quantization_config"];
    ASSERT_EQ(qc["format"], cs.format) << qc.dump();
    const json& g = qc["config_groups"]["group_0"];
    EXPECT_EQ(g["targets"], json::array({"Linear"}));
    EXPECT_EQ(qc["kv_cache_scheme"]["type"], "float");
    const auto stored = read_folder(dir / "ct");
    for_each_weight(m, [&](const WeightRef& w) {
      if (w.kind != WeightKind::Linear) return;
      const std::string mod = w.name.substr(0, w.name.size() - 7);
      const std::vector<double> x = decode_linear(stored, mod, g["weights"], g["format"], w.shape[0], w.shape[1]);
      // exact: integer codes times f16-exact scales fit float32; an fp8 code times
      // an f32 scale is one float32 rounding of the exact product, as condense computes it
      for (int64_t i = 0; i < w.tensor->numel(); ++i) ASSERT_EQ(float(x[size_t(i)]), w.tensor->f32()[i]) << w.name << " element " << i;
      if (cs.acts == DType::F8E4M3) {
        EXPECT_TRUE(stored.count(mod + ".input_scale")) << mod;
      }
    });
    EXPECT_EQ(scalar(stored.at("model.layers.1.self_attn.v_scale"), 0), double(0.06f));
    // read back
    LoadedModel b = load_model(dir / "ct");
    for (const auto& [name, wa] : m.compression) {
      ASSERT_TRUE(b.model.compression.count(name)) << name;
      const WeightCompression& wb = b.model.compression.at(name);
      EXPECT_EQ(wb.scheme, wa.scheme) << name;
      EXPECT_EQ(wb.codes, wa.codes) << name;
      EXPECT_EQ(wb.zeros, wa.zeros) << name;
      EXPECT_EQ(wb.scales, wa.scales) << name;
    }
    EXPECT_EQ(b.model.activations.type, m.activations.type);
    EXPECT_EQ(b.model.activations.scales, m.activations.scales);
    EXPECT_EQ(b.model.kv_cache.k_scales, m.kv_cache.k_scales);
    EXPECT_EQ(b.model.kv_cache.v_scales, m.kv_cache.v_scales);
  }
}

// What no vLLM scheme holds goes out dense and is named: a short last group
// (rows of 96 in groups of 64), fp8 in groups; mixed schemes get one config
// group each with the module names as targets.
TEST(CompressedTensors, UnrepresentableWeightsGoOutDenseAndMixedSchemesGetGroups) {
  testutil::TempDir dir;
  Model m = random_model(testutil::tiny_config(kShape), 3);
  for_each_weight(m, [&](const WeightRef& w) {
    if (w.kind != WeightKind::Linear) return;
    const bool q8 = w.name.find("q_proj") != std::string::npos;
    const QuantScheme s = QuantScheme::of(q8 ? DType::I8 : DType::I4, Granularity::Group, q8 ? 32 : 64, true);
    m.compression[w.name] = compress::quantize_rtn(s, w.tensor->f32(), w.shape[0], w.shape[1], {}, w.tensor->f32());
  });
  const json r = convert_ct(m, dir.path.string(), "f32");
  const json qc = json::parse(testutil::read_file(dir / "ct/config.json"))["quantization_config"];
  EXPECT_EQ(qc["config_groups"].size(), 2u);
  EXPECT_NE(std::find(qc["ignore"].begin(), qc["ignore"].end(), "model.layers.0.mlp.down_proj"), qc["ignore"].end()) << qc["ignore"];
  bool noted = false;
  for (const auto& t : r["tensors"]) {
    if (t["name"] == "model.layers.1.mlp.down_proj.weight") noted = t["format"] == "dense" && t["note"].get<std::string>().find("last group is short") != std::string::npos;
  }
  EXPECT_TRUE(noted) << r["tensors"].dump();
  LoadedModel b = load_model(dir / "ct");
  EXPECT_FALSE(b.model.compression.count("model.layers.1.mlp.down_proj.weight"));
  EXPECT_EQ(b.model.compression.at("model.layers.1.self_attn.q_proj.weight").scheme, QuantScheme::of(DType::I8, Granularity::Group, 32, true));
  testutil::expect_same_weights(m, b.model);  // f32 dense: every value exact
}

// Shards: --max-shard-size splits the tensors over files with an index; the
// folder loads to the same weights as the single-file one.
TEST(CompressedTensors, ShardedFoldersLoadTheSame) {
  testutil::TempDir dir;
  const Model m = model_in(QuantScheme::of(DType::I4, Granularity::Group, 32, true), 9);
  convert_ct(m, dir.path.string(), "f16", 20000);
  const json idx = json::parse(testutil::read_file(dir / "ct/model.safetensors.index.json"));
  std::set<std::string> files;
  for (const auto& [k, v] : idx["weight_map"].items()) files.insert(v.get<std::string>());
  EXPECT_GT(files.size(), 2u);
  uint64_t total = 0;
  for (const auto& f : files) total += fs::file_size(dir / ("ct/" + f));
  EXPECT_LT(idx["metadata"]["total_size"].get<uint64_t>(), total);  // the sizes count tensor data, not headers
  const LoadedModel a = load_model(dir / "ct");
  pipeline::ConvertOptions o;
  o.to = "hf";
  o.out = dir / "hf";
  o.hf_dtype = "f32";
  o.max_shard_bytes = 30000;
  pipeline::convert_model(dir / "m.cpk", o);
  EXPECT_TRUE(fs::exists(dir / "hf/model.safetensors.index.json"));
  const LoadedModel b = load_model(dir / "hf");
  testutil::expect_same_weights(m, b.model);
  // a second export into the same folder, unsharded, removes the old shards
  o.max_shard_bytes = 0;
  const json r = pipeline::convert_model(dir / "m.cpk", o);
  EXPECT_FALSE(fs::exists(dir / "hf/model.safetensors.index.json"));
  EXPECT_TRUE(fs::exists(dir / "hf/model.safetensors"));
  testutil::expect_same_weights(m, load_model(dir / "hf").model);
}

TEST(CompressedTensors, UnsupportedCheckpointsFailNamingTheField) {
  testutil::TempDir dir;
  const Model m = model_in(QuantScheme::of(DType::I4, Granularity::Group, 32, false), 11);
  convert_ct(m, dir.path.string());
  json cfg = json::parse(testutil::read_file(dir / "ct/config.json"));
  cfg["quantization_config"]["quant_method"] = "gptq";
  testutil::write_file(dir / "ct/config.json", cfg.dump());
  expect_error([&] { load_model(dir / "ct"); }, {"quant_method 'gptq'", "compressed-tensors"});
  cfg["quantization_config"]["quant_method"] = "compressed-tensors";
  cfg["quantization_config"]["config_groups"]["group_0"]["weights"]["num_bits"] = 3;
  testutil::write_file(dir / "ct/config.json", cfg.dump());
  expect_error([&] { load_model(dir / "ct"); }, {"model.layers.0.self_attn.q_proj", "int3"});
  cfg["quantization_config"]["config_groups"]["group_0"]["weights"]["num_bits"] = 4;
  cfg["quantization_config"]["config_groups"]["group_0"]["weights"]["group_size"] = 64;
  testutil::write_file(dir / "ct/config.json", cfg.dump());
  expect_error([&] { load_model(dir / "ct"); }, {"model.layers.0.self_attn.q_proj", "weight_scale has"});
}
