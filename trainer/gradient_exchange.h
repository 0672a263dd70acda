// The gradient average of a step in buckets, each started as soon as backward has finished its
// gradients, so the exchange runs beside the rest of backward (PyTorch DDP's reducer, Horovod's
// tensor fusion).
//
// [Gradient buckets] The flat gradient buffer ([Parameter layout]) is cut into contiguous
// buckets from its end towards its start, the order in which backward finishes gradients
// (ln_f and the last block first, the embeddings last). The first bucket holds
// kFirstBucketBytes (or bucket_bytes if smaller), so the network starts early; the others hold
// bucket_bytes; the last holds what is left. Buckets may split a tensor. The plan depends on
// the parameter count, the element size and bucket_bytes only, so it is the same on every rank
// and every step, and so is the order in which buckets are issued ([Collective contract]).
// bucket_bytes 0 makes one bucket of the whole buffer: one flat exchange after backward.
//
// Backward reports a frontier: every gradient at a flat offset >= frontier is final for this
// step. A bucket starts when its offset is >= the frontier. The tied token embedding (offset 0)
// receives gradient from the head first and the input embedding last, so it is final only at
// frontier 0, which the model never reports itself: finish() starts those buckets, after any
// change the loop makes to the gradient between backward and the exchange (--fault-nan-step).
//
// Bucketed and flat exchanges give the same gradient bit for bit: the communicator's float
// averages are [Rank-order sum]s, whose result for an element does not depend on the split.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "comm/communicator.h"

namespace dpt::trainer {

// PyTorch DDP's first bucket (dist._DEFAULT_FIRST_BUCKET_BYTES); the others default to its
// bucket_cap_mb=25 (TrainConfig::bucket_mb).
inline constexpr size_t kFirstBucketBytes = size_t{1} << 20;

struct GradientBucket {
  size_t offset = 0;  // first element in the flat gradient buffer
  size_t count = 0;   // elements
};

// [Gradient buckets] for `total` elements of `elem_bytes` each, in the order they are issued
// (highest offsets first). Every element is in exactly one bucket; no bucket is empty; no
// buckets for total 0.
std::vector<GradientBucket> plan_gradient_buckets(size_t total, size_t elem_bytes,
                                                  size_t bucket_bytes);

// The end of the run of buckets, from `next` on, whose gradients are all final at `frontier`
// (each bucket starts once its offset is >= the frontier; plan order is issue order).
size_t buckets_ready(const std::vector<GradientBucket>& plan, size_t next, size_t frontier);

// [ZeRO] Each bucket's reduce-scatter to the owners of its elements, for rank `rank` of
// `world` owning owned_range(total, world, rank): every rank's part of each bucket (the
// shards), and where this rank's part lands in place (inside the bucket even when it owns none
// of it, so the pointer stays valid).
struct OwnerShards {
  std::vector<std::vector<size_t>> counts;  // per bucket, every rank's part in rank order
  std::vector<size_t> recv_offset;          // per bucket, this rank's part
};
OwnerShards owner_shards(const std::vector<GradientBucket>& plan, size_t total, int world,
                         int rank);

// One step's bucketed average over a communicator, on the host (the CPU replica).
// Per step: begin(), then ready_from() as backward's frontier moves down, then finish().
// Every rank receives every bucket's average (all-reduce), or, to owners ([ZeRO]), each rank
// only the average of the part of each bucket inside its [Owned ranges] range, in place.
class GradientExchange {
 public:
  explicit GradientExchange(std::vector<GradientBucket> plan);
  // To owners: this rank is `rank` of `world`, and owns owned_range(total, world, rank).
  GradientExchange(std::vector<GradientBucket> plan, int world, int rank);

  const std::vector<GradientBucket>& plan() const { return plan_; }
  bool to_owners() const { return !owners_.counts.empty(); }
  // Called with each bucket's index once its average is in place, in plan order, from
  // ready_from() or finish() ([ZeRO] stage 2 takes its part and gives the memory back).
  void on_reduced(std::function<void(size_t bucket)> f) { on_reduced_ = std::move(f); }
  // Bounded ([ZeRO] stage 2): at each frontier, after starting the buckets it makes ready,
  // ready_from() completes those started at earlier frontiers, so that while backward computes
  // a block only the previous block's buckets are in flight, and the memory on_reduced() gives
  // back stays bounded whatever the skew between ranks. The waits count in finish()'s figure.
  void bound_in_flight(bool on) { bounded_ = on; }

  // The step's exchange averages `grads` over `comm`; nothing is issued yet.
  void begin(comm::Communicator& comm, std::span<float> grads);
  // Every gradient at offset >= frontier is final: starts the buckets this makes ready, in plan
  // order, and advances those in flight ([MPI progress]: Open MPI moves a non-blocking
  // collective only inside an MPI call on this thread, so the model calls this at every block
  // boundary of backward).
  void ready_from(size_t frontier);
  // Starts the buckets not started yet and waits for all. Returns the milliseconds it waited
  // (the step's exposed communication on the CPU), bounded waits in backward included.
  double finish();

  // Buckets started by ready_from() during backward in the last step, for tests and the log.
  size_t started_in_backward() const { return started_in_backward_; }

 private:
  void start_next();
  int64_t span_id(size_t bucket) const;
  void end_span(size_t bucket);
  // Waits for an in-flight bucket (nothing when it has completed).
  void complete(size_t bucket);

  void report_reduced();
  const char* span_name() const {
    return to_owners() ? "reduce-scatter bucket %d" : "all-reduce bucket %d";
  }

  std::vector<GradientBucket> plan_;
  size_t total_ = 0;  // elements the plan covers
  int64_t exchanges_ = 0;
  std::vector<comm::Request> in_flight_;
  comm::Communicator* comm_ = nullptr;
  std::span<float> grads_;
  size_t next_ = 0;      // the next bucket of plan_ to start
  size_t reported_ = 0;  // buckets passed to on_reduced_ in this exchange
  OwnerShards owners_;   // to owners: each bucket's shards (empty counts: all-reduce)
  std::function<void(size_t)> on_reduced_;
  bool bounded_ = false;
  double waited_ms_ = 0.0;  // bounded: waited in ready_from() during this exchange
  size_t started_in_backward_ = 0;
};

}  // namespace dpt::trainer
