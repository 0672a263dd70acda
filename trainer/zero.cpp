// [Owned ranges] of [ZeRO].
#include "trainer/zero.h"

#include <algorithm>

#include "checkpoint/format.h"
#include "common/errors.h"

namespace dpt::trainer {

OwnedRange owned_range(size_t total, int world, int rank) {
  DPT_CHECK(
      world >= 1 && rank >= 0 && rank < world,
      "owned_range: rank " + std::to_string(rank) + " outside a world of " + std::to_string(world));
  return {static_cast<size_t>(checkpoint::slice_begin(total, rank, world)),
          static_cast<size_t>(checkpoint::slice_begin(total, rank + 1, world))};
}

std::vector<size_t> owned_counts(size_t total, int world) {
  std::vector<size_t> counts(static_cast<size_t>(world));
  for (int r = 0; r < world; ++r)
    counts[static_cast<size_t>(r)] = owned_range(total, world, r).count();
  return counts;
}

std::vector<size_t> owner_counts(size_t offset, size_t count, size_t total, int world) {
  DPT_CHECK(offset <= total && count <= total - offset, "owner_counts: elements out of range");
  std::vector<size_t> counts(static_cast<size_t>(world));
  for (int r = 0; r < world; ++r) {
    const OwnedRange own = owned_range(total, world, r);
    const size_t lo = std::max(offset, own.lo), hi = std::min(offset + count, own.hi);
    counts[static_cast<size_t>(r)] = hi > lo ? hi - lo : 0;
  }
  return counts;
}

std::string describe_zero(ZeroStage s) {
  switch (s) {
    case ZeroStage::off:
      return "0 (every rank holds the whole optimizer state and gradient)";
    case ZeroStage::optimizer:
      return "1 (optimizer state sharded over the ranks)";
    case ZeroStage::gradients:
      return "2 (optimizer state and gradients sharded over the ranks)";
  }
  return "?";
}

}  // namespace dpt::trainer
