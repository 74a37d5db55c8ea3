#include "serve/openai_protocol.h"

#include <chrono>
#include <cmath>
#include <limits>
#include <mutex>
#include <random>

#include "core/error.h"
#include "core/json_text.h"
#include "serve/text_stream.h"

namespace condense {

using json = nlohmann::json;

ApiError invalid_request(const std::string& param, const std::string& message, const std::string& code) {
  return ApiError(400, message, "invalid_request_error", param, code);
}

json error_body(int status, const std::string& message, const std::string& type, const std::string& param, const std::string& code) {
  (void)status;
  return {{"error",
           {{"message", sanitize_utf8(message)},
            {"type", type},
            {"param", param.empty() ? json(nullptr) : json(param)},
            {"code", code.empty() ? json(nullptr) : json(code)}}}};
}

json error_body(const ApiError& e) { return error_body(e.status, e.what(), e.type, e.param, e.code); }

namespace {

const char* type_name(const json& v) {
  switch (v.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return "a boolean";
    case json::value_t::string: return "a string";
    case json::value_t::array: return "an array";
    case json::value_t::object: return "an object";
    case json::value_t::number_float: return "a number";
    default: return "an integer";
  }
}

[[noreturn]] void out_of_range(const std::string& k, const std::string& lo, const std::string& hi, const json& v) {
  throw invalid_request(k, "'" + k + "' must be in [" + lo + ", " + hi + "], got " + v.dump());
}

[[noreturn]] void wrong_type(const std::string& field, const char* want, const json& v) {
  throw invalid_request(field, "'" + field + "' must be " + want + ", got " + type_name(v), "invalid_type");
}

// Reads an optional field: absent or null leaves `out` as it is.
bool get_bool(const json& j, const std::string& k, bool& out) {
  auto it = j.find(k);
  if (it == j.end() || it->is_null()) return false;
  if (!it->is_boolean()) wrong_type(k, "a boolean", *it);
  out = it->get<bool>();
  return true;
}

bool get_number(const json& j, const std::string& k, double lo, double hi, double& out) {
  auto it = j.find(k);
  if (it == j.end() || it->is_null()) return false;
  if (!it->is_number()) wrong_type(k, "a number", *it);
  const double v = it->get<double>();
  if (!std::isfinite(v) || v < lo || v > hi) out_of_range(k, json(lo).dump(), json(hi).dump(), *it);
  out = v;
  return true;
}

bool get_int(const json& j, const std::string& k, int64_t lo, int64_t hi, int64_t& out) {
  auto it = j.find(k);
  if (it == j.end() || it->is_null()) return false;
  // 5.0 is accepted as 5 (JavaScript clients cannot tell them apart); 5.5 is not.
  if (it->is_number_float()) {
    const double d = it->get<double>();
    if (!std::isfinite(d) || d != std::floor(d)) wrong_type(k, "an integer", *it);
    if (d < double(lo) || d > double(hi)) out_of_range(k, std::to_string(lo), std::to_string(hi), *it);
    out = int64_t(d);
    return true;
  }
  if (!it->is_number_integer()) wrong_type(k, "an integer", *it);
  const bool outside = it->is_number_unsigned() ? it->get<uint64_t>() > uint64_t(hi) || (lo > 0 && it->get<uint64_t>() < uint64_t(lo))
                                                     : it->get<int64_t>() < lo || it->get<int64_t>() > hi;
  if (outside) out_of_range(k, std::to_string(lo), std::to_string(hi), *it);
  out = it->get<int64_t>();
  return true;
}

std::string text_content(const json& content, const std::string& field) {
  if (content.is_string()) return content.get<std::string>();
  if (content.is_null()) return "";
  if (!content.is_array()) wrong_type(field, "a string or an array of text parts", content);
  std::string out;
  for (size_t i = 0; i < content.size(); ++i) {
    const json& part = content[i];
    const std::string f = field + "[" + std::to_string(i) + "]";
    if (!part.is_object()) wrong_type(f, "an object", part);
    auto type = part.find("type");
    if (type == part.end() || !type->is_string()) throw invalid_request(f + ".type", "'" + f + ".type' must be a string");
    if (*type != "text") throw invalid_request(f + ".type", "content part type '" + type->get<std::string>() + "' is not supported (text only)");
    auto text = part.find("text");
    if (text == part.end() || !text->is_string()) throw invalid_request(f + ".text", "'" + f + ".text' must be a string");
    out += text->get<std::string>();
  }
  return out;
}

bool valid_utf8(const std::string& s) { return sanitize_utf8(s) == s; }

// Response ids and the seeds of unseeded requests; any thread may ask.
uint64_t random_u64() {
  static std::mt19937_64 rng{std::random_device{}()};
  static std::mutex mu;
  std::lock_guard<std::mutex> lk(mu);
  return rng();
}

std::string random_id(const char* prefix) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%s%016llx%08llx", prefix, static_cast<unsigned long long>(random_u64()),
                static_cast<unsigned long long>(random_u64() & 0xffffffffu));
  return buf;
}

int64_t unix_now() { return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count(); }

constexpr size_t kMaxPrompts = 256;  // choices (prompts x n) per request

}  // namespace

ServedModel served_model(std::string id, std::string root, const ModelConfig& c, const Tokenizer& tok, const ChatTemplate& t) {
  ServedModel m;
  m.id = std::move(id);
  m.root = std::move(root);
  m.max_seq = c.max_seq;
  m.vocab = c.vocab;
  m.bos_id = c.bos_id;
  m.eos_id = c.eos_id;
  m.tokenizer = &tok;
  m.chat_template = &t;
  m.created = unix_now();
  return m;
}

std::vector<int> chat_prompt_tokens(const std::string& text, const ServedModel& m) {
  // BOS first (the template's own leading BOS text is that token); the
  // template's BOS / EOS text elsewhere becomes those tokens, not their spelling.
  const std::string& bos = m.chat_template->bos_text();
  const std::string& eos = m.chat_template->eos_text();
  std::vector<int> out = {m.bos_id};
  size_t p = !bos.empty() && text.rfind(bos, 0) == 0 ? bos.size() : 0;
  for (;;) {
    size_t next = std::string::npos, len = 0;
    int id = -1;
    for (const auto& [s, tid] : {std::pair<const std::string&, int>{bos, m.bos_id}, std::pair<const std::string&, int>{eos, m.eos_id}}) {
      if (s.empty()) continue;
      const size_t q = text.find(s, p);
      if (q < next) next = q, len = s.size(), id = tid;
    }
    const std::string piece = text.substr(p, next == std::string::npos ? std::string::npos : next - p);
    if (!piece.empty()) {
      for (int t : m.tokenizer->encode(piece)) out.push_back(t);
    }
    if (next == std::string::npos) break;
    out.push_back(id);
    p = next + len;
  }
  return out;
}

ParsedRequest parse_request(const std::string& body, bool chat, const ServedModel& m) {
  json j = try_parse_json(body);
  if (j.is_discarded()) throw invalid_request("", "the request body is not valid JSON", "invalid_json");
  if (!j.is_object()) throw invalid_request("", "the request body must be a JSON object, got " + std::string(type_name(j)), "invalid_json");
  ParsedRequest r;
  r.chat = chat;
  if (auto it = j.find("model"); it != j.end() && !it->is_null()) {
    if (!it->is_string()) wrong_type("model", "a string", *it);
    if (it->get<std::string>() != m.id) {
      throw ApiError(404, "The model '" + it->get<std::string>() + "' does not exist. This server serves '" + m.id + "' (GET /v1/models).",
                     "invalid_request_error", "model", "model_not_found");
    }
  }
  const Tokenizer& tok = *m.tokenizer;
  std::vector<int>& prompt = r.gen.prompt;
  if (chat) {
    auto it = j.find("messages");
    if (it == j.end() || it->is_null()) throw invalid_request("messages", "'messages' is required", "missing_required_parameter");
    if (!it->is_array()) wrong_type("messages", "an array", *it);
    if (it->empty()) throw invalid_request("messages", "'messages' must hold at least one message");
    std::vector<ChatMessage> msgs;
    for (size_t i = 0; i < it->size(); ++i) {
      const json& msg = (*it)[i];
      const std::string f = "messages[" + std::to_string(i) + "]";
      if (!msg.is_object()) wrong_type(f, "an object", msg);
      auto role = msg.find("role");
      if (role == msg.end() || !role->is_string()) throw invalid_request(f + ".role", "'" + f + ".role' must be a string", "invalid_type");
      auto content = msg.find("content");
      ChatMessage cm{role->get<std::string>(), content == msg.end() ? std::string() : text_content(*content, f + ".content")};
      if (cm.role != "system" && cm.role != "developer" && cm.role != "user" && cm.role != "assistant") {
        throw invalid_request(f + ".role", "role '" + cm.role + "' is not supported (system, developer, user, assistant)");
      }
      if (!valid_utf8(cm.content)) throw invalid_request(f + ".content", "'" + f + ".content' is not valid UTF-8");
      msgs.push_back(std::move(cm));
    }
    std::string text;
    try {
      text = m.chat_template->apply(msgs);
    } catch (const Error& e) {
      throw invalid_request("messages", e.what());
    }
    prompt = chat_prompt_tokens(text, m);
  } else {
    auto it = j.find("prompt");
    if (it == j.end() || it->is_null()) throw invalid_request("prompt", "'prompt' is required", "missing_required_parameter");
    // A string, a list of token ids, or a list of several of those (a choice each).
    std::vector<const json*> items;
    if (it->is_array() && !it->empty() && ((*it)[0].is_string() || (*it)[0].is_array())) {
      if (it->size() > kMaxPrompts) throw invalid_request("prompt", "at most " + std::to_string(kMaxPrompts) + " prompts per request");
      for (const json& p : *it) items.push_back(&p);
    } else {
      items.push_back(&*it);
    }
    for (size_t k = 0; k < items.size(); ++k) {
      const json* p = items[k];
      const std::string f = items.size() > 1 ? "prompt[" + std::to_string(k) + "]" : "prompt";
      std::vector<int> ids;
      std::string text;
      if (p->is_string()) {
        text = p->get<std::string>();
        if (!valid_utf8(text)) throw invalid_request("prompt", "'" + f + "' is not valid UTF-8");
        ids.push_back(m.bos_id);
        for (int t : tok.encode(text)) ids.push_back(t);
      } else if (p->is_array()) {
        if (p->empty()) throw invalid_request("prompt", "'" + f + "' is empty");
        for (size_t i = 0; i < p->size(); ++i) {
          const json& t = (*p)[i];
          if (!t.is_number_integer()) wrong_type(f + "[" + std::to_string(i) + "]", "a token id (integer)", t);
          const int64_t id = t.is_number_unsigned() && t.get<uint64_t>() > uint64_t(INT32_MAX) ? -1 : t.get<int64_t>();
          if (id < 0 || id >= m.vocab) {
            throw invalid_request("prompt", "token id " + t.dump() + " at " + f + "[" + std::to_string(i) + "] is outside the vocabulary of " +
                                                std::to_string(m.vocab));
          }
          ids.push_back(int(id));
        }
        text = sanitize_utf8(tok.decode(ids));
      } else {
        wrong_type(f, "a string or an array of token ids", *p);
      }
      r.prompts.push_back(std::move(ids));
      r.echo_texts.push_back(std::move(text));
    }
    prompt = r.prompts[0];
  }
  if (chat) {
    r.prompts = {prompt};
    r.echo_texts = {""};
  }
  for (const auto& p : r.prompts) {
    if (p.size() > prompt.size()) prompt = p;  // the longest prompt bounds max_tokens
  }
  if (int64_t(prompt.size()) >= m.max_seq) {
    throw invalid_request(chat ? "messages" : "prompt",
                          "This model's maximum context length is " + std::to_string(m.max_seq) + " tokens; the prompt has " +
                              std::to_string(prompt.size()) + ", which leaves no room to generate.",
                          "context_length_exceeded");
  }

  if (get_bool(j, "echo", r.echo) && r.echo && chat) throw invalid_request("echo", "'echo' is only supported by /v1/completions", "unsupported_value");
  int64_t max_tokens = chat ? m.max_seq - int64_t(prompt.size()) : 16;  // OpenAI's defaults (chat: to the end of the context)
  const char* max_key = "max_tokens";
  if (chat && get_int(j, "max_completion_tokens", 1, INT32_MAX, max_tokens)) max_key = "max_completion_tokens";
  if (j.contains("max_tokens") && !j["max_tokens"].is_null()) {
    get_int(j, "max_tokens", r.echo ? 0 : 1, INT32_MAX, max_tokens);  // 0 with echo: score the prompt only
    max_key = "max_tokens";
  }
  if (int64_t(prompt.size()) + max_tokens > m.max_seq) {
    throw invalid_request(max_key,
                          "This model's maximum context length is " + std::to_string(m.max_seq) + " tokens. However, you requested " +
                              std::to_string(int64_t(prompt.size()) + max_tokens) + " tokens (" + std::to_string(prompt.size()) +
                              " in the prompt, " + std::to_string(max_tokens) + " for the completion). Reduce the prompt or '" + max_key + "'.",
                          "context_length_exceeded");
  }
  r.gen.max_tokens = int(max_tokens);
  r.gen.prompt = r.prompts[0];
  r.echo_text = r.echo_texts[0];

  SamplingParams& sp = r.gen.sampling;
  double d = 1.0;
  if (get_number(j, "temperature", 0, 100, d)) sp.temperature = float(d);
  d = 1.0;
  if (get_number(j, "top_p", 0, 1, d)) {
    if (d <= 0) throw invalid_request("top_p", "'top_p' must be in (0, 1], got " + j["top_p"].dump());
    sp.top_p = float(d);
  }
  int64_t i64 = 0;
  if (get_int(j, "top_k", -1, INT32_MAX, i64)) sp.top_k = i64 <= 0 ? 0 : int(i64);  // -1 and 0: no limit (vLLM)
  if (get_int(j, "seed", std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max(), i64)) {
    sp.seed = uint64_t(i64) * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull;  // 0 and small seeds spread over the state
  } else {
    sp.seed = random_u64() | 1;
  }
  if (chat) {
    bool lp = false;
    get_bool(j, "logprobs", lp);
    int64_t top = 0;
    const bool has_top = get_int(j, "top_logprobs", 0, 20, top);
    if (has_top && !lp) throw invalid_request("top_logprobs", "'top_logprobs' needs 'logprobs': true");
    if (lp) {
      r.logprobs = true;
      sp.logprobs = int(top);
    }
  } else {
    auto it = j.find("logprobs");
    if (it != j.end() && !it->is_null()) {
      if (it->is_boolean()) wrong_type("logprobs", "an integer (0..20)", *it);
      get_int(j, "logprobs", 0, 20, i64);
      r.logprobs = true;
      sp.logprobs = int(i64);
    }
  }
  if (auto it = j.find("stop"); it != j.end() && !it->is_null()) {
    if (it->is_string()) {
      r.gen.stop.push_back(it->get<std::string>());
    } else if (it->is_array()) {
      if (it->size() > 16) throw invalid_request("stop", "'stop' holds at most 16 strings");
      for (size_t i = 0; i < it->size(); ++i) {
        if (!(*it)[i].is_string()) wrong_type("stop[" + std::to_string(i) + "]", "a string", (*it)[i]);
        r.gen.stop.push_back((*it)[i].get<std::string>());
      }
    } else {
      wrong_type("stop", "a string or an array of strings", *it);
    }
    for (const std::string& s : r.gen.stop) {
      if (!valid_utf8(s)) throw invalid_request("stop", "a stop string is not valid UTF-8");
    }
  }
  get_bool(j, "stream", r.stream);
  if (auto it = j.find("stream_options"); it != j.end() && !it->is_null()) {
    if (!it->is_object()) wrong_type("stream_options", "an object", *it);
    try {
      get_bool(*it, "include_usage", r.include_usage);
    } catch (const ApiError&) {
      wrong_type("stream_options.include_usage", "a boolean", (*it)["include_usage"]);
    }
    if (!r.stream) throw invalid_request("stream_options", "'stream_options' is only allowed when 'stream' is true");
  }
  get_bool(j, "ignore_eos", r.gen.ignore_eos);
  // Echo with logprobs scores the prompt's tokens too; echo of the prompt alone needs its prefill.
  r.gen.prompt_logprobs = r.echo && (r.logprobs || r.gen.max_tokens == 0);
  if (get_int(j, "n", 1, 64, i64)) r.n = int(i64);
  if (r.prompts.size() * size_t(r.n) > kMaxPrompts) {
    throw invalid_request("n", "prompts x n = " + std::to_string(r.prompts.size() * size_t(r.n)) + " choices; at most " + std::to_string(kMaxPrompts));
  }
  if (get_int(j, "best_of", 1, INT32_MAX, i64) && i64 != 1) throw invalid_request("best_of", "only best_of = 1 is supported", "unsupported_value");

  for (const char* k : {"presence_penalty", "frequency_penalty"}) {
    if (get_number(j, k, -2, 2, d) && d != 0) throw invalid_request(k, std::string("'") + k + "' is not supported (only 0)", "unsupported_value");
  }
  if (auto it = j.find("logit_bias"); it != j.end() && !it->is_null()) {
    if (!it->is_object()) wrong_type("logit_bias", "an object", *it);
    if (!it->empty()) throw invalid_request("logit_bias", "'logit_bias' is not supported", "unsupported_value");
  }
  if (auto it = j.find("user"); it != j.end() && !it->is_null() && !it->is_string()) wrong_type("user", "a string", *it);
  return r;
}

ResponseWriter::ResponseWriter(const ParsedRequest& r, const ServedModel& m, const Tokenizer& tok, const std::string& id, int64_t created)
    : r_(r),
      m_(m),
      tok_(tok),
      id_(!id.empty() ? id : random_id(r.chat ? "chatcmpl-" : "cmpl-")),
      created_(created ? created : unix_now()),
      prev_token_(r.gen.prompt.empty() ? -1 : r.gen.prompt.back()) {
  // The common chunk, split around its text.
  const std::string marker = "\u0001condense-text\u0001";
  const std::string whole = r_.chat ? chunk({{"index", r_.index}, {"delta", {{"content", marker}}}, {"logprobs", nullptr}, {"finish_reason", nullptr}}).dump()
                                    : chunk({{"index", r_.index}, {"text", marker}, {"logprobs", nullptr}, {"finish_reason", nullptr}}).dump();
  const std::string quoted = json(marker).dump();
  const size_t at = whole.find(quoted);
  plain_prefix_ = whole.substr(0, at);
  plain_suffix_ = whole.substr(at + quoted.size());
  if (r_.chat) logprobs_ = {{"content", json::array()}};
  else logprobs_ = {{"tokens", json::array()}, {"token_logprobs", json::array()}, {"top_logprobs", json::array()}, {"text_offset", json::array()}};
}

json ResponseWriter::chunk(json choice) const {
  json c = {{"id", id_}, {"object", r_.chat ? "chat.completion.chunk" : "text_completion"}, {"created", created_}, {"model", m_.id},
            {"choices", json::array({std::move(choice)})}};
  if (r_.include_usage) c["usage"] = nullptr;
  return c;
}

json ResponseWriter::usage(int prompt_tokens, int completion_tokens) const {
  return {{"prompt_tokens", prompt_tokens}, {"completion_tokens", completion_tokens}, {"total_tokens", prompt_tokens + completion_tokens}};
}

json ResponseWriter::logprobs_entry(const TokenOut& t) {
  // Token strings are the token's own text after the previous token, made
  // valid UTF-8; chat entries carry the raw bytes too.
  const std::string piece = sanitize_utf8(t.piece);
  json e;
  if (r_.chat) {
    json bytes = json::array();
    for (unsigned char c : t.piece) bytes.push_back(int(c));
    json top = json::array();
    for (const TokenLogprob& a : t.top) {
      const std::string raw = tok_.decode_token(prev_token_, a.token);
      json ab = json::array();
      for (unsigned char c : raw) ab.push_back(int(c));
      top.push_back({{"token", sanitize_utf8(raw)}, {"logprob", a.logprob}, {"bytes", ab}});
    }
    e = {{"token", piece}, {"logprob", t.logprob}, {"bytes", bytes}, {"top_logprobs", top}};
  } else {
    json top = json::object();
    for (const TokenLogprob& a : t.top) top[sanitize_utf8(tok_.decode_token(prev_token_, a.token))] = a.logprob;
    e = {{"token", piece}, {"logprob", t.logprob}, {"top", top}, {"offset", text_offset_}};
  }
  prev_token_ = t.token;
  return e;
}

void ResponseWriter::set_prompt_logprobs(const std::vector<TokenOut>& prompt) {
  // Completions format: one entry per prompt token, the first without a logprob.
  json tokens = json::array(), lps = json::array(), tops = json::array(), offsets = json::array();
  size_t offset = 0;
  int prev = -1;
  for (size_t i = 0; i < r_.gen.prompt.size(); ++i) {
    const int id = r_.gen.prompt[i];
    // BOS has no text (the offsets index the echoed prompt text).
    const std::string piece = id == m_.bos_id ? std::string() : sanitize_utf8(tok_.decode_token(prev, id));
    tokens.push_back(piece);
    offsets.push_back(offset);
    if (i == 0 || i - 1 >= prompt.size()) {
      lps.push_back(nullptr);
      tops.push_back(nullptr);
    } else {
      const TokenOut& e = prompt[i - 1];
      lps.push_back(e.logprob);
      json top = json::object();
      for (const TokenLogprob& a : e.top) top[sanitize_utf8(tok_.decode_token(prev, a.token))] = a.logprob;
      tops.push_back(top);
    }
    offset += piece.size();
    prev = id;
  }
  prompt_logprobs_ = {{"tokens", tokens}, {"token_logprobs", lps}, {"top_logprobs", tops}, {"text_offset", offsets}};
}

std::vector<std::string> ResponseWriter::echo_chunks() {
  std::vector<std::string> out;
  if (!r_.echo || echo_done_) return out;
  echo_done_ = true;
  json lp = r_.logprobs && prompt_logprobs_.is_object() ? prompt_logprobs_ : json(nullptr);
  out.push_back(chunk({{"index", r_.index}, {"text", r_.echo_text}, {"logprobs", lp}, {"finish_reason", nullptr}}).dump());
  text_offset_ = r_.echo_text.size();
  return out;
}

void ResponseWriter::echo_into_response() {
  if (!r_.echo || echo_done_) return;
  echo_done_ = true;
  if (r_.logprobs && prompt_logprobs_.is_object()) {
    for (const char* k : {"tokens", "token_logprobs", "top_logprobs", "text_offset"}) {
      for (const json& v : prompt_logprobs_[k]) logprobs_[k].push_back(v);
    }
  }
  text_offset_ = r_.echo_text.size();
}

std::vector<std::string> ResponseWriter::token_chunks(const TokenOut& t, const std::string& text) {
  std::vector<std::string> out = echo_chunks();
  json lp = nullptr;
  if (r_.logprobs) {
    json e = logprobs_entry(t);
    if (r_.chat) {
      lp = {{"content", json::array({e})}};
    } else {
      lp = {{"tokens", {e["token"]}}, {"token_logprobs", {e["logprob"]}}, {"top_logprobs", {e["top"]}}, {"text_offset", {e["offset"]}}};
    }
  } else {
    prev_token_ = t.token;
  }
  text_offset_ += text.size();
  // A token whose text is withheld (part of a character or of a possible stop
  // string) sends nothing unless it carries logprobs.
  if (text.empty() && lp.is_null()) return out;
  if (r_.chat && !sent_role_) {
    out.push_back(chunk({{"index", r_.index}, {"delta", {{"role", "assistant"}, {"content", ""}}}, {"logprobs", nullptr}, {"finish_reason", nullptr}}).dump());
    sent_role_ = true;
  }
  if (lp.is_null()) {
    out.push_back(plain_prefix_ + json(text).dump() + plain_suffix_);
  } else if (r_.chat) {
    out.push_back(chunk({{"index", r_.index}, {"delta", {{"content", text}}}, {"logprobs", lp}, {"finish_reason", nullptr}}).dump());
  } else {
    out.push_back(chunk({{"index", r_.index}, {"text", text}, {"logprobs", lp}, {"finish_reason", nullptr}}).dump());
  }
  return out;
}

std::vector<std::string> ResponseWriter::final_chunks(const std::string& text, FinishReason why) {
  std::vector<std::string> out = echo_chunks();
  const char* reason = why == FinishReason::Length ? "length" : "stop";
  if (r_.chat) {
    if (!sent_role_) {
      out.push_back(chunk({{"index", r_.index}, {"delta", {{"role", "assistant"}, {"content", ""}}}, {"logprobs", nullptr}, {"finish_reason", nullptr}}).dump());
      sent_role_ = true;
    }
    json delta = json::object();
    if (!text.empty()) delta["content"] = text;
    out.push_back(chunk({{"index", r_.index}, {"delta", delta}, {"logprobs", nullptr}, {"finish_reason", reason}}).dump());
  } else {
    out.push_back(chunk({{"index", r_.index}, {"text", text}, {"logprobs", nullptr}, {"finish_reason", reason}}).dump());
  }
  return out;
}

std::string ResponseWriter::usage_chunk(int prompt_tokens, int completion_tokens) const {
  return json{{"id", id_}, {"object", r_.chat ? "chat.completion.chunk" : "text_completion"}, {"created", created_}, {"model", m_.id},
              {"choices", json::array()}, {"usage", usage(prompt_tokens, completion_tokens)}}
      .dump();
}

void ResponseWriter::add(const TokenOut& t, const std::string& text) {
  echo_into_response();
  if (r_.logprobs) {
    json e = logprobs_entry(t);
    if (r_.chat) {
      logprobs_["content"].push_back(e);
    } else {
      logprobs_["tokens"].push_back(e["token"]);
      logprobs_["token_logprobs"].push_back(e["logprob"]);
      logprobs_["top_logprobs"].push_back(e["top"]);
      logprobs_["text_offset"].push_back(e["offset"]);
    }
  } else {
    prev_token_ = t.token;
  }
  text_offset_ += text.size();
  text_ += text;
}

json ResponseWriter::response(const std::string& text, FinishReason why, int prompt_tokens, int completion_tokens) {
  echo_into_response();
  text_ += text;
  if (r_.echo) text_ = r_.echo_text + text_;
  const char* reason = why == FinishReason::Length ? "length" : "stop";
  json choice = {{"index", r_.index}, {"logprobs", r_.logprobs ? logprobs_ : json(nullptr)}, {"finish_reason", reason}};
  if (r_.chat) choice["message"] = {{"role", "assistant"}, {"content", text_}};
  else choice["text"] = text_;
  return {{"id", id_}, {"object", r_.chat ? "chat.completion" : "text_completion"}, {"created", created_}, {"model", m_.id},
          {"choices", json::array({choice})}, {"usage", usage(prompt_tokens, completion_tokens)}};
}

}  // namespace condense
