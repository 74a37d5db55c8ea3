// Chat messages -> prompt text, three ways:
// - the model's own Jinja chat template (a Hugging Face folder's
//   chat_template.jinja / tokenizer_config.json, GGUF tokenizer.chat_template),
//   rendered as transformers renders it (serve/jinja.h) with messages,
//   add_generation_prompt = true, bos_token and eos_token;
// - --chat-template FILE: a Jinja template, or a JSON object of role formats
//     {"system": "<<SYS>>{content}<</SYS>>\n", "user": "[INST] {content} [/INST]",
//      "assistant": " {content} </s>", "generation_prompt": ""}
//   (each role's format holding {content} once; a role it lacks is refused);
// - else a plain one: "System: ...", "User: ...", "Assistant: ..." lines, then
//   "Assistant:" (docs/SERVE.md).
#pragma once
#include <string>
#include <utility>
#include <vector>

namespace condense {

struct ChatMessage {
  std::string role;  // system | user | assistant (| developer: as system)
  std::string content;
};

class ChatTemplate {
 public:
  ChatTemplate();  // the plain default
  // A file: JSON role formats when it parses as a JSON object, else Jinja.
  static ChatTemplate from_file(const std::string& path, const std::string& bos_text, const std::string& eos_text);
  static ChatTemplate from_json_text(const std::string& text, const std::string& where);
  static ChatTemplate jinja(std::string source, std::string bos_text, std::string eos_text, std::string where);
  // Throws Error naming the message's role (role formats) or the template's line (Jinja).
  std::string apply(const std::vector<ChatMessage>& messages) const;
  std::string name() const { return name_; }
  bool is_jinja() const { return !jinja_.empty(); }
  // The special tokens' text as the template writes them ("" when unknown).
  const std::string& bos_text() const { return bos_text_; }
  const std::string& eos_text() const { return eos_text_; }

 private:
  std::vector<std::pair<std::string, std::string>> roles_;  // role -> format with {content}
  std::string generation_prompt_;
  std::string jinja_;
  std::string bos_text_, eos_text_;
  std::string name_;
};

}  // namespace condense
