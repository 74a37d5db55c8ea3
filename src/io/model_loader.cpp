#include "io/model_loader.h"

#include <filesystem>
#include <nlohmann/json.hpp>

#include "io/cpk.h"
#include "io/file_view.h"
#include "io/gguf.h"
#include "io/hf_model.h"
#include "io/hf_tokenizer_json.h"
#include "core/json_text.h"
#include "io/llama2c.h"
#include "model/tokenizer_sentencepiece.h"

namespace condense {
namespace fs = std::filesystem;

std::string detect_format(const std::string& path) {
  if (!fs::exists(path)) fail(path, "does not exist", "Check the model path");
  if (fs::is_directory(path)) return "hf-safetensors";
  if (is_cpk(path)) return "cpk";
  const std::string ext = fs::path(path).extension().string();
  if (ext == ".cpk") fail(path, "has the .cpk extension but not the .cpk magic", "The file is corrupted or mislabeled");
  if (ext == ".safetensors" || fs::path(path).filename() == "config.json") return "hf-safetensors";
  FileView f(path);
  if (f.size() >= 4 && std::memcmp(f.data(), "GGUF", 4) == 0) return "gguf";
  if (ext == ".gguf") fail(path, "has the .gguf extension but not the GGUF magic", "The file is corrupted or mislabeled");
  return "llama2c";
}

std::unique_ptr<Tokenizer> load_tokenizer_file(const std::string& path) {
  const std::string ext = fs::path(path).extension().string();
  if (ext == ".model") return std::make_unique<SentencePieceTokenizer>(read_text_file(path), path);
  if (ext == ".json") return load_hf_tokenizer_json(path);
  return load_llama2c_tokenizer(path);
}

std::unique_ptr<Tokenizer> load_tokenizer_bytes(const std::string& bytes, const std::string& file_name, const std::string& where) {
  const std::string ext = fs::path(file_name).extension().string();
  if (ext == ".model") return std::make_unique<SentencePieceTokenizer>(bytes, where);
  if (ext == ".json") return parse_hf_tokenizer_json(bytes, where);
  return parse_llama2c_tokenizer(FileView(where, reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
}

namespace {

// llama2.c convention: tokenizer.bin, or the only tok*.bin, beside the model.
std::string find_llama2c_tokenizer(const std::string& model_path, std::string& note) {
  const fs::path dir = fs::path(model_path).parent_path().empty() ? fs::path(".") : fs::path(model_path).parent_path();
  if (fs::exists(dir / "tokenizer.bin")) return (dir / "tokenizer.bin").string();
  std::vector<std::string> found;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string n = e.path().filename().string();
    if (e.is_regular_file() && n.rfind("tok", 0) == 0 && e.path().extension() == ".bin") found.push_back(e.path().string());
  }
  if (found.size() == 1) return found[0];
  note = found.empty() ? "no tokenizer.bin or tok*.bin beside " + model_path
                       : std::to_string(found.size()) + " tok*.bin files beside " + model_path + " (ambiguous)";
  return "";
}

}  // namespace

// A Hugging Face folder's chat template and special tokens' text:
// chat_template.jinja, else tokenizer_config.json's "chat_template" (a string,
// or a list of {name, template}: the "default" one).
static void read_hf_chat_template(const fs::path& dir, LoadedModel& lm) {
  const fs::path cfg = dir / "tokenizer_config.json";
  if (fs::exists(cfg)) {
    const nlohmann::json j = try_parse_json(read_text_file(cfg.string()));
    if (j.is_discarded() || !j.is_object()) fail(cfg.string(), "is not a JSON object");
    auto token_text = [&](const char* key) -> std::string {
      if (!j.contains(key)) return "";
      const nlohmann::json& t = j[key];
      if (t.is_string()) return t.get<std::string>();
      if (t.is_object() && t.contains("content") && t["content"].is_string()) return t["content"].get<std::string>();
      return "";
    };
    lm.bos_text = token_text("bos_token");
    lm.eos_text = token_text("eos_token");
    if (j.contains("chat_template")) {
      const nlohmann::json& t = j["chat_template"];
      if (t.is_string()) {
        lm.chat_template = t.get<std::string>();
      } else if (t.is_array()) {
        for (const auto& e : t) {
          if (e.is_object() && e.value("name", "") == "default" && e.contains("template") && e["template"].is_string()) {
            lm.chat_template = e["template"].get<std::string>();
          }
        }
      } else if (!t.is_null()) {
        fail(cfg.string(), "\"chat_template\" must be a string or a list of {name, template}");
      }
    }
  }
  if (fs::exists(dir / "chat_template.jinja")) lm.chat_template = read_text_file((dir / "chat_template.jinja").string());
}

LoadedModel load_model(const std::string& path, const std::string& tokenizer_path, const LoadOptions& opt) {
  LoadedModel lm;
  const std::string format = detect_format(path);
  std::string auto_tok;
  if (format == "hf-safetensors") {
    const std::string dir = fs::is_directory(path) ? path : fs::path(path).parent_path().string();
    lm.model = load_hf_model(dir.empty() ? "." : dir);
    for (const char* n : {"tokenizer.model", "tokenizer.json"}) {
      if (auto_tok.empty() && fs::exists(fs::path(lm.model.path) / n)) auto_tok = (fs::path(lm.model.path) / n).string();
    }
    if (auto_tok.empty()) lm.tokenizer_note = "no tokenizer.model or tokenizer.json in " + lm.model.path;
    read_hf_chat_template(lm.model.path, lm);
  } else if (format == "cpk") {
    lm = load_cpk(path, opt.effective_f32);
  } else if (format == "gguf") {
    GgufModel g = load_gguf_model(path);
    lm.model = std::move(g.model);
    lm.tokenizer = std::move(g.tokenizer);
    if (lm.tokenizer) lm.tokenizer_path = path + " (embedded)";
    else lm.tokenizer_note = g.tokenizer_note;
    lm.chat_template = g.chat_template;
    lm.bos_text = g.bos_text;
    lm.eos_text = g.eos_text;
  } else {
    lm.model = load_llama2c(path);
    auto_tok = find_llama2c_tokenizer(path, lm.tokenizer_note);
  }
  const std::string tp = !tokenizer_path.empty() ? tokenizer_path : auto_tok;
  if (!tp.empty()) {
    lm.tokenizer = load_tokenizer_file(tp);
    lm.tokenizer_path = tp;
  }
  if (lm.tokenizer && lm.tokenizer->vocab_size() != lm.model.config.vocab) {
    fail(lm.tokenizer_path, "tokenizer has " + std::to_string(lm.tokenizer->vocab_size()) + " tokens but the model's vocabulary is " +
                                std::to_string(lm.model.config.vocab),
         "Pass the tokenizer the model was trained with (--tokenizer)");
  }
  return lm;
}

ModelConfig read_model_config(const std::string& path) {
  const std::string format = detect_format(path);
  if (format == "hf-safetensors") {
    const fs::path dir = fs::is_directory(path) ? fs::path(path) : fs::path(path).parent_path();
    const std::string cfg = (dir / "config.json").string();
    return parse_hf_config(read_text_file(cfg), cfg);
  }
  if (format == "cpk") return read_cpk_config(path);
  if (format == "gguf") return read_gguf_config(path);
  return read_llama2c_config(path);
}

const Tokenizer& require_tokenizer(const LoadedModel& m) {
  if (!m.tokenizer) fail(m.model.path, "no tokenizer: " + m.tokenizer_note, "Pass --tokenizer FILE (tokenizer.bin, tokenizer.model or tokenizer.json)");
  return *m.tokenizer;
}

}  // namespace condense
