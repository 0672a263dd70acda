// [Replica] on the CPU: the reference Gpt<float>, host AdamW, MPI averaging in
// [Gradient buckets].
#include <cmath>
#include <limits>

#include "common/errors.h"
#include "common/trace.h"
#include "trainer/gpt.h"
#include "trainer/gradient_exchange.h"
#include "trainer/replica.h"

namespace dpt::trainer {

namespace {

class CpuReplica final : public Replica {
 public:
  CpuReplica(const TrainConfig& cfg, int max_batch, comm::Communicator& comm)
      : comm_(comm),
        model_(cfg.model, max_batch),
        opt_(optimizer_config(cfg)),
        adamw_(opt_, model_.layout()),
        exchange_(
            plan_gradient_buckets(model_.params().size(), sizeof(float), cfg.bucket_bytes())) {}

  const ParamLayout& layout() const override { return model_.layout(); }
  std::string describe() const override { return "cpu fp32, gradients over MPI"; }

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
    model_.zero_grads();
    loss_sum_ = 0.0;
    micro_batches_ = 0;
  }
  void forward_backward(const int32_t* inputs, const int32_t* targets, int batch, double loss_scale,
                        bool last_micro_batch) override {
    {
      trace::Span span("forward");
      span.arg("micro", micro_batches_);
      loss_sum_ += model_.forward(inputs, targets, batch);
    }
    trace::Span span("backward");
    span.arg("micro", micro_batches_++);
    if (!last_micro_batch) {
      model_.backward(loss_scale);
      return;
    }
    exchange_.begin(comm_, model_.grads());
    model_.backward(loss_scale, [this](size_t frontier) { exchange_.ready_from(frontier); });
  }
  void poison_grad() override { model_.grads()[0] = std::numeric_limits<float>::quiet_NaN(); }
  void reduce() override {
    // [Gradient averaging] once per optimizer step in [Gradient buckets], then the loss: the
    // same order on all ranks.
    {
      const trace::Span span("exchange wait");
      comm_exposed_ms_ = exchange_.finish();
    }
    loss_ = loss_sum_ / micro_batches_;
    comm_.all_reduce(std::span<double>(&loss_, 1), comm::ReduceOp::avg);
  }
  ReplicaStep update(int64_t step) override {
    ReplicaStep r;
    r.loss = loss_;
    r.comm_exposed_ms = comm_exposed_ms_;
    // [Non-finite guard]: loss and gradient are identical on every rank after reduce(), so
    // every rank takes the same decision.
    if (std::isfinite(loss_)) {
      r.stats = adamw_.step(model_.params(), model_.grads(), step);
    } else {
      r.stats.lr = learning_rate(opt_, step);
      r.stats.grad_norm = std::numeric_limits<double>::quiet_NaN();
      r.stats.skipped = true;
    }
    return r;
  }
  double evaluate(const int32_t* inputs, const int32_t* targets, int batch) override {
    return model_.forward(inputs, targets, batch);
  }

 private:
  static OptimizerConfig optimizer_config(const TrainConfig& cfg) {
    OptimizerConfig o = cfg.opt;
    o.total_steps = cfg.steps;
    return o;
  }

  comm::Communicator& comm_;
  Gpt<float> model_;
  OptimizerConfig opt_;
  AdamW adamw_;
  GradientExchange exchange_;
  double comm_exposed_ms_ = 0.0;
  double loss_sum_ = 0.0;
  int micro_batches_ = 0;
  double loss_ = 0.0;
};

}  // namespace

std::unique_ptr<Replica> make_cpu_replica(const TrainConfig& cfg, int max_batch,
                                          comm::Communicator& comm) {
  return std::make_unique<CpuReplica>(cfg, max_batch, comm);
}

#ifndef DPT_HAVE_CUDA
std::unique_ptr<Replica> make_cuda_replica(const TrainConfig&, int, int, Precision,
                                           comm::Communicator&) {
  throw UsageError(
      "--device cuda, but this build has no CUDA (CMake found no nvcc, or DPT_CUDA=OFF): "
      "rebuild with CUDA, or pass --device cpu");
}
#endif

}  // namespace dpt::trainer
