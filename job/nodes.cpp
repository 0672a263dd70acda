// Host names gathered from every rank, grouped by host.
#include "job/nodes.h"

#include <map>
#include <vector>

#include "comm/typed_collectives.h"

namespace dpt::job {

std::string describe_nodes(comm::Communicator& comm, const comm::Placement& place) {
  const std::vector<std::string> hosts = comm::all_gather_strings(comm, place.host);
  if (comm.rank() != 0) return "";
  // Hosts in order of their first rank, each with its ranks as ranges.
  std::vector<std::string> order;
  std::map<std::string, std::vector<int>> ranks;
  for (int r = 0; r < comm.world_size(); ++r) {
    const std::string& h = hosts[static_cast<size_t>(r)];
    if (!ranks.count(h)) order.push_back(h);
    ranks[h].push_back(r);
  }
  std::string s = std::to_string(order.size()) + " node(s):";
  for (const auto& h : order) {
    s += " " + h + " ranks ";
    const auto& v = ranks[h];
    for (size_t i = 0; i < v.size();) {
      size_t j = i;
      while (j + 1 < v.size() && v[j + 1] == v[j] + 1)
        ++j;
      s += (i ? "," : "") + std::to_string(v[i]) + (j > i ? "-" + std::to_string(v[j]) : "");
      i = j + 1;
    }
    s += ";";
  }
  s.pop_back();
  return s;
}

}  // namespace dpt::job
