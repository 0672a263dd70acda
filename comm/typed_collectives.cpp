// Strings over the byte collectives: lengths first, then the bytes.
#include "comm/typed_collectives.h"

#include <algorithm>

#include "common/errors.h"

namespace dpt::comm {

void check_same_length(Communicator& comm, uint64_t n, const char* what) {
  const std::vector<uint64_t> all = all_gather_value(comm, n);
  for (size_t r = 1; r < all.size(); ++r) {
    DPT_CHECK(all[r] == all[0], std::string(what) + ": rank 0 has " + std::to_string(all[0]) +
                                    " elements but rank " + std::to_string(r) + " has " +
                                    std::to_string(all[r]) + "; every rank must pass as many");
  }
}

void broadcast_string(Communicator& comm, std::string& s, int root) {
  uint64_t n = s.size();
  broadcast_value(comm, n, root);
  s.resize(static_cast<size_t>(n));
  if (n > 0) comm.broadcast(s.data(), s.size(), DType::u8, root);
}

std::vector<std::string> all_gather_strings(Communicator& comm, const std::string& mine) {
  const std::vector<uint64_t> lengths = all_gather_value<uint64_t>(comm, mine.size());
  const uint64_t longest = *std::max_element(lengths.begin(), lengths.end());
  std::vector<std::string> out(lengths.size());
  if (longest == 0) return out;
  std::string padded = mine;
  padded.resize(static_cast<size_t>(longest), '\0');
  std::string all(static_cast<size_t>(longest) * lengths.size(), '\0');
  comm.all_gather(padded.data(), all.data(), padded.size(), DType::u8);
  for (size_t r = 0; r < lengths.size(); ++r)
    out[r] = all.substr(r * longest, static_cast<size_t>(lengths[r]));
  return out;
}

}  // namespace dpt::comm
