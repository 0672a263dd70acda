// The prefetch ring: the I/O thread fills slots ahead of the consumer.
#include "datasets/batch_stream.h"

#include <chrono>

#include "common/errors.h"

namespace dpt::datasets {

using storage::IoThread;

using Clock = std::chrono::steady_clock;

BatchStream::BatchStream(Dataset& data, SampleOrder order, BatchGeometry geometry,
                         int64_t first_step, int depth)
    : data_(data),
      order_(std::move(order)),
      geo_(geometry),
      accum_(geometry.accum_steps()),
      first_step_(first_step) {
  DPT_CHECK(depth > 0 && accum_ > 0, "prefetch depth and accumulation steps must be positive");
  // One slot more than the depth: the consumer holds one while `depth` are read ahead.
  slots_.resize(static_cast<size_t>(depth) + 1);
  for (Slot& s : slots_)
    s.rows = BatchBuffer(data.fields(), static_cast<size_t>(geo_.micro_batch));
  data_.io().add_producer(this);
}

BatchStream::~BatchStream() {
  data_.io().remove_producer(this);
}

bool BatchStream::claim_locked() {
  const int64_t slots = static_cast<int64_t>(slots_.size());
  // Slot of item n is reusable once the consumer moved past item n - slots (it holds
  // next_take_ - 1 until its next call).
  if (failed_ || next_fill_ >= next_take_ - 1 + slots) return false;
  claimed_ = next_fill_++;
  Slot& s = slots_[static_cast<size_t>(claimed_ % slots)];
  s.item = claimed_;
  s.ready = false;
  s.error = nullptr;
  return true;
}

void BatchStream::run_claimed() {
  const auto t0 = Clock::now();
  Slot& s = slots_[static_cast<size_t>(claimed_ % static_cast<int64_t>(slots_.size()))];
  const int64_t step = first_step_ + claimed_ / accum_;
  const int m = static_cast<int>(claimed_ % accum_);
  try {
    for (int j = 0; j < geo_.micro_batch; ++j)
      data_.read_sample(order_.at(geo_.position(step, m, j)), s.rows, static_cast<size_t>(j));
  } catch (...) {
    s.error = std::current_exception();
  }
  claimed_seconds_ = std::chrono::duration<double>(Clock::now() - t0).count();
}

void BatchStream::publish_locked() {
  Slot& s = slots_[static_cast<size_t>(claimed_ % static_cast<int64_t>(slots_.size()))];
  s.ready = true;
  if (s.error) failed_ = true;
  stats_.read_seconds += claimed_seconds_;
  stats_.samples_read += static_cast<uint64_t>(geo_.micro_batch);
  stats_.tokens_read += static_cast<uint64_t>(geo_.micro_batch) * data_.units_per_sample();
}

BatchStream::MicroBatch BatchStream::next() {
  IoThread& io = data_.io();
  std::unique_lock<std::mutex> lock(io.mutex());
  const int64_t item = next_take_;
  Slot& s = slots_[static_cast<size_t>(item % static_cast<int64_t>(slots_.size()))];
  // Moving past the previous item frees its slot: let the I/O thread refill it.
  io.notify();
  const auto t0 = Clock::now();
  io.changed().wait(lock, [&] { return s.item == item && s.ready; });
  const double waited = std::chrono::duration<double>(Clock::now() - t0).count();
  stats_.wait_seconds += waited;
  ++next_take_;
  if (s.error) std::rethrow_exception(s.error);
  const Batch batch = s.rows.view(0, geo_.micro_batch);
  return MicroBatch{batch,
                    batch.tokens,
                    batch.labels,
                    first_step_ + item / accum_,
                    static_cast<int>(item % accum_),
                    waited * 1e3};
}

BatchStream::Stats BatchStream::stats() {
  std::lock_guard<std::mutex> lock(data_.io().mutex());
  return stats_;
}

}  // namespace dpt::datasets
