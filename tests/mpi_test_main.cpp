// main() of the gtest executables run under mpirun (label mpi): every rank
// runs the tests, only rank 0 prints them, and the exit code is non-zero on
// every rank when any rank failed (mpirun returns it), so a failure on rank 1
// alone is not silent.
#include <gtest/gtest.h>

#include <cstdio>

#include "dist/comm.h"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  condense::dist::Communicator& w = condense::dist::world();
  ::testing::TestEventListeners& l = ::testing::UnitTest::GetInstance()->listeners();
  if (w.rank() != 0) delete l.Release(l.default_result_printer());
  const int rc = RUN_ALL_TESTS();
  if (w.rank() != 0 && rc != 0) std::fprintf(stderr, "rank %d: tests failed\n", w.rank());
  float failed = rc != 0;
  w.allreduce_sum(&failed, 1);
  condense::dist::finalize();
  return failed != 0.f ? 1 : 0;
}
