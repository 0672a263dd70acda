// [Replica] on one GPU: GptCuda, the fused AdamW kernel and NCCL (MPI when NCCL is absent).
#include <cuda_bf16.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <exception>
#include <limits>
#include <memory>
#include <vector>

#include "common/elapsed.h"
#include "common/errors.h"
#include "common/trace.h"
#include "kernels/adamw.h"
#include "kernels/cuda_check.h"
#include "kernels/cuda_device.h"
#include "kernels/device_buffer.h"
#include "trainer/gpt_cuda.h"
#include "trainer/gradient_exchange.h"
#include "trainer/replica.h"
#ifdef DPT_HAVE_NCCL
#include "comm/nccl_communicator.h"
#endif

namespace dpt::trainer {

namespace {

namespace k = dpt::kernels;

// [Timeline] on the GPU: CUDA events recorded around the step's work on both streams while the
// step is traced, read after update()'s wait (no host sync inside the step for them), and placed
// on the host clock by the last one, which completed just before that wait returned (so the
// spans are late by at most the wait's wake-up time).
class GpuSpans {
 public:
  explicit GpuSpans(size_t events) {
    for (size_t i = 0; i < events; ++i)
      events_.push_back(std::make_unique<k::CudaEventHandle>(0u));  // timed
  }
  // An event recorded now on `stream`, or -1 when not tracing or out of events.
  int mark(cudaStream_t stream) {
    if (!trace::recording() || used_ >= events_.size()) return -1;
    DPT_CHECK_CUDA(cudaEventRecord(events_[used_]->get(), stream));
    return static_cast<int>(used_++);
  }
  void span(const char* name, int index, trace::Track track, int start, int end) {
    if (start >= 0 && end >= 0) spans_.push_back({name, index, track, start, end});
  }
  // After the stream work up to `anchor` has completed: every span onto the host clock.
  void flush(int anchor, int64_t anchor_host_ns) {
    if (anchor >= 0) {
      for (const Span& s : spans_) {
        float start_ms = 0, end_ms = 0;
        DPT_CHECK_CUDA(
            cudaEventElapsedTime(&start_ms, events_[s.start]->get(), events_[anchor]->get()));
        DPT_CHECK_CUDA(
            cudaEventElapsedTime(&end_ms, events_[s.end]->get(), events_[anchor]->get()));
        trace::complete(s.name, s.index, s.track,
                        anchor_host_ns - static_cast<int64_t>(start_ms * 1e6),
                        anchor_host_ns - static_cast<int64_t>(end_ms * 1e6));
      }
    }
    spans_.clear();
    used_ = 0;
  }

 private:
  struct Span {
    const char* name;
    int index;
    trace::Track track;
    int start, end;
  };
  std::vector<std::unique_ptr<k::CudaEventHandle>> events_;
  std::vector<Span> spans_;
  size_t used_ = 0;
};

// [Sync Streams] of a step: the model computes on `stream_`. During the last micro-batch's
// backward, each time [Gradient buckets] become final the replica records `bucket_ready_` on
// the compute stream, the NCCL stream waits for it and enqueues those buckets' averages, so
// they run beside the rest of backward. reduce() records `grads_ready_`, the NCCL stream waits
// for it, averages the remaining buckets and the loss, and records `reduced_`, which the compute
// stream waits for before the optimizer: the compute stream never waits for the NCCL stream
// before that. The host does not wait inside the step until update() brings the loss and the
// gradient norm back; it then reads the exposed communication as the time from `grads_ready_`
// to `reduced_`.
//
// [ZeRO] stage 1 on the GPU: the buckets are reduce-scattered to their owners instead
// (in place, NCCL's ReduceScatter or one Reduce per owner); reduce() then computes the owned
// range's sum of squares on the NCCL stream and sums {loss, sum of squares} over the ranks in one
// all-reduce; AdamW updates the owned range only (its moments are the range's); the compute
// stream records `updated_`, the NCCL stream all-gathers every rank's range of the compute copy
// (bf16: 2 bytes a parameter, the fp32 master of the other ranges is left stale) and records
// `gathered_`, which the compute stream waits for before the next forward. host_params()
// all-gathers the fp32 master first, so checkpoints and the sync check see every range; every
// rank calls it at the same point of the loop ([Collective contract]).
template <typename T>
class CudaReplica final : public Replica {
 public:
  CudaReplica(const TrainConfig& cfg, int max_batch, int gpu, comm::Communicator& mpi,
              ZeroStage zero)
      : mpi_(mpi),
        gpu_((set_device(gpu), gpu)),
        zero_(zero),
        opt_(optimizer_config(cfg)),
        model_(cfg.model, max_batch, stream_.get()),
        own_(zero == ZeroStage::off
                 ? OwnedRange{0, model_.num_params()}
                 : owned_range(model_.num_params(), mpi.world_size(), mpi.rank())),
        m_(own_.count()),
        v_(own_.count()),
        device_scalars_(2),
        host_scalars_(3),
        buckets_(plan_gradient_buckets(model_.num_params(), sizeof(float), cfg.bucket_bytes())),
        // Per step: 3 per micro-batch, 2 per bucket, 5 for the optimizer, the gather and the
        // anchor.
        gpu_spans_(static_cast<size_t>(3 * std::max(1, cfg.accum_steps(mpi.world_size())) +
                                       2 * buckets_.size() + 5)) {
    DPT_CHECK(zero_ == ZeroStage::off || zero_ == ZeroStage::optimizer,
              "the CUDA replica shards the optimizer state only (--zero 0 or 1)");
    const ParamLayout& layout = model_.layout();
    // The owned range's pieces of every tensor, at offsets from the range's start.
    std::vector<k::AdamWSegment> segments;
    for (const TensorView& t : layout.tensors()) {
      const size_t lo = std::max(t.offset, own_.lo), hi = std::min(t.offset + t.numel(), own_.hi);
      if (lo < hi)
        segments.push_back(
            {lo - own_.lo, hi - lo, decays(t) ? static_cast<float>(opt_.weight_decay) : 0.0f});
    }
    if (zero_ != ZeroStage::off) {
      const int world = mpi.world_size();
      owners_ = owner_shards(buckets_, model_.num_params(), world, mpi.rank());
      // The compute copy's ranges, gathered as bytes (a gather moves bits, whatever the type).
      for (size_t c : owned_counts(model_.num_params(), world)) {
        copy_bytes_.push_back(c * sizeof(T));
        master_bytes_.push_back(c * sizeof(float));
      }
    }
    const std::vector<k::AdamWChunk> chunks = k::adamw_chunks(segments);
    chunks_ = k::DeviceBuffer<k::AdamWChunk>(chunks.size());
    if (!chunks.empty())
      k::copy_to_device(chunks_.get(), chunks.data(), chunks.size(), stream_.get());
    sumsq_scratch_ = k::DeviceBuffer<float>(k::sum_squares_scratch_floats(model_.num_params()));
    device_name_ = k::cuda_device_name(gpu);
#ifdef DPT_HAVE_NCCL
    // [Hang diagnosis]: the NCCL watchdog waits as long as the collective watchdog, and reports
    // through it (comm::report_backend_hang) when the GPU stream is what hangs. NCCL comes
    // last: a constructor that throws later would leave the communicator to a destructor that
    // only warns, and the peers, whose communicator is up, waiting in their first collective;
    // so whatever follows it aborts it first.
    nccl_ = std::make_unique<comm::NcclCommunicator>(
        mpi, gpu,
        cfg.collective_timeout_s > 0 ? cfg.collective_timeout_s
                                     : comm::NcclCommunicator::timeout_from_env());
    try {
      reduce_how_ = nccl_->backend();
    } catch (const std::exception& e) {
      nccl_->abort(std::string("the CUDA replica failed to start: ") + e.what());
      throw;
    }
#else
    reduce_how_ = "MPI through host memory (this build has no NCCL)";
#endif
  }

  ~CudaReplica() override {
#ifdef DPT_HAVE_NCCL
    // After a normal end every rank tears NCCL down together. While an exception unwinds, peers
    // may not come to a collective teardown: abort, which waits for nobody.
    if (!nccl_) return;
    if (std::uncaught_exceptions() > 0) {
      nccl_->abort("the training step failed on this rank");
      return;
    }
    try {
      nccl_->destroy();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "warning: NCCL teardown: %s\n", e.what());
    }
#endif
  }

  const ParamLayout& layout() const override {
    return model_.layout();
  }
  OwnedRange state_range() const override {
    return own_;
  }
  std::string describe() const override {
    return "cuda:" + std::to_string(gpu_) + " " + dtype_name() + " (" + device_name_ + "), " +
           (model_.fused_attention() ? "fused" : "unfused") + " attention, gradients over " +
           reduce_how_ +
           (zero_ == ZeroStage::off
                ? ""
                : ", zero 1 (this rank owns parameters [" + std::to_string(own_.lo) + ", " +
                      std::to_string(own_.hi) + "))");
  }

  void set_state(std::span<const float> params, std::span<const float> m,
                 std::span<const float> v) override {
    const size_t n = model_.num_params();
    DPT_CHECK(params.size() == n, "parameter count differs from the model");
    DPT_CHECK(m.empty() || (m.size() == n && v.size() == n), "moment buffers of the wrong size");
    cudaStream_t s = stream_.get();
    DPT_CHECK_CUDA(
        cudaMemcpyAsync(model_.params(), params.data(), n * sizeof(float), cudaMemcpyDefault, s));
    if (m_.size() == 0) {
      // An empty owned range (fewer parameters than ranks) holds no moments.
    } else if (m.empty()) {
      DPT_CHECK_CUDA(cudaMemsetAsync(m_.get(), 0, m_.bytes(), s));
      DPT_CHECK_CUDA(cudaMemsetAsync(v_.get(), 0, v_.bytes(), s));
    } else {
      DPT_CHECK_CUDA(
          cudaMemcpyAsync(m_.get(), m.data() + own_.lo, m_.bytes(), cudaMemcpyDefault, s));
      DPT_CHECK_CUDA(
          cudaMemcpyAsync(v_.get(), v.data() + own_.lo, v_.bytes(), cudaMemcpyDefault, s));
    }
    model_.refresh_compute_params();
    wait();  // the host spans may go away after this returns
  }
  std::span<const float> host_params() override {
#ifdef DPT_HAVE_NCCL
    if (zero_ != ZeroStage::off && !std::is_same_v<T, float>) {
      // The fp32 master of the other ranges is stale under stage 1: gather every range first.
      DPT_CHECK_CUDA(cudaEventRecord(updated_.get(), stream_.get()));
      nccl_->wait_event(updated_.get());
      nccl_->all_gather_v(model_.params() + own_.lo, model_.params(), master_bytes_,
                          comm::DType::u8);
      nccl_->record_event(gathered_.get());
      DPT_CHECK_CUDA(cudaStreamWaitEvent(stream_.get(), gathered_.get(), 0));
    }
#endif
    return to_host(host_params_, model_.params(), model_.num_params());
  }
  std::span<const float> host_m() override {
    return to_host(host_m_, m_.get(), own_.count());
  }
  std::span<const float> host_v() override {
    return to_host(host_v_, v_.get(), own_.count());
  }

  void zero_grads() override {
    DPT_CHECK_CUDA(
        cudaMemsetAsync(model_.grads(), 0, model_.num_params() * sizeof(float), stream_.get()));
    DPT_CHECK_CUDA(cudaMemsetAsync(loss_sum(), 0, sizeof(float), stream_.get()));
    positions_ = 0;
  }
  void forward_backward(const datasets::Batch& in, double loss_scale,
                        bool last_micro_batch) override {
    const int batch = in.rows;
    const int f0 = gpu_spans_.mark(stream_.get());
    model_.forward(in, loss_sum());
    const int f1 = gpu_spans_.mark(stream_.get());
    gpu_spans_.span("forward", -1, trace::Track::gpu_compute, f0, f1);
    next_bucket_ = 0;
#ifdef DPT_HAVE_NCCL
    if (last_micro_batch) {
      model_.backward(loss_scale, [this](size_t frontier) { start_buckets_from(frontier); });
    } else {
      model_.backward(loss_scale);
    }
#else
    (void)last_micro_batch;  // without NCCL the gradient goes through the host after backward
    model_.backward(loss_scale);
#endif
    gpu_spans_.span("backward", -1, trace::Track::gpu_compute, f1, gpu_spans_.mark(stream_.get()));
    positions_ += model_.loss_terms(batch);
  }
  void poison_grad() override {
    host_scalars_.get()[2] = std::numeric_limits<float>::quiet_NaN();
    DPT_CHECK_CUDA(cudaMemcpyAsync(model_.grads(), host_scalars_.get() + 2, sizeof(float),
                                   cudaMemcpyHostToDevice, stream_.get()));
  }

  void reduce() override {
    comm::Communicator& mpi = mpi_;
    const size_t n = model_.num_params();
#ifdef DPT_HAVE_NCCL
    DPT_CHECK_CUDA(cudaEventRecord(grads_ready_.get(), stream_.get()));
    nccl_->wait_event(grads_ready_.get());
    // [Gradient averaging] the fp32 buckets not started in backward, then the loss sum: the
    // same order on all ranks.
    while (next_bucket_ < buckets_.size())
      start_bucket(next_bucket_++);
    if (zero_ == ZeroStage::off) {
      nccl_->all_reduce(loss_sum(), 1, comm::DType::f32, comm::ReduceOp::avg);
    } else {
      // [ZeRO]: the owned range is final once its buckets are; its sum of squares and the loss
      // sum go in one all-reduce (sum; update() divides the loss by the rank count).
      k::sum_squares_cuda(sumsq(), model_.grads() + own_.lo, own_.count(), sumsq_scratch_.get(),
                          nccl_->stream());
      nccl_->all_reduce(device_scalars_.get(), 2, comm::DType::f32, comm::ReduceOp::sum);
    }
    nccl_->record_event(reduced_.get());
    DPT_CHECK_CUDA(cudaStreamWaitEvent(stream_.get(), reduced_.get(), 0));
    (void)n;
    (void)mpi;
#else
    // Without NCCL the gradient travels through host memory after backward, in one piece
    // (correct, not fast), in host_params_, a mirror that host_params() refills.
    const auto t0 = SteadyClock::now();
    to_host(host_params_, model_.grads(), n);
    mpi.all_reduce(std::span<float>(host_params_.get(), n), comm::ReduceOp::avg);
    float* loss = host_scalars_.get();
    k::copy_to_host(loss, loss_sum(), 1, stream_.get());
    mpi.all_reduce(std::span<float>(loss, 1), comm::ReduceOp::avg);
    k::copy_to_device(model_.grads(), host_params_.get(), n, stream_.get());
    k::copy_to_device(loss_sum(), loss, 1, stream_.get());
    host_exchange_ms_ = ms_since(t0);
#endif
  }

  ReplicaStep update(int64_t step) override {
    cudaStream_t s = stream_.get();
    const size_t n = model_.num_params();
    ReplicaStep r;
    r.stats.lr = learning_rate(opt_, step);
    const int o0 = gpu_spans_.mark(s);
    // Sharded, reduce() summed the ranges' squares already.
    if (zero_ == ZeroStage::off)
      k::sum_squares_cuda(sumsq(), model_.grads(), n, sumsq_scratch_.get(), s);
    k::AdamWCudaParams p{};
    p.lr = static_cast<float>(r.stats.lr);
    p.beta1 = static_cast<float>(opt_.beta1);
    p.beta2 = static_cast<float>(opt_.beta2);
    p.eps = static_cast<float>(opt_.eps);
    p.bias_correction1 = static_cast<float>(1.0 - std::pow(opt_.beta1, static_cast<double>(step)));
    p.bias_correction2 = static_cast<float>(1.0 - std::pow(opt_.beta2, static_cast<double>(step)));
    p.grad_clip = static_cast<float>(opt_.grad_clip);
    T* copy = nullptr;
    if constexpr (!std::is_same_v<T, float>) copy = model_.compute_params() + own_.lo;
    if (chunks_.size() > 0) {  // an empty owned range (fewer parameters than ranks) has none
      k::adamw_update_cuda<T>(model_.params() + own_.lo, copy, m_.get(), v_.get(),
                              model_.grads() + own_.lo, chunks_.get(),
                              static_cast<int>(chunks_.size()), sumsq(), loss_sum(), p, s);
    }
    const int o1 = gpu_spans_.mark(s);
    gpu_spans_.span("optimizer", -1, trace::Track::gpu_compute, o0, o1);
#ifdef DPT_HAVE_NCCL
    if (zero_ != ZeroStage::off) {
      // [ZeRO]: every rank's updated range of the compute copy into every rank's. A skipped
      // update gathers unchanged ranges, so no rank needs the guard's decision on the host.
      DPT_CHECK_CUDA(cudaEventRecord(updated_.get(), s));
      nccl_->wait_event(updated_.get());
      const int g0 = gpu_spans_.mark(nccl_->stream());
      nccl_->all_gather_v(model_.compute_params() + own_.lo, model_.compute_params(), copy_bytes_,
                          comm::DType::u8);
      gpu_spans_.span("all-gather parameters", -1, trace::Track::gpu_comm, g0,
                      gpu_spans_.mark(nccl_->stream()));
      nccl_->record_event(gathered_.get());
      DPT_CHECK_CUDA(cudaStreamWaitEvent(s, gathered_.get(), 0));
    }
#endif
    DPT_CHECK_CUDA(cudaMemcpyAsync(host_scalars_.get(), device_scalars_.get(), 2 * sizeof(float),
                                   cudaMemcpyDeviceToHost, s));
    const int anchor = gpu_spans_.mark(s);
    wait();
    gpu_spans_.flush(anchor, trace::now_ns());
    // The device decided with the same two numbers ([Non-finite guard]). Sharded, the loss is
    // the ranks' sum.
    const double ranks = zero_ == ZeroStage::off ? 1.0 : static_cast<double>(mpi_.world_size());
    r.loss =
        static_cast<double>(host_scalars_.get()[0]) / (static_cast<double>(positions_) * ranks);
    r.stats.grad_norm = std::sqrt(static_cast<double>(host_scalars_.get()[1]));
    if (!std::isfinite(r.loss)) r.stats.grad_norm = std::numeric_limits<double>::quiet_NaN();
    r.stats.skipped = !std::isfinite(r.loss) || !std::isfinite(r.stats.grad_norm);
    r.stats.clip = r.stats.skipped ? 1.0 : clip_factor(r.stats.grad_norm, opt_.grad_clip);
#ifdef DPT_HAVE_NCCL
    // Both events have completed (the stream waited for reduced_); read without another sync.
    float exposed_ms = 0.0f;
    DPT_CHECK_CUDA(cudaEventElapsedTime(&exposed_ms, grads_ready_.get(), reduced_.get()));
    r.comm_exposed_ms = std::max(0.0, static_cast<double>(exposed_ms));
    if (zero_ != ZeroStage::off) {
      // The parameter all-gather overlaps nothing: all of it is exposed.
      DPT_CHECK_CUDA(cudaEventElapsedTime(&exposed_ms, updated_.get(), gathered_.get()));
      r.comm_exposed_ms += std::max(0.0, static_cast<double>(exposed_ms));
    }
#else
    r.comm_exposed_ms = host_exchange_ms_;
#endif
    return r;
  }

  uint64_t bytes_sent() const override {
#ifdef DPT_HAVE_NCCL
    return mpi_.bytes_sent() + nccl_->bytes_sent();
#else
    return mpi_.bytes_sent();
#endif
  }
  MemoryUse memory_use() override {
    const size_t n = model_.num_params();
    MemoryUse u;
    u.state = n * sizeof(float) + (std::is_same_v<T, float> ? 0 : n * sizeof(T)) +
              n * sizeof(float) + m_.bytes() + v_.bytes();
    // Everything is allocated at start-up, so the memory in use now is its peak, give or take
    // NCCL's and cuBLASLt's lazy buffers (and another process on the same GPU).
    const k::CudaMemory mem = k::cuda_memory(gpu_);
    device_peak_ = std::max<uint64_t>(device_peak_, mem.total - mem.free);
    u.peak = device_peak_;
    return u;
  }

  double evaluate(const datasets::Batch& in,
                  float* /*outputs: language modelling has none*/) override {
    const int batch = in.rows;
    float* sum = device_scalars_.get() + 1;  // the sum-of-squares slot is free outside update()
    DPT_CHECK_CUDA(cudaMemsetAsync(sum, 0, sizeof(float), stream_.get()));
    model_.forward(in.tokens, in.labels, batch, sum);
    DPT_CHECK_CUDA(cudaMemcpyAsync(host_scalars_.get() + 1, sum, sizeof(float),
                                   cudaMemcpyDeviceToHost, stream_.get()));
    wait();
    return static_cast<double>(host_scalars_.get()[1]) /
           static_cast<double>(model_.loss_terms(batch));
  }

 private:
  static int set_device(int gpu) {
    DPT_CHECK_CUDA(cudaSetDevice(gpu));
    return gpu;
  }
  static OptimizerConfig optimizer_config(const TrainConfig& cfg) {
    OptimizerConfig o = cfg.opt;
    o.total_steps = cfg.steps;
    return o;
  }
  static const char* dtype_name() {
    return std::is_same_v<T, float> ? "fp32" : "bf16";
  }
  float* loss_sum() {
    return device_scalars_.get();
  }
  float* sumsq() {
    return device_scalars_.get() + 1;
  }

  // Waits for the compute stream; with NCCL the communicator's watchdog first, so that a dead
  // peer ends this rank with an error instead of a hang.
  void wait() {
#ifdef DPT_HAVE_NCCL
    nccl_->synchronize();
#endif
    DPT_CHECK_CUDA(cudaStreamSynchronize(stream_.get()));
  }
#ifdef DPT_HAVE_NCCL
  // [Gradient buckets]: every gradient at offset >= frontier has been enqueued on the compute
  // stream; hand the buckets this makes ready to the NCCL stream behind one event.
  void start_buckets_from(size_t frontier) {
    const size_t ready = buckets_ready(buckets_, next_bucket_, frontier);
    if (ready == next_bucket_) return;
    DPT_CHECK_CUDA(cudaEventRecord(bucket_ready_.get(), stream_.get()));
    nccl_->wait_event(bucket_ready_.get());  // enqueued now, so the event may be re-recorded
    while (next_bucket_ < ready)
      start_bucket(next_bucket_++);
  }
  // Bucket k's average to every rank, or ([ZeRO]) each owner's part to its owner, in place.
  void start_bucket(size_t k) {
    const GradientBucket& b = buckets_[k];
    const int c0 = gpu_spans_.mark(nccl_->stream());
    if (zero_ == ZeroStage::off) {
      nccl_->all_reduce(model_.grads() + b.offset, b.count, comm::DType::f32, comm::ReduceOp::avg);
    } else {
      nccl_->reduce_scatter_v(model_.grads() + b.offset, model_.grads() + owners_.recv_offset[k],
                              owners_.counts[k], comm::DType::f32, comm::ReduceOp::avg);
    }
    gpu_spans_.span(zero_ == ZeroStage::off ? "all-reduce bucket %d" : "reduce-scatter bucket %d",
                    static_cast<int>(k), trace::Track::gpu_comm, c0,
                    gpu_spans_.mark(nccl_->stream()));
  }
#endif
  // The host mirrors are page-locked (asynchronous copies at full link speed) and made at their
  // first use, the first checkpoint or sync check, not at start: three full-size pinned buffers
  // a rank (12 bytes a parameter, 1.5 GB at 124M) are memory the host may not spare for runs
  // that never save. Allocated once, then kept.
  std::span<const float> to_host(k::PinnedBuffer<float>& host, const float* device, size_t n) {
    if (host.size() != n) host = k::PinnedBuffer<float>(n);
    DPT_CHECK_CUDA(
        cudaMemcpyAsync(host.get(), device, host.bytes(), cudaMemcpyDeviceToHost, stream_.get()));
    wait();
    return {host.get(), host.size()};
  }

  comm::Communicator& mpi_;  // the host communicator the replica was made with
  int gpu_;
  ZeroStage zero_;
  OptimizerConfig opt_;
  k::CudaStreamHandle stream_;
  GptCuda<T> model_;
  OwnedRange own_;  // the elements whose moments this rank holds ([ZeRO]; all without sharding)
  k::DeviceBuffer<float> m_, v_;                          // of own_
  k::DeviceBuffer<float> device_scalars_;                 // [loss sum, gradient sum of squares]
  k::PinnedBuffer<float> host_scalars_;                   // their copies, and a NaN for poison_grad
  k::PinnedBuffer<float> host_params_, host_m_, host_v_;  // made at first use (to_host)
  k::DeviceBuffer<k::AdamWChunk> chunks_;
  k::DeviceBuffer<float> sumsq_scratch_;
  std::vector<GradientBucket> buckets_;
  size_t next_bucket_ = 0;  // the next of buckets_ to start in this step
  // [ZeRO]: each bucket's shards; every rank's range of the compute copy and of the fp32
  // master, in bytes.
  OwnerShards owners_;
  std::vector<size_t> copy_bytes_, master_bytes_;
  GpuSpans gpu_spans_;
  double host_exchange_ms_ = 0.0;  // without NCCL: the host's exchange time
  // grads_ready_ and reduced_ are timed: their interval is the step's exposed communication.
  // updated_ and gathered_ ([ZeRO]) time the parameter all-gather.
  k::CudaEventHandle grads_ready_{0}, reduced_{0}, bucket_ready_, updated_{0}, gathered_{0};
  int64_t positions_ = 0;     // losses of this step's micro-batches on this rank (positions or
                              // samples: GptCuda::loss_terms)
  uint64_t device_peak_ = 0;  // the device memory in use at its highest sample (MemoryUse)
  std::string reduce_how_, device_name_;
#ifdef DPT_HAVE_NCCL
  std::unique_ptr<comm::NcclCommunicator> nccl_;
#endif
};

}  // namespace

std::unique_ptr<Replica> make_cuda_replica(const TrainConfig& cfg, int max_batch, int gpu,
                                           Precision precision, comm::Communicator& mpi,
                                           ZeroStage zero) {
  if (zero == ZeroStage::gradients) throw UsageError(kZero2CpuOnly);
#ifndef DPT_HAVE_NCCL
  if (zero != ZeroStage::off)
    throw UsageError("--zero 1 on GPUs needs NCCL, which this build lacks: pass --zero 0");
#endif
  if (precision == Precision::bf16)
    return std::make_unique<CudaReplica<__nv_bfloat16>>(cfg, max_batch, gpu, mpi, zero);
  DPT_CHECK(
      precision == Precision::fp32,
      std::string("the CUDA replica needs a resolved precision, got ") + precision_name(precision));
  return std::make_unique<CudaReplica<float>>(cfg, max_batch, gpu, mpi, zero);
}

}  // namespace dpt::trainer
