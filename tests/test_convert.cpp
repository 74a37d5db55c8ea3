// `condense convert`: .cpk <-> GGUF round trips keep the codes bit for bit
// where the encodings map, GGUF files decode (independently, from the published
// layouts) to the model's values with q/k rows in llama.cpp's order, explicit
// types report what re-quantization cost, and bad requests fail cleanly.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "compress/rtn.h"
#include "io/cpk.h"
#include "io/ggml_quants.h"
#include "io/gguf.h"
#include "io/model_loader.h"
#include "model/shapes.h"
#include "pipeline/convert.h"
#include "tests/ggml_reference.h"
#include "tests/test_util.h"
#include "tests/tiny_model.h"

using namespace condense;
namespace fs = std::filesystem;
using testutil::expect_error;

namespace {

// Block linears in int8 g32 (q, k), int4 g32 (v, o, gate, up) and int4 g32
// asymmetric (down: zero points ggml cannot hold); effective values set.
Model quantized_model(const testutil::TinyShape& shape, uint64_t seed) {
  Model m = random_model(testutil::tiny_config(shape), seed);
  for_each_weight(m, [&](const WeightRef& w) {
    if (w.kind != WeightKind::Linear) return;
    const bool q8 = w.name.find("q_proj") != std::string::npos || w.name.find("k_proj") != std::string::npos;
    const bool asym = w.name.find("down_proj") != std::string::npos;
    const QuantScheme s = QuantScheme::of(q8 ? DType::I8 : DType::I4, Granularity::Group, 32, !asym);
    const int64_t rows = w.shape[0], cols = w.shape[1];
    m.compression[w.name] = compress::quantize_rtn(s, w.tensor->f32(), rows, cols, {}, w.tensor->f32());
  });
  return m;
}

const testutil::TinyShape kShape{.dim = 64, .layers = 2, .heads = 4, .kv = 2, .hd = 16, .ffn = 96, .vocab = 80, .max_seq = 32, .tied = false};

}  // namespace

// .cpk -> GGUF (auto: Q8_0 / Q4_0 where the codes map, F32 elsewhere) -> .cpk:
// the mapped weights come back with the same scheme, codes and scales, every
// weight with the same values.
TEST(ConvertGguf, CpkToGgufToCpkIsBitExact) {
  testutil::TempDir dir;
  save_cpk(quantized_model(kShape, 3), dir / "a.cpk", {});
  LoadedModel a = load_cpk(dir / "a.cpk");
  const std::vector<GgufTensorPlan> plan = save_gguf(a.model, dir / "a.gguf", {});
  int q8 = 0, q4 = 0;
  for (const GgufTensorPlan& p : plan) {
    EXPECT_EQ(p.how, "exact") << p.name;
    EXPECT_EQ(p.max_abs_err, 0.0) << p.name;
    q8 += p.type == ggml::Q8_0;
    q4 += p.type == ggml::Q4_0;
    if (p.name.find("down_proj") != std::string::npos) {
      EXPECT_EQ(p.type, uint32_t(ggml::F32)) << "asymmetric zero points map onto no ggml type";
      EXPECT_NE(p.note.find("map onto no ggml type"), std::string::npos) << p.note;
    }
  }
  EXPECT_EQ(q8, 2 * 2);
  EXPECT_EQ(q4, 2 * 4);
  pipeline::ConvertOptions opt;
  opt.to = "cpk";
  opt.out = dir / "b.cpk";
  pipeline::convert_model(dir / "a.gguf", opt);
  LoadedModel b = load_cpk(dir / "b.cpk");
  testutil::expect_same_weights(a.model, b.model);
  for (const auto& [name, wa] : a.model.compression) {
    if (name.find("down_proj") != std::string::npos) {
      EXPECT_FALSE(b.model.compression.count(name)) << name;
      continue;
    }
    ASSERT_TRUE(b.model.compression.count(name)) << name;
    const WeightCompression& wb = b.model.compression.at(name);
    EXPECT_EQ(wb.scheme, wa.scheme) << name;
    EXPECT_EQ(wb.codes, wa.codes) << name;
    EXPECT_EQ(wb.scales, wa.scales) << name;
  }
}

// The file itself, read by the test's own GGUF reader and block decoders:
// every tensor equals the model's values, q/k rows in llama.cpp's interleaved
// order (row h*hd + 2i + j holds canonical row h*hd + j*hd/2 + i).
TEST(ConvertGguf, FileDecodesIndependentlyWithLlamaCppRopeRows) {
  testutil::TempDir dir;
  const Model m = quantized_model(kShape, 5);
  for (int type : {-1, int(ggml::Q8_0), int(ggml::Q4_1)}) {
    GgufWriteOptions g;
    g.type = type;
    const std::vector<GgufTensorPlan> plan = save_gguf(m, dir / "m.gguf", g);
    const std::string bytes = testutil::read_file(dir / "m.gguf");
    const auto table = ggmlref::gguf_tensors(bytes);
    ASSERT_EQ(table.size(), plan.size());
    for (const GgufTensorPlan& p : plan) {
      const ggmlref::TensorEntry& e = table.at(p.gguf_name);
      EXPECT_EQ(e.type, p.type) << p.gguf_name;
      const std::vector<double> got = ggmlref::decode_tensor(bytes, e);
      const Tensor* t = nullptr;
      for_each_weight(m, [&](const WeightRef& w) { if (w.name == p.name) t = w.tensor; });
      const int64_t cols = p.shape.back(), rows = int64_t(got.size()) / cols;
      const bool q = p.gguf_name.find("attn_q.weight") != std::string::npos, k = p.gguf_name.find("attn_k.weight") != std::string::npos;
      double e2 = 0, r2 = 0;
      for (int64_t r = 0; r < rows; ++r) {
        int64_t src = r;
        if (q || k) {
          const int64_t hd = kShape.hd, h = r / hd, i = (r % hd) / 2, j = r % 2;
          src = h * hd + j * (hd / 2) + i;
        }
        for (int64_t c = 0; c < cols; ++c) {
          const double want = t->f32()[src * cols + c], d = got[size_t(r * cols + c)] - want;
          if (p.how == "exact") {
            ASSERT_EQ(d, 0.0) << p.gguf_name << " row " << r;
          }
          e2 += d * d;
          r2 += want * want;
        }
      }
      // the writer's own error report matches the independent decode (float32 vs float64 sums)
      EXPECT_NEAR(p.rel_rmse, std::sqrt(e2 / r2), 1e-5 + 1e-4 * p.rel_rmse) << p.gguf_name;
    }
  }
}

// Explicit types: weights whose codes do not map are re-quantized (error
// reported per tensor); rows that are not whole blocks fall back as llama.cpp
// does, named in the plan; reading the file back gives the decoded values.
TEST(ConvertGguf, ExplicitTypesFallBackAndReportTheirCost) {
  testutil::TempDir dir;
  const testutil::TinyShape shape{.dim = 256, .layers = 1, .heads = 4, .kv = 2, .hd = 64, .ffn = 96, .vocab = 40, .max_seq = 32, .tied = true};
  const Model m = random_model(testutil::tiny_config(shape), 8);
  for (uint32_t t : {ggml::Q4_K, ggml::Q6_K, ggml::Q4_0, ggml::Q8_0, ggml::F16, ggml::BF16}) {
    GgufWriteOptions g;
    g.type = int(t);
    const std::vector<GgufTensorPlan> plan = save_gguf(m, dir / "m.gguf", g);
    const GgufModel back = load_gguf_model(dir / "m.gguf");
    for (const GgufTensorPlan& p : plan) {
      if (p.shape.size() == 1) {
        EXPECT_EQ(p.type, uint32_t(ggml::F32));
        continue;
      }
      if (p.name.find("down_proj") != std::string::npos) {  // rows of 96: no 256-element blocks
        const uint32_t want = t == ggml::Q4_K ? ggml::Q4_1 : t == ggml::Q6_K ? ggml::Q8_0 : t;
        EXPECT_EQ(p.type, want) << ggml::type_name(t);
        if (want != t) {
          EXPECT_NE(p.note.find("not a multiple of " + std::string(ggml::type_name(t))), std::string::npos) << p.note;
        }
      } else {
        EXPECT_EQ(p.type, t) << p.name;
        EXPECT_TRUE(p.note.empty()) << p.note;
      }
      EXPECT_EQ(p.how, "re-quantized") << p.name;
      EXPECT_GT(p.rel_rmse, 0.0) << p.name;
      EXPECT_LT(p.rel_rmse, t == ggml::Q4_K || t == ggml::Q4_0 ? 0.2 : 0.05) << p.name << " " << ggml::type_name(t);
    }
    // what the loader reads is what the file holds: the model's values within the reported error
    for_each_weight(m, [&](const WeightRef& w) {
      if (w.shape.size() != 2) return;
      const Tensor* bt = nullptr;
      for_each_weight(back.model, [&](const WeightRef& x) { if (x.name == w.name) bt = x.tensor; });
      double e2 = 0, r2 = 0;
      for (int64_t i = 0; i < w.tensor->numel(); ++i) {
        const double d = double(bt->f32()[i]) - w.tensor->f32()[i];
        e2 += d * d;
        r2 += double(w.tensor->f32()[i]) * w.tensor->f32()[i];
      }
      for (const GgufTensorPlan& p : plan) {
        if (p.name == w.name) {
          EXPECT_NEAR(std::sqrt(e2 / r2), p.rel_rmse, 1e-5 + 1e-4 * p.rel_rmse) << w.name;
        }
      }
    });
  }
}

TEST(ConvertGguf, BadFilesAndRequestsFailNamingTheTensor) {
  testutil::TempDir dir;
  const Model m = quantized_model(kShape, 6);
  GgufWriteOptions g;
  g.type = ggml::Q8_0;
  save_gguf(m, dir / "m.gguf", g);
  const std::string good = testutil::read_file(dir / "m.gguf");
  const auto table = ggmlref::gguf_tensors(good);
  // a NaN block scale
  std::string nan = good;
  const uint64_t at = table.at("blk.1.ffn_up.weight").offset + 3 * 34;
  nan[at] = char(0x00);
  nan[at + 1] = char(0x7e);
  testutil::write_file(dir / "nan.gguf", nan);
  expect_error([&] { load_model(dir / "nan.gguf"); }, {"nan.gguf", "blk.1.ffn_up.weight", "non-finite", "block 3"});
  // a type condense does not read (Q5_0 = 6 has Q8_0's block of 32 but 22 bytes, so the data layout breaks first:
  // use IQ4_NL = 20, 18 bytes like Q4_0, on a tensor written as Q4_0)
  GgufWriteOptions g4;
  g4.type = ggml::Q4_0;
  save_gguf(m, dir / "q4.gguf", g4);
  std::string iq = testutil::read_file(dir / "q4.gguf");
  const std::string name = "blk.0.attn_v.weight";
  const size_t info = iq.find(name, 24);
  ASSERT_NE(info, std::string::npos);
  iq[info + name.size() + 4 + 2 * 8] = 20;
  testutil::write_file(dir / "iq.gguf", iq);
  expect_error([&] { load_model(dir / "iq.gguf"); }, {"iq.gguf", name, "IQ4_NL", "not read yet"});
  pipeline::ConvertOptions opt;
  opt.to = "gguf";
  opt.out = dir / "x.gguf";
  opt.gguf_type = "q5_0";
  expect_error([&] { pipeline::convert_model(dir / "m.gguf", opt); }, {"q5_0", "q4_k"});
  opt.gguf_type = "auto";
  opt.to = "onnx";
  expect_error([&] { pipeline::convert_model(dir / "m.gguf", opt); }, {"onnx", "compressed-tensors"});
  opt.to = "gguf";
  opt.out = dir / "m.gguf";
  expect_error([&] { pipeline::convert_model(dir / "m.gguf", opt); }, {"is the input itself"});
  EXPECT_FALSE(fs::exists(dir / "x.gguf"));
}

// The command: --dry-run lists every tensor and writes nothing; a write that
// fails leaves nothing behind; --json carries the plan.
TEST(ConvertCli, DryRunWritesNothingAndFailuresLeaveNothing) {
  testutil::TempDir dir;
  save_cpk(quantized_model(kShape, 7), dir / "m.cpk", {});
  const std::string bin = CONDENSE_BIN;
  auto dry = testutil::run_command(bin + " convert " + (dir / "m.cpk") + " --to gguf --type q4_k --out " + (dir / "o.gguf") + " --dry-run --json");
  ASSERT_EQ(dry.status, 0) << dry.output;
  EXPECT_FALSE(fs::exists(dir / "o.gguf"));
  const auto j = nlohmann::json::parse(dry.output.substr(dry.output.find('{')));
  EXPECT_EQ(j["tensors"].size(), 2u * 9 + 3);
  bool fallback = false;
  for (const auto& t : j["tensors"]) fallback = fallback || (t.contains("note") && t["note"].get<std::string>().find("Q4_1 instead") != std::string::npos);
  EXPECT_TRUE(fallback) << "rows of 64 / 96 do not make 256-element blocks";
  testutil::write_file(dir / "file", "x");
  auto bad = testutil::run_command(bin + " convert " + (dir / "m.cpk") + " --to gguf --out " + (dir / "file") + "/o.gguf");
  EXPECT_NE(bad.status, 0);
  EXPECT_FALSE(fs::exists(dir / "file/o.gguf"));
  auto hf = testutil::run_command(bin + " convert " + (dir / "m.cpk") + " --to hf --dtype f32 --out " + (dir / "hf"));
  ASSERT_EQ(hf.status, 0) << hf.output;
  EXPECT_NE(hf.output.find("dequantized"), std::string::npos) << hf.output;
  // HF out -> HF in: the dequantized weights exactly (f32)
  LoadedModel a = load_model(dir / "m.cpk"), b = load_model(dir / "hf");
  a.model.compression.clear();
  testutil::expect_same_weights(a.model, b.model);
  for (const auto& e : fs::directory_iterator(dir.path)) EXPECT_EQ(e.path().string().find(".tmp."), std::string::npos) << e.path();
}
