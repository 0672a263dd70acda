// The training loop of the CPU path.
#include "trainer/training.h"

#include <chrono>
#include <cmath>
#include <sstream>

#include "common/errors.h"
#include "common/hash.h"
#include "datasets/window_loader.h"
#include "trainer/gpt.h"
#include "trainer/optimizer.h"

namespace dpt::trainer {

uint64_t ParamSyncCheck::check(const float* params, size_t n, const char* when, int64_t step) {
  const uint64_t mine = fnv1a64(params, n * sizeof(float));
  comm_.all_gather(&mine, all_.data(), 1, comm::DType::u64);
  bool same = true;
  for (uint64_t h : all_)
    same = same && h == all_[0];
  if (same) return mine;
  std::ostringstream msg;
  msg << "parameters differ across ranks " << when;
  if (step > 0) msg << " " << step;
  msg << ":" << std::hex;
  for (size_t r = 0; r < all_.size(); ++r)
    msg << " rank " << std::dec << r << "=" << std::hex << all_[r];
  DPT_CHECK(false, msg.str());
}

TrainResult train(const TrainConfig& cfg, comm::Communicator& comm, const datasets::ByteFile& data,
                  const StepCallback& on_step) {
  using Clock = std::chrono::steady_clock;
  const int W = comm.world_size();
  const int b = cfg.micro_batch;
  const int Tn = cfg.model.seq_len;
  const int accum = cfg.accum_steps(W);

  datasets::BatchGeometry geo{cfg.global_batch, W, comm.rank(), b};
  datasets::WindowLoader loader(data, Tn, geo, cfg.seed);

  Gpt<float> model(cfg.model, b);
  if (comm.rank() == 0) model.init_params(cfg.seed);
  comm.broadcast(model.params(), 0);
  ParamSyncCheck sync(comm);
  sync.check(model.params().data(), model.params().size(), "after broadcast");

  OptimizerConfig opt = cfg.opt;
  opt.total_steps = cfg.steps;
  AdamW adamw(opt, model.layout());

  std::vector<int32_t> inputs(static_cast<size_t>(b) * Tn), targets(inputs.size());
  const int64_t tokens_per_step = cfg.global_batch * Tn;
  TrainResult result;
  result.steps.reserve(static_cast<size_t>(cfg.steps));

  for (int64_t step = 1; step <= cfg.steps; ++step) {
    const auto t0 = Clock::now();
    model.zero_grads();
    double loss_sum = 0.0;
    for (int m = 0; m < accum; ++m) {
      loader.load(step - 1, m, inputs.data(), targets.data());
      loss_sum += model.forward(inputs.data(), targets.data(), b);
      // Each micro-batch contributes 1/accum of this rank's mean; the all-reduce below
      // averages the ranks: together the gradient of the mean over the global batch.
      model.backward(1.0 / accum);
    }
    // [Gradient averaging] once per optimizer step, one flat tensor, same order on all ranks.
    comm.all_reduce(model.grads(), comm::ReduceOp::avg);
    double loss = loss_sum / accum;
    comm.all_reduce(std::span<double>(&loss, 1), comm::ReduceOp::avg);

    const StepStats s = adamw.step(model.params(), model.grads(), step);
    const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    if (cfg.check_sync_every > 0 && step % cfg.check_sync_every == 0) {
      sync.check(model.params().data(), model.params().size(), "after step", step);
    }

    StepRecord rec;
    rec.step = step;
    rec.total_steps = cfg.steps;
    rec.loss = loss;
    rec.lr = s.lr;
    rec.grad_norm = s.grad_norm;
    rec.tokens = step * tokens_per_step;
    rec.step_ms = ms;
    rec.tokens_per_s = ms > 0 ? tokens_per_step / (ms / 1000.0) : 0.0;
    result.steps.push_back(rec);
    if (on_step) on_step(rec);
  }
  result.final_param_hash = sync.check(model.params().data(), model.params().size(), "at the end");
  result.final_params.assign(model.params().begin(), model.params().end());
  return result;
}

}  // namespace dpt::trainer
