// [ZeRO] Sharded optimizer state (stage 1) and sharded gradients (stage 2) over the ranks of a
// data-parallel run (Rajbhandari et al., arXiv:1910.02054; DeepSpeed's stages 1 and 2).
//
// [Owned ranges] Rank r of W owns elements [r N / W, (r + 1) N / W) of the flat parameter
// buffer ([Parameter layout]): contiguous, in rank order, balanced to within one element, for
// any N and W (a range may be empty when N < W, and ranges split tensors freely). They are the
// slices of the checkpoint's rank files (checkpoint::slice_begin), so a sharded rank saves
// exactly the state it holds.
//
// A step with sharding, on every rank:
//   stage 1: backward accumulates the whole gradient as without sharding; during the last
//     micro-batch each [Gradient buckets] bucket is reduce-scattered to the owners of its
//     elements (an average, [Rank-order sum], so every owned element equals the all-reduced
//     one bit for bit); the owners' partial sums of squares are summed in rank order for the
//     global gradient norm; each rank clips and updates its range only (AdamW moments exist for
//     the range only); the updated ranges are all-gathered into every rank's parameters.
//   stage 2: as stage 1, but no full-size gradient survives a micro-batch: every micro-batch's
//     buckets are reduce-scattered as backward finishes them, each owner adds its part into a
//     gradient of its range, and the bucket's memory is given back (Gpt::release_grads); the
//     gradient costs the owned range plus what backward has written and not yet reduced.
//     With gradient accumulation over A micro-batches this sends A times the bytes of stage 1
//     (the price of not holding a full gradient until the last micro-batch, which would cost
//     as much memory as stage 1 and gain nothing), and the sum over micro-batches is taken
//     after the sum over ranks instead of before it, so the gradient differs from stage 0/1
//     in rounding (bit for bit with A = 1).
// The global norm's summation order (each range's partial, then the ranks in order) differs
// from the unsharded sum over the whole buffer, so grad_norm may differ in its last bits; the
// clip factor rounds to the same float almost always, and parameters then agree bit for bit.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace dpt::trainer {

// --zero: automatic (1 when more than one rank trains on GPUs, else 0) until the run resolves it.
enum class ZeroStage { off = 0, optimizer = 1, gradients = 2, automatic = -1 };

inline int zero_level(ZeroStage s) {
  return static_cast<int>(s);
}

struct OwnedRange {
  size_t lo = 0, hi = 0;
  size_t count() const { return hi - lo; }
};

OwnedRange owned_range(size_t total, int world, int rank);
// Every rank's owned element count, in rank order.
std::vector<size_t> owned_counts(size_t total, int world);
// Every rank's part of elements [offset, offset + count), in rank order: the shards of a
// reduce-scatter of that bucket to its owners.
std::vector<size_t> owner_counts(size_t offset, size_t count, size_t total, int world);

// Stage 2 is the CPU path's: on the GPU backward writes a full-size gradient buffer, so keeping
// only the owned range would save nothing until the model writes its gradient bucket by bucket.
inline constexpr const char* kZero2CpuOnly =
    "--zero 2 shards gradients on the CPU path only: the GPU replica's backward writes a "
    "full-size gradient, so there is nothing to save yet. Pass --zero 1 with --device cuda "
    "(the optimizer state sharded), or --device cpu";

// "0 (no sharding)", "1 (optimizer state sharded)", "2 (optimizer state and gradients sharded)".
std::string describe_zero(ZeroStage s);

}  // namespace dpt::trainer
