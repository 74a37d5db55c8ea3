#include "io/file_view.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <sstream>

namespace condense {

void require_regular_file(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) fail(path, std::string("cannot open: ") + std::strerror(errno), "Check the path");
  if (!S_ISREG(st.st_mode)) {
    fail(path, S_ISFIFO(st.st_mode) ? "is a FIFO, not a regular file" : S_ISDIR(st.st_mode) ? "is a directory, not a regular file" : "is not a regular file",
         "condense reads models and data from regular files (a pipe or device could block forever)");
  }
}

FileView::FileView(const std::string& path) : path_(path) {
  // O_NONBLOCK: opening a FIFO would otherwise wait for a writer forever; for
  // a regular file the flag changes nothing, and anything else is refused below.
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) fail(path, std::string("cannot open: ") + std::strerror(errno), "Check the path");
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    require_regular_file(path);  // says what it is instead
    fail(path, "is not a regular file");
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

void FileView::release(uint64_t offset, uint64_t n) const {
  if (!owned_ || !data_ || offset >= size_) return;
  const uint64_t page = uint64_t(::sysconf(_SC_PAGESIZE));
  const uint64_t lo = (offset + page - 1) / page * page, hi = std::min(size_, offset + n) / page * page;
  if (hi > lo) ::madvise(const_cast<uint8_t*>(data_) + lo, hi - lo, MADV_DONTNEED);
}

void FileView::require(uint64_t offset, uint64_t n, const std::string& what) const {
  if (offset > size_ || n > size_ - offset) {
    fail(path_, what + " at byte " + std::to_string(offset) + " (+" + std::to_string(n) + " bytes) runs past the end of the file (" +
                    std::to_string(size_) + " bytes)",
         "The file is truncated or not in the expected format");
  }
}

std::string read_text_file(const std::string& path) {
  require_regular_file(path);
  std::ifstream f(path, std::ios::binary);
  if (!f) fail(path, "cannot open", "Check the path");
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

}  // namespace condense
