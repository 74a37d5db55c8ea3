// .cpk: preamble, header, section table, every tensor form (dense, quantized,
// sparse, zstd), KV and activation scales, the embedded tokenizer; and `info`.
#include "core/error.h"
#include "fuzz/fuzz_input.h"
#include "io/cpk.h"

CONDENSE_FUZZ_TARGET(data, size) {
  const std::string path = condense::fuzz::input_file(data, size, "model.cpk");
  condense::read_cpk_info(path);
  condense::load_cpk(path, true);
}
