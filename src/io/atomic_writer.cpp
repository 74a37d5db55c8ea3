#include "io/atomic_writer.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <vector>

#include "core/error.h"

namespace condense {

std::string temporary_path(const std::string& path) { return path + ".tmp." + std::to_string(::getpid()); }

std::vector<std::string> remove_stale_temporaries(const std::string& dir) {
  namespace fs = std::filesystem;
  std::vector<std::string> removed;
  std::error_code ec;
  for (fs::directory_iterator it(dir.empty() ? "." : dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    const size_t at = name.rfind(".tmp.");
    if (at == std::string::npos || at + 5 >= name.size() || name.find_first_not_of("0123456789", at + 5) != std::string::npos) continue;
    if (name.size() - at - 5 > 9) continue;
    const pid_t pid = pid_t(std::stol(name.substr(at + 5)));
    if (pid == ::getpid() || ::kill(pid, 0) == 0 || errno != ESRCH) continue;  // ours, or a live writer's (or not ours to judge)
    std::error_code rm;
    if (fs::remove(it->path(), rm)) removed.push_back(it->path().string());
  }
  return removed;
}

void sync_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  const bool ok = fd >= 0 && ::fsync(fd) == 0;
  const int err = errno;
  if (fd >= 0) ::close(fd);
  if (!ok) fail(path, std::string("could not flush to disk: ") + std::strerror(err), "Check free disk space");
}

AtomicWriter::AtomicWriter(const std::string& path) : path_(path), tmp_(temporary_path(path)) {
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
  if (n && std::fwrite(data, 1, n, f_) != n) {
    const int err = errno;
    std::fclose(f_);  // nothing partial is left: the temporary goes
    f_ = nullptr;
    std::remove(tmp_.c_str());
    fail(path_, std::string("write failed: ") + std::strerror(err) + "; nothing was written", "Check free disk space");
  }
  offset_ += n;
}

void AtomicWriter::write_zeros(size_t n) {
  const std::vector<uint8_t> z(n, 0);
  write(z.data(), n);
}

void AtomicWriter::commit() {
  // errno is kept from the first call that fails (a later one may overwrite it);
  // fclose is checked too: some filesystems report a full disk only there.
  bool ok = std::fflush(f_) == 0 && ::fsync(::fileno(f_)) == 0;
  int err = ok ? 0 : errno;
  if (std::fclose(f_) != 0 && ok) {
    ok = false;
    err = errno;
  }
  f_ = nullptr;
  if (ok && std::rename(tmp_.c_str(), path_.c_str()) != 0) {
    ok = false;
    err = errno;
  }
  if (!ok) {
    std::remove(tmp_.c_str());
    fail(path_, std::string("could not finish writing: ") + std::strerror(err) + "; the previous file, if any, is unchanged", "Check free disk space and permissions");
  }
}

void write_file_atomically(const std::string& path, const std::string& bytes) {
  AtomicWriter w(path);
  w.write(bytes.data(), bytes.size());
  w.commit();
}

}  // namespace condense
