// A chat template (Jinja, as GGUF files and tokenizer_config.json carry them)
// rendered for a short conversation.
#include <string>

#include "core/error.h"
#include "fuzz/fuzz_input.h"
#include "serve/chat_template.h"

CONDENSE_FUZZ_TARGET(data, size) {
  const condense::ChatTemplate t = condense::ChatTemplate::jinja(std::string(reinterpret_cast<const char*>(data), size), "<s>", "</s>", "template");
  t.apply({{"system", "Be brief."}, {"user", "Hi"}, {"assistant", "Hello."}, {"user", "Why?"}});
}
