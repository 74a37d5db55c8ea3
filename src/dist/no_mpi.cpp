// Builds without MPI (-DCONDENSE_MPI=OFF or none found): every run is one process.
#include "dist/comm_mpi.h"

namespace condense::dist {

std::unique_ptr<Communicator> make_mpi_communicator() { return nullptr; }
void finalize_mpi() {}

}  // namespace condense::dist
