// Host names gathered from every rank, grouped by host.
#include "job/nodes.h"

#include <map>
#include <set>
#include <vector>

#include "comm/typed_collectives.h"

namespace dpt::job {

std::string ranks_by_host(const std::vector<std::string>& hosts, const std::vector<int>& ranks) {
  std::vector<std::string> order;
  std::map<std::string, std::vector<int>> of_host;
  for (const int r : ranks) {
    const std::string& h = hosts.at(static_cast<size_t>(r));
    if (!of_host.count(h)) order.push_back(h);
    of_host[h].push_back(r);
  }
  std::string s;
  for (const auto& h : order) {
    if (!s.empty()) s += "; ";
    s += h;
    s += " ranks ";
    const auto& v = of_host[h];
    for (size_t i = 0; i < v.size();) {
      size_t j = i;
      while (j + 1 < v.size() && v[j + 1] == v[j] + 1)
        ++j;
      if (i > 0) s += ',';
      s += std::to_string(v[i]);
      if (j > i) {
        s += '-';
        s += std::to_string(v[j]);
      }
      i = j + 1;
    }
  }
  return s;
}

std::string describe_nodes(comm::Communicator& comm, const comm::Placement& place) {
  const std::vector<std::string> hosts = comm::all_gather_strings(comm, place.host);
  if (comm.rank() != 0) return "";
  std::vector<int> all(hosts.size());
  std::set<std::string> distinct(hosts.begin(), hosts.end());
  for (size_t r = 0; r < all.size(); ++r)
    all[r] = static_cast<int>(r);
  return std::to_string(distinct.size()) + " node(s): " + ranks_by_host(hosts, all);
}

}  // namespace dpt::job
