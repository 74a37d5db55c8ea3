#include "io/gguf.h"

#include "core/error.h"

namespace condense {

GgufModel load_gguf_model(const std::string& path) {
  fail(path, "GGUF loading is not implemented yet", "Convert the model to a Hugging Face safetensors folder first");
}

}  // namespace condense
