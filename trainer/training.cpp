// The training loop, the same for the CPU and the CUDA replica ([Replica]).
#include "trainer/training.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>
#include <optional>
#include <sstream>
#include <tuple>

#include "comm/agreement.h"
#include "comm/flight_recorder.h"
#include "comm/typed_collectives.h"
#include "common/elapsed.h"
#include "common/errors.h"
#include "common/hash.h"
#include "common/trace.h"
#include "datasets/batch_stream.h"
#include "trainer/gpt.h"
#include "trainer/gradient_exchange.h"
#include "trainer/optimizer.h"
#include "trainer/replica.h"
#include "trainer/trace_file.h"

namespace dpt::trainer {

uint64_t ParamSyncCheck::check(const float* params, size_t n, const char* when, int64_t step) {
  const uint64_t mine = fnv1a64(params, n * sizeof(float));
  comm_.all_gather(std::span<const uint64_t>(&mine, 1), std::span<uint64_t>(all_));
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
// of each sample's loss (language modelling: its mean token loss), summed over ranks; with it
// the top-1 accuracy and confusion matrix (classification) or the RMSE over every target
// (regression).
class Validator {
 public:
  Validator(datasets::Dataset& val, int64_t want, int world_size, int rank, int micro_batch,
            const ModelConfig& model)
      : b_(micro_batch),
        task_(model.task),
        K_(task_ == Task::lm ? 0 : model.num_outputs),
        outputs_(static_cast<size_t>(micro_batch) * K_) {
    const uint64_t N = val.num_samples();
    const uint64_t n = std::min<uint64_t>(static_cast<uint64_t>(want), N);
    const uint64_t lo = rank * n / world_size, hi = (rank + 1) * n / world_size;
    std::vector<datasets::SampleRef> refs;
    for (uint64_t i = lo; i < hi; ++i)
      refs.push_back(val.sample_in_order(i * N / n));
    rows_ = static_cast<int>(refs.size());
    rows_buf_ = datasets::BatchBuffer(val.fields(), std::max<size_t>(1, refs.size()));
    val.read_samples(refs, rows_buf_);
    if (task_ == Task::classify) confusion_.assign(static_cast<size_t>(K_) * K_, 0.0);
  }

  struct Result {
    double loss = 0, accuracy = 0, rmse = 0;
    std::vector<int64_t> confusion;
  };

  Result evaluate(Replica& model, comm::Communicator& comm) {
    struct Sums {
      double loss = 0;  // each sample's loss, summed over samples
      double samples = 0;
      double correct = 0;        // classification
      double squared_error = 0;  // regression: over every target
      auto fields() { return std::tie(loss, samples, correct, squared_error); }
    } sums{0.0, static_cast<double>(rows_), 0.0, 0.0};
    std::fill(confusion_.begin(), confusion_.end(), 0.0);
    for (int r0 = 0; r0 < rows_; r0 += b_) {
      const int n = std::min(b_, rows_ - r0);
      const datasets::Batch batch = rows_buf_.view(static_cast<size_t>(r0), n);
      sums.loss += n * model.evaluate(batch, K_ > 0 ? outputs_.data() : nullptr);
      for (int j = 0; j < n && task_ == Task::classify; ++j) {
        const float* o = &outputs_[static_cast<size_t>(j) * K_];
        const int predicted = static_cast<int>(std::max_element(o, o + K_) - o);
        const int truth = batch.labels[j];
        sums.correct += predicted == truth ? 1.0 : 0.0;
        confusion_[static_cast<size_t>(truth) * K_ + predicted] += 1.0;
      }
      for (int j = 0; j < n && task_ == Task::regress; ++j) {
        for (int k = 0; k < K_; ++k) {
          const double e = double(outputs_[size_t(j) * K_ + k]) - batch.targets[size_t(j) * K_ + k];
          sums.squared_error += e * e;
        }
      }
    }
    comm::all_reduce_fields(comm, sums, comm::ReduceOp::sum);
    Result r;
    r.loss = sums.loss / sums.samples;
    if (task_ == Task::classify) {
      comm.all_reduce(std::span<double>(confusion_), comm::ReduceOp::sum);
      r.accuracy = sums.correct / sums.samples;
      r.confusion.assign(confusion_.begin(), confusion_.end());
    }
    if (task_ == Task::regress) r.rmse = std::sqrt(sums.squared_error / (sums.samples * K_));
    return r;
  }

 private:
  int b_;
  Task task_;
  int K_;
  int rows_ = 0;
  datasets::BatchBuffer rows_buf_;
  std::vector<float> outputs_;
  std::vector<double> confusion_;  // K x K counts, summed over ranks as doubles (exact to 2^53)
};

// [Step votes] What every rank puts into the one small all-reduce (max) of each step, after its
// gradients: how long it waited for data (the step waited for the slowest rank), whether its
// checkpoint write is still running ([Async save]), and each kind of stop request it has seen
// ([Stop requests]). All ranks then act on the same union.
// The largest memory of any rank ([Memory plan]) rides along.
struct StepVotes {
  double data_wait_ms = 0;
  double writing = 0;
  job::StopVote stop;
  double mem_state_bytes = 0;
  double mem_peak_bytes = 0;
  auto fields() {
    return std::tie(data_wait_ms, writing, stop.term, stop.preempt, stop.time_limit,
                    mem_state_bytes, mem_peak_bytes);
  }
};

// One run of the loop: the state that lives across steps, and each part of a step.
class TrainingLoop {
 public:
  TrainingLoop(const TrainConfig& cfg, comm::Communicator& comm, Replica& model, TrainData data,
               const StepCallback& on_step, const TrainControl& control)
      : cfg_(cfg),
        comm_(comm),
        model_(model),
        on_step_(on_step),
        control_(control),
        first_step_(control.resume ? control.resume->meta.step + 1 : 1),
        // [Sample order]: the batches of step k depend on (seed, k) alone, so a resumed run
        // reads on from its step with no replay, whatever its number of ranks.
        batches_(data.train,
                 datasets::SampleOrder(cfg.seed, data.train.samples_per_shard(), cfg.shuffle),
                 datasets::BatchGeometry{cfg.global_batch, comm.world_size(), comm.rank(),
                                         cfg.micro_batch},
                 first_step_ - 1, cfg.prefetch),
        sync_(comm),
        skipped_total_(control.resume ? control.resume->meta.nonfinite_skipped : 0),
        model_flops_per_step_(model_flops_per_token(cfg.model) *
                              static_cast<double>(cfg.global_batch * cfg.model.positions())) {
    if (data.val)
      validator_.emplace(*data.val, cfg.val_samples, comm.world_size(), comm.rank(),
                         cfg.micro_batch, cfg.model);
    if (tracing_) reserve_trace();
  }

  TrainResult run() {
    const int64_t last = cfg_.last_step();
    result_.steps.reserve(static_cast<size_t>(std::max<int64_t>(0, cfg_.steps - first_step_ + 1)));
    sent_before_ = model_.bytes_sent();
    for (int64_t step = first_step_; step <= last; ++step) {
      if (tracing_) trace::Recorder::get().set_recording(in_trace_window(step));
      const unsigned stop_requested = one_step(step, last);
      if (tracing_ && step == cfg_.trace_last_step) write_trace();
      if (stop_requested != 0 && step < last) {
        result_.stopped_by = stop_requested;
        break;
      }
    }
    comm::FlightRecorder::get().set_phase("end of training");
    if (control_.saver) {
      const trace::Span span("checkpoint finish");
      try {
        control_.saver->finish();
      } catch (const checkpoint::SaveFailed& e) {
        go_on_after(e, true);  // the run's last save: it throws either way
      }
    }
    if (tracing_ && !trace_written_) write_trace();
    result_.final_param_hash = check_sync("at the end", 0);
    const std::span<const float> final_params = model_.host_params();
    result_.final_params.assign(final_params.begin(), final_params.end());
    return std::move(result_);
  }

 private:
  // One optimizer step; returns the agreed stop requests (StopReason bits).
  unsigned one_step(int64_t step, int64_t last) {
    trace::Span span("step");
    span.arg("step", step);
    comm::FlightRecorder& flight = comm::FlightRecorder::get();  // [Flight recorder]
    flight.set_step(step);
    const auto t0 = std::chrono::steady_clock::now();
    const double wait_ms = accumulate(step);
    const StepVotes votes = vote(step, wait_ms);
    const unsigned stop_requested = votes.stop.reasons();
    // [Non-finite guard] inside update(): the same decision on every rank.
    const ReplicaStep rs = [&] {
      const trace::Span optimizer("optimizer");
      flight.set_phase("optimizer");
      return model_.update(step);
    }();
    skipped_in_a_row_ = rs.stats.skipped ? skipped_in_a_row_ + 1 : 0;
    skipped_total_ += rs.stats.skipped ? 1 : 0;
    int64_t failed_step = -1;
    if (control_.saver && control_.saver->pending() && votes.writing == 0.0) {
      flight.set_phase("checkpoint publication");
      try {
        control_.saver->publish();
      } catch (const checkpoint::SaveFailed& e) {
        failed_step = go_on_after(e, false);
      }
    }
    const double ms = ms_since(t0);
    if (cfg_.check_sync_every > 0 && step % cfg_.check_sync_every == 0)
      check_sync("after step", step);

    StepRecord rec = record(step, rs, ms, votes.data_wait_ms);
    rec.ckpt_failed_step = failed_step;
    rec.mem_state_bytes = static_cast<int64_t>(votes.mem_state_bytes);
    rec.mem_peak_bytes = static_cast<int64_t>(votes.mem_peak_bytes);
    const bool diverged = rs.stats.skipped && (cfg_.nonfinite == NonFinitePolicy::stop ||
                                               skipped_in_a_row_ >= cfg_.nonfinite_max_skips);
    if (!diverged) {
      validate_if_due(rec);
      save_if_due(rec, step == last || stop_requested != 0);
    }
    // [Bytes sent] of the whole step, validation and the checkpoint's collectives included.
    const uint64_t sent = model_.bytes_sent();
    rec.sent_bytes = static_cast<int64_t>(sent - sent_before_);
    sent_before_ = sent;
    result_.steps.push_back(rec);
    if (on_step_) on_step_(rec);
    if (diverged) stop_diverged(step, rs);
    return stop_requested;
  }

  // Zeroes the gradient and accumulates every micro-batch of this rank's slice, then averages
  // over the ranks. Returns the time this rank waited for its batches.
  double accumulate(int64_t step) {
    const int accum = cfg_.accum_steps(comm_.world_size());
    model_.zero_grads();
    double wait_ms = 0.0;
    comm::FlightRecorder& flight = comm::FlightRecorder::get();
    for (int m = 0; m < accum; ++m) {
      const auto mb = [&] {
        const trace::Span wait("data wait");
        flight.set_phase("data wait");
        return batches_.next();
      }();
      flight.set_phase("forward/backward");
      DPT_CHECK(mb.step == step - 1 && mb.micro == m, "the batch stream is out of order");
      wait_ms += mb.wait_ms;
      // Each micro-batch contributes 1/accum of this rank's mean; the average over ranks in
      // reduce() makes it the gradient of the mean over the global batch.
      model_.forward_backward(mb.batch, 1.0 / accum, m == accum - 1);
    }
    if (step == cfg_.fault_nan_step && comm_.rank() == comm_.world_size() - 1) model_.poison_grad();
    flight.set_phase("gradient exchange");
    model_.reduce();
    return wait_ms;
  }

  uint64_t sent_before_ = 0;  // model_.bytes_sent() at the end of the step before

  StepVotes vote(int64_t step, double wait_ms) {
    const trace::Span span("step votes");
    comm::FlightRecorder::get().set_phase("step votes");
    StepVotes v;
    v.data_wait_ms = wait_ms;
    v.writing = control_.saver ? control_.saver->writing_flag() : 0.0;
    v.stop = job::StopVote::of(control_.stop ? control_.stop->poll() : 0u);
    const MemoryUse mem = model_.memory_use();
    v.mem_state_bytes = static_cast<double>(mem.state);
    v.mem_peak_bytes = static_cast<double>(mem.peak);
    // Testing ([Hang diagnosis]): the last rank goes on without the others' votes.
    if (step == cfg_.fault_skip_collective && comm_.rank() == comm_.world_size() - 1) return v;
    comm::all_reduce_fields(comm_, v, comm::ReduceOp::max);
    return v;
  }

  StepRecord record(int64_t step, const ReplicaStep& rs, double ms, double wait_ms) {
    const int64_t tokens_per_step = cfg_.global_batch * cfg_.model.positions();
    StepRecord rec;
    rec.step = step;
    rec.total_steps = cfg_.steps;
    rec.loss = rs.loss;
    rec.lr = rs.stats.lr;
    rec.grad_norm = rs.stats.grad_norm;
    rec.skipped = rs.stats.skipped;
    rec.tokens = step * tokens_per_step;
    rec.step_ms = ms;
    rec.tokens_per_s = ms > 0 ? tokens_per_step / (ms / 1000.0) : 0.0;
    rec.samples = step * cfg_.global_batch;
    rec.samples_per_s = ms > 0 ? cfg_.global_batch / (ms / 1000.0) : 0.0;
    rec.data_wait_ms = wait_ms;
    rec.comm_exposed_ms = rs.comm_exposed_ms;
    // llm.c's MFU: model FLOPs of the step's tokens per second over the ranks' summed peak.
    rec.mfu = control_.peak_flops > 0 && ms > 0 ? model_flops_per_step_ / (ms / 1000.0) /
                                                      (control_.peak_flops * comm_.world_size())
                                                : std::numeric_limits<double>::quiet_NaN();
    const auto io = batches_.stats();
    rec.io_tokens_per_s = io.read_seconds > 0 ? io.tokens_read / io.read_seconds : 0.0;
    return rec;
  }

  void validate_if_due(StepRecord& rec) {
    const bool due =
        (cfg_.val_every > 0 && rec.step % cfg_.val_every == 0) || rec.step == cfg_.steps;
    if (!validator_ || !due) return;
    const trace::Span span("validation");
    comm::FlightRecorder::get().set_phase("validation");
    rec.has_val = true;
    Validator::Result r = validator_->evaluate(model_, comm_);
    rec.val_loss = r.loss;
    if (cfg_.model.task == Task::classify) {
      rec.val_accuracy = r.accuracy;
      if (rec.step == cfg_.steps) rec.confusion = std::move(r.confusion);
    }
    if (cfg_.model.task == Task::regress) rec.val_rmse = r.rmse;
  }

  void save_if_due(StepRecord& rec, bool final_step) {
    checkpoint::Checkpointer* saver = control_.saver;
    if (!saver || !((cfg_.ckpt_every > 0 && rec.step % cfg_.ckpt_every == 0) || final_step)) return;
    rec.saved = true;
    const trace::Span span("checkpoint snapshot");
    comm::FlightRecorder::get().set_phase("checkpoint save");
    // The copies back from a GPU count as stall: the step waits for them.
    const auto t0 = std::chrono::steady_clock::now();
    const std::span<const float> p = model_.host_params(), m = model_.host_m(), v = model_.host_v();
    const double copy_ms = ms_since(t0);
    // save() first publishes the save before it: when that one failed (and the run goes on),
    // this one starts on the second try; a failure then is its own (a synchronous save's).
    for (int attempt = 0; attempt < 2; ++attempt) {
      try {
        rec.ckpt_stall_ms =
            copy_ms + saver->save(rec.step, p, m, v, model_.state_range().lo, skipped_total_);
        return;
      } catch (const checkpoint::SaveFailed& e) {
        const bool this_save = e.step() == rec.step;
        rec.ckpt_failed_step = go_on_after(e, final_step && this_save);
        if (this_save) break;
      }
    }
    rec.saved = false;
    rec.ckpt_stall_ms = ms_since(t0);
  }

  // [Failed save] under --ckpt-on-error: rethrows with `stop`, or when the save was the run's
  // last; else rank 0 warns and the run goes on. Returns the step whose save failed.
  int64_t go_on_after(const checkpoint::SaveFailed& e, bool last_save) {
    if (cfg_.ckpt_on_error == CkptOnError::stop) throw;
    if (last_save) {
      throw checkpoint::SaveFailed(std::string(e.what()) +
                                       "; it was the run's last save, so the run ends with an "
                                       "error even with --ckpt-on-error continue",
                                   e.exit_code(), e.origin_rank(), e.step());
    }
    if (comm_.rank() == 0) {
      std::fprintf(stderr,
                   "train: warning: %s; training goes on (--ckpt-on-error continue) and tries "
                   "again at the next save\n",
                   e.what());
      std::fflush(stderr);
    }
    return e.step();
  }

  [[noreturn]] void stop_diverged(int64_t step, const ReplicaStep& rs) {
    // What was saved before stays published; a save that fails now is only a footnote.
    if (control_.saver) {
      try {
        control_.saver->finish();
      } catch (const checkpoint::SaveFailed& e) {
        if (comm_.rank() == 0) std::fprintf(stderr, "train: warning: %s\n", e.what());
      }
    }
    char what[160];
    std::snprintf(what, sizeof(what), "step %lld: the loss is %.9g and the gradient norm %.9g",
                  static_cast<long long>(step), rs.loss, rs.stats.grad_norm);
    const std::string how =
        cfg_.nonfinite == NonFinitePolicy::stop
            ? " (--nonfinite stop): the run stops with the parameters of step " +
                  std::to_string(step - 1) +
                  " untouched. Resume from the newest checkpoint with a lower --lr or "
                  "--warmup-steps, or pass --nonfinite skip to step over such batches"
            : " and " + std::to_string(skipped_in_a_row_) +
                  " steps in a row were skipped (--nonfinite-max-skips " +
                  std::to_string(cfg_.nonfinite_max_skips) +
                  "): the run diverged. Resume from the newest checkpoint with a lower --lr";
    throw comm::AgreedFailure(what + how, 1, 0);
  }

  uint64_t check_sync(const char* when, int64_t step) {
    const std::span<const float> p = model_.host_params();
    return sync_.check(p.data(), p.size(), when, step);
  }

  bool in_trace_window(int64_t step) const {
    return step >= cfg_.trace_first_step &&
           (cfg_.trace_last_step == 0 || step <= cfg_.trace_last_step);
  }

  // Room for the window's spans, so that recording does not allocate in the step loop: per
  // micro-batch a forward and a backward of L blocks and their parts, per step the buckets and
  // the step's own spans. Capped; a longer window grows the buffer as it goes.
  void reserve_trace() {
    const int64_t end = cfg_.trace_last_step > 0 ? cfg_.trace_last_step : cfg_.steps;
    const int64_t steps =
        std::max<int64_t>(0, end - std::max(first_step_, cfg_.trace_first_step) + 1);
    const int64_t accum = cfg_.accum_steps(comm_.world_size());
    const int64_t buckets = static_cast<int64_t>(
        plan_gradient_buckets(model_.layout().total(), sizeof(float), cfg_.bucket_bytes()).size());
    const int64_t per_step = accum * (2 * cfg_.model.n_layer + 10) + 2 * buckets + 16;
    trace::Recorder::get().reserve(
        static_cast<size_t>(std::min<int64_t>(steps * per_step, int64_t{1} << 20)));
  }

  // Collective: [Trace file] of the window so far; recording stops.
  void write_trace() {
    trace::Recorder::get().set_recording(false);
    trace_written_ = true;
    boost::json::object model{
        {"vocab_size", cfg_.model.vocab_size}, {"seq_len", cfg_.model.seq_len},
        {"d_model", cfg_.model.d_model},       {"n_layer", cfg_.model.n_layer},
        {"n_head", cfg_.model.n_head},         {"params", model_.layout().total()}};
    const boost::json::object other{{"tool", "dpt train"},
                                    {"world_size", comm_.world_size()},
                                    {"device", control_.gpu >= 0 ? "cuda" : "cpu"},
                                    {"precision", precision_name(control_.precision)},
                                    {"model", std::move(model)},
                                    {"global_batch", cfg_.global_batch},
                                    {"micro_batch", cfg_.micro_batch},
                                    {"accum_steps", cfg_.accum_steps(comm_.world_size())},
                                    {"bucket_bytes", cfg_.bucket_bytes()},
                                    {"peak_flops", control_.peak_flops},
                                    {"trace_steps", {cfg_.trace_first_step, cfg_.trace_last_step}}};
    write_trace_file(comm_, cfg_.trace, control_.host, other);
  }

  const TrainConfig& cfg_;
  comm::Communicator& comm_;
  Replica& model_;
  const StepCallback& on_step_;
  const TrainControl& control_;
  const int64_t first_step_;
  datasets::BatchStream batches_;
  std::optional<Validator> validator_;
  ParamSyncCheck sync_;
  int64_t skipped_total_;
  int skipped_in_a_row_ = 0;
  TrainResult result_;
  const bool tracing_ = !cfg_.trace.empty();
  bool trace_written_ = false;
  const double model_flops_per_step_;  // over the global batch, for mfu
};

}  // namespace

std::unique_ptr<Replica> build_replica(const TrainConfig& cfg, comm::Communicator& comm,
                                       const TrainControl& control) {
  const int b = cfg.micro_batch;
  std::unique_ptr<Replica> model =
      control.gpu >= 0
          ? make_cuda_replica(cfg, b, control.gpu, control.precision, comm, control.zero)
          : make_cpu_replica(cfg, b, comm, control.zero);
  if (control.resume) {
    // Every rank received the whole state from the checkpoint's files ([Checkpoint layout]).
    model->set_state(control.resume->params, control.resume->m, control.resume->v);
  } else {
    std::vector<float> init(model->layout().total());
    if (comm.rank() == 0)
      init_gpt_params<float>(model->layout(), cfg.model.n_layer, cfg.seed, init);
    comm.broadcast(std::span<float>(init), 0);
    model->set_state(init, {}, {});
  }
  if (control.say) control.say("replica: " + model->describe());
  ParamSyncCheck sync(comm);
  const std::span<const float> p = model->host_params();
  sync.check(p.data(), p.size(),
             control.resume ? "after loading the checkpoint" : "after broadcast");
  return model;
}

TrainResult train(const TrainConfig& cfg, comm::Communicator& comm, Replica& model, TrainData data,
                  const StepCallback& on_step, const TrainControl& control) {
  return TrainingLoop(cfg, comm, model, data, on_step, control).run();
}

TrainResult train(const TrainConfig& cfg, comm::Communicator& comm, TrainData data,
                  const StepCallback& on_step, const TrainControl& control) {
  const std::unique_ptr<Replica> model = build_replica(cfg, comm, control);
  return train(cfg, comm, *model, data, on_step, control);
}

}  // namespace dpt::trainer
