// FileView: a read-only memory map of a whole file with bounds-checked reads
// that name the file and the offset when input is short or malformed.
#pragma once
#include <cstdint>
#include <cstring>
#include <string>

#include "core/error.h"

namespace condense {

class FileView {
 public:
  explicit FileView(const std::string& path);
  // A view of bytes held elsewhere (an embedded file); `name` is used in errors.
  FileView(std::string name, const uint8_t* data, uint64_t size) : path_(std::move(name)), data_(data), size_(size), owned_(false) {}
  ~FileView();
  FileView(const FileView&) = delete;
  FileView& operator=(const FileView&) = delete;

  const std::string& path() const { return path_; }
  uint64_t size() const { return size_; }
  const uint8_t* data() const { return data_; }

  // Tells the kernel the mapped pages of [offset, offset + n) are done with:
  // they leave this process's resident set (the page cache keeps them), so
  // reading a big file section by section does not hold all of it.
  void release(uint64_t offset, uint64_t n) const;
  // Throws unless [offset, offset + n) lies inside the file; `what` names the item.
  void require(uint64_t offset, uint64_t n, const std::string& what) const;
  template <typename T>
  T read(uint64_t offset, const std::string& what) const {
    require(offset, sizeof(T), what);
    T v;
    std::memcpy(&v, data_ + offset, sizeof(T));
    return v;
  }

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
  bool owned_ = true;
};

// Fails naming `path` unless it is a regular file (a FIFO, device or folder
// would block or mislead a reader); checked without opening it.
void require_regular_file(const std::string& path);
std::string read_text_file(const std::string& path);

}  // namespace condense
