// Chat messages -> prompt text. The default template is plain text, one turn
// per message ("System: ...", "User: ...", "Assistant: ...", each ending with a
// newline) and "Assistant:" last, the turn the model writes; docs/SERVE.md.
// --chat-template FILE gives another as JSON:
//   {"system": "<<SYS>>{content}<</SYS>>\n", "user": "[INST] {content} [/INST]",
//    "assistant": " {content} </s>", "generation_prompt": ""}
// every role string holding "{content}" once; a role it lacks is refused.
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
  ChatTemplate();                                      // the plain default
  static ChatTemplate from_file(const std::string& path);
  static ChatTemplate from_json_text(const std::string& text, const std::string& where);
  // Throws Error naming the message's role when the template has none for it.
  std::string apply(const std::vector<ChatMessage>& messages) const;
  std::string name() const { return name_; }

 private:
  std::vector<std::pair<std::string, std::string>> roles_;  // role -> format with {content}
  std::string generation_prompt_;
  std::string name_;
};

}  // namespace condense
