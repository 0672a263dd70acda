// [Gradient buckets]: the plan and the host exchange.
#include "trainer/gradient_exchange.h"

#include <algorithm>
#include <string>
#include <utility>

#include "common/elapsed.h"
#include "common/errors.h"
#include "common/trace.h"

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

GradientExchange::GradientExchange(std::vector<GradientBucket> plan) : plan_(std::move(plan)) {
  size_t end = plan_.empty() ? 0 : plan_.front().offset + plan_.front().count;
  for (const GradientBucket& b : plan_) {
    DPT_CHECK(b.count > 0 && b.offset + b.count == end,
              "gradient buckets must tile the buffer from its end, without gaps or empty buckets");
    end = b.offset;
  }
  DPT_CHECK(end == 0, "gradient buckets must reach the start of the buffer");
  in_flight_.reserve(plan_.size());
}

void GradientExchange::begin(comm::Communicator& comm, std::span<float> grads) {
  DPT_CHECK(in_flight_.empty() && (next_ == 0 || next_ == plan_.size()),
            "a gradient exchange began while the previous one was unfinished");
  const size_t covered = plan_.empty() ? 0 : plan_.front().offset + plan_.front().count;
  DPT_CHECK(grads.size() == covered, "the gradient buffer has " + std::to_string(grads.size()) +
                                         " elements, the bucket plan covers " +
                                         std::to_string(covered));
  comm_ = &comm;
  grads_ = grads;
  next_ = 0;
  started_in_backward_ = 0;
  ended_.assign(plan_.size(), false);
  ++exchanges_;
}

// [Timeline]: each bucket is an async span from issue to the moment this rank saw it complete.
int64_t GradientExchange::span_id(size_t bucket) const {
  return exchanges_ * static_cast<int64_t>(plan_.size()) + static_cast<int64_t>(bucket);
}

void GradientExchange::mark_ended(size_t bucket) {
  ended_[bucket] = true;
  trace::async_end(kBucketSpan, static_cast<int>(bucket), trace::Track::comm, span_id(bucket));
}

void GradientExchange::start_next() {
  const size_t k = next_++;
  const GradientBucket& b = plan_[k];
  trace::async_begin(kBucketSpan, static_cast<int>(k), trace::Track::comm, span_id(k),
                     {"bytes", static_cast<int64_t>(b.count * sizeof(float))},
                     {"offset", static_cast<int64_t>(b.offset)},
                     {"count", static_cast<int64_t>(b.count)});
  in_flight_.push_back(comm_->iall_reduce(grads_.subspan(b.offset, b.count), comm::ReduceOp::avg));
}

void GradientExchange::ready_from(size_t frontier) {
  DPT_CHECK(comm_ != nullptr, "ready_from() outside a gradient exchange");
  while (next_ < plan_.size() && plan_[next_].offset >= frontier) {
    start_next();
    ++started_in_backward_;
  }
  for (size_t k = 0; k < in_flight_.size(); ++k)
    if (!ended_[k] && in_flight_[k].test()) mark_ended(k);
}

double GradientExchange::finish() {
  DPT_CHECK(comm_ != nullptr, "finish() outside a gradient exchange");
  const auto t0 = SteadyClock::now();
  while (next_ < plan_.size())
    start_next();
  for (size_t k = 0; k < in_flight_.size(); ++k) {
    if (ended_[k]) continue;
    in_flight_[k].wait();
    mark_ended(k);
  }
  const double waited_ms = ms_since(t0);
  in_flight_.clear();
  comm_ = nullptr;
  return waited_ms;
}

}  // namespace dpt::trainer
