// GGUF: header, metadata, tensor infos and data layout, weights, the embedded tokenizer.
#include "core/error.h"
#include "fuzz/fuzz_input.h"
#include "io/gguf.h"

CONDENSE_FUZZ_TARGET(data, size) {
  const std::string path = condense::fuzz::input_file(data, size, "model.gguf");
  condense::read_gguf_config(path);
  const condense::GgufModel g = condense::load_gguf_model(path);
  if (g.tokenizer) g.tokenizer->decode(g.tokenizer->encode("Once upon a time, 42 \xc3\xa9\n"));
}
