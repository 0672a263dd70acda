// linear_forward_cuda / linear_backward_cuda against the CPU reference in double on inputs rounded
// to the dtype: odd shapes, bias on and off, nullable gradients, the bias gradient's row slices,
// and run-to-run bits; the GELU epilogues (linear_gelu_forward_cuda, linear_dgelu_backward_cuda)
// against the linear and GELU references composed, fused and unfused.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "kernels/gelu.h"
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

// [Padded vocabulary] The language-model head at its real size: out [N, V] with rows ld apart
// (GPT-2's V = 50257 in rows of 50304, C = 768), forward and backward against the double
// reference on unpadded rows; the padding of out is never written and that of dout (NaN) never
// read. bias on for a smaller V, to take the bias gradient's row stride through the same path.
template <typename T>
void check_padded_rows(int N, int C, int V, int ld, bool with_bias, double grad_tol,
                       uint64_t seed) {
  GemmCuda gemm;
  CudaStreamHandle stream;
  const std::string what = "lm head N=" + std::to_string(N) + " C=" + std::to_string(C) +
                           " V=" + std::to_string(V) + " ld=" + std::to_string(ld);
  const size_t n_inp = size_t(N) * C, n_w = size_t(V) * C;
  const auto inp = rounded_to<T>(random_vector(n_inp, seed, 1));
  const auto weight = rounded_to<T>(random_vector(n_w, seed, 2));
  const auto bias = rounded_to<T>(random_vector(V, seed, 3));
  const auto dout = rounded_to<T>(random_vector(size_t(N) * V, seed, 4));
  std::vector<double> want_out(size_t(N) * V), want_dinp(n_inp, 0.0), want_dweight(n_w, 0.0),
      want_dbias(V, 0.0);
  const double* b = with_bias ? bias.data() : nullptr;
  linear_forward_cpu<double>(want_out.data(), inp.data(), weight.data(), b, N, C, V);
  linear_backward_cpu<double>(want_dinp.data(), want_dweight.data(),
                              with_bias ? want_dbias.data() : nullptr, dout.data(), inp.data(),
                              weight.data(), N, C, V);

  const std::vector<double> padded_dout = padded_rows(dout, N, V, ld, std::nan(""));
  DeviceBuffer<T> d_inp = to_device<T>(inp), d_weight = to_device<T>(weight),
                  d_bias = to_device<T>(bias), d_dout = to_device<T>(padded_dout);
  DeviceBuffer<T> d_out = poisoned_device<T>(size_t(N) * ld), d_dinp = poisoned_device<T>(n_inp);
  DeviceBuffer<float> d_dweight = to_device<float>(std::vector<double>(n_w, 0.0)),
                      d_dbias = to_device<float>(std::vector<double>(V, 0.0));
  DeviceBuffer<float> scratch = poisoned_device<float>(linear_backward_scratch_floats(N, V));
  sync_uploads();
  linear_forward_cuda<T>(d_out.get(), d_inp.get(), d_weight.get(),
                         with_bias ? d_bias.get() : nullptr, N, C, V, gemm, stream.get(), ld);
  linear_backward_cuda<T>(d_dinp.get(), d_dweight.get(), with_bias ? d_dbias.get() : nullptr,
                          d_dout.get(), d_inp.get(), d_weight.get(), scratch.get(), N, C, V, gemm,
                          stream.get(), GradInput::write, ld);
  const std::vector<double> out = from_device(d_out);
  std::vector<double> got_out(size_t(N) * V);
  size_t pad_written = 0;
  for (int n = 0; n < N; ++n) {
    for (int v = 0; v < ld; ++v) {
      const double x = out[size_t(n) * ld + v];
      if (v < V)
        got_out[size_t(n) * V + v] = x;
      else
        pad_written += !std::isnan(x);
    }
  }
  EXPECT_EQ(pad_written, 0u) << what << ": the padding of out was written";
  expect_close(got_out, want_out, tolerance<T>(), what + " out");
  // dinp sums V products per element: fp32 rounding grows as sqrt(V).
  expect_close(from_device(d_dinp), want_dinp, std::max(tolerance<T>(), grad_tol), what + " dinp");
  // bf16 operands into fp32 weight gradients: tensor-core accumulation (gemm_cuda_test.cpp).
  const double dweight_tol = std::is_same_v<T, bf16> ? 1e-4 : tolerance<float>();
  expect_close(from_device(d_dweight), want_dweight, dweight_tol, what + " dweight");
  if (with_bias)
    expect_close(from_device(d_dbias), want_dbias, tolerance<float>(), what + " dbias");
}

TEST(LinearCuda, LanguageModelHeadWithPaddedRowsMatchesDoubleReference) {
  // 2^-24 sqrt(50257 / 2) ~ 1e-5 relative for the fp32 sums over the vocabulary: 1e-4.
  check_padded_rows<float>(64, 768, 50257, 50304, false, 1e-4, 700);
  check_padded_rows<bf16>(64, 768, 50257, 50304, false, 1e-4, 701);
  check_padded_rows<float>(67, 13, 301, 320, true, 1e-4, 702);
  check_padded_rows<bf16>(67, 13, 301, 320, true, 1e-4, 703);
}

// --- [GELU epilogues] -----------------------------------------------------------------------

// x [N,C] -> fc -> pre [N,H] -> GELU -> proj -> [N,C]: the forward test runs fc (C -> H), the
// backward one proj (H -> C). H a multiple of 8 lets cuBLASLt fuse (its aux rule); other widths
// take the unfused path whatever the setting.
struct MlpShape {
  int N, C, H;
};

const MlpShape kMlpShapes[] = {{1, 1, 1},    {5, 7, 3},   {13, 11, 67},    {97, 13, 5},
                               {67, 97, 13}, {1, 5, 8},   {13, 67, 16},    {97, 13, 64},
                               {67, 97, 40}, {33, 8, 24}, {256, 768, 3072}};
const MlpShape kGpt2Mlp{256, 768, 3072};  // GPT-2 small, 256 rows

std::string describe(const char* what, const MlpShape& s) {
  return std::string(what) + " N=" + std::to_string(s.N) + " C=" + std::to_string(s.C) +
         " H=" + std::to_string(s.H);
}

std::vector<double> gelu_of(const std::vector<double>& x) {
  std::vector<double> y(x.size());
  gelu_forward_cpu<double>(y.data(), x.data(), x.size());
  return y;
}

// bf16 operands summed into fp32 weight gradients on tensor cores: gemm_cuda_test.cpp's bound.
template <typename T>
constexpr double dweight_tolerance() {
  return std::is_same_v<T, bf16> ? 1e-4 : tolerance<float>();
}

// fc's forward against linear_forward_cpu + gelu_forward_cpu in double on the same T inputs,
// both outputs poisoned. Weights of size 1/sqrt(C) keep the pre-activations near 1, where GELU
// bends, rather than in its nearly linear tails.
template <typename T>
void check_gelu_forward(GemmCuda& gemm, cudaStream_t stream, const MlpShape& s, bool with_bias,
                        uint64_t seed) {
  const std::string what =
      describe("linear gelu forward", s) + " bias=" + std::to_string(with_bias);
  const size_t n_act = size_t(s.N) * s.H;
  const auto inp = rounded_to<T>(random_vector(size_t(s.N) * s.C, seed, 1));
  const auto weight =
      rounded_to<T>(random_vector(size_t(s.H) * s.C, seed, 2, 1.0 / std::sqrt(double(s.C))));
  const auto bias = rounded_to<T>(random_vector(s.H, seed, 3));
  std::vector<double> want_pre(n_act);
  linear_forward_cpu<double>(want_pre.data(), inp.data(), weight.data(),
                             with_bias ? bias.data() : nullptr, s.N, s.C, s.H);
  const std::vector<double> want_gelu = gelu_of(want_pre);

  DeviceBuffer<T> d_inp = to_device<T>(inp), d_weight = to_device<T>(weight),
                  d_bias = to_device<T>(bias);
  DeviceBuffer<T> d_gelu = poisoned_device<T>(n_act), d_pre = poisoned_device<T>(n_act);
  sync_uploads();
  linear_gelu_forward_cuda<T>(d_gelu.get(), d_pre.get(), d_inp.get(), d_weight.get(),
                              with_bias ? d_bias.get() : nullptr, s.N, s.C, s.H, gemm, stream);
  expect_close(from_device(d_pre), want_pre, tolerance<T>(), what + " out_pre");
  expect_close(from_device(d_gelu), want_gelu, tolerance<T>(), what + " out_gelu");
}

// proj's backward against linear_backward_cpu(..., GradInput::write) + gelu_backward_cpu(...,
// GradInput::write) in double: dpre poisoned (written), dweight and dbias prefilled (added),
// scratch poisoned. inp is gelu(pre) rounded to T, as the forward stores it.
template <typename T>
void check_dgelu_backward(GemmCuda& gemm, cudaStream_t stream, const MlpShape& s, bool with_dbias,
                          uint64_t seed) {
  const std::string what =
      describe("linear dgelu backward", s) + " dbias=" + std::to_string(with_dbias);
  const size_t n_act = size_t(s.N) * s.H, n_w = size_t(s.C) * s.H, n_out = size_t(s.N) * s.C;
  const auto pre = rounded_to<T>(random_vector(n_act, seed, 1, 1.5));
  const auto inp = rounded_to<T>(gelu_of(pre));
  const auto weight = rounded_to<T>(random_vector(n_w, seed, 2, 1.0 / std::sqrt(double(s.C))));
  const auto dout = rounded_to<T>(random_vector(n_out, seed, 3));
  const std::vector<double> dweight0 = random_vector(n_w, seed, 4),
                            dbias0 = random_vector(s.C, seed, 5);
  std::vector<double> want_dinp(n_act, 0.0), want_dpre(n_act),
      want_dweight = rounded_to<float>(dweight0), want_dbias = rounded_to<float>(dbias0);
  linear_backward_cpu<double>(want_dinp.data(), want_dweight.data(),
                              with_dbias ? want_dbias.data() : nullptr, dout.data(), inp.data(),
                              weight.data(), s.N, s.H, s.C, GradInput::write);
  gelu_backward_cpu<double>(want_dpre.data(), pre.data(), want_dinp.data(), n_act,
                            GradInput::write);

  DeviceBuffer<T> d_pre = to_device<T>(pre), d_inp = to_device<T>(inp),
                  d_weight = to_device<T>(weight), d_dout = to_device<T>(dout);
  DeviceBuffer<T> d_dpre = poisoned_device<T>(n_act);
  DeviceBuffer<float> d_dweight = to_device<float>(dweight0), d_dbias = to_device<float>(dbias0);
  DeviceBuffer<float> scratch = poisoned_device<float>(linear_backward_scratch_floats(s.N, s.C));
  sync_uploads();
  linear_dgelu_backward_cuda<T>(d_dpre.get(), d_dweight.get(), with_dbias ? d_dbias.get() : nullptr,
                                d_dout.get(), d_inp.get(), d_pre.get(), d_weight.get(),
                                scratch.get(), s.N, s.H, s.C, gemm, stream);
  expect_close(from_device(d_dpre), want_dpre, tolerance<T>(), what + " dpre");
  expect_close(from_device(d_dweight), want_dweight, dweight_tolerance<T>(), what + " dweight");
  // Without a bias gradient dbias keeps its prefill (want_dbias too).
  expect_close(from_device(d_dbias), want_dbias, tolerance<float>(), what + " dbias");
}

// Every MLP shape, bias on and off, with fusion on (fused where cuBLASLt serves the shape) or
// switched off (every epilogue product unfused).
template <typename T>
void check_gelu_epilogues_all(bool fused, uint64_t seed) {
  GemmCuda gemm;
  gemm.set_fused_epilogues(fused);
  CudaStreamHandle stream;
  for (const MlpShape& s : kMlpShapes) {
    for (const bool with_bias : {false, true}) {
      check_gelu_forward<T>(gemm, stream.get(), s, with_bias, seed++);
      check_dgelu_backward<T>(gemm, stream.get(), s, with_bias, seed++);
      if (testing::Test::HasFatalFailure()) return;
    }
  }
  if (!fused) {
    EXPECT_EQ(gemm.epilogue_counts().fused, 0);
  }
}

TEST(LinearCuda, GeluEpiloguesFp32MatchLinearAndGeluComposedInDouble) {
  check_gelu_epilogues_all<float>(true, 800);
  check_gelu_epilogues_all<float>(false, 850);
}

TEST(LinearCuda, GeluEpiloguesBf16MatchLinearAndGeluComposedInDouble) {
  check_gelu_epilogues_all<bf16>(true, 900);
  check_gelu_epilogues_all<bf16>(false, 950);
}

// The MLP at GPT-2 small's widths runs both products fused in bf16 on the GPUs we build for
// (sm_90): if not, the tests above only held the unfused path and the fusion is not
// there. fp32 is reported, not required (cuBLASLt's choice).
TEST(LinearCuda, Gpt2MlpRunsBothGeluProductsFusedInBf16) {
  CudaStreamHandle stream;
  GemmCuda gemm;
  check_gelu_forward<bf16>(gemm, stream.get(), kGpt2Mlp, true, 1000);
  check_dgelu_backward<bf16>(gemm, stream.get(), kGpt2Mlp, true, 1001);
  EXPECT_EQ(gemm.epilogue_counts().fused, 2);
  EXPECT_EQ(gemm.epilogue_counts().unfused, 0);
  GemmCuda gemm32;
  check_gelu_forward<float>(gemm32, stream.get(), kGpt2Mlp, true, 1002);
  check_dgelu_backward<float>(gemm32, stream.get(), kGpt2Mlp, true, 1003);
  std::printf("fp32 GPT-2 MLP: %lld of 2 GELU products fused by cuBLASLt\n",
              gemm32.epilogue_counts().fused);
  testing::Test::RecordProperty("fp32_fused_mlp_products",
                                std::to_string(gemm32.epilogue_counts().fused));
}

// Two runs of the fused forward and backward from the same inputs give the same bits.
template <typename T>
void check_gelu_epilogues_repeatable(uint64_t seed) {
  GemmCuda gemm;
  CudaStreamHandle stream;
  const MlpShape s = kGpt2Mlp;
  const size_t n_x = size_t(s.N) * s.C, n_act = size_t(s.N) * s.H, n_w = size_t(s.H) * s.C;
  DeviceBuffer<T> x = to_device<T>(random_vector(n_x, seed, 1));
  DeviceBuffer<T> fc_w = to_device<T>(random_vector(n_w, seed, 2, 0.036));
  DeviceBuffer<T> fc_b = to_device<T>(random_vector(s.H, seed, 3));
  DeviceBuffer<T> proj_w = to_device<T>(random_vector(n_w, seed, 4, 0.036));
  DeviceBuffer<T> dout = to_device<T>(random_vector(n_x, seed, 5));
  DeviceBuffer<float> scratch(linear_backward_scratch_floats(s.N, s.C));
  std::vector<double> runs[2][5];
  for (auto& run : runs) {
    DeviceBuffer<T> act = poisoned_device<T>(n_act), pre = poisoned_device<T>(n_act),
                    dpre = poisoned_device<T>(n_act);
    DeviceBuffer<float> dweight = to_device<float>(random_vector(n_w, seed, 6));
    DeviceBuffer<float> dbias = to_device<float>(random_vector(s.C, seed, 7));
    sync_uploads();
    linear_gelu_forward_cuda<T>(act.get(), pre.get(), x.get(), fc_w.get(), fc_b.get(), s.N, s.C,
                                s.H, gemm, stream.get());
    linear_dgelu_backward_cuda<T>(dpre.get(), dweight.get(), dbias.get(), dout.get(), act.get(),
                                  pre.get(), proj_w.get(), scratch.get(), s.N, s.H, s.C, gemm,
                                  stream.get());
    run[0] = from_device(act);
    run[1] = from_device(pre);
    run[2] = from_device(dpre);
    run[3] = from_device(dweight);
    run[4] = from_device(dbias);
  }
  const char* names[] = {"out_gelu", "out_pre", "dpre", "dweight", "dbias"};
  for (int k = 0; k < 5; ++k)
    expect_bit_identical(runs[0][k], runs[1][k], names[k]);
}

TEST(LinearCuda, GeluEpiloguesAreBitIdenticalAcrossRuns) {
  check_gelu_epilogues_repeatable<float>(1100);
  check_gelu_epilogues_repeatable<bf16>(1101);
}

}  // namespace
}  // namespace dpt::kernels::test
