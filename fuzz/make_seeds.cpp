// Seed corpora for the fuzz targets, written by condense itself from small
// models and tokenizers it makes (no file copied from anywhere):
//   make_seeds OUT_DIR SOURCE_DIR
// writes OUT_DIR/<target>/<seed> for every target in fuzz/; SOURCE_DIR is the
// repository (its recipes/ are condense's own recipe files).
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "compress/rtn.h"
#include "core/error.h"
#include "io/cpk.h"
#include "io/ggml_quants.h"
#include "io/gguf.h"
#include "io/hf_model.h"
#include "io/llama2c.h"
#include "io/safetensors.h"
#include "io/train_state.h"
#include "model/shapes.h"
#include "model/text_codec.h"
#include "model/tokenizer_llama2c.h"
#include "pipeline/convert.h"
#include "train/tokenizer_training.h"

namespace fs = std::filesystem;
using namespace condense;
using nlohmann::json;

namespace {

fs::path out_root;

void put(const std::string& target, const std::string& name, const std::string& bytes) {
  fs::create_directories(out_root / target);
  std::ofstream f(out_root / target / name, std::ios::binary);
  f << bytes;
}

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

// A file written by one of condense's writers, read back as the seed.
template <typename Write>
void put_written(const std::string& target, const std::string& name, Write write) {
  const fs::path tmp = out_root / ".tmp" / name;
  fs::create_directories(tmp.parent_path());
  write(tmp.string());
  put(target, name, slurp(tmp));
}

ModelConfig config(int vocab, bool tied, bool bias) {
  ModelConfig c;
  c.dim = 16, c.n_layers = 2, c.n_heads = 4, c.n_kv_heads = 2, c.head_dim = 4, c.ffn_dim = 24, c.vocab = vocab, c.max_seq = 16;
  c.tied_embeddings = tied;
  c.qkv_bias = bias;
  c.validate("seed");
  return c;
}

// 3 specials, the 256 byte pieces, then a few words: a llama-style vocabulary.
Llama2cTokenizer small_tokenizer(int vocab) {
  std::vector<std::string> pieces = {"<unk>", "<s>", "</s>"};
  for (int b = 0; b < 256; ++b) pieces.push_back(text::byte_piece(b));
  const char* words[] = {" the", " a", " once", " upon", " time", "on", "ce", " t", "he"};
  for (int i = 0; int(pieces.size()) < vocab; ++i) pieces.push_back(std::string(words[i % 9]) + (i >= 9 ? std::to_string(i) : ""));
  std::vector<float> scores(pieces.size());
  for (size_t i = 0; i < scores.size(); ++i) scores[i] = -float(i);
  return Llama2cTokenizer(pieces, scores);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: make_seeds OUT_DIR SOURCE_DIR\n");
    return 2;
  }
  out_root = argv[1];
  const fs::path src = argv[2];
  try {
    fs::remove_all(out_root);
    const Model tied = random_model(config(268, true, false), 1), untied = random_model(config(268, false, true), 2);
    const Llama2cTokenizer tok = small_tokenizer(268);

    put_written("llama2c", "tied.bin", [&](const std::string& p) { save_llama2c(tied, p); });
    put_written("llama2c", "untied.bin", [&](const std::string& p) {
      Model m = random_model(config(268, false, false), 3);
      save_llama2c(m, p);
    });
    put_written("llama2c_tokenizer", "tok268.bin", [&](const std::string& p) { save_llama2c_tokenizer(tok, p); });

    put_written("safetensors", "f32.safetensors", [&](const std::string& p) {
      save_safetensors(p, {{"a", tied.embed}, {"b", tied.final_norm}}, {{"format", "pt"}});
    });
    put_written("safetensors", "bf16.safetensors", [&](const std::string& p) {
      save_safetensors(p, {{"w", tied.layers[0].wq.to(DType::BF16)}, {"h", tied.layers[0].wk.to(DType::F16)}});
    });
    put("hf_config", "tied.json", hf_config_json(tied.config, "float32"));
    put("hf_config", "qwen2.json", hf_config_json(untied.config, "bfloat16"));

    put_written("gguf", "f32-tok.gguf", [&](const std::string& p) { save_gguf_model(tied, &tok, p, DType::F32); });
    put_written("gguf", "f16.gguf", [&](const std::string& p) { save_gguf_model(random_model(config(268, false, false), 4), nullptr, p, DType::F16); });
    // Quantized GGUF: rows of 32 (Q8_0 / Q4_0 / Q4_1 blocks) and of 256 (Q4_K / Q6_K), fallbacks mixed in.
    {
      ModelConfig wide = config(268, true, false);
      wide.dim = 256, wide.n_layers = 1, wide.n_heads = 4, wide.n_kv_heads = 2, wide.head_dim = 64, wide.ffn_dim = 96;
      const Model w = random_model(wide, 5);
      ModelConfig narrow = config(268, true, false);
      narrow.dim = 32, narrow.head_dim = 8, narrow.ffn_dim = 64;
      const Model n = random_model(narrow, 6);
      for (uint32_t t : {ggml::Q8_0, ggml::Q4_0, ggml::Q4_1}) {
        GgufWriteOptions o;
        o.type = int(t);
        o.tokenizer = &tok;
        put_written("gguf", std::string(ggml::type_name(t)) + ".gguf", [&](const std::string& p) { save_gguf(n, p, o); });
      }
      for (uint32_t t : {ggml::Q4_K, ggml::Q6_K}) {
        GgufWriteOptions o;
        o.type = int(t);
        put_written("gguf", std::string(ggml::type_name(t)) + ".gguf", [&](const std::string& p) { save_gguf(w, p, o); });
      }
    }

    // tokenizer.json: byte-level BPE (GPT-2 style) and SentencePiece-style with byte fallback.
    {
      json vocab = json::object();
      int next = 256;
      for (int b = 0; b < 256; ++b) {
        const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
        vocab[text::utf8_encode(printable ? uint32_t(b) : uint32_t(next++))] = b;
      }
      const std::vector<std::pair<std::string, std::string>> merges = {{"\xc4\xa0", "t"}, {"h", "e"}, {"\xc4\xa0t", "he"}, {"a", "b"}};
      json m = json::array();
      for (const auto& [a, b] : merges) {
        vocab[a + b] = int(vocab.size());
        m.push_back(a + " " + b);
      }
      put("tokenizer_json", "bytelevel.json",
          json({{"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", m}}},
                {"added_tokens", {{{"id", int(vocab.size())}, {"content", "<|end|>"}, {"special", true}}}},
                {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
                {"decoder", {{"type", "ByteLevel"}}}})
              .dump());
      json sp = json::object();
      sp["<unk>"] = 0, sp["<s>"] = 1, sp["</s>"] = 2;
      for (int b = 0; b < 256; ++b) sp[text::byte_piece(b)] = 3 + b;
      for (const char* w : {"\xe2\x96\x81", "o", "n", "c", "e", "\xe2\x96\x81o", "nc", "nce", "\xe2\x96\x81once"}) sp[w] = int(sp.size());
      put("tokenizer_json", "sentencepiece.json",
          json({{"model", {{"type", "BPE"}, {"vocab", sp}, {"merges", {"\xe2\x96\x81 o", "n c", "nc e", "\xe2\x96\x81o nce"}}, {"byte_fallback", true},
                           {"unk_token", "<unk>"}}},
                {"normalizer", {{"type", "Sequence"}, {"normalizers", {{{"type", "Prepend"}, {"prepend", "\xe2\x96\x81"}},
                                                                        {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\xe2\x96\x81"}}}}}},
                {"decoder", {{"type", "Sequence"}, {"decoders", {{{"type", "Replace"}, {"pattern", {{"String", "\xe2\x96\x81"}}}, {"content", " "}},
                                                                 {{"type", "ByteFallback"}}, {{"type", "Fuse"}},
                                                                 {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}}}})
              .dump());
    }

    // SentencePiece: learned here from generated text.
    {
      const fs::path text = out_root / ".tmp" / "text.txt";
      std::mt19937 g(7);
      const char* words[] = {"sun", "moon", "star", "sky", "sea", "wave", "once", "upon", "a", "time"};
      std::string t;
      for (int i = 0; i < 3000; ++i) t += std::string(words[g() % 10]) + (i % 9 == 8 ? ".\n" : " ");
      std::ofstream(text) << t;
      for (int v : {280, 320}) {
        train::TokenizerTraining o;
        o.vocab = v;
        put("sentencepiece", "sp" + std::to_string(v) + ".model", train::train_tokenizer({text.string()}, o));
      }
    }

    // .cpk: every storage form, zstd and not, with KV and activation scales and an embedded tokenizer.
    {
      Model m = untied;
      auto pack = [&](const std::string& name, Tensor& t, const QuantScheme& s, bool prune) {
        const int64_t rows = t.dim(0), cols = t.dim(1);
        std::vector<uint64_t> mask;
        if (prune) {
          for (int64_t i = 0; i < rows * cols; i += 2) t.f32()[i] = 0;
          mask = mask_from_nonzero(t.f32(), rows * cols);
        }
        if (s.quantized()) m.compression[name] = compress::quantize_rtn(s, t.f32(), rows, cols, mask, t.f32());
        else {
          WeightCompression wc;
          wc.mask = mask;
          m.compression[name] = wc;
        }
      };
      LayerWeights& a = m.layers[0];
      pack("model.layers.0.self_attn.q_proj.weight", a.wq, QuantScheme::of(DType::I8, Granularity::PerChannel, 0, true), false);
      pack("model.layers.0.self_attn.k_proj.weight", a.wk, QuantScheme::of(DType::I8, Granularity::PerChannel, 0, false), false);
      pack("model.layers.0.mlp.down_proj.weight", a.w_down, QuantScheme::of(DType::I4, Granularity::Group, 8, false), false);
      pack("model.layers.0.mlp.up_proj.weight", a.w_up, QuantScheme::of(DType::I4, Granularity::Group, 8, true), true);
      pack("model.layers.0.mlp.gate_proj.weight", a.w_gate, QuantScheme::of(DType::F8E4M3, Granularity::PerTensor, 0, true), false);
      pack("model.layers.1.self_attn.o_proj.weight", m.layers[1].wo, {}, true);
      m.kv_cache.type = DType::I8;
      m.kv_cache.per_head = true;
      m.kv_cache.k_scales.assign(size_t(m.config.n_layers * m.config.n_kv_heads), 0.05f);
      m.kv_cache.v_scales.assign(size_t(m.config.n_layers * m.config.n_kv_heads), 0.07f);
      m.activations.type = DType::I8;
      const fs::path tokp = out_root / ".tmp" / "tok268.bin";
      save_llama2c_tokenizer(tok, tokp.string());
      CpkWriteOptions raw, zstd;
      raw.tokenizer_path = tokp.string();
      zstd.zstd_level = 3;
      zstd.provenance_json = "{\"recipe\": {}}";
      put_written("cpk", "packed.cpk", [&](const std::string& p) { save_cpk(m, p, raw); });
      put_written("cpk", "packed-zstd.cpk", [&](const std::string& p) { save_cpk(m, p, zstd); });
      put_written("cpk", "dense.cpk", [&](const std::string& p) { save_cpk(tied, p, {}); });
    }

    // Hugging Face folders (the hf_folder target: u32 length of config.json, config.json, model.safetensors):
    // dense and compressed-tensors, each encoding once.
    {
      auto folder = [&](const std::string& name, const Model& m, const std::string& to, const std::string& dtype) {
        const fs::path dir = out_root / ".tmp" / ("hf-" + name);
        save_cpk(m, dir.string() + ".cpk", {});
        pipeline::ConvertOptions o;
        o.to = to;
        o.out = dir.string();
        o.hf_dtype = dtype;
        pipeline::convert_model(dir.string() + ".cpk", o);
        const std::string cfg = slurp(dir / "config.json");
        const uint32_t n = uint32_t(cfg.size());
        put("hf_folder", name, std::string(reinterpret_cast<const char*>(&n), 4) + cfg + slurp(dir / "model.safetensors"));
      };
      folder("dense-bf16", tied, "hf", "bf16");
      Model q = untied;
      for (int l = 0; l < q.config.n_layers; ++l) {
        LayerWeights& lw = q.layers[size_t(l)];
        const std::string pre = "model.layers." + std::to_string(l);
        auto pack = [&](const std::string& name, Tensor& t, const QuantScheme& s) {
          q.compression[pre + name] = compress::quantize_rtn(s, t.f32(), t.dim(0), t.dim(1), {}, t.f32());
        };
        pack(".self_attn.q_proj.weight", lw.wq, QuantScheme::of(DType::I4, Granularity::Group, 8, true));
        pack(".self_attn.k_proj.weight", lw.wk, QuantScheme::of(DType::I4, Granularity::Group, 8, false));
        pack(".self_attn.v_proj.weight", lw.wv, QuantScheme::of(DType::I8, Granularity::PerChannel, 0, false));
        pack(".self_attn.o_proj.weight", lw.wo, QuantScheme::of(DType::I8, Granularity::Group, 8, true));
        pack(".mlp.gate_proj.weight", lw.w_gate, QuantScheme::of(DType::F8E4M3, Granularity::PerChannel, 0, true));
        pack(".mlp.up_proj.weight", lw.w_up, QuantScheme::of(DType::F8E4M3, Granularity::PerTensor, 0, true));
      }
      q.kv_cache.type = DType::F8E4M3;
      q.kv_cache.k_scales.assign(size_t(q.config.n_layers), 0.05f);
      q.kv_cache.v_scales.assign(size_t(q.config.n_layers), 0.07f);
      folder("compressed-mixed", q, "compressed-tensors", "f16");
      Model w8a8 = untied;
      for_each_weight(w8a8, [&](const WeightRef& r) {
        if (r.kind == WeightKind::Linear) {
          w8a8.compression[r.name] = compress::quantize_rtn(QuantScheme::of(DType::I8, Granularity::PerChannel, 0, true), r.tensor->f32(), r.shape[0], r.shape[1], {}, r.tensor->f32());
        }
      });
      w8a8.activations.type = DType::I8;
      folder("compressed-w8a8", w8a8, "compressed-tensors", "bf16");
    }

    // Recipes: condense's own, each with a --set line before it.
    int k = 0;
    for (const auto& e : fs::directory_iterator(src / "recipes")) {
      if (e.path().extension() != ".json") continue;
      put("recipe", e.path().filename().string(), "name=fuzz\n" + slurp(e.path()));
      if (++k == 6) break;
    }
    put("recipe", "minimal.json", "\n" + json({{"teacher", {{"model", "t.bin"}}}, {"student", {{"init", "from_teacher"}, {"layers", {0, 2}}}}, {"stages", {{{"type", "quantize"}, {"weights", {{"type", "int4"}, {"group", 32}}}}}},
                                               {"output", {{"dir", "o"}}}}).dump());

    put_written("train_state", "state.h5", [&](const std::string& p) {
      Tensor a = Tensor::from_f32(std::vector<float>(32, 0.5f), {4, 8}), b = Tensor::from_f32(std::vector<float>(8, -1.f), {8});
      write_train_state(p, R"({"step": 3, "seed": 1})", {{"param/a", &a}, {"adam_m/b", &b}});
    });

    const json manifest = {{"format", "condense-tokens"}, {"version", 1}, {"dtype", "u32le"},
                           {"tokenizer", {{"kind", "bytes"}, {"vocab", 40}, {"fingerprint", "f"}}},
                           {"train", {{{"file", "train-00000.bin"}, {"tokens", 64}}}},
                           {"val", {{{"file", "val-00000.bin"}, {"tokens", 64}}}}};
    put("token_manifest", "manifest.json", manifest.dump(2));

    const std::vector<std::pair<int, json>> bodies = {
        {0, {{"model", "m"}, {"prompt", "Once upon"}, {"max_tokens", 8}, {"temperature", 0.7}, {"top_p", 0.9}, {"seed", 3}, {"stop", {"\n", "."}}}},
        {0, {{"prompt", {"a", "b"}}, {"n", 2}, {"echo", true}, {"logprobs", 2}, {"max_tokens", 0}}},
        {0, {{"prompt", {1, 2, 3}}, {"stream", true}, {"stream_options", {{"include_usage", true}}}}},
        {1, {{"messages", {{{"role", "system"}, {"content", "Be brief."}}, {{"role", "user"}, {"content", "Hi"}}}}, {"max_tokens", 4},
             {"logprobs", true}, {"top_logprobs", 2}}},
        {1, {{"messages", {{{"role", "user"}, {"content", {{{"type", "text"}, {"text", "Hi"}}}}}}}, {"stream", true}, {"top_k", 5}}}};
    int i = 0;
    for (const auto& [chat, b] : bodies) put("http_request", "body" + std::to_string(i++), std::string(1, char(chat)) + b.dump());

    put("chat_template", "chatml.jinja",
        "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}");
    put("chat_template", "roles.jinja",
        "{{ bos_token }}{% for m in messages %}{% if m.role == 'system' %}<<SYS>>{{ m.content | trim }}<</SYS>>"
        "{% elif m.role == 'user' and m.content is defined %}[INST] {{ m.content[:64] }} [/INST]"
        "{% elif m.role == 'assistant' %} {{ m.content | default('') }} {{ eos_token }}{% else %}{{ raise_exception('role ' ~ m.role) }}"
        "{% endif %}{% endfor %}{% if add_generation_prompt is defined and add_generation_prompt %} {% endif %}");
    put("chat_template", "features.jinja",
        "{%- set ns = namespace(n=0) -%}{% for m in messages if m.role != 'system' %}{% set ns.n = ns.n + 1 %}"
        "{{ loop.index }}/{{ loop.length }} {{ m.content | upper | replace('H', 'J') }}{{ ', ' if not loop.last }}{% endfor %}"
        "{{ ns.n }} {{ messages | length }} {{ range(3) | join('-') }} {{ {'a': [1, 2.5, none]} | tojson }} {{ 'x' * 3 ~ 7 // 2 }}");
    fs::remove_all(out_root / ".tmp");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "make_seeds: %s\n", e.what());
    return 1;
  }
  int n = 0;
  for (const auto& e : fs::recursive_directory_iterator(out_root)) n += e.is_regular_file();
  std::printf("%d seeds in %s\n", n, out_root.c_str());
  return 0;
}
