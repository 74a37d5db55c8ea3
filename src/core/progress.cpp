#include "core/progress.h"

#include <unistd.h>

#include <cstdio>

namespace condense {

Progress::Progress(std::string label, int64_t total, bool json_lines)
    : label_(std::move(label)), total_(total), json_(json_lines), tty_(::isatty(2) != 0),
      start_(std::chrono::steady_clock::now()), last_(start_) {}

void Progress::update(int64_t done, const std::string& detail) {
  const auto now = std::chrono::steady_clock::now();
  const double el = std::chrono::duration<double>(now - start_).count();
  const double eta = done > 0 ? el * double(total_ - done) / double(done) : 0;
  if (json_) {
    std::fprintf(stderr, "{\"event\":\"progress\",\"task\":\"%s\",\"done\":%lld,\"total\":%lld,\"elapsed_s\":%.3f,\"eta_s\":%.3f%s%s}\n",
                 label_.c_str(), (long long)done, (long long)total_, el, eta, detail.empty() ? "" : ",\"detail\":\"",
                 detail.empty() ? "" : (detail + "\"").c_str());
    return;
  }
  if (!tty_) {
    // A log file or pipe gets a plain line every 5 s (and the last one), so long
    // work run from scripts or CI shows it is alive without flooding the log.
    if (done == printed_ || (done < total_ && now - last_ < std::chrono::seconds(5))) return;
    last_ = now;
    printed_ = done;
    std::fprintf(stderr, "%s %lld/%lld %.1fs eta %.1fs %s\n", label_.c_str(), (long long)done, (long long)total_, el, eta,
                 detail.c_str());
    return;
  }
  if (done < total_ && now - last_ < std::chrono::milliseconds(100)) return;
  last_ = now;
  const int width = 30, fill = total_ > 0 ? int(width * done / total_) : width;
  std::fprintf(stderr, "\r%s [%.*s%*s] %lld/%lld %.1fs eta %.1fs %s\033[K", label_.c_str(), fill,
               "##############################", width - fill, "", (long long)done, (long long)total_, el, eta, detail.c_str());
  std::fflush(stderr);
}

void Progress::finish(const std::string& detail) {
  update(total_, detail);
  if (tty_ && !json_) std::fputc('\n', stderr);
}

}  // namespace condense
