// [Replica] on the CPU: the reference Gpt<float>, host AdamW, MPI averaging in
// [Gradient buckets].
#include <algorithm>
#include <cmath>
#include <limits>

#include "common/errors.h"
#include "common/trace.h"
#include "kernels/adamw.h"
#include "trainer/gpt.h"
#include "trainer/gradient_exchange.h"
#include "trainer/memory_plan.h"
#include "trainer/replica.h"

namespace dpt::trainer {

namespace {

class CpuReplica final : public Replica {
 public:
  CpuReplica(const TrainConfig& cfg, int max_batch, comm::Communicator& comm, ZeroStage zero)
      : comm_(comm),
        zero_(zero),
        model_(cfg.model, max_batch),
        own_(zero == ZeroStage::off
                 ? OwnedRange{0, model_.params().size()}
                 : owned_range(model_.params().size(), comm.world_size(), comm.rank())),
        opt_(optimizer_config(cfg)),
        adamw_(opt_, model_.layout(), own_.lo, own_.hi),
        exchange_(make_exchange(cfg, comm, zero, model_.params().size())) {
    if (zero_ != ZeroStage::off)
      gather_counts_ = owned_counts(model_.params().size(), comm.world_size());
    if (zero_ == ZeroStage::gradients) {
      grad_shard_.assign(own_.count(), 0.0f);
      exchange_.on_reduced([this](size_t k) { take_bucket(k); });
      exchange_.bound_in_flight(true);
      model_.populate_grads_in_backward(true);
    }
  }

  const ParamLayout& layout() const override { return model_.layout(); }
  std::string describe() const override {
    return std::string("cpu fp32, ") + (model_.fused_attention() ? "fused" : "unfused") +
           " attention, gradients over MPI" +
           (zero_ == ZeroStage::off
                ? ""
                : ", zero " + std::to_string(zero_level(zero_)) + " (this rank owns parameters [" +
                      std::to_string(own_.lo) + ", " + std::to_string(own_.hi) + "))");
  }
  OwnedRange state_range() const override { return own_; }

  void set_state(std::span<const float> params, std::span<const float> m,
                 std::span<const float> v) override {
    DPT_CHECK(params.size() == model_.params().size(), "parameter count differs from the model");
    std::copy(params.begin(), params.end(), model_.params().begin());
    if (!m.empty()) adamw_.load_moments(m, v);
  }
  std::span<const float> host_params() override { return model_.params(); }
  std::span<const float> host_m() override { return adamw_.m(); }
  std::span<const float> host_v() override { return adamw_.v(); }

  void zero_grads() override {
    // Stage 2: the window's pages were given back after the last exchange, so they read as
    // zero without being touched.
    if (zero_ != ZeroStage::gradients) model_.zero_grads();
    loss_sum_ = 0.0;
    micro_batches_ = 0;
    comm_exposed_ms_ = 0.0;
  }
  void forward_backward(const datasets::Batch& batch, double loss_scale,
                        bool last_micro_batch) override {
    {
      trace::Span span("forward");
      span.arg("micro", micro_batches_);
      loss_sum_ += model_.forward(batch);
    }
    trace::Span span("backward");
    span.arg("micro", micro_batches_++);
    // Stage 2 exchanges every micro-batch ([ZeRO]); the others only the last.
    const bool exchange = last_micro_batch || zero_ == ZeroStage::gradients;
    if (!exchange) {
      model_.backward(loss_scale);
      return;
    }
    exchange_.begin(comm_, model_.grads());
    released_from_ = model_.grads().size();
    model_.backward(loss_scale, [this](size_t frontier) { exchange_.ready_from(frontier); });
    if (!last_micro_batch) {
      const trace::Span wait("exchange wait");
      comm_exposed_ms_ += exchange_.finish();
    }
  }
  void poison_grad() override { model_.grads()[0] = std::numeric_limits<float>::quiet_NaN(); }
  void reduce() override {
    // [Gradient averaging] once per optimizer step in [Gradient buckets], then the loss: the
    // same order on all ranks.
    {
      const trace::Span span("exchange wait");
      comm_exposed_ms_ += exchange_.finish();
    }
    loss_ = loss_sum_ / micro_batches_;
    if (zero_ == ZeroStage::off) {
      comm_.all_reduce(std::span<double>(&loss_, 1), comm::ReduceOp::avg);
      return;
    }
    // The loss and the owned ranges' sums of squares in one rank-order sum; the loss's average
    // is that sum times 1/world_size, as avg defines it ([Collective contract]).
    const std::span<const float> g = owned_grads();
    double sums[2] = {loss_, kernels::sum_squares_cpu(g.data(), g.size())};
    comm_.all_reduce(std::span<double>(sums, 2), comm::ReduceOp::sum);
    loss_ = sums[0] * (1.0 / static_cast<double>(comm_.world_size()));
    grad_norm_ = std::sqrt(sums[1]);
  }
  ReplicaStep update(int64_t step) override {
    ReplicaStep r;
    r.loss = loss_;
    r.comm_exposed_ms = comm_exposed_ms_;
    // [Non-finite guard]: loss and gradient norm are identical on every rank after reduce(),
    // so every rank takes the same decision.
    if (!std::isfinite(loss_)) {
      r.stats.lr = learning_rate(opt_, step);
      r.stats.grad_norm = std::numeric_limits<double>::quiet_NaN();
      r.stats.skipped = true;
      return r;
    }
    if (zero_ == ZeroStage::off) {
      r.stats = adamw_.step(model_.params(), model_.grads(), step);
      return r;
    }
    const std::span<float> own_params = model_.params().subspan(own_.lo, own_.count());
    r.stats = adamw_.step(own_params, owned_grads(), step, grad_norm_);
    if (!r.stats.skipped) {
      // Every rank's updated range into every rank's parameters.
      const trace::Span span("all-gather parameters");
      comm_
          .iall_gather_v(own_params.data(), model_.params().data(), gather_counts_,
                         comm::DType::f32)
          .wait();
    }
    return r;
  }
  uint64_t bytes_sent() const override { return comm_.bytes_sent(); }
  MemoryUse memory_use() override {
    const uint64_t f = sizeof(float);
    MemoryUse u;
    u.state =
        f * (model_.params().size() + adamw_.m().size() + adamw_.v().size() + grad_shard_.size()) +
        (zero_ == ZeroStage::gradients ? grads_peak_ : model_.grads_mapped_bytes());
    u.peak = peak_resident_bytes();
    return u;
  }
  double evaluate(const datasets::Batch& batch, float* outputs) override {
    const double loss = model_.forward(batch);
    if (outputs) std::ranges::copy(model_.outputs(), outputs);
    return loss;
  }

 private:
  static OptimizerConfig optimizer_config(const TrainConfig& cfg) {
    OptimizerConfig o = cfg.opt;
    o.total_steps = cfg.steps;
    return o;
  }
  static GradientExchange make_exchange(const TrainConfig& cfg, comm::Communicator& comm,
                                        ZeroStage zero, size_t total) {
    std::vector<GradientBucket> plan =
        plan_gradient_buckets(total, sizeof(float), cfg.bucket_bytes());
    if (zero == ZeroStage::off) return GradientExchange(std::move(plan));
    return GradientExchange(std::move(plan), comm.world_size(), comm.rank());
  }

  std::span<const float> owned_grads() const {
    if (zero_ == ZeroStage::gradients) return grad_shard_;
    return std::span<const float>(model_.grads()).subspan(own_.lo, own_.count());
  }

  // Stage 2: bucket k's average of this rank's part is in place in the window: add it to the
  // owned gradient (the first micro-batch sets it), then give back the bucket's pages, and with
  // them every bucket above it, all reduced already (plan order).
  void take_bucket(size_t k) {
    const GradientBucket& b = exchange_.plan()[k];
    // Pages are given back only here, so the resident gradient peaks just before a release.
    grads_peak_ = std::max<uint64_t>(grads_peak_, model_.grads_resident_bytes());
    const size_t lo = std::max(b.offset, own_.lo), hi = std::min(b.offset + b.count, own_.hi);
    if (lo < hi) {
      const float* part = model_.grads().data() + lo;
      float* dst = grad_shard_.data() + (lo - own_.lo);
      if (micro_batches_ == 1) {
        std::copy(part, part + (hi - lo), dst);
      } else {
        for (size_t i = 0; i < hi - lo; ++i)
          dst[i] += part[i];
      }
    }
    // Whole pages only: the page that holds the bucket's first element may hold the end of the
    // next bucket, not reduced yet; it goes with that bucket.
    const size_t per_page = PageBuffer<float>::page_bytes() / sizeof(float);
    const size_t from = (b.offset + per_page - 1) / per_page * per_page;
    if (from < released_from_) model_.release_grads(from, released_from_ - from);
    released_from_ = std::min(released_from_, from);
  }

  comm::Communicator& comm_;
  ZeroStage zero_;
  Gpt<float> model_;
  OwnedRange own_;  // the elements whose optimizer state (and, stage 2, gradient) this rank holds
  OptimizerConfig opt_;
  AdamW adamw_;
  GradientExchange exchange_;
  std::vector<size_t> gather_counts_;  // every rank's owned count, for the parameter all-gather
  std::vector<float> grad_shard_;      // stage 2: the averaged gradient of the owned range
  size_t released_from_ = 0;           // stage 2: the window's pages from here on are given back
  uint64_t grads_peak_ = 0;            // stage 2: the gradient's resident bytes at their peak
  double comm_exposed_ms_ = 0.0;
  double loss_sum_ = 0.0;
  int micro_batches_ = 0;
  double loss_ = 0.0;
  double grad_norm_ = 0.0;  // sharded: the global norm agreed in reduce()
};

}  // namespace

std::unique_ptr<Replica> make_cpu_replica(const TrainConfig& cfg, int max_batch,
                                          comm::Communicator& comm, ZeroStage zero) {
  return std::make_unique<CpuReplica>(cfg, max_batch, comm, zero);
}

#ifndef DPT_HAVE_CUDA
std::unique_ptr<Replica> make_cuda_replica(const TrainConfig&, int, int, Precision,
                                           comm::Communicator&, ZeroStage) {
  throw UsageError(
      "--device cuda, but this build has no CUDA (CMake found no nvcc, or DPT_CUDA=OFF): "
      "rebuild with CUDA, or pass --device cpu");
}
#endif

}  // namespace dpt::trainer
