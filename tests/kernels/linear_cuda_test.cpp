// linear_forward_cuda / linear_backward_cuda against the CPU reference in double on inputs rounded
// to the dtype: odd shapes, bias on and off, nullable gradients, the bias gradient's row slices,
// and run-to-run bits.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "kernels/linear.h"
#include "tests/kernels/cuda_test_util.h"

namespace dpt::kernels::test {
namespace {

struct LinearShape {
  int N, C, OC;
};

const LinearShape kShapes[] = {{1, 1, 1},   {5, 7, 3},    {13, 11, 67},
                               {97, 13, 5}, {33, 67, 97}, {67, 97, 13}};

std::string describe(const char* what, const LinearShape& s) {
  return std::string(what) + " N=" + std::to_string(s.N) + " C=" + std::to_string(s.C) +
         " OC=" + std::to_string(s.OC);
}

// See gemm_cuda_test.cpp: pageable uploads may still be in flight on a non-blocking stream.
void sync_uploads() {
  DPT_CHECK_CUDA(cudaDeviceSynchronize());
}

void expect_bit_identical(const std::vector<double>& a, const std::vector<double>& b,
                          const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  size_t diff = 0;
  for (size_t i = 0; i < a.size(); ++i)
    diff += std::memcmp(&a[i], &b[i], sizeof(double)) != 0;
  EXPECT_EQ(diff, 0u) << what << ": " << diff << " of " << a.size() << " elements differ";
}

template <typename T>
void check_forward(GemmCuda& gemm, cudaStream_t stream, const LinearShape& s, bool with_bias,
                   uint64_t seed) {
  const std::string what = describe("linear forward", s) + " bias=" + std::to_string(with_bias);
  const std::vector<double> inp = random_vector(size_t(s.N) * s.C, seed, 1);
  const std::vector<double> weight = random_vector(size_t(s.OC) * s.C, seed, 2);
  const std::vector<double> bias = random_vector(s.OC, seed, 3);
  std::vector<double> r_inp = rounded_to<T>(inp), r_weight = rounded_to<T>(weight),
                      r_bias = rounded_to<T>(bias);
  std::vector<double> want(size_t(s.N) * s.OC);
  linear_forward_cpu<double>(want.data(), r_inp.data(), r_weight.data(),
                             with_bias ? r_bias.data() : nullptr, s.N, s.C, s.OC);

  DeviceBuffer<T> d_inp = to_device<T>(inp), d_weight = to_device<T>(weight),
                  d_bias = to_device<T>(bias);
  DeviceBuffer<T> d_out = poisoned_device<T>(want.size());
  sync_uploads();
  linear_forward_cuda<T>(d_out.get(), d_inp.get(), d_weight.get(),
                         with_bias ? d_bias.get() : nullptr, s.N, s.C, s.OC, gemm, stream);
  expect_close(from_device(d_out), want, tolerance<T>(), what);
}

template <typename T>
void check_forward_all(uint64_t seed) {
  GemmCuda gemm;
  CudaStreamHandle stream;
  for (const LinearShape& s : kShapes) {
    for (const bool with_bias : {false, true}) {
      check_forward<T>(gemm, stream.get(), s, with_bias, seed++);
    }
  }
}

TEST(LinearCuda, ForwardFp32MatchesDoubleReferenceWithAndWithoutBias) {
  check_forward_all<float>(100);
}

TEST(LinearCuda, ForwardBf16MatchesDoubleReferenceWithAndWithoutBias) {
  check_forward_all<bf16>(200);
}

// Backward on random prefilled gradients (the ADD contract), scratch poisoned with NaN (it is
// written before it is read). dweight and dbias are fp32 sums of T values that both sides see
// exactly, so they are held to the fp32 bound `grad_tol` even for bf16; dinp is T.
template <typename T>
void check_backward(GemmCuda& gemm, cudaStream_t stream, const LinearShape& s, bool with_dinp,
                    bool with_dbias, double grad_tol, uint64_t seed,
                    GradInput mode = GradInput::add) {
  const bool write = mode == GradInput::write;
  const std::string what = describe("linear backward", s) + " dinp=" + std::to_string(with_dinp) +
                           " dbias=" + std::to_string(with_dbias) + (write ? " (write)" : "");
  const size_t n_inp = size_t(s.N) * s.C, n_w = size_t(s.OC) * s.C, n_out = size_t(s.N) * s.OC;
  const std::vector<double> dout = random_vector(n_out, seed, 1);
  const std::vector<double> inp = random_vector(n_inp, seed, 2);
  const std::vector<double> weight = random_vector(n_w, seed, 3);
  const std::vector<double> dinp0 = random_vector(n_inp, seed, 4);
  const std::vector<double> dweight0 = random_vector(n_w, seed, 5);
  const std::vector<double> dbias0 = random_vector(s.OC, seed, 6);

  std::vector<double> r_dout = rounded_to<T>(dout), r_inp = rounded_to<T>(inp),
                      r_weight = rounded_to<T>(weight);
  // [Gradient write]: dinp written from NaN poison equals the product added to zeros.
  std::vector<double> want_dinp = write ? std::vector<double>(n_inp, 0.0) : rounded_to<T>(dinp0),
                      want_dweight = rounded_to<float>(dweight0),
                      want_dbias = rounded_to<float>(dbias0);
  linear_backward_cpu<double>(with_dinp ? want_dinp.data() : nullptr, want_dweight.data(),
                              with_dbias ? want_dbias.data() : nullptr, r_dout.data(), r_inp.data(),
                              r_weight.data(), s.N, s.C, s.OC);

  DeviceBuffer<T> d_dout = to_device<T>(dout), d_inp = to_device<T>(inp),
                  d_weight = to_device<T>(weight),
                  d_dinp = write ? poisoned_device<T>(n_inp) : to_device<T>(dinp0);
  DeviceBuffer<float> d_dweight = to_device<float>(dweight0), d_dbias = to_device<float>(dbias0);
  DeviceBuffer<float> scratch = poisoned_device<float>(linear_backward_scratch_floats(s.N, s.OC));
  sync_uploads();
  linear_backward_cuda<T>(with_dinp ? d_dinp.get() : nullptr, d_dweight.get(),
                          with_dbias ? d_dbias.get() : nullptr, d_dout.get(), d_inp.get(),
                          d_weight.get(), scratch.get(), s.N, s.C, s.OC, gemm, stream, mode);
  // An absent gradient stays as it was (want_* keep the prefill then).
  if (with_dinp || !write)
    expect_close(from_device(d_dinp), want_dinp, tolerance<T>(), what + " dinp");
  expect_close(from_device(d_dweight), want_dweight, grad_tol, what + " dweight");
  expect_close(from_device(d_dbias), want_dbias, grad_tol, what + " dbias");
}

template <typename T>
void check_backward_all(uint64_t seed) {
  GemmCuda gemm;
  CudaStreamHandle stream;
  for (const LinearShape& s : kShapes) {
    for (const bool with_dinp : {false, true}) {
      for (const bool with_dbias : {false, true}) {
        check_backward<T>(gemm, stream.get(), s, with_dinp, with_dbias, tolerance<float>(), seed++);
        if (with_dinp) {
          check_backward<T>(gemm, stream.get(), s, true, with_dbias, tolerance<float>(), seed++,
                            GradInput::write);
        }
      }
    }
  }
}

TEST(LinearCuda, BackwardFp32AddsGradientsLikeDoubleReference) {
  check_backward_all<float>(300);
}

TEST(LinearCuda, BackwardBf16AddsGradientsLikeDoubleReference) {
  check_backward_all<bf16>(400);
}

// N = 4099 rows: the bias gradient's partition reaches its slice cap (64 slices of 65 rows, the
// last one 4 rows), and N = 130 a few slices with a short last one. The weight gradient here
// sums 4099 products per element in fp32, an rms rounding error of about
// 2^-24 * sqrt(4099 / 2) ~ 3e-6 relative, hence 3e-5 (not the 1e-5 of short sums).
TEST(LinearCuda, BiasGradientOverManyRowSlicesMatchesDoubleReference) {
  GemmCuda gemm;
  CudaStreamHandle stream;
  check_backward<float>(gemm, stream.get(), LinearShape{4099, 5, 67}, true, true, 3e-5, 500);
  check_backward<bf16>(gemm, stream.get(), LinearShape{4099, 13, 33}, true, true, 3e-5, 501);
  check_backward<float>(gemm, stream.get(), LinearShape{130, 7, 97}, false, true,
                        tolerance<float>(), 502);
  check_backward<bf16>(gemm, stream.get(), LinearShape{130, 3, 5}, true, true, tolerance<float>(),
                       503);
}

TEST(LinearCuda, ScratchIsCappedAtSixtyFourRowSlicesPerOutputChannel) {
  EXPECT_EQ(linear_backward_scratch_floats(1, 7), 7u);
  EXPECT_EQ(linear_backward_scratch_floats(64, 7), 7u);
  EXPECT_EQ(linear_backward_scratch_floats(65, 7), 14u);
  EXPECT_EQ(linear_backward_scratch_floats(1000000, 7), 64u * 7u);
  EXPECT_EQ(linear_backward_scratch_floats(0, 7), 0u);
}

// Two backward passes from the same inputs give the same bits in every gradient.
template <typename T>
void check_backward_repeatable(uint64_t seed) {
  GemmCuda gemm;
  CudaStreamHandle stream;
  const int N = 2053, C = 97, OC = 131;
  DeviceBuffer<T> dout = to_device<T>(random_vector(size_t(N) * OC, seed, 1));
  DeviceBuffer<T> inp = to_device<T>(random_vector(size_t(N) * C, seed, 2));
  DeviceBuffer<T> weight = to_device<T>(random_vector(size_t(OC) * C, seed, 3));
  DeviceBuffer<float> scratch(linear_backward_scratch_floats(N, OC));
  std::vector<double> runs[2][3];
  for (auto& run : runs) {
    DeviceBuffer<T> dinp = to_device<T>(random_vector(size_t(N) * C, seed, 4));
    DeviceBuffer<float> dweight = to_device<float>(random_vector(size_t(OC) * C, seed, 5));
    DeviceBuffer<float> dbias = to_device<float>(random_vector(OC, seed, 6));
    sync_uploads();
    linear_backward_cuda<T>(dinp.get(), dweight.get(), dbias.get(), dout.get(), inp.get(),
                            weight.get(), scratch.get(), N, C, OC, gemm, stream.get());
    run[0] = from_device(dinp);
    run[1] = from_device(dweight);
    run[2] = from_device(dbias);
  }
  expect_bit_identical(runs[0][0], runs[1][0], "dinp");
  expect_bit_identical(runs[0][1], runs[1][1], "dweight");
  expect_bit_identical(runs[0][2], runs[1][2], "dbias");
}

TEST(LinearCuda, BackwardIsBitIdenticalAcrossRuns) {
  check_backward_repeatable<float>(600);
  check_backward_repeatable<bf16>(601);
}

}  // namespace
}  // namespace dpt::kernels::test
