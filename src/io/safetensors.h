// safetensors: u64 little-endian header length N, N bytes of JSON
// {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}},
// then the data; offsets are relative to the end of the header. The reader checks
// every entry against the file length and its dtype/shape; the writer stores f32,
// bf16 or f16 and pads the header to 8 bytes. Reading rules (as the reference
// Rust reader): header ≤ 100 MiB of JSON nesting ≤ 128; __metadata__ an object
// of strings; shapes of ≤ 8 non-negative integers whose element and byte counts
// do not overflow; the tensors tile the data exactly, in offset order, each
// starting where the previous one ended and the last ending at the file's end.
#pragma once
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"
#include "io/file_view.h"

namespace condense {

struct SafetensorsEntry {
  std::string dtype_name;  // as written in the file, e.g. "BF16"
  DType dtype;             // for float and I8 entries; I32 / I64 / U8 (quantized checkpoints' packed codes) are raw only
  bool raw_only = false;   // I32, I64, U8: bytes(), not read_f32()
  Shape shape;
  uint64_t offset = 0;     // absolute file offset
  uint64_t nbytes = 0;
};

class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& path);
  const std::string& path() const { return file_->path(); }
  const std::map<std::string, SafetensorsEntry>& entries() const { return entries_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  bool has(const std::string& name) const { return entries_.count(name) != 0; }
  // The tensor converted to f32; throws naming the file and tensor if absent.
  Tensor read_f32(const std::string& name) const;
  // The tensor's bytes as stored (little-endian); throws if absent.
  const uint8_t* bytes(const std::string& name) const;
  const SafetensorsEntry& entry(const std::string& name) const;

 private:
  std::unique_ptr<FileView> file_;
  std::map<std::string, SafetensorsEntry> entries_;
  std::map<std::string, std::string> metadata_;
};

// One tensor for a sharded writer: its bytes made on demand, so one tensor at a
// time is in memory. dtype is the safetensors name ("BF16", "I32", ...).
struct SafetensorsItem {
  std::string name, dtype;
  std::vector<int64_t> shape;
  uint64_t nbytes = 0;
  std::function<void(std::vector<uint8_t>&)> bytes;
};
// Writes `items` (in order) into folder `dir` (which must exist): one
// model.safetensors when max_shard_bytes is 0 or everything fits, else
// model-0000k-of-0000N.safetensors files of at most max_shard_bytes of tensor
// data each (a bigger tensor gets a file of its own) and
// model.safetensors.index.json, as transformers writes them. Returns the files.
std::vector<std::string> write_safetensors_shards(const std::string& dir, const std::vector<SafetensorsItem>& items, uint64_t max_shard_bytes,
                                                  const std::map<std::string, std::string>& metadata = {});

void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

}  // namespace condense
