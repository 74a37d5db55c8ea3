// llama2.c tokenizer.bin, then a round trip through it.
#include "core/error.h"
#include "fuzz/fuzz_input.h"
#include "io/file_view.h"
#include "io/llama2c.h"

CONDENSE_FUZZ_TARGET(data, size) {
  const auto tok = condense::parse_llama2c_tokenizer(condense::FileView("tokenizer.bin", data, size));
  tok->decode(tok->encode("Once upon a time, 42 \xc3\xa9 \xf0\x9f\x98\x80\n"));
}
