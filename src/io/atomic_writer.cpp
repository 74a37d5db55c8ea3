#include "io/atomic_writer.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "core/error.h"

namespace condense {

AtomicWriter::AtomicWriter(const std::string& path) : path_(path), tmp_(path + ".tmp." + std::to_string(::getpid())) {
  f_ = std::fopen(tmp_.c_str(), "wb");
  if (!f_) fail(path, std::string("cannot create: ") + std::strerror(errno), "Check that the folder exists and is writable");
}

AtomicWriter::~AtomicWriter() {
  if (f_) {
    std::fclose(f_);
    std::remove(tmp_.c_str());
  }
}

void AtomicWriter::write(const void* data, size_t n) {
  if (n && std::fwrite(data, 1, n, f_) != n) fail(path_, std::string("write failed: ") + std::strerror(errno), "Check free disk space");
  offset_ += n;
}

void AtomicWriter::write_zeros(size_t n) {
  const std::vector<uint8_t> z(n, 0);
  write(z.data(), n);
}

void AtomicWriter::commit() {
  const bool ok = std::fflush(f_) == 0 && ::fsync(::fileno(f_)) == 0;
  std::fclose(f_);
  f_ = nullptr;
  if (!ok || std::rename(tmp_.c_str(), path_.c_str()) != 0) {
    std::remove(tmp_.c_str());
    fail(path_, std::string("could not finish writing: ") + std::strerror(errno));
  }
}

void write_file_atomically(const std::string& path, const std::string& bytes) {
  AtomicWriter w(path);
  w.write(bytes.data(), bytes.size());
  w.commit();
}

}  // namespace condense
