// The node description of a job: which ranks run on which host, for the log.
#pragma once

#include <string>

#include "comm/communicator.h"
#include "comm/mpi_session.h"

namespace dpt::job {

// Collective. "2 node(s): n1 ranks 0-1; n2 ranks 2-3" (host names from every rank); rank 0's
// result is the whole list, others get "".
std::string describe_nodes(comm::Communicator& comm, const comm::Placement& place);

}  // namespace dpt::job
