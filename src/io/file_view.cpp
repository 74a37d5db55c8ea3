#include "io/file_view.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <sstream>

namespace condense {

FileView::FileView(const std::string& path) : path_(path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) fail(path, std::string("cannot open: ") + std::strerror(errno), "Check the path");
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(path, "not a regular file");
  }
  size_ = uint64_t(st.st_size);
  if (size_ > 0) {
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      ::close(fd);
      fail(path, std::string("cannot map: ") + std::strerror(errno));
    }
    data_ = static_cast<const uint8_t*>(p);
  }
  ::close(fd);
}

FileView::~FileView() {
  if (data_ && owned_) ::munmap(const_cast<uint8_t*>(data_), size_);
}

void FileView::require(uint64_t offset, uint64_t n, const std::string& what) const {
  if (offset > size_ || n > size_ - offset) {
    fail(path_, what + " at byte " + std::to_string(offset) + " (+" + std::to_string(n) + " bytes) runs past the end of the file (" +
                    std::to_string(size_) + " bytes)",
         "The file is truncated or not in the expected format");
  }
}

std::string read_text_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail(path, "cannot open", "Check the path");
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

}  // namespace condense
