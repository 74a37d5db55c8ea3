// The OpenAI API's request and response shapes (../shared/INTEROP.md A.5):
// parsing /v1/completions and /v1/chat/completions bodies into a GenRequest,
// with every field's type and range checked and named in the error, and
// building responses, stream chunks and error bodies.
#pragma once
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/tokenizer.h"
#include "serve/chat_template.h"
#include "serve/scheduler.h"

namespace condense {

// An error answered in OpenAI's shape: {"error": {"message", "type", "param", "code"}}.
struct ApiError : std::runtime_error {
  ApiError(int status, std::string message, std::string type, std::string param = "", std::string code = "")
      : std::runtime_error(message), status(status), type(std::move(type)), param(std::move(param)), code(std::move(code)) {}
  int status;
  std::string type, param, code;
};
ApiError invalid_request(const std::string& param, const std::string& message, const std::string& code = "invalid_value");
nlohmann::json error_body(int status, const std::string& message, const std::string& type, const std::string& param = "",
                          const std::string& code = "");
nlohmann::json error_body(const ApiError& e);

// What the server knows about the model it serves.
struct ServedModel {
  std::string id;        // the name clients send as "model"
  std::string root;      // the path it was loaded from
  int max_seq = 0;       // context length
  int vocab = 0;
  int bos_id = 1, eos_id = 2;
  const Tokenizer* tokenizer = nullptr;
  const ChatTemplate* chat_template = nullptr;
  int64_t created = 0;   // unix seconds, when the server started
};

// The description of a loaded model (created: now).
ServedModel served_model(std::string id, std::string root, const ModelConfig& c, const Tokenizer& tok, const ChatTemplate& t);

struct ParsedRequest {
  bool chat = false;
  bool stream = false, include_usage = false;
  bool logprobs = false;  // completions: "logprobs" given; chat: "logprobs": true
  bool echo = false;      // completions: the prompt's text (and, with logprobs, its tokens' logprobs) before the completion
  std::string echo_text;  // this choice's prompt text
  GenRequest gen;         // this choice's (gen.prompt = prompts[index])
  int index = 0;          // the choice
  // Every prompt of the request (completions may send several: a choice
  // each), tokenized, and their texts (as sent, or decoded from token ids).
  std::vector<std::vector<int>> prompts;
  std::vector<std::string> echo_texts;
  int n = 1;  // choices per prompt (sampled with seeds derived from the request's)
};

// A chat template's text as prompt tokens: BOS first (a leading BOS text is
// that token), the template's BOS / EOS text elsewhere as those tokens.
std::vector<int> chat_prompt_tokens(const std::string& text, const ServedModel& m);

// Throws ApiError (400 for a malformed body or a bad field, 404 for an unknown model).
ParsedRequest parse_request(const std::string& body, bool chat, const ServedModel& m);

// Builders for the responses of one request (the same id and created on every chunk).
class ResponseWriter {
 public:
  // One choice's writer (r.index); the choices of a request share `id` and
  // `created` (empty / 0: new ones).
  ResponseWriter(const ParsedRequest& r, const ServedModel& m, const Tokenizer& tok, const std::string& id = "", int64_t created = 0);
  const std::string& id() const { return id_; }
  int64_t created() const { return created_; }
  // The stream chunks (serialized JSON) for one token's text (and logprobs);
  // the chat's first also gets a role-only chunk before it (sent once the
  // first token exists). The common chunk is spliced from a prepared prefix
  // and suffix around the text: it is sent once per token.
  std::vector<std::string> token_chunks(const TokenOut& t, const std::string& text);
  // The choice's last chunk (finish_reason, any withheld text).
  std::vector<std::string> final_chunks(const std::string& text, FinishReason why);
  // With include_usage, after every choice's last chunk: the request's usage.
  std::string usage_chunk(int prompt_tokens, int completion_tokens) const;
  // Echo: the prompt's logprobs (from the scheduler), sent with the prompt's text first.
  void set_prompt_logprobs(const std::vector<TokenOut>& prompt);
  // Non-streaming: accumulate, then the whole response.
  void add(const TokenOut& t, const std::string& text);
  nlohmann::json response(const std::string& text, FinishReason why, int prompt_tokens, int completion_tokens);

 private:
  nlohmann::json chunk(nlohmann::json choice) const;
  std::string plain_prefix_, plain_suffix_;  // a no-logprobs token chunk: prefix + JSON string of the text + suffix
  nlohmann::json logprobs_entry(const TokenOut& t);
  // Echo, once: the prompt's text and its logprobs (completions format), as a chunk or into the response.
  std::vector<std::string> echo_chunks();
  void echo_into_response();
  nlohmann::json prompt_logprobs_;  // completions-format arrays for the prompt tokens
  bool echo_done_ = false;
  nlohmann::json usage(int prompt_tokens, int completion_tokens) const;
  const ParsedRequest& r_;
  const ServedModel& m_;
  const Tokenizer& tok_;
  std::string id_;
  int64_t created_;
  bool sent_role_ = false;
  std::string text_;
  size_t text_offset_ = 0;
  int prev_token_;
  nlohmann::json logprobs_;  // accumulated for the non-streaming response
};

}  // namespace condense
