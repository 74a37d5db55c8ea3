// Watchdog for blocking collectives: a rank waiting in an all-reduce for a
// peer that died (or stopped) would wait forever. Each collective holds a
// Deadline while it waits; a background thread ends the process with exit
// code 3 and a message naming the operation, the context (e.g. "train step
// 12") and the timeout when one expires. Exiting, not throwing: the blocked
// thread cannot be unwound, and files are only ever replaced by rename, so the
// last complete state stays intact.
#pragma once
#include <string>

namespace condense::dist {

// Seconds a collective may wait (default 300; <= 0 waits forever). Read once
// from CONDENSE_COMM_TIMEOUT; --comm-timeout sets it.
void set_comm_timeout(double seconds);
double comm_timeout();
// What the process is doing, for the message ("train step 12").
void set_comm_context(const std::string& what);

class Deadline {
 public:
  explicit Deadline(const char* operation);
  ~Deadline();
  Deadline(const Deadline&) = delete;
  Deadline& operator=(const Deadline&) = delete;

 private:
  int slot_;
};

}  // namespace condense::dist
