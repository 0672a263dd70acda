// [Gradient buckets]: the plan and the host exchange.
#include "trainer/gradient_exchange.h"

#include <algorithm>
#include <string>
#include <utility>

#include "common/elapsed.h"
#include "common/errors.h"
#include "common/trace.h"
#include "trainer/zero.h"

namespace dpt::trainer {

std::vector<GradientBucket> plan_gradient_buckets(size_t total, size_t elem_bytes,
                                                  size_t bucket_bytes) {
  DPT_CHECK(elem_bytes > 0, "gradient element size must be positive");
  std::vector<GradientBucket> plan;
  if (total == 0) return plan;
  if (bucket_bytes == 0) {
    plan.push_back({0, total});
    return plan;
  }
  // At least one element per bucket, whatever the byte sizes.
  const size_t first = std::max<size_t>(1, std::min(kFirstBucketBytes, bucket_bytes) / elem_bytes);
  const size_t rest = std::max<size_t>(1, bucket_bytes / elem_bytes);
  size_t end = total;
  size_t size = first;
  while (end > 0) {
    const size_t count = std::min(size, end);
    plan.push_back({end - count, count});
    end -= count;
    size = rest;
  }
  return plan;
}

size_t buckets_ready(const std::vector<GradientBucket>& plan, size_t next, size_t frontier) {
  while (next < plan.size() && plan[next].offset >= frontier)
    ++next;
  return next;
}

GradientExchange::GradientExchange(std::vector<GradientBucket> plan)
    : plan_(std::move(plan)),
      total_(plan_.empty() ? 0 : plan_.front().offset + plan_.front().count) {
  size_t end = total_;
  for (const GradientBucket& b : plan_) {
    DPT_CHECK(b.count > 0 && b.offset + b.count == end,
              "gradient buckets must tile the buffer from its end, without gaps or empty buckets");
    end = b.offset;
  }
  DPT_CHECK(end == 0, "gradient buckets must reach the start of the buffer");
  in_flight_.reserve(plan_.size());
}

OwnerShards owner_shards(const std::vector<GradientBucket>& plan, size_t total, int world,
                         int rank) {
  const OwnedRange own = owned_range(total, world, rank);
  OwnerShards s;
  for (const GradientBucket& b : plan) {
    s.counts.push_back(owner_counts(b.offset, b.count, total, world));
    // In place: this rank's part starts at its first owned element of the bucket (any offset
    // inside the bucket when it owns none: nothing is written).
    s.recv_offset.push_back(std::clamp(own.lo, b.offset, b.offset + b.count));
  }
  return s;
}

GradientExchange::GradientExchange(std::vector<GradientBucket> plan, int world, int rank)
    : GradientExchange(std::move(plan)) {
  owners_ = owner_shards(plan_, total_, world, rank);
}

void GradientExchange::begin(comm::Communicator& comm, std::span<float> grads) {
  DPT_CHECK(in_flight_.empty() && (next_ == 0 || next_ == plan_.size()),
            "a gradient exchange began while the previous one was unfinished");
  DPT_CHECK(grads.size() == total_, "the gradient buffer has " + std::to_string(grads.size()) +
                                        " elements, the bucket plan covers " +
                                        std::to_string(total_));
  comm_ = &comm;
  grads_ = grads;
  next_ = 0;
  reported_ = 0;
  started_in_backward_ = 0;
  ++exchanges_;
}

// [Timeline]: each bucket is an async span from issue to the moment this rank saw it complete.
int64_t GradientExchange::span_id(size_t bucket) const {
  return exchanges_ * static_cast<int64_t>(plan_.size()) + static_cast<int64_t>(bucket);
}

void GradientExchange::end_span(size_t bucket) {
  trace::async_end(span_name(), static_cast<int>(bucket), trace::Track::comm, span_id(bucket));
}

void GradientExchange::start_next() {
  const size_t k = next_++;
  const GradientBucket& b = plan_[k];
  trace::async_begin(span_name(), static_cast<int>(k), trace::Track::comm, span_id(k),
                     {"bytes", static_cast<int64_t>(b.count * sizeof(float))},
                     {"offset", static_cast<int64_t>(b.offset)},
                     {"count", static_cast<int64_t>(b.count)});
  if (to_owners()) {
    in_flight_.push_back(
        comm_->ireduce_scatter_v(grads_.data() + b.offset, grads_.data() + owners_.recv_offset[k],
                                 owners_.counts[k], comm::DType::f32, comm::ReduceOp::avg));
  } else {
    in_flight_.push_back(
        comm_->iall_reduce(grads_.subspan(b.offset, b.count), comm::ReduceOp::avg));
  }
  if (in_flight_.back().done()) end_span(k);  // complete at issue (one rank)
}

void GradientExchange::complete(size_t bucket) {
  if (in_flight_[bucket].done()) return;
  in_flight_[bucket].wait();
  end_span(bucket);
}

void GradientExchange::report_reduced() {
  while (reported_ < in_flight_.size() && in_flight_[reported_].done()) {
    if (on_reduced_) on_reduced_(reported_);
    ++reported_;
  }
}

void GradientExchange::ready_from(size_t frontier) {
  DPT_CHECK(comm_ != nullptr, "ready_from() outside a gradient exchange");
  const size_t ready = buckets_ready(plan_, next_, frontier);
  const size_t earlier = next_;  // started at earlier frontiers
  started_in_backward_ += ready - next_;
  while (next_ < ready)
    start_next();
  for (size_t k = 0; k < in_flight_.size(); ++k)
    if (!in_flight_[k].done() && in_flight_[k].test()) end_span(k);
  if (bounded_) {
    const auto t0 = SteadyClock::now();
    for (size_t k = reported_; k < earlier; ++k)
      complete(k);
    waited_ms_ += ms_since(t0);
  }
  report_reduced();
}

double GradientExchange::finish() {
  DPT_CHECK(comm_ != nullptr, "finish() outside a gradient exchange");
  const auto t0 = SteadyClock::now();
  while (next_ < plan_.size())
    start_next();
  for (size_t k = 0; k < in_flight_.size(); ++k)
    complete(k);
  report_reduced();
  const double waited_ms = ms_since(t0) + waited_ms_;
  waited_ms_ = 0.0;
  in_flight_.clear();
  comm_ = nullptr;
  return waited_ms;
}

}  // namespace dpt::trainer
