// What MPI tests reach of the shared main() in mpi_test_main.cpp: the process's MpiSession.
#pragma once

#include "comm/mpi_session.h"

namespace dpt::test {

// The session main() constructed before running the tests; valid while they run.
const comm::MpiSession& mpi_session();

}  // namespace dpt::test
