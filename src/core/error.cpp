#include "core/error.h"

namespace condense {

void fail(const std::string& where, const std::string& what, const std::string& fix) {
  std::string msg = where.empty() ? what : where + ": " + what;
  if (!fix.empty()) msg += ". " + fix;
  throw Error(msg);
}

}  // namespace condense
