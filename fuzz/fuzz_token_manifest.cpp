// Token-shard folder: the input is manifest.json, beside two valid shards of 64 tokens.
#include <cstdint>
#include <vector>

#include "core/error.h"
#include "fuzz/fuzz_input.h"
#include "train/token_data.h"

CONDENSE_FUZZ_TARGET(data, size) {
  static const bool shards = [] {
    std::vector<uint32_t> t(64);
    for (uint32_t i = 0; i < 64; ++i) t[i] = (i * 7) % 40;
    for (const char* n : {"train-00000.bin", "val-00000.bin"}) condense::fuzz::input_file(reinterpret_cast<const uint8_t*>(t.data()), 256, n);
    return true;
  }();
  (void)shards;
  condense::fuzz::input_file(data, size, "manifest.json");
  condense::train::TokenDataset::open(condense::fuzz::work_dir(), "");
}
