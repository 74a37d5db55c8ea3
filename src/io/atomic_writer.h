// AtomicWriter: writes a file under a temporary name in the same folder and
// renames it into place on commit(), so a failure never leaves a partial file.
#pragma once
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

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

// The temporary name a writer of `path` uses: "<path>.tmp.<pid>".
std::string temporary_path(const std::string& path);
// Temporary files in `dir` left by writers that no longer run (a process
// killed between creating one and renaming it): removed, and their names
// returned so the caller can say so. A temporary of a live process is kept.
std::vector<std::string> remove_stale_temporaries(const std::string& dir);
// fsync of an existing file by name (before a rename makes it visible).
void sync_file(const std::string& path);

}  // namespace condense
