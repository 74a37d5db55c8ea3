// Token data for training: `condense data prepare` tokenizes text files once into
// u32 token shards plus a JSON manifest (tokenizer fingerprint, counts, split);
// TokenDataset samples training windows reproducibly from (seed, step) and
// serves fixed held-out windows for validation.
//
// Each window mirrors the perplexity protocol: targets are tokens[s, s + seq),
// inputs are [BOS] + tokens[s, s + seq - 1), so training sees what evaluation scores.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "model/tokenizer.h"

namespace condense::train {

// Identifies a tokenizer: kind, vocabulary size and FNV-1a 64 over every
// token's text, as "kind:vocab:hex". Equal vocabularies give equal fingerprints.
std::string tokenizer_fingerprint(const Tokenizer& tok);

struct PrepareOptions {
  std::vector<std::string> texts;
  double val_fraction = 0.05;   // the tail of each file
  int64_t skip_bytes = 0;       // of each file's start (then on to the next line)
  int64_t shard_tokens = int64_t(1) << 26;
};

struct PrepareResult {
  int64_t train_tokens = 0, val_tokens = 0;
  std::string manifest_path;
};

// Writes DIR/train-NNNNN.bin, DIR/val-NNNNN.bin (u32 little-endian) and
// DIR/manifest.json; every file goes through a temporary name, the manifest last.
PrepareResult prepare_token_data(const Tokenizer& tok, const PrepareOptions& opt, const std::string& out_dir);

class TokenDataset {
 public:
  // Reads DIR/manifest.json and its shards; `expect_fingerprint` (if not empty)
  // must match the manifest's tokenizer.
  static TokenDataset open(const std::string& dir, const std::string& expect_fingerprint);
  static TokenDataset from_tokens(std::vector<int> train, std::vector<int> val, std::string fingerprint);
  // Tokenizes text files in memory (what prepare would write), for recipes that name text.
  static TokenDataset from_text(const Tokenizer& tok, const PrepareOptions& opt);

  // Appends tokens (e.g. teacher-generated samples) to the training split.
  void append_train(const std::vector<int>& ids) { train_.insert(train_.end(), ids.begin(), ids.end()); }
  int64_t train_tokens() const { return int64_t(train_.size()); }
  int64_t val_tokens() const { return int64_t(val_.size()); }
  const std::string& fingerprint() const { return fingerprint_; }

  // Fills inputs/targets [batch * seq] with windows first_window.. of
  // optimizer step `step`, micro-batch `micro`: each window a pure function of
  // (seed, step, micro, window), so resuming needs only the step and ranks can
  // take slices of one micro-batch.
  void sample(uint64_t seed, int64_t step, int micro, int batch, int seq, int bos, int* inputs, int* targets,
              int first_window = 0) const;
  // Held-out windows 0.. of seq tokens; returns how many exist (<= max_windows).
  int val_windows(int seq, int max_windows) const;
  void val_window(int index, int seq, int bos, int* inputs, int* targets) const;

 private:
  std::vector<int> train_, val_;
  std::string fingerprint_;
};

}  // namespace condense::train
