#include "dist/rank_output.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>

#include "dist/comm.h"

namespace condense::dist {

namespace {
int g_saved = -1;
}

void silence_stderr_unless_root() {
  if (g_saved >= 0 || world().root()) return;
  std::fflush(stderr);
  const int null_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
  if (null_fd < 0) return;
  g_saved = dup(2);
  if (g_saved >= 0) dup2(null_fd, 2);
  close(null_fd);
}

void restore_stderr() {
  if (g_saved < 0) return;
  std::fflush(stderr);
  dup2(g_saved, 2);
  close(g_saved);
  g_saved = -1;
}

int error_fd() { return g_saved >= 0 ? g_saved : 2; }

}  // namespace condense::dist
