#include "core/version.h"

#include "condense_git_revision.h"  // generated into the build folder (cmake/git_revision.cmake)

namespace condense {

const char* version() { return "0.1.0"; }
const char* git_revision() { return CONDENSE_GIT_REVISION; }

}  // namespace condense
