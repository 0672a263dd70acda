// adamw_update_cuda, sum_squares_cuda and convert_params_cuda against the CPU reference in
// double: clipping on and off, the [Non-finite guard] (NaN / Inf loss or gradient: nothing
// written), the chunk table (adamw_chunks, host), determinism of the sum of squares, and sizes
// past one pass of the capped grids.
#include <cuda_bf16.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "kernels/adamw.h"
#include "tests/kernels/cuda_test_util.h"

namespace dpt::kernels::test {
namespace {

// [Wrap inputs]: kernel_test_util.h.

template <typename T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

// clip_factor of trainer/optimizer.cpp (not linked into kernel tests), which the CUDA update
// must reproduce: grad_clip / (norm + 1e-6) above the threshold, else 1.
double clip_factor(double norm, double grad_clip) {
  if (grad_clip <= 0.0 || !(norm > grad_clip)) return 1.0;
  return grad_clip / (norm + 1e-6);
}

// Decayed and exempt tensors, one longer than a chunk, and a gap of 5 elements that no chunk
// covers (it must stay untouched).
constexpr size_t kLong = kAdamWChunk + 13;
constexpr size_t kGap = 1007 + kLong;
const std::vector<AdamWSegment> kSegments = {
    {0, 1000, 0.1f}, {1000, 7, 0.0f}, {1007, kLong, 0.1f}, {kGap + 5, 333, 0.0f}};
constexpr size_t kTotal = kGap + 5 + 333;

bool in_gap(size_t i) {
  return i >= kGap && i < kGap + 5;
}

struct Hyper {
  float lr = 0.01f, beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f;
  long step = 5;
};

struct State {
  std::vector<double> params, m, v, grads;
};
State initial_state(uint64_t seed) {
  State s;
  s.params = rounded_to<float>(random_vector(kTotal, seed, 0, 0.05));
  s.m = rounded_to<float>(random_vector(kTotal, seed, 1, 0.01));
  s.v = random_vector(kTotal, seed, 2);
  for (double& x : s.v)
    x = 1e-4 * std::fabs(x) + 1e-6;  // a second moment is positive
  s.v = rounded_to<float>(s.v);
  s.grads = rounded_to<float>(random_vector(kTotal, seed, 3, 0.02));
  return s;
}

double sum_of_squares(const std::vector<double>& g) {
  double s = 0.0;
  for (double x : g)
    s += x * x;
  return s;
}

// Everything one update on the device needs, with params_copy poisoned.
template <typename TP>
struct DeviceState {
  DeviceBuffer<float> params, m, v, grads, sumsq, loss;
  DeviceBuffer<TP> copy;
  DeviceBuffer<AdamWChunk> chunks;
  int n_chunks = 0;
  DeviceState(const State& s, float sumsq_value, float loss_value)
      : params(to_device<float>(s.params)),
        m(to_device<float>(s.m)),
        v(to_device<float>(s.v)),
        grads(to_device<float>(s.grads)),
        sumsq(to_device<float>({sumsq_value})),
        loss(to_device<float>({loss_value})),
        copy(poisoned_device<TP>(kTotal)) {
    const std::vector<AdamWChunk> table = adamw_chunks(kSegments);
    n_chunks = static_cast<int>(table.size());
    chunks = DeviceBuffer<AdamWChunk>(table.size());
    copy_to_device(chunks.get(), table.data(), table.size(), nullptr);
  }
  void update(const Hyper& h, float grad_clip, bool with_loss) {
    const AdamWCudaParams p{h.lr,
                            h.beta1,
                            h.beta2,
                            h.eps,
                            static_cast<float>(1.0 - std::pow(double{h.beta1}, h.step)),
                            static_cast<float>(1.0 - std::pow(double{h.beta2}, h.step)),
                            grad_clip};
    adamw_update_cuda<TP>(params.get(), copy.get(), m.get(), v.get(), grads.get(), chunks.get(),
                          n_chunks, sumsq.get(), with_loss ? loss.get() : nullptr, p, nullptr);
  }
};

// One update against the CPU reference per segment with grad_scale = clip_factor.
template <typename TP>
void check_update(float grad_clip_over_norm, bool with_loss, uint64_t seed) {
  const State s = initial_state(seed);
  const float sumsq = static_cast<float>(sum_of_squares(s.grads));
  const double norm = std::sqrt(static_cast<double>(sumsq));
  const float grad_clip = static_cast<float>(grad_clip_over_norm * norm);
  const Hyper h;
  const double clip = clip_factor(norm, grad_clip);
  if (grad_clip_over_norm > 0.0f && grad_clip_over_norm < 1.0f) {
    ASSERT_LT(clip, 0.99) << "the clip-active case must clip";
  }
  State want = s;
  for (const AdamWSegment& seg : kSegments) {
    const AdamWParams p{h.lr, h.beta1, h.beta2, h.eps, seg.weight_decay, clip, h.step};
    adamw_update_cpu<double>(want.params.data() + seg.offset, want.m.data() + seg.offset,
                             want.v.data() + seg.offset, want.grads.data() + seg.offset, seg.n, p);
  }

  DeviceState<TP> d(s, sumsq, 3.25f);
  d.update(h, grad_clip, with_loss);
  const auto params = from_device(d.params);
  const std::string what = "clip " + std::to_string(clip) + (with_loss ? " with loss" : "");
  expect_close(params, want.params, tolerance<float>(), "params, " + what);
  // The parameters move by ~lr: compare the step itself too, so that the bound means something.
  expect_close(minus(params, s.params), minus(want.params, s.params), tolerance<float>(),
               "param step, " + what);
  expect_close(from_device(d.m), want.m, tolerance<float>(), "m, " + what);
  expect_close(from_device(d.v), want.v, tolerance<float>(), "v, " + what);

  const auto m = from_device(d.m), v = from_device(d.v);
  const auto copy = from_device(d.copy);
  for (size_t i = 0; i < kTotal; ++i) {
    if (in_gap(i)) {
      ASSERT_EQ(params[i], s.params[i]) << "gap element " << i;
      ASSERT_EQ(m[i], s.m[i]) << "gap element " << i;
      ASSERT_EQ(v[i], s.v[i]) << "gap element " << i;
      ASSERT_TRUE(std::isnan(copy[i])) << "gap element " << i << " of params_copy was written";
    } else {
      // The compute copy is the updated fp32 parameter rounded to nearest even.
      ASSERT_EQ(copy[i],
                static_cast<double>(to_float(from_float<TP>(static_cast<float>(params[i])))))
          << "element " << i;
    }
  }
}

TEST(AdamWCuda, UpdateMatchesCpuReferenceWithoutClippingFloat) {
  check_update<float>(0.0f, false, 1000);  // grad_clip = 0: clipping off
  check_update<float>(10.0f, true, 1001);  // threshold above the norm
}
TEST(AdamWCuda, UpdateMatchesCpuReferenceWithoutClippingBf16Copy) {
  check_update<bf16>(0.0f, false, 1002);
  check_update<bf16>(10.0f, true, 1003);
}
TEST(AdamWCuda, ClipScalesGradientsByThresholdOverNormFloat) {
  check_update<float>(0.25f, true, 1010);
  check_update<float>(0.25f, false, 1011);
}
TEST(AdamWCuda, ClipScalesGradientsByThresholdOverNormBf16Copy) {
  check_update<bf16>(0.25f, true, 1012);
}

// [Non-finite guard]: params, m, v and params_copy keep their bits.
template <typename TP>
void expect_nothing_written(DeviceState<TP>& d, const std::vector<float>& params0,
                            const std::vector<float>& m0, const std::vector<float>& v0,
                            const std::vector<TP>& copy0, const std::string& what) {
  EXPECT_TRUE(same_bits(host_copy(d.params), params0)) << what << ": params written";
  EXPECT_TRUE(same_bits(host_copy(d.m), m0)) << what << ": m written";
  EXPECT_TRUE(same_bits(host_copy(d.v), v0)) << what << ": v written";
  EXPECT_TRUE(same_bits(host_copy(d.copy), copy0)) << what << ": params_copy written";
}

template <typename TP>
void check_skip_on_bad_loss(float loss, uint64_t seed) {
  const State s = initial_state(seed);
  DeviceState<TP> d(s, static_cast<float>(sum_of_squares(s.grads)), loss);
  convert_params_cuda<TP>(d.copy.get(), d.params.get(), kTotal, nullptr);
  const auto params0 = host_copy(d.params), m0 = host_copy(d.m), v0 = host_copy(d.v);
  const auto copy0 = host_copy(d.copy);
  d.update(Hyper{}, 1.0f, true);
  expect_nothing_written(d, params0, m0, v0, copy0, "loss " + std::to_string(loss));
}

template <typename TP>
void check_skip_on_bad_gradient(float bad, uint64_t seed) {
  State s = initial_state(seed);
  s.grads[1234] = bad;
  DeviceState<TP> d(s, 0.0f, 3.25f);
  // The norm comes from the device's own sum of squares, as in a training step.
  DeviceBuffer<float> scratch(sum_squares_scratch_floats(kTotal));
  sum_squares_cuda(d.sumsq.get(), d.grads.get(), kTotal, scratch.get(), nullptr);
  EXPECT_FALSE(std::isfinite(from_device(d.sumsq)[0]));
  convert_params_cuda<TP>(d.copy.get(), d.params.get(), kTotal, nullptr);
  const auto params0 = host_copy(d.params), m0 = host_copy(d.m), v0 = host_copy(d.v);
  const auto copy0 = host_copy(d.copy);
  d.update(Hyper{}, 1.0f, true);
  expect_nothing_written(d, params0, m0, v0, copy0, "gradient " + std::to_string(bad));
}

TEST(AdamWCuda, NonFiniteLossWritesNothingFloat) {
  check_skip_on_bad_loss<float>(std::numeric_limits<float>::quiet_NaN(), 1020);
  check_skip_on_bad_loss<float>(std::numeric_limits<float>::infinity(), 1021);
}
TEST(AdamWCuda, NonFiniteLossWritesNothingBf16Copy) {
  check_skip_on_bad_loss<bf16>(std::numeric_limits<float>::quiet_NaN(), 1022);
  check_skip_on_bad_loss<bf16>(-std::numeric_limits<float>::infinity(), 1023);
}
TEST(AdamWCuda, NonFiniteGradientWritesNothingFloat) {
  check_skip_on_bad_gradient<float>(std::numeric_limits<float>::quiet_NaN(), 1030);
  check_skip_on_bad_gradient<float>(std::numeric_limits<float>::infinity(), 1031);
}
TEST(AdamWCuda, NonFiniteGradientWritesNothingBf16Copy) {
  check_skip_on_bad_gradient<bf16>(std::numeric_limits<float>::quiet_NaN(), 1032);
}

// --- sum of squares, parameter copy ------------------------------------------------------------

// sum_squares_cuda of x placed `offset` floats into its buffer ([Placed buffers]) against the
// double reference.
void check_sum_squares(const std::vector<double>& x, size_t offset) {
  const size_t n = x.size();
  const double want = sum_squares_cpu<double>(x.data(), n);
  const Placed<float> d_x = placed<float>(x, offset);
  auto d_out = poisoned_device<float>(1);
  auto d_scratch = poisoned_device<float>(sum_squares_scratch_floats(n));
  sum_squares_cuda(d_out.get(), d_x.get(), n, d_scratch.get(), nullptr);
  expect_close(from_device(d_out), {want}, tolerance<float>(),
               "sum of squares n=" + std::to_string(n) + " offset=" + std::to_string(offset));
}

TEST(SumSquaresCuda, MatchesCpuReferenceForAlignedAndUnalignedBuffers) {
  for (size_t n :
       {size_t{1}, size_t{3}, size_t{7}, size_t{13}, size_t{4099}, (size_t{1} << 20) + 5}) {
    for (size_t offset : {size_t{0}, size_t{1}})  // 1: not 16-byte aligned, the scalar path
      check_sum_squares(rounded_to<float>(random_vector(n, 1040, n)), offset);
  }
}

// Past the grid's cap: sum_squares_cuda's partial pass takes at most 1024 blocks of 512 threads
// (2^19 threads, one pack of 4 floats or one float each), reached from 2^23 elements on. With
// 2^23 + 4099 elements the grid is capped, every thread of the aligned path takes 4 or 5 packs
// and of the unaligned one 16 or 17 floats, and the final block reduces exactly as many partials
// as it has threads.
TEST(SumSquaresCuda, MatchesCpuReferenceWithTheGridAtItsCap) {
  const size_t n = (size_t{1} << 23) + 4099;
  ASSERT_EQ(sum_squares_scratch_floats(n), 1024u);
  for (size_t offset : {size_t{0}, size_t{1}})
    check_sum_squares(rounded_to<float>(uniform_inputs(n, 1041, offset)), offset);
}

TEST(SumSquaresCuda, IsBitwiseDeterministic) {
  const size_t n = 3 * (size_t{1} << 20) + 7;
  auto d_x = to_device<float>(random_vector(n, 1050, 0));
  DeviceBuffer<float> d_scratch(sum_squares_scratch_floats(n));
  std::vector<float> runs[2];
  for (auto& r : runs) {
    DeviceBuffer<float> d_out(1);
    sum_squares_cuda(d_out.get(), d_x.get(), n, d_scratch.get(), nullptr);
    r = host_copy(d_out);
  }
  EXPECT_TRUE(same_bits(runs[0], runs[1]));
}

template <typename TP>
void check_convert(size_t n) {
  const auto x = rounded_to<float>(random_vector(n, 1060, 0, 3.0));
  auto d_in = to_device<float>(x);
  auto d_out = poisoned_device<TP>(n);
  convert_params_cuda<TP>(d_out.get(), d_in.get(), n, nullptr);
  const auto got = from_device(d_out);
  for (size_t i = 0; i < n; ++i) {
    ASSERT_EQ(got[i], static_cast<double>(to_float(from_float<TP>(static_cast<float>(x[i])))))
        << "element " << i;
  }
}
TEST(ConvertParamsCuda, CopiesFloatAndRoundsBf16ToNearestEven) {
  check_convert<float>(1001);
  check_convert<bf16>(1001);
}
// convert_params_cuda's capped grid (kMaxBlocks 4096 x kThreads 256) covers 2^20 elements a pass.
TEST(ConvertParamsCuda, SizesPastOnePassOfTheCappedGridConvertEveryElement) {
  const size_t n = (size_t{1} << 20) + 1001;
  check_convert<float>(n);
  check_convert<bf16>(n);
}

// --- adamw_chunks (host) -----------------------------------------------------------------------

TEST(AdamWChunks, CutsSegmentsInOrderAtTheChunkSize) {
  const std::vector<AdamWSegment> segments = {
      {0, 5, 0.1f}, {5, 0, 0.2f}, {5, 2 * size_t{kAdamWChunk} + 3, 0.0f}, {200000, 1, 0.5f}};
  const std::vector<AdamWChunk> got = adamw_chunks(segments);
  const std::vector<AdamWChunk> want = {{0, 5, 0.1f},
                                        {5, kAdamWChunk, 0.0f},
                                        {5 + kAdamWChunk, kAdamWChunk, 0.0f},
                                        {5 + 2 * uint64_t{kAdamWChunk}, 3, 0.0f},
                                        {200000, 1, 0.5f}};
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(got[i].offset, want[i].offset) << "chunk " << i;
    EXPECT_EQ(got[i].n, want[i].n) << "chunk " << i;
    EXPECT_EQ(got[i].weight_decay, want[i].weight_decay) << "chunk " << i;
  }
}

}  // namespace
}  // namespace dpt::kernels::test
