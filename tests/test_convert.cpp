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

namespace {

// Every storage form on some weight: int8 per channel, int8 g16, int4 g16
// sym/asym, fp8 per tensor and per channel, a pruned f32 weight, a pruned int4
// one; per-kv-head int8 KV scales; fp8 static activation scales.
Model every_encoding(uint64_t seed) {
  const testutil::TinyShape shape{.dim = 64, .layers = 2, .heads = 8, .kv = 4, .hd = 8, .ffn = 128, .vocab = 96, .max_seq = 32, .tied = false};
  Model m = random_model(testutil::tiny_config(shape), seed);
  const QuantScheme schemes[] = {QuantScheme::of(DType::I8, Granularity::PerChannel, 0, true), QuantScheme::of(DType::I8, Granularity::Group, 16, true),
                                 QuantScheme::of(DType::I4, Granularity::Group, 16, true), QuantScheme::of(DType::I4, Granularity::Group, 16, false),
                                 QuantScheme::of(DType::F8E4M3, Granularity::PerTensor, 0, true), QuantScheme::of(DType::F8E4M3, Granularity::PerChannel, 0, true),
                                 QuantScheme{}};
  int k = 0;
  for_each_weight(m, [&](const WeightRef& w) {
    if (w.shape.size() != 2) return;
    const QuantScheme& s = schemes[k % 7];
    std::vector<uint64_t> mask;
    if (k % 3 == 0) {
      for (int64_t i = 0; i < w.tensor->numel(); i += 3) w.tensor->f32()[i] = 0;
      mask = mask_from_nonzero(w.tensor->f32(), w.tensor->numel());
    }
    ++k;
    if (s.quantized()) m.compression[w.name] = compress::quantize_rtn(s, w.tensor->f32(), w.shape[0], w.shape[1], mask, w.tensor->f32());
    else if (!mask.empty()) m.compression[w.name] = WeightCompression{.scheme = {}, .scales = {}, .zeros = {}, .codes = {}, .mask = mask};
  });
  m.kv_cache.type = DType::I8;
  m.kv_cache.per_head = true;
  for (int i = 0; i < 2 * 4; ++i) m.kv_cache.k_scales.push_back(0.01f * float(i + 1)), m.kv_cache.v_scales.push_back(0.02f * float(i + 1));
  m.activations.type = DType::F8E4M3;
  for (int i = 0; i < 2 * ActivationQuant::kSites; ++i) m.activations.scales.push_back(0.1f + 0.01f * float(i));
  return m;
}

void expect_same_packed(const Model& a, const Model& b) {
  testutil::expect_same_weights(a, b);
  ASSERT_EQ(a.compression.size(), b.compression.size());
  for (const auto& [name, wa] : a.compression) {
    const WeightCompression& wb = b.compression.at(name);
    EXPECT_EQ(wa.scheme, wb.scheme) << name;
    EXPECT_EQ(wa.codes, wb.codes) << name;
    EXPECT_EQ(wa.scales, wb.scales) << name;
    EXPECT_EQ(wa.zeros, wb.zeros) << name;
    EXPECT_EQ(wa.mask, wb.mask) << name;
  }
  EXPECT_EQ(a.kv_cache.k_scales, b.kv_cache.k_scales);
  EXPECT_EQ(a.kv_cache.v_scales, b.kv_cache.v_scales);
  EXPECT_EQ(a.activations.scales, b.activations.scales);
}

}  // namespace

// --tp N then --merge gives back the same weights, codes, scales, zero points,
// masks and KV/activation scales, for every encoding, for N = 2 and 4; each
// rank holds its heads' rows of q/k/v, its columns of o, its vocabulary rows.
TEST(ConvertTp, SplitThenMergeIsBitExactForEveryEncoding) {
  testutil::TempDir dir;
  const Model m = every_encoding(12);
  save_cpk(m, dir / "m.cpk", {});
  const Model saved = load_cpk(dir / "m.cpk").model;
  for (int n : {2, 4}) {
    const std::string tp = dir / ("tp" + std::to_string(n));
    pipeline::ConvertOptions o;
    o.to = "cpk";
    o.out = tp;
    o.tp = n;
    pipeline::convert_model(dir / "m.cpk", o);
    const auto man = nlohmann::json::parse(testutil::read_file(tp + "/tp.json"));
    ASSERT_EQ(man["ranks"].size(), size_t(n));
    EXPECT_EQ(man["split"]["model.layers.0.self_attn.o_proj.weight"], "cols");
    EXPECT_EQ(man["split"]["model.layers.0.self_attn.k_proj.weight"], "rows");
    EXPECT_EQ(man["split"]["model.norm.weight"], "replicated");
    // rank 1's slices, checked against the full model directly
    const Model r1 = load_cpk(tp + "/" + man["ranks"][1].get<std::string>()).model;
    EXPECT_EQ(r1.config.n_heads, 8 / n);
    EXPECT_EQ(r1.config.n_kv_heads, 4 / n);
    const int64_t qrows = 64 / n, ocols = 64 / n;
    for (int64_t i = 0; i < qrows * 64; ++i) ASSERT_EQ(r1.layers[0].wq.f32()[i], saved.layers[0].wq.f32()[qrows * 64 + i]);
    for (int64_t r = 0; r < 64; ++r) {
      for (int64_t c = 0; c < ocols; ++c) ASSERT_EQ(r1.layers[1].wo.f32()[r * ocols + c], saved.layers[1].wo.f32()[r * 64 + ocols + c]);
    }
    for (int64_t i = 0; i < (96 / n) * 64; ++i) ASSERT_EQ(r1.lm_head.f32()[i], saved.lm_head.f32()[(96 / n) * 64 + i]);
    o.tp = 0;
    o.merge = true;
    o.out = dir / "merged.cpk";
    pipeline::convert_model(tp, o);
    expect_same_packed(saved, load_cpk(dir / "merged.cpk").model);
  }
}

TEST(ConvertTp, SplitsThatDoNotDivideAreRefusedNamingWhy) {
  testutil::TempDir dir;
  save_cpk(every_encoding(13), dir / "m.cpk", {});
  pipeline::ConvertOptions o;
  o.to = "cpk";
  o.out = dir / "tp";
  o.tp = 3;
  expect_error([&] { pipeline::convert_model(dir / "m.cpk", o); }, {"n_heads = 8", "3 equal parts"});
  o.tp = 8;  // 8 query heads but 4 kv heads: a GQA group would straddle ranks
  expect_error([&] { pipeline::convert_model(dir / "m.cpk", o); }, {"n_kv_heads", "GQA"});
  // o_proj's 64 columns in int4 groups of 32 split 4 ways: 16 columns per rank
  Model g = random_model(testutil::tiny_config({.dim = 64, .layers = 1, .heads = 4, .kv = 4, .hd = 16, .ffn = 128, .vocab = 96, .max_seq = 32}), 1);
  g.compression["model.layers.0.self_attn.o_proj.weight"] =
      compress::quantize_rtn(QuantScheme::of(DType::I4, Granularity::Group, 32), g.layers[0].wo.f32(), 64, 64, {}, g.layers[0].wo.f32());
  save_cpk(g, dir / "g.cpk", {});
  o.tp = 4;
  expect_error([&] { pipeline::convert_model(dir / "g.cpk", o); }, {"o_proj", "cuts its quantization groups of 32"});
  o.to = "gguf";
  o.tp = 2;
  expect_error([&] { pipeline::convert_model(dir / "g.cpk", o); }, {"--tp", "--to cpk"});
  EXPECT_FALSE(fs::exists(dir / "tp"));
}
