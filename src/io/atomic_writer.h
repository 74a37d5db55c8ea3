// AtomicWriter: writes a file under a temporary name in the same folder and
// renames it into place on commit(), so a failure never leaves a partial file.
#pragma once
#include <cstdint>
#include <cstdio>
#include <string>

namespace condense {

class AtomicWriter {
 public:
  explicit AtomicWriter(const std::string& path);
  ~AtomicWriter();  // removes the temporary file unless committed
  AtomicWriter(const AtomicWriter&) = delete;
  AtomicWriter& operator=(const AtomicWriter&) = delete;

  void write(const void* data, size_t n);
  void write_zeros(size_t n);
  uint64_t offset() const { return offset_; }
  void commit();

 private:
  std::string path_, tmp_;
  std::FILE* f_ = nullptr;
  uint64_t offset_ = 0;
};

// The whole of `bytes` as `path`, through a temporary name (the class above).
void write_file_atomically(const std::string& path, const std::string& bytes);

}  // namespace condense
