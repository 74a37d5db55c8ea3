// `condense convert` on the real stories260K: GGUF exports read back by
// condense score the text as the .cpk they came from (codes copied) or with
// the re-quantization cost the conversion reports; GGUF -> .cpk keeps the codes.
#include <gtest/gtest.h>

#include <map>
#include <nlohmann/json.hpp>

#include "compress/rtn.h"
#include "io/cpk.h"
#include "io/gguf.h"
#include "model/shapes.h"
#include "io/model_loader.h"
#include "pipeline/convert.h"
#include "tests/test_util.h"
#include "tests/tiny_model.h"

using namespace condense;

namespace {

const char* kBin = "models/stories260K/stories260K.bin";
const char* kTok = "models/stories260K/tok512.bin";
const char* kText = "text/tinystories/tinystories_valid_head.txt";

// stories260K with every block linear in `scheme` (RTN), as a .cpk with its tokenizer.
void write_quantized(const QuantScheme& scheme, const std::string& path) {
  LoadedModel lm = load_model(testutil::data(kBin), testutil::data(kTok));
  for_each_weight(lm.model, [&](const WeightRef& w) {
    if (w.kind != WeightKind::Linear) return;
    lm.model.compression[w.name] = compress::quantize_rtn(scheme, w.tensor->f32(), w.shape[0], w.shape[1], {}, w.tensor->f32());
  });
  CpkWriteOptions o;
  o.tokenizer_path = testutil::data(kTok);
  save_cpk(lm.model, path, o);
}

nlohmann::json convert(const std::string& in, const std::string& to, const std::string& out, const std::string& type = "auto") {
  pipeline::ConvertOptions o;
  o.to = to;
  o.out = out;
  o.gguf_type = type;
  o.hf_dtype = "f32";
  o.text = testutil::data(kText);
  o.ctx = 128;
  o.max_windows = 24;
  return pipeline::convert_model(in, o);
}

}  // namespace

// Codes copied (int8 / int4 g32 -> Q8_0 / Q4_0): the values are the .cpk's; the
// rows of 172 (ffn down) have a short last group no ggml block holds and go
// out as F32, exact too, but then run on the f32 kernel instead of the int
// one, so the scores agree to float rounding (KL < 1e-6, |dPPL| < 0.01%).
TEST(RealConvert, GgufOfACpkScoresAsTheCpk) {
  REQUIRE_DATA(kBin);
  testutil::TempDir dir;
  for (DType t : {DType::I8, DType::I4}) {
    write_quantized(QuantScheme::of(t, Granularity::Group, 32), dir / "m.cpk");
    const auto r = convert(dir / "m.cpk", "gguf", dir / "m.gguf");
    for (const auto& x : r["tensors"]) EXPECT_EQ(x["how"], "exact") << x["name"];
    EXPECT_TRUE(r["notes"].empty()) << r["notes"];  // the tokenizer went in
    const auto& q = r["quality"];
    EXPECT_LT(std::abs(q["delta_ppl_pct"].get<double>()), 0.01) << q;
    EXPECT_LT(q["kl_mean"].get<double>(), 1e-6) << q;
    EXPECT_GT(q["top1_agreement"].get<double>(), 0.999) << q;
    // and back to a .cpk: the GGUF's codes kept, so the scores are identical
    const auto back = convert(dir / "m.gguf", "cpk", dir / "back.cpk");
    EXPECT_EQ(back["quality"]["kl_mean"].get<double>(), 0.0) << back["quality"];
    EXPECT_EQ(back["quality"]["delta_ppl_pct"].get<double>(), 0.0) << back["quality"];
    const LoadedModel b = load_model(dir / "back.cpk");
    EXPECT_EQ(b.model.compression.at("model.layers.2.self_attn.q_proj.weight").scheme, QuantScheme::of(t, Granularity::Group, 32));
  }
}

// Re-quantization from f32: the cost is reported per tensor and measured on the
// text, and it orders by precision (Q8_0 below Q4_0). stories260K's rows (64
// and 172) make no 256-element block: Q6_K falls back, named per tensor.
TEST(RealConvert, RequantizedExportsReportTheirCost) {
  REQUIRE_DATA(kBin);
  testutil::TempDir dir;
  std::map<std::string, double> kl;
  for (const char* type : {"q8_0", "q4_0", "q6_k"}) {
    const auto r = convert(testutil::data(kBin), "gguf", dir / "m.gguf", type);
    int requant = 0, fallback = 0;
    for (const auto& x : r["tensors"]) {
      if (x["how"] == "re-quantized") {
        ++requant;
        EXPECT_GT(x["rel_rmse"].get<double>(), 0.0);
      }
      fallback += x.contains("note") && x["note"].get<std::string>().find(" instead") != std::string::npos;
    }
    EXPECT_EQ(requant, 5 * 7 + 1) << type;  // every 2-D weight: 7 per layer and the tied embedding
    EXPECT_EQ(fallback, std::string(type) == "q6_k" ? 5 * 7 + 1 : 5) << type;  // q8_0 / q4_0: the 172-wide down projections (F16)
    kl[type] = r["quality"]["kl_mean"].get<double>();
    EXPECT_GT(kl[type], 0.0) << type;
  }
  EXPECT_LT(kl["q8_0"], kl["q4_0"]);
}

// compressed-tensors (vLLM) exports of int4 g32 (sym and asym) and int8 per
// channel, read back by condense: the quantized linears keep their codes; the
// 172-wide down projections go out dense (f32 here: exact) and run on the f32
// kernel, so the scores agree to float rounding.
TEST(RealConvert, CompressedTensorsOfACpkScoresAsTheCpk) {
  REQUIRE_DATA(kBin);
  testutil::TempDir dir;
  for (const QuantScheme& s : {QuantScheme::of(DType::I4, Granularity::Group, 32, true), QuantScheme::of(DType::I4, Granularity::Group, 32, false),
                               QuantScheme::of(DType::I8, Granularity::PerChannel, 0, true)}) {
    write_quantized(s, dir / "m.cpk");
    const auto r = convert(dir / "m.cpk", "compressed-tensors", dir / "ct");
    const auto& q = r["quality"];
    EXPECT_LT(std::abs(q["delta_ppl_pct"].get<double>()), 0.01) << s.describe() << q;
    EXPECT_LT(q["kl_mean"].get<double>(), 1e-6) << s.describe() << q;
    const LoadedModel b = load_model(dir / "ct");
    EXPECT_EQ(b.model.compression.at("model.layers.3.mlp.up_proj.weight").scheme, s);
    // per channel holds the 172-wide rows too: nothing dense there
    EXPECT_EQ(b.model.compression.count("model.layers.3.mlp.down_proj.weight"), s.granularity == Granularity::PerChannel ? 1u : 0u);
  }
}

// --to hf of the real stories260K writes a tokenizer.json (from its llama2.c
// tokenizer) that condense's Hugging Face tokenizer reader encodes the whole
// validation text with exactly as the llama2.c tokenizer does, and decodes back.
TEST(RealConvert, HfExportCarriesAnEquivalentTokenizerJson) {
  REQUIRE_DATA(kBin);
  testutil::TempDir dir;
  pipeline::ConvertOptions o;
  o.to = "hf";
  o.out = dir / "hf";
  o.tokenizer = testutil::data(kTok);
  o.hf_dtype = "f32";
  pipeline::convert_model(testutil::data(kBin), o);
  const LoadedModel a = load_model(testutil::data(kBin), testutil::data(kTok));
  const LoadedModel b = load_model(dir / "hf");
  ASSERT_TRUE(b.tokenizer);
  EXPECT_EQ(b.tokenizer->kind().find("hf"), 0u) << b.tokenizer->kind();
  const std::string text = testutil::read_file(testutil::data(kText));
  const std::vector<int> ia = a.tokenizer->encode(text), ib = b.tokenizer->encode(text);
  ASSERT_EQ(ia.size(), ib.size());
  size_t first = 0;
  while (first < ia.size() && ia[first] == ib[first]) ++first;
  EXPECT_EQ(first, ia.size()) << "first difference at token " << first << " of " << ia.size();
  std::string back;
  for (size_t i = 0; i < std::min<size_t>(ib.size(), 400); ++i) back += b.tokenizer->decode_token(i ? ib[i - 1] : 1, ib[i]);
  std::string want;
  for (size_t i = 0; i < std::min<size_t>(ia.size(), 400); ++i) want += a.tokenizer->decode_token(i ? ia[i - 1] : 1, ia[i]);
  EXPECT_EQ(back, want);
  testutil::expect_same_weights(a.model, b.model);
}

// A SentencePiece BPE tokenizer.model (Llama 2's 32k one) embedded in GGUF as
// the "llama" vocabulary: read back, it encodes the validation text (line by
// line) exactly as libsentencepiece does.
TEST(RealConvert, GgufEmbedsASentencePieceTokenizer) {
  const char* kSp = "models/llama2c-tokenizer-32k/tokenizer.model";
  REQUIRE_DATA(kSp);
  testutil::TempDir dir;
  const auto sp = load_tokenizer_file(testutil::data(kSp));
  const Model m = random_model(testutil::tiny_config({.dim = 32, .layers = 1, .heads = 4, .kv = 2, .hd = 8, .ffn = 64, .vocab = 32000, .max_seq = 64}), 3);
  GgufWriteOptions o;
  o.tokenizer = sp.get();
  save_gguf(m, dir / "m.gguf", o);
  const GgufModel g = load_gguf_model(dir / "m.gguf");
  ASSERT_TRUE(g.tokenizer) << g.tokenizer_note;
  const std::string text = testutil::read_file(testutil::data(kText)).substr(0, 30000);
  size_t lines = 0, start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    const std::string line = text.substr(start, end - start);
    start = end + 1;
    if (line.empty()) continue;
    ASSERT_EQ(g.tokenizer->encode(line), sp->encode(line)) << line;
    ++lines;
  }
  EXPECT_GT(lines, 100u);
}
