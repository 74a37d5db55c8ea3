// The MPI body of Communicator (dist/comm_mpi.cpp with MPI; dist/no_mpi.cpp without).
#pragma once
#include <memory>

#include "dist/comm.h"

namespace condense::dist {

// MPI_COMM_WORLD after MPI_Init_thread; null in a build without MPI.
std::unique_ptr<Communicator> make_mpi_communicator();
// MPI_Finalize when make_mpi_communicator started MPI.
void finalize_mpi();

}  // namespace condense::dist
