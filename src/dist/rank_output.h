// What ranks other than 0 print: rank 0 speaks for the run (progress, logs,
// results); the others' stderr goes to /dev/null while they run, and comes
// back for an error, which they print with their rank.
#pragma once

namespace condense::dist {

// On ranks other than 0: stderr to /dev/null until restore_stderr().
void silence_stderr_unless_root();
void restore_stderr();
// The descriptor errors go to (the original stderr while silenced).
int error_fd();

}  // namespace condense::dist
