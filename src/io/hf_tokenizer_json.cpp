#include "io/hf_tokenizer_json.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <unordered_map>
#include <vector>

#include "core/error.h"
#include "io/file_view.h"
#include "core/json_text.h"
#include "model/text_codec.h"

namespace condense {
namespace {

using json = nlohmann::json;
const std::string& kMeta = text::kMetaSpace;

std::string type_of(const json& j) { return j.is_object() && j.contains("type") && j["type"].is_string() ? j["type"].get<std::string>() : ""; }

// normalizer: null, NFC (text passed through: it is assumed NFC already), or
// SentencePiece's Prepend(U+2581) + Replace(" " -> U+2581), alone or in a Sequence.
void read_normalizer(const json& n, HfBpeSpec& s, const std::string& where, const std::string& path) {
  if (n.is_null() && path == "normalizer") return;  // none at the top; inside a Sequence, null is malformed
  const std::string t = type_of(n);
  if (t == "Sequence") {
    if (!n.contains("normalizers") || !n["normalizers"].is_array()) fail(where, path + ".normalizers must be an array");
    for (size_t i = 0; i < n["normalizers"].size(); ++i) read_normalizer(n["normalizers"][i], s, where, path + ".normalizers[" + std::to_string(i) + "]");
  } else if (t == "Prepend" && n.value("prepend", "") == kMeta) {
    s.sp_prepend = true;
  } else if (t == "Replace" && n.contains("pattern") && n["pattern"].value("String", "") == " " && n.value("content", "") == kMeta) {
    s.sp_spaces = true;
  } else if (t == "NFC") {
  } else {
    fail(where, path + " is a '" + t + "' normalizer, which is not supported", "condense supports SentencePiece-style (Prepend/Replace U+2581) and NFC");
  }
}

void read_pre_tokenizer(const json& p, HfBpeSpec& s, const std::string& where, const std::string& path) {
  if (p.is_null() && path == "pre_tokenizer") return;
  const std::string t = type_of(p);
  if (t == "Sequence") {
    if (!p.contains("pretokenizers") || !p["pretokenizers"].is_array()) fail(where, path + ".pretokenizers must be an array");
    for (size_t i = 0; i < p["pretokenizers"].size(); ++i) read_pre_tokenizer(p["pretokenizers"][i], s, where, path + ".pretokenizers[" + std::to_string(i) + "]");
  } else if (t == "ByteLevel") {
    s.byte_level = true;
    if (p.value("add_prefix_space", false)) fail(where, path + ".add_prefix_space = true is not supported");
    if (p.value("use_regex", true)) s.pre = PreTokenizer::Gpt2;
  } else if (t == "Split") {
    if (!p.contains("pattern") || !p["pattern"].contains("Regex")) fail(where, path + " splits on a plain string; only regex splits are supported");
    if (p.value("behavior", "") != "Isolated" || p.value("invert", false)) fail(where, path + " must use behavior 'Isolated' without invert");
    s.pre = pretokenizer_for_pattern(p["pattern"]["Regex"].get<std::string>());
  } else if (t == "Metaspace") {
    if (p.value("replacement", kMeta) != kMeta) fail(where, path + ".replacement must be U+2581");
    s.sp_spaces = true;
    const std::string scheme = p.value("prepend_scheme", p.value("add_prefix_space", true) ? "always" : "never");
    s.sp_prepend = scheme != "never";
    s.sp_prepend_first_only = scheme == "first";
    s.sp_split = p.value("split", true);
  } else {
    fail(where, path + " is a '" + t + "' pre-tokenizer, which is not supported", "condense supports ByteLevel, Split (known regexes) and Metaspace");
  }
}

// decoder: null, ByteLevel, Metaspace, or a Sequence of SentencePiece-style
// steps (Replace U+2581 -> " ", ByteFallback, Fuse, Strip); anything else would
// decode differently from what condense does, so it is refused.
void read_decoder(const json& d, const HfBpeSpec& s, const std::string& where, const std::string& path) {
  if (d.is_null() && path == "decoder") return;
  const std::string t = type_of(d);
  if (t == "Sequence") {
    if (!d.contains("decoders") || !d["decoders"].is_array()) fail(where, path + ".decoders must be an array");
    for (size_t i = 0; i < d["decoders"].size(); ++i) read_decoder(d["decoders"][i], s, where, path + ".decoders[" + std::to_string(i) + "]");
  } else if (t == "ByteLevel") {
    if (!s.byte_level) fail(where, path + " is ByteLevel but the pre-tokenizer is not");
  } else if (t == "Metaspace" || t == "ByteFallback" || t == "Fuse" || t == "Strip") {
    if (s.byte_level) fail(where, path + " is '" + t + "', a SentencePiece-style step, in a byte-level tokenizer");
  } else if (t == "Replace") {
    if (!d.contains("pattern") || !d["pattern"].is_object() || d["pattern"].value("String", "") != kMeta || d.value("content", "") != " ") {
      fail(where, path + " replaces something other than U+2581 with a space", "condense decodes SentencePiece-style (U+2581 -> space) and byte-level tokenizers");
    }
  } else {
    fail(where, path + " is a '" + t + "' decoder, which is not supported", "condense supports ByteLevel, Metaspace and SentencePiece-style Sequence decoders");
  }
}

std::unique_ptr<HfBpeTokenizer> parse_hf_tokenizer(const json& j, const std::string& where);

}  // namespace

std::unique_ptr<HfBpeTokenizer> parse_hf_tokenizer_json(const std::string& text, const std::string& where) {
  const json j = parse_json(text, where);
  try {
    return parse_hf_tokenizer(j, where);
  } catch (const json::exception& e) {  // a field of the wrong type
    fail(where, std::string("malformed tokenizer.json: ") + e.what());
  }
}

namespace {

std::unique_ptr<HfBpeTokenizer> parse_hf_tokenizer(const json& j, const std::string& where) {
  if (!j.is_object() || !j.contains("model") || !j["model"].is_object()) fail(where, "no 'model' object", "Not a Hugging Face tokenizer.json");
  const json& m = j["model"];
  const std::string mt = type_of(m).empty() ? "BPE" : type_of(m);
  if (mt != "BPE") fail(where, "model.type is '" + mt + "'", "Only BPE tokenizers are supported (not Unigram or WordPiece)");
  if (!m.contains("vocab") || !m["vocab"].is_object()) fail(where, "model.vocab is missing or not an object");
  if (!m.contains("merges") || !m["merges"].is_array()) fail(where, "model.merges is missing or not an array");
  if (m["vocab"].empty()) fail(where, "model.vocab is empty");
  HfBpeSpec s;
  // Ids index the token table: each must lie in [0, vocab entries + added
  // tokens) (real files number them densely), so no id reaches past the table
  // or makes it larger than the file's own count.
  const size_t n_added = j.contains("added_tokens") && j["added_tokens"].is_array() ? j["added_tokens"].size() : 0;
  const int64_t id_limit = int64_t(m["vocab"].size() + n_added) - 1;
  for (auto it = m["vocab"].begin(); it != m["vocab"].end(); ++it) {
    s.vocab.emplace(it.key(), int(json_int(*it, where, "model.vocab[\"" + it.key() + "\"]", 0, id_limit)));
  }
  for (size_t i = 0; i < m["merges"].size(); ++i) {
    const json& e = m["merges"][i];
    const std::string path = "model.merges[" + std::to_string(i) + "]";
    if (e.is_string()) {
      const std::string v = e.get<std::string>();
      const size_t sp = v.find(' ', 1);
      if (sp == std::string::npos) fail(where, path + " '" + v + "' is not 'left right'");
      s.merges.emplace_back(v.substr(0, sp), v.substr(sp + 1));
    } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {
      s.merges.emplace_back(e[0].get<std::string>(), e[1].get<std::string>());
    } else {
      fail(where, path + " is neither 'left right' nor [left, right]");
    }
  }
  s.byte_fallback = m.value("byte_fallback", false);
  s.ignore_merges = m.value("ignore_merges", false);
  if (m.contains("unk_token") && m["unk_token"].is_string()) {
    auto it = s.vocab.find(m["unk_token"].get<std::string>());
    if (it != s.vocab.end()) s.unk_id = it->second;
  }
  if (j.contains("added_tokens") && j["added_tokens"].is_array()) {
    for (size_t i = 0; i < j["added_tokens"].size(); ++i) {
      const json& a = j["added_tokens"][i];
      const std::string at = "added_tokens[" + std::to_string(i) + "]";
      if (!a.is_object() || !a.contains("id") || !a.contains("content") || !a["content"].is_string()) fail(where, at + " needs an integer 'id' and a string 'content'");
      if (a["content"].get<std::string>().empty()) fail(where, at + ".content is empty");
      const int id = int(json_int(a["id"], where, at + ".id", 0, id_limit));
      s.added.push_back({id, a["content"].get<std::string>(), a.value("special", false)});
    }
  }
  read_normalizer(j.value("normalizer", json()), s, where, "normalizer");
  read_pre_tokenizer(j.value("pre_tokenizer", json()), s, where, "pre_tokenizer");
  if (type_of(j.value("decoder", json())) == "ByteLevel") s.byte_level = true;
  if (s.byte_level && (s.sp_spaces || s.sp_prepend)) fail(where, "mixes byte-level and SentencePiece-style settings");
  read_decoder(j.value("decoder", json()), s, where, "decoder");
  return std::make_unique<HfBpeTokenizer>(std::move(s), where);
}

}  // namespace

std::unique_ptr<HfBpeTokenizer> load_hf_tokenizer_json(const std::string& path) {
  return parse_hf_tokenizer_json(read_text_file(path), path);
}

namespace {

// llama2.c stores its specials as "\n<s>\n"; the json names them plainly.
std::string json_piece(const Llama2cTokenizer& tok, int id) {
  std::string p = tok.piece(id);
  if (id <= 2 && p.size() > 2 && p.front() == '\n' && p.back() == '\n') p = p.substr(1, p.size() - 2);
  return text::parse_byte_piece(p) >= 0 ? p : text::replace_all(p, " ", text::kMetaSpace);
}

nlohmann::json special(int id, const std::string& content) {
  return {{"id", id}, {"content", content}, {"single_word", false}, {"lstrip", false}, {"rstrip", false}, {"normalized", false}, {"special", true}};
}

}  // namespace

std::string hf_tokenizer_json_from_llama2c(const Llama2cTokenizer& tok, int bos_id, int eos_id) {
  using json = nlohmann::json;
  const int n = tok.vocab_size();
  json vocab = json::object();
  std::unordered_map<std::string, int> ids;
  for (int i = 0; i < n; ++i) {
    const std::string p = json_piece(tok, i);
    if (ids.emplace(p, i).second) vocab[p] = i;
  }
  // Every split of a piece into two pieces is a merge; ranked by the merged
  // piece's score (highest first), then by its id, then by where it splits.
  struct Merge { float score; int id; size_t at; std::string a, b; };
  std::vector<Merge> merges;
  for (int i = 3; i < n; ++i) {
    const std::string p = json_piece(tok, i);
    if (text::parse_byte_piece(p) >= 0) continue;
    for (size_t at = 1; at < p.size(); ++at) {
      if ((static_cast<unsigned char>(p[at]) & 0xc0) == 0x80) continue;  // inside a UTF-8 character
      const std::string a = p.substr(0, at), b = p.substr(at);
      if (ids.count(a) && ids.count(b)) merges.push_back({tok.score(i), i, at, a, b});
    }
  }
  std::stable_sort(merges.begin(), merges.end(), [](const Merge& x, const Merge& y) {
    if (x.score != y.score) return x.score > y.score;
    if (x.id != y.id) return x.id < y.id;
    return x.at < y.at;
  });
  json mj = json::array();
  for (const Merge& m : merges) mj.push_back(m.a + " " + m.b);
  const std::string bos = json_piece(tok, bos_id), eos = json_piece(tok, eos_id), unk = json_piece(tok, 0);
  const json sp = text::kMetaSpace;
  json j = {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", json::array({special(0, unk), special(bos_id, bos), special(eos_id, eos)})},
      {"normalizer", {{"type", "Sequence"}, {"normalizers", json::array({{{"type", "Prepend"}, {"prepend", sp}},
                                                                          {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", sp}}})}}},
      {"pre_tokenizer", nullptr},
      {"post_processor", {{"type", "TemplateProcessing"},
                          {"single", json::array({{{"SpecialToken", {{"id", bos}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})},
                          {"pair", json::array({{{"SpecialToken", {{"id", bos}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                                                {{"SpecialToken", {{"id", bos}, {"type_id", 1}}}}, {{"Sequence", {{"id", "B"}, {"type_id", 1}}}}})},
                          {"special_tokens", {{bos, {{"id", bos}, {"ids", {bos_id}}, {"tokens", {bos}}}}}}}},
      {"decoder", {{"type", "Sequence"}, {"decoders", json::array({{{"type", "Replace"}, {"pattern", {{"String", sp}}}, {"content", " "}},
                                                                   {{"type", "ByteFallback"}}, {{"type", "Fuse"}},
                                                                   {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}})}}},
      {"model", {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", unk}, {"continuing_subword_prefix", nullptr}, {"end_of_word_suffix", nullptr},
                 {"fuse_unk", true}, {"byte_fallback", true}, {"ignore_merges", false}, {"vocab", vocab}, {"merges", mj}}}};
  return j.dump(1) + "\n";
}

std::string hf_tokenizer_config_json(const Llama2cTokenizer& tok, int bos_id, int eos_id, int max_seq) {
  const nlohmann::json j = {{"add_bos_token", true}, {"add_eos_token", false}, {"bos_token", json_piece(tok, bos_id)},
                            {"eos_token", json_piece(tok, eos_id)}, {"unk_token", json_piece(tok, 0)}, {"pad_token", nullptr},
                            {"model_max_length", max_seq}, {"tokenizer_class", "LlamaTokenizerFast"}, {"clean_up_tokenization_spaces", false},
                            {"legacy", false}};
  return j.dump(1) + "\n";
}

}  // namespace condense
