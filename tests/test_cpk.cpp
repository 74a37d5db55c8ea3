// The packed checkpoint: write/read round trips are exact for every storage
// form (f32, int8 per-channel, int4 groups with a short last group and zero
// points, fp8 per-tensor, sparse f32 by bitmap and by CSR, sparse int4), with
// and without zstd; corrupted files (truncated, a flipped header byte, a
// flipped data byte, an unknown version, a mislabeled file) fail with a clear
// message; the v1 golden file in tests/golden keeps loading to the same values.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "compress/rtn.h"
#include "core/error.h"
#include "io/cpk.h"
#include "io/crc32c.h"
#include "model/shapes.h"
#include "tests/test_util.h"
#include "tests/tiny_model.h"

using namespace condense;

namespace {

void pack(Model& m, const std::string& name, Tensor& t, const QuantScheme& s, double prune_fraction, uint32_t seed) {
  const int64_t rows = t.dim(0), cols = t.dim(1);
  float* w = t.f32();
  std::vector<uint64_t> mask;
  if (prune_fraction > 0) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<double> u(0, 1);
    for (int64_t i = 0; i < rows * cols; ++i) {
      if (u(rng) < prune_fraction) w[i] = 0;
    }
    mask = mask_from_nonzero(w, rows * cols);
  }
  if (s.quantized()) {
    m.compression[name] = compress::quantize_rtn(s, w, rows, cols, mask, w);
  } else {
    WeightCompression wc;
    wc.mask = mask;
    m.compression[name] = wc;
  }
}

// A model whose weights use every storage form the format has.
Model packed_model() {
  Model m = random_model(testutil::tiny_config({.dim = 24, .heads = 6, .kv = 3, .hd = 4, .ffn = 72, .vocab = 30, .max_seq = 16, .tied = false}), 7);
  LayerWeights& a = m.layers[0];
  LayerWeights& b = m.layers[1];
  pack(m, "model.layers.0.self_attn.q_proj.weight", a.wq, QuantScheme::of(DType::I8, Granularity::PerChannel, 0, true), 0, 1);
  pack(m, "model.layers.0.self_attn.k_proj.weight", a.wk, QuantScheme::of(DType::I8, Granularity::PerChannel, 0, false), 0, 2);
  pack(m, "model.layers.0.mlp.down_proj.weight", a.w_down, QuantScheme::of(DType::I4, Granularity::Group, 16, false), 0, 3);
  pack(m, "model.layers.0.mlp.up_proj.weight", a.w_up, QuantScheme::of(DType::I4, Granularity::Group, 8, true), 0.5, 4);
  pack(m, "model.layers.0.mlp.gate_proj.weight", a.w_gate, QuantScheme::of(DType::F8E4M3, Granularity::PerTensor, 0, true), 0, 5);
  pack(m, "model.layers.1.self_attn.o_proj.weight", b.wo, {}, 0.5, 6);   // sparse f32, bitmap
  pack(m, "model.layers.1.mlp.down_proj.weight", b.w_down, {}, 0.99, 7);  // very sparse, long rows: CSR is smaller
  pack(m, "model.layers.1.mlp.up_proj.weight", b.w_up, QuantScheme::of(DType::F8E4M3, Granularity::PerChannel, 0, true), 0.3, 8);
  m.history = R"([{"stage":"test"}])";
  return m;
}

void expect_same(const Model& a, const Model& b) {
  testutil::expect_same_weights(a, b);
  ASSERT_EQ(a.compression.size(), b.compression.size());
  for (const auto& [name, wa] : a.compression) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(b.compression.count(name));
    const WeightCompression& wb = b.compression.at(name);
    EXPECT_EQ(wa.scheme, wb.scheme);
    EXPECT_EQ(wa.scales, wb.scales);
    EXPECT_EQ(wa.zeros, wb.zeros);
    EXPECT_EQ(wa.mask, wb.mask);
    ASSERT_EQ(wa.codes.size(), wb.codes.size());
    for (size_t i = 0; i < wa.codes.size(); ++i) {
      if (wa.kept(int64_t(i))) {
        ASSERT_EQ(wa.codes[i], wb.codes[i]) << i;
      }
    }
  }
}

std::string flip(std::string bytes, size_t at) {
  bytes[at] = char(bytes[at] ^ 0x5a);
  return bytes;
}

std::string error_of(const std::string& path) {
  try {
    load_cpk(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(Crc32c, KnownVector) { EXPECT_EQ(crc32c("123456789", 9), 0xE3069283u); }

TEST(Cpk, RoundTripIsExact) {
  testutil::TempDir d;
  const Model m = packed_model();
  for (int level : {0, 3}) {
    CpkWriteOptions o;
    o.zstd_level = level;
    o.provenance_json = R"({"recipe":{"name":"t"}})";
    const std::string p = d / ("m" + std::to_string(level) + ".cpk");
    save_cpk(m, p, o);
    const LoadedModel back = load_cpk(p);
    EXPECT_EQ(back.model.config.dim, m.config.dim);
    EXPECT_EQ(back.model.history, nlohmann::json::parse(m.history).dump());
    expect_same(m, back.model);
    // the sparse forms chose their encodings as documented
    const CpkInfo info = read_cpk_info(p);
    for (const CpkTensorInfo& t : info.tensors) {
      if (t.name == "model.layers.1.mlp.down_proj.weight") {
        EXPECT_EQ(t.sparsity, "csr");
      }
      if (t.name == "model.layers.1.self_attn.o_proj.weight") {
        EXPECT_EQ(t.sparsity, "bitmap");
      }
      if (t.name == "model.layers.0.mlp.down_proj.weight") {
        EXPECT_EQ(t.scheme, "int4 g16 asym");
      }
    }
  }
}

TEST(Cpk, CorruptionFailsClearly) {
  testutil::TempDir d;
  const std::string p = d / "m.cpk";
  save_cpk(packed_model(), p, {});
  const std::string good = testutil::read_file(p);
  const std::string bad = d / "bad.cpk";

  testutil::write_file(bad, good.substr(0, good.size() - 100));
  EXPECT_NE(error_of(bad).find("truncated"), std::string::npos) << error_of(bad);

  testutil::write_file(bad, flip(good, 40));  // inside the JSON header
  EXPECT_NE(error_of(bad).find("header checksum mismatch"), std::string::npos) << error_of(bad);

  testutil::write_file(bad, flip(good, good.size() - 700));  // inside a section
  EXPECT_NE(error_of(bad).find("checksum mismatch in section"), std::string::npos) << error_of(bad);

  std::string v2 = good;
  v2[8] = 2;  // major version 2
  testutil::write_file(bad, v2);
  EXPECT_NE(error_of(bad).find("version 2." + std::to_string(kCpkMinor) + " is not readable"), std::string::npos) << error_of(bad);

  testutil::write_file(bad, "not a checkpoint at all, just text that is long enough");
  EXPECT_NE(error_of(bad).find("not a .cpk file"), std::string::npos) << error_of(bad);
  EXPECT_THROW(load_model(bad), Error);  // .cpk extension without the magic
}

TEST(Cpk, WriteFailureLeavesNothing) {
  testutil::TempDir d;
  Model m = packed_model();
  m.compression["model.layers.9.mlp.up_proj.weight"] = m.compression.begin()->second;  // belongs to no weight
  EXPECT_THROW(save_cpk(m, d / "x.cpk", {}), Error);
  EXPECT_FALSE(std::filesystem::exists(d / "x.cpk"));
}

// The v1 golden file was written by this test with CONDENSE_WRITE_GOLDEN=1
// (format 1.0); it must keep loading to the values of packed_model(), which
// its expectation file records independently of today's code: per tensor the
// sum of the effective values.
TEST(Cpk, GoldenV1KeepsLoading) {
  const std::string dir = std::string(CONDENSE_SOURCE_DIR) + "/tests/golden";
  const std::string file = dir + "/tiny-v1.cpk", expect = dir + "/tiny-v1.expect.json";
  if (std::getenv("CONDENSE_WRITE_GOLDEN")) {
    const Model m = packed_model();
    CpkWriteOptions o;
    o.provenance_json = R"({"note":"golden v1 file for tests/test_cpk.cpp"})";
    save_cpk(m, file, o);
    nlohmann::json e;
    for_each_weight(m, [&](const WeightRef& r) {
      double s = 0;
      for (int64_t i = 0; i < r.tensor->numel(); ++i) s += r.tensor->f32()[i];
      e[r.name] = s;
    });
    std::ofstream(expect) << e.dump(1) << "\n";
  }
  const LoadedModel g = load_cpk(file);
  const nlohmann::json e = nlohmann::json::parse(testutil::read_file(expect));
  int n = 0;
  for_each_weight(g.model, [&](const WeightRef& r) {
    double s = 0;
    for (int64_t i = 0; i < r.tensor->numel(); ++i) s += r.tensor->f32()[i];
    EXPECT_DOUBLE_EQ(s, e.at(r.name).get<double>()) << r.name;
    ++n;
  });
  EXPECT_EQ(n, int(e.size()));
  EXPECT_EQ(g.model.compression.size(), 8u);
  EXPECT_EQ(read_cpk_info(file).major, 1u);
}
