#include "train/token_data.h"

#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/atomic_writer.h"
#include "io/file_view.h"
#include "core/json_text.h"
#include "model/config.h"

namespace condense::train {

namespace fs = std::filesystem;

std::string tokenizer_fingerprint(const Tokenizer& tok) {
  uint64_t h = 1469598103934665603ull;
  auto mix = [&](const std::string& s) {
    for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
    h = (h ^ 0xff) * 1099511628211ull;  // separator, so "ab","c" != "a","bc"
  };
  for (int i = 0; i < tok.vocab_size(); ++i) mix(tok.decode_token(-1, i));
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", (unsigned long long)h);
  return tok.kind() + ":" + std::to_string(tok.vocab_size()) + ":" + hex;
}

namespace {
struct Split {
  std::vector<int> train, val;
  nlohmann::json files = nlohmann::json::array();
};

Split tokenize_files(const Tokenizer& tok, const PrepareOptions& opt) {
  if (opt.texts.empty()) fail("data prepare", "no text files given", "Pass --text FILE (one or more)");
  if (!(opt.val_fraction >= 0 && opt.val_fraction < 1)) fail("data prepare", "val_fraction must be in [0, 1)");
  Split s;
  for (const std::string& path : opt.texts) {
    std::string text = read_text_file(path);
    size_t start = 0;
    if (opt.skip_bytes > 0) {
      if (size_t(opt.skip_bytes) >= text.size()) {
        fail(path, "skip_bytes " + std::to_string(opt.skip_bytes) + " is past the end of the file (" + std::to_string(text.size()) + " bytes)");
      }
      start = text.find('\n', size_t(opt.skip_bytes));  // do not start inside a word or a UTF-8 sequence
      start = start == std::string::npos ? text.size() : start + 1;
    }
    const std::vector<int> ids = tok.encode(text.substr(start));
    const size_t n_val = size_t(double(ids.size()) * opt.val_fraction);
    const size_t n_train = ids.size() - n_val;
    s.train.insert(s.train.end(), ids.begin(), ids.begin() + long(n_train));
    s.val.insert(s.val.end(), ids.begin() + long(n_train), ids.end());
    s.files.push_back({{"path", path}, {"bytes", text.size()}, {"bytes_skipped", start}, {"train_tokens", n_train}, {"val_tokens", n_val}});
  }
  return s;
}

nlohmann::json write_shards(const std::vector<int>& ids, const std::string& dir, const std::string& prefix, int64_t per_shard) {
  nlohmann::json list = nlohmann::json::array();
  for (int64_t i = 0, k = 0; i < int64_t(ids.size()); i += per_shard, ++k) {
    char name[64];
    std::snprintf(name, sizeof name, "%s-%05lld.bin", prefix.c_str(), (long long)k);
    const int64_t n = std::min<int64_t>(per_shard, int64_t(ids.size()) - i);
    std::vector<uint32_t> u(ids.begin() + i, ids.begin() + i + n);
    AtomicWriter w((fs::path(dir) / name).string());
    w.write(u.data(), u.size() * 4);
    w.commit();
    list.push_back({{"file", name}, {"tokens", n}});
  }
  return list;
}

std::vector<int> read_shards(const std::string& dir, const nlohmann::json& list, int vocab) {
  std::vector<int> out;
  if (!list.is_array()) fail(dir, "manifest.json: a shard list is not an array");
  for (const auto& e : list) {
    const std::string file = e.at("file").get<std::string>();
    if (file.empty() || file.find('/') != std::string::npos || file == "." || file == "..") {
      fail(dir, "manifest.json names shard '" + file + "', which is not a file in the folder");
    }
    const std::string path = (fs::path(dir) / file).string();
    FileView f(path);
    const int64_t n = json_int(e.at("tokens"), path, "tokens", 0, int64_t(f.size() / 4));  // a count the file cannot hold is refused before any allocation
    if (f.size() != uint64_t(n) * 4) {
      fail(path, "holds " + std::to_string(f.size()) + " bytes, the manifest says " + std::to_string(n) + " tokens",
           "Re-run condense data prepare");
    }
    const size_t base = out.size();
    out.resize(base + size_t(n));
    for (int64_t i = 0; i < n; ++i) {
      uint32_t v;
      std::memcpy(&v, f.data() + i * 4, 4);
      if (v >= uint32_t(vocab)) fail(path, "token " + std::to_string(v) + " at index " + std::to_string(i) + " is outside the vocabulary of " + std::to_string(vocab));
      out[base + size_t(i)] = int(v);
    }
  }
  return out;
}

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}
}  // namespace

PrepareResult prepare_token_data(const Tokenizer& tok, const PrepareOptions& opt, const std::string& out_dir) {
  Split s = tokenize_files(tok, opt);
  std::error_code ec;
  fs::create_directories(out_dir, ec);
  if (ec) fail(out_dir, "cannot create the output folder: " + ec.message());
  nlohmann::json man = {{"format", "condense-tokens"},
                        {"version", 1},
                        {"dtype", "u32le"},
                        {"tokenizer", {{"kind", tok.kind()}, {"vocab", tok.vocab_size()}, {"fingerprint", tokenizer_fingerprint(tok)}}},
                        {"val_fraction", opt.val_fraction},
                        {"skip_bytes", opt.skip_bytes},
                        {"files", s.files},
                        {"train_tokens", s.train.size()},
                        {"val_tokens", s.val.size()},
                        {"train", write_shards(s.train, out_dir, "train", opt.shard_tokens)},
                        {"val", write_shards(s.val, out_dir, "val", opt.shard_tokens)}};
  PrepareResult r{int64_t(s.train.size()), int64_t(s.val.size()), (fs::path(out_dir) / "manifest.json").string()};
  write_file_atomically(r.manifest_path, man.dump(2) + "\n");
  return r;
}

TokenDataset TokenDataset::open(const std::string& dir, const std::string& expect) {
  const std::string mpath = (fs::path(dir) / "manifest.json").string();
  if (!fs::exists(mpath)) fail(dir, "has no manifest.json", "Create it with: condense data prepare --text FILE --tokenizer T --out " + dir);
  const nlohmann::json man = parse_json(read_text_file(mpath), mpath);
  if (!man.is_object() || man.value("format", nlohmann::json()) != "condense-tokens" || man.value("version", nlohmann::json()) != 1) {
    fail(mpath, "is not a version-1 condense token manifest");
  }
  TokenDataset d;
  try {
    d.fingerprint_ = man.at("tokenizer").at("fingerprint").get<std::string>();
    if (!expect.empty() && d.fingerprint_ != expect) {
      fail(mpath, "was tokenized with " + d.fingerprint_ + ", but the model's tokenizer is " + expect,
           "Prepare the data again with the model's tokenizer");
    }
    const int vocab = int(json_int(man.at("tokenizer").at("vocab"), mpath, "tokenizer.vocab", 1, kMaxVocab));
    d.train_ = read_shards(dir, man.at("train"), vocab);
    d.val_ = read_shards(dir, man.at("val"), vocab);
  } catch (const nlohmann::json::exception& e) {
    fail(mpath, std::string("has a missing or mistyped field: ") + e.what());
  }
  return d;
}

TokenDataset TokenDataset::from_tokens(std::vector<int> train, std::vector<int> val, std::string fingerprint) {
  TokenDataset d;
  d.train_ = std::move(train);
  d.val_ = std::move(val);
  d.fingerprint_ = std::move(fingerprint);
  return d;
}

TokenDataset TokenDataset::from_text(const Tokenizer& tok, const PrepareOptions& opt) {
  Split s = tokenize_files(tok, opt);
  return from_tokens(std::move(s.train), std::move(s.val), tokenizer_fingerprint(tok));
}

void TokenDataset::sample(uint64_t seed, int64_t step, int micro, int batch, int seq, int bos, int* inputs, int* targets,
                          int first_window) const {
  const int64_t span = int64_t(train_.size()) - seq;
  if (span < 0) {
    fail("TokenDataset", "the training split holds " + std::to_string(train_.size()) + " tokens, fewer than one window of " +
                             std::to_string(seq));
  }
  for (int b = 0; b < batch; ++b) {
    const uint64_t key = splitmix64(seed ^ splitmix64(uint64_t(step) * 0x100000001b3ull + uint64_t(micro) * 65537u + uint64_t(first_window + b)));
    const int64_t s = int64_t(key % uint64_t(span + 1));
    int* in = inputs + int64_t(b) * seq;
    int* tg = targets + int64_t(b) * seq;
    in[0] = bos;
    for (int t = 0; t < seq; ++t) {
      tg[t] = train_[size_t(s + t)];
      if (t + 1 < seq) in[t + 1] = tg[t];
    }
  }
}

int TokenDataset::val_windows(int seq, int max_windows) const {
  const int64_t n = int64_t(val_.size()) / seq;
  return int(std::min<int64_t>(n, max_windows));
}

void TokenDataset::val_window(int index, int seq, int bos, int* inputs, int* targets) const {
  const int64_t s = int64_t(index) * seq;
  if (s + seq > int64_t(val_.size())) fail("TokenDataset", "validation window " + std::to_string(index) + " is past the held-out split");
  inputs[0] = bos;
  for (int t = 0; t < seq; ++t) {
    targets[t] = val_[size_t(s + t)];
    if (t + 1 < seq) inputs[t + 1] = targets[t];
  }
}

}  // namespace condense::train
