// condense's version and the git revision it was built from (`git describe
// --always --dirty`, refreshed at every build), recorded in every results and
// bench JSON so a report can say which build measured each variant.
#pragma once
#include <string>

namespace condense {

const char* version();       // "0.1.0"
const char* git_revision();  // e.g. "b36bbc1a2f3e-dirty", "unknown" outside a git checkout

}  // namespace condense
