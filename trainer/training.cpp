// The training loop of the CPU path.
#include "trainer/training.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>
#include <optional>
#include <sstream>

#include "common/errors.h"
#include "common/hash.h"
#include "datasets/batch_stream.h"
#include "trainer/agreement.h"
#include "trainer/gpt.h"
#include "trainer/optimizer.h"
#include "trainer/replica.h"

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

namespace {

// [Validation set] A fixed set of held-out samples, evenly spaced over the validation shards in
// order, split among the ranks in contiguous slices (any number of ranks evaluates the same
// samples); read once at start, so evaluation makes no I/O. The loss is the mean over samples
// of each sample's mean token loss, summed over ranks.
class Validator {
 public:
  Validator(datasets::TokenDataset& val, int64_t want, int world_size, int rank, int micro_batch)
      : T_(val.seq_len()), b_(micro_batch) {
    const uint64_t N = val.num_samples();
    const uint64_t K = std::min<uint64_t>(static_cast<uint64_t>(want), N);
    const uint64_t lo = rank * K / world_size, hi = (rank + 1) * K / world_size;
    std::vector<datasets::SampleRef> refs;
    for (uint64_t i = lo; i < hi; ++i)
      refs.push_back(val.sample_in_order(i * N / K));
    rows_ = static_cast<int>(refs.size());
    std::vector<int32_t> windows(refs.size() * (T_ + 1));
    val.read_samples(refs, windows.data());
    inputs_.resize(refs.size() * T_);
    targets_.resize(inputs_.size());
    for (size_t j = 0; j < refs.size(); ++j) {
      datasets::split_window(&windows[j * (T_ + 1)], T_, &inputs_[j * T_], &targets_[j * T_]);
    }
  }

  double evaluate(Replica& model, comm::Communicator& comm) {
    double acc[2] = {0.0, static_cast<double>(rows_)};  // loss summed over samples, samples
    for (int r0 = 0; r0 < rows_; r0 += b_) {
      const int n = std::min(b_, rows_ - r0);
      acc[0] += n * model.evaluate(&inputs_[size_t(r0) * T_], &targets_[size_t(r0) * T_], n);
    }
    comm.all_reduce(std::span<double>(acc, 2), comm::ReduceOp::sum);
    return acc[0] / acc[1];
  }

 private:
  size_t T_;
  int b_;
  int rows_ = 0;
  std::vector<int32_t> inputs_, targets_;
};

}  // namespace

TrainResult train(const TrainConfig& cfg, comm::Communicator& comm, TrainData data,
                  const StepCallback& on_step, TrainControl ckpt) {
  using Clock = std::chrono::steady_clock;
  const int W = comm.world_size();
  const int b = cfg.micro_batch;
  const int Tn = cfg.model.seq_len;
  const int accum = cfg.accum_steps(W);
  const int64_t first_step = ckpt.resume ? ckpt.resume->meta.step + 1 : 1;

  // [Sample order]: the batches of step k depend on (seed, k) alone, so a resumed run reads on
  // from its step with no replay, whatever its number of ranks.
  datasets::BatchGeometry geo{cfg.global_batch, W, comm.rank(), b};
  datasets::SampleOrder order(cfg.seed, data.train.samples_per_shard(), cfg.shuffle_config());
  datasets::BatchStream batches(data.train, std::move(order), geo, first_step - 1, cfg.prefetch);
  std::optional<Validator> validator;
  if (data.val) validator.emplace(*data.val, cfg.val_samples, W, comm.rank(), b);

  std::unique_ptr<Replica> model = ckpt.gpu >= 0
                                       ? make_cuda_replica(cfg, b, ckpt.gpu, ckpt.dtype, comm)
                                       : make_cpu_replica(cfg, b);
  if (ckpt.resume) {
    // Every rank received the whole state from the checkpoint's files ([Checkpoint layout]).
    model->set_state(ckpt.resume->params, ckpt.resume->m, ckpt.resume->v);
  } else {
    std::vector<float> init(model->layout().total());
    if (comm.rank() == 0)
      init_gpt_params<float>(model->layout(), cfg.model.n_layer, cfg.seed, init);
    comm.broadcast(std::span<float>(init), 0);
    model->set_state(init, {}, {});
  }
  if (ckpt.say) ckpt.say("replica: " + model->describe());
  ParamSyncCheck sync(comm);
  auto check_sync = [&](const char* when, int64_t step) {
    const std::span<const float> p = model->host_params();
    return sync.check(p.data(), p.size(), when, step);
  };
  check_sync(ckpt.resume ? "after loading the checkpoint" : "after broadcast", 0);

  const int64_t tokens_per_step = cfg.global_batch * Tn;
  TrainResult result;
  result.steps.reserve(static_cast<size_t>(std::max<int64_t>(0, cfg.steps - first_step + 1)));
  int64_t skipped_total = ckpt.resume ? ckpt.resume->meta.nonfinite_skipped : 0;
  int skipped_in_a_row = 0;

  const int64_t last_step = cfg.last_step();
  for (int64_t step = first_step; step <= last_step; ++step) {
    const auto t0 = Clock::now();
    model->zero_grads();
    double wait_ms = 0.0;
    for (int m = 0; m < accum; ++m) {
      const auto mb = batches.next();
      DPT_CHECK(mb.step == step - 1 && mb.micro == m, "the batch stream is out of order");
      wait_ms += mb.wait_ms;
      // Each micro-batch contributes 1/accum of this rank's mean; the average over ranks in
      // reduce() makes it the gradient of the mean over the global batch.
      model->forward_backward(mb.inputs, mb.targets, b, 1.0 / accum);
    }
    if (step == cfg.fault_nan_step && comm.rank() == W - 1) model->poison_grad();
    model->reduce(comm);
    // The step waited as long as its slowest rank's data; a checkpoint write is done when no
    // rank is still writing ([Async save]); a stop request of any rank stops all after this
    // step ([Stop requests]).
    const unsigned asked = ckpt.stop ? ckpt.stop->poll() : 0u;
    double maxed[5] = {wait_ms, ckpt.saver ? ckpt.saver->writing_flag() : 0.0,
                       (asked & kStopTerm) ? 1.0 : 0.0, (asked & kStopPreempt) ? 1.0 : 0.0,
                       (asked & kStopTimeLimit) ? 1.0 : 0.0};
    comm.all_reduce(std::span<double>(maxed, 5), comm::ReduceOp::max);
    wait_ms = maxed[0];
    const unsigned stop_requested = (maxed[2] > 0 ? kStopTerm : 0u) |
                                    (maxed[3] > 0 ? kStopPreempt : 0u) |
                                    (maxed[4] > 0 ? kStopTimeLimit : 0u);
    const bool final_step = step == last_step || stop_requested != 0;

    // [Non-finite guard] inside update(): the same decision on every rank.
    const ReplicaStep rs = model->update(step);
    const StepStats& s = rs.stats;
    const double loss = rs.loss;
    skipped_in_a_row = s.skipped ? skipped_in_a_row + 1 : 0;
    skipped_total += s.skipped ? 1 : 0;
    if (ckpt.saver && ckpt.saver->pending() && maxed[1] == 0.0) ckpt.saver->publish();
    const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    if (cfg.check_sync_every > 0 && step % cfg.check_sync_every == 0) {
      check_sync("after step", step);
    }

    StepRecord rec;
    rec.step = step;
    rec.total_steps = cfg.steps;
    rec.loss = loss;
    rec.lr = s.lr;
    rec.grad_norm = s.grad_norm;
    rec.skipped = s.skipped;
    rec.tokens = step * tokens_per_step;
    rec.step_ms = ms;
    rec.tokens_per_s = ms > 0 ? tokens_per_step / (ms / 1000.0) : 0.0;
    rec.data_wait_ms = wait_ms;
    const auto io = batches.stats();
    rec.io_tokens_per_s = io.read_seconds > 0 ? io.tokens_read / io.read_seconds : 0.0;
    const bool stop =
        s.skipped && (cfg.nonfinite == "stop" || skipped_in_a_row >= cfg.nonfinite_max_skips);
    if (!stop && validator &&
        ((cfg.val_every > 0 && step % cfg.val_every == 0) || step == cfg.steps)) {
      rec.has_val = true;
      rec.val_loss = validator->evaluate(*model, comm);
    }
    if (!stop && ckpt.saver && ((cfg.ckpt_every > 0 && step % cfg.ckpt_every == 0) || final_step)) {
      rec.saved = true;
      // The copies back from a GPU count as stall: the step waits for them.
      const auto t_save = Clock::now();
      const std::span<const float> p = model->host_params(), m1 = model->host_m(),
                                   m2 = model->host_v();
      const double copy_ms =
          std::chrono::duration<double, std::milli>(Clock::now() - t_save).count();
      rec.ckpt_stall_ms = copy_ms + ckpt.saver->save(step, p, m1, m2, skipped_total);
    }
    result.steps.push_back(rec);
    if (on_step) on_step(rec);
    if (stop) {
      if (ckpt.saver) ckpt.saver->finish();  // what was saved before stays published
      char what[160];
      std::snprintf(what, sizeof(what), "step %lld: the loss is %.9g and the gradient norm %.9g",
                    static_cast<long long>(step), loss, s.grad_norm);
      std::string how =
          cfg.nonfinite == "stop"
              ? " (--nonfinite stop): the run stops with the parameters of step " +
                    std::to_string(step - 1) +
                    " untouched. Resume from the newest checkpoint with a lower --lr or "
                    "--warmup-steps, or pass --nonfinite skip to step over such batches"
              : " and " + std::to_string(skipped_in_a_row) +
                    " steps in a row were skipped (--nonfinite-max-skips " +
                    std::to_string(cfg.nonfinite_max_skips) +
                    "): the run diverged. Resume from the newest checkpoint with a lower --lr";
      throw AgreedFailure(what + how, 1, 0);
    }
    if (stop_requested != 0 && step < last_step) {
      result.stopped_by = stop_requested;
      break;
    }
  }
  if (ckpt.saver) ckpt.saver->finish();
  result.final_param_hash = check_sync("at the end", 0);
  const std::span<const float> final_params = model->host_params();
  result.final_params.assign(final_params.begin(), final_params.end());
  return result;
}

}  // namespace dpt::trainer
