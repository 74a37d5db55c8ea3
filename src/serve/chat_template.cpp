#include "serve/chat_template.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "io/file_view.h"
#include "core/json_text.h"
#include "serve/jinja.h"

namespace condense {

ChatTemplate::ChatTemplate()
    : roles_{{"system", "System: {content}\n"}, {"user", "User: {content}\n"}, {"assistant", "Assistant: {content}\n"}},
      generation_prompt_("Assistant:"),
      name_("plain") {}

ChatTemplate ChatTemplate::from_file(const std::string& path, const std::string& bos_text, const std::string& eos_text) {
  std::stringstream ss;
  ss << read_text_file(path);
  const nlohmann::json j = try_parse_json(ss.str());
  if (!j.is_discarded() && j.is_object()) {
    ChatTemplate t = from_json_text(ss.str(), path);
    t.bos_text_ = bos_text;
    t.eos_text_ = eos_text;
    return t;
  }
  ChatTemplate t = jinja(ss.str(), bos_text, eos_text, path);
  t.apply({{"user", "x"}});  // a template that cannot render fails now, not on the first request
  return t;
}

ChatTemplate ChatTemplate::jinja(std::string source, std::string bos_text, std::string eos_text, std::string where) {
  ChatTemplate t;
  t.roles_.clear();
  t.generation_prompt_.clear();
  t.jinja_ = std::move(source);
  t.bos_text_ = std::move(bos_text);
  t.eos_text_ = std::move(eos_text);
  t.name_ = std::move(where);
  return t;
}

ChatTemplate ChatTemplate::from_json_text(const std::string& text, const std::string& where) {
  const nlohmann::json j = try_parse_json(text);
  if (j.is_discarded() || !j.is_object()) {
    fail(where, "a chat template is a JSON object of role formats (docs/SERVE.md), e.g. {\"user\": \"[INST] {content} [/INST]\", ...}");
  }
  ChatTemplate t;
  t.roles_.clear();
  t.generation_prompt_.clear();
  t.name_ = where;
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (!it.value().is_string()) fail(where, "\"" + it.key() + "\" must be a string");
    const std::string v = it.value().get<std::string>();
    if (it.key() == "generation_prompt") {
      t.generation_prompt_ = v;
      continue;
    }
    if (it.key() != "system" && it.key() != "user" && it.key() != "assistant") {
      fail(where, "unknown key \"" + it.key() + "\" (system, user, assistant, generation_prompt)");
    }
    const size_t p = v.find("{content}");
    if (p == std::string::npos || v.find("{content}", p + 1) != std::string::npos) {
      fail(where, "\"" + it.key() + "\" must hold {content} exactly once");
    }
    t.roles_.emplace_back(it.key(), v);
  }
  if (t.roles_.empty()) fail(where, "no role formats (system, user, assistant)");
  return t;
}

std::string ChatTemplate::apply(const std::vector<ChatMessage>& messages) const {
  if (!jinja_.empty()) {
    nlohmann::json msgs = nlohmann::json::array();
    for (const ChatMessage& m : messages) msgs.push_back({{"role", m.role}, {"content", m.content}});
    const nlohmann::json vars = {{"messages", msgs}, {"add_generation_prompt", true}, {"bos_token", bos_text_}, {"eos_token", eos_text_}};
    return jinja::render(jinja_, vars, name_);
  }
  std::string out;
  for (size_t i = 0; i < messages.size(); ++i) {
    const std::string role = messages[i].role == "developer" ? "system" : messages[i].role;
    const std::string* fmt = nullptr;
    for (const auto& r : roles_) {
      if (r.first == role) fmt = &r.second;
    }
    if (!fmt) fail("messages[" + std::to_string(i) + "].role", "\"" + messages[i].role + "\" has no format in the chat template " + name_);
    const size_t p = fmt->find("{content}");
    out += fmt->substr(0, p) + messages[i].content + fmt->substr(p + 9);
  }
  return out + generation_prompt_;
}

}  // namespace condense
