// llama2.c checkpoint (.bin): header, sizes against the file, weights.
#include "core/error.h"
#include "fuzz/fuzz_input.h"
#include "io/llama2c.h"

CONDENSE_FUZZ_TARGET(data, size) { condense::load_llama2c(condense::fuzz::input_file(data, size, "model.bin")); }
