// The node description of a job: which ranks run on which host, for the log.
#pragma once

#include <string>
#include <vector>

#include "comm/communicator.h"
#include "comm/mpi_session.h"

namespace dpt::job {

// Collective. "2 node(s): n1 ranks 0-1; n2 ranks 2-3" (host names from every rank); rank 0's
// result is the whole list, others get "".
std::string describe_nodes(comm::Communicator& comm, const comm::Placement& place);

// "node1 ranks 0-1; node2 ranks 2,4-5": `ranks` (ascending) grouped by host (hosts[rank]),
// hosts in the order of their first rank.
std::string ranks_by_host(const std::vector<std::string>& hosts, const std::vector<int>& ranks);

}  // namespace dpt::job
