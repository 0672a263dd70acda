// patches_*_cuda, positions_*_cuda, mean_pool_*_cuda, cls_pool_*_cuda, mse_*_cuda and
// attention_decode_cuda against the CPU reference in double (float and bf16) on odd shapes and
// on shapes past one pass of the capped grid (the grid-stride loops run again); outputs poisoned
// first, gradients accumulated onto random values.
#include <cuda_bf16.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/attention.h"
#include "kernels/mse.h"
#include "kernels/patches.h"
#include "kernels/pooling.h"
#include "kernels/positions.h"
#include "tests/kernels/cuda_test_util.h"

namespace dpt::kernels::test {
namespace {

// One pass of the capped grid of patches.cu, positions.cu, pooling.cu and mse.cu (kMaxBlocks
// 8192 x kThreads 256): 2^21 threads, one element (or sample, or (sequence, channel) pair) each.
// The *PastOnePassOfTheCappedGrid cases give each loop more items than that.
constexpr size_t kOnePass = size_t{8192} * 256;

// [Wrap inputs]: kernel_test_util.h.

template <typename T>
void check_patches(int B, int H, int W, int C, int P, uint64_t seed) {
  const size_t n = static_cast<size_t>(B) * H * W * C;
  const std::string what = "patches " + std::to_string(B) + "x" + std::to_string(H) + "x" +
                           std::to_string(W) + "x" + std::to_string(C) + " P " + std::to_string(P);
  const auto img = rounded_to<T>(test_inputs(n, seed, 0));
  std::vector<double> want(n);
  patches_forward_cpu<double>(want.data(), img.data(), B, H, W, C, P);
  auto d_img = to_device<T>(img);
  auto d_out = poisoned_device<T>(n);
  patches_forward_cuda<T>(d_out.get(), d_img.get(), B, H, W, C, P, nullptr);
  // A gather moves values unchanged: exact in any dtype.
  expect_close(from_device(d_out), want, 0.0, what + " out");

  const auto dout = rounded_to<T>(test_inputs(n, seed, 1));
  const auto dimg0 = rounded_to<T>(test_inputs(n, seed, 2));
  auto want_dimg = dimg0;
  patches_backward_cpu<double>(want_dimg.data(), dout.data(), B, H, W, C, P);
  auto d_dout = to_device<T>(dout);
  auto d_dimg = to_device<T>(dimg0);
  patches_backward_cuda<T>(d_dimg.get(), d_dout.get(), B, H, W, C, P, nullptr);
  expect_close(from_device(d_dimg), want_dimg, tolerance<T>(), what + " dimg");
}

TEST(PatchesCuda, MatchTheCpuReferenceOnOddShapes) {
  check_patches<float>(2, 6, 9, 3, 3, 100);
  check_patches<float>(3, 7, 7, 1, 7, 101);
  check_patches<float>(5, 28, 28, 1, 4, 102);
  check_patches<bf16>(2, 6, 9, 3, 3, 103);
  check_patches<bf16>(1, 13, 11, 3, 1, 104);
}

// One thread per patch value: 14 ViT images (224 x 224 x 3, 16 x 16 patches) hold 2,107,392.
TEST(PatchesCuda, ImagesPastOnePassOfTheCappedGridMatchTheCpuReference) {
  static_assert(size_t{14} * 224 * 224 * 3 > kOnePass);
  check_patches<float>(14, 224, 224, 3, 16, 105);
  check_patches<bf16>(14, 224, 224, 3, 16, 106);
}

template <typename T>
void check_mean_pool(int B, int Tn, int C, bool with_lengths, uint64_t seed) {
  const std::string what = "mean pool B " + std::to_string(B) + " T " + std::to_string(Tn) + " C " +
                           std::to_string(C) + (with_lengths ? " with lengths" : "");
  const auto x = rounded_to<T>(test_inputs(static_cast<size_t>(B) * Tn * C, seed, 0));
  std::vector<int32_t> len;
  for (int b = 0; b < B; ++b)
    len.push_back(1 + (b * 7 + 3) % Tn);
  const int32_t* h_len = with_lengths ? len.data() : nullptr;
  auto d_len = ids_to_device(len);
  const int32_t* g_len = with_lengths ? d_len.get() : nullptr;

  std::vector<double> want(static_cast<size_t>(B) * C);
  mean_pool_forward_cpu<double>(want.data(), x.data(), h_len, B, Tn, C);
  auto d_x = to_device<T>(x);
  auto d_out = poisoned_device<T>(want.size());
  mean_pool_forward_cuda<T>(d_out.get(), d_x.get(), g_len, B, Tn, C, nullptr);
  expect_close(from_device(d_out), want, tolerance<T>(), what + " out");

  const auto dout = rounded_to<T>(test_inputs(want.size(), seed, 1));
  const auto dx0 = rounded_to<T>(test_inputs(x.size(), seed, 2));
  auto want_dx = dx0;
  mean_pool_backward_cpu<double>(want_dx.data(), dout.data(), h_len, B, Tn, C);
  auto d_dout = to_device<T>(dout);
  auto d_dx = to_device<T>(dx0);
  mean_pool_backward_cuda<T>(d_dx.get(), d_dout.get(), g_len, B, Tn, C, nullptr);
  expect_close(from_device(d_dx), want_dx, tolerance<T>(), what + " dx");
}

TEST(MeanPoolCuda, MatchesTheCpuReferenceWithAndWithoutLengths) {
  for (bool lengths : {false, true}) {
    check_mean_pool<float>(3, 7, 5, lengths, 110);
    check_mean_pool<float>(13, 65, 97, lengths, 111);
    check_mean_pool<bf16>(3, 7, 5, lengths, 112);
    check_mean_pool<bf16>(11, 33, 64, lengths, 113);
  }
}

template <typename T>
void check_mse(int B, int K, uint64_t seed) {
  const std::string what = "mse B " + std::to_string(B) + " K " + std::to_string(K);
  const auto pred = rounded_to<T>(test_inputs(static_cast<size_t>(B) * K, seed, 0));
  const auto target = rounded_to<float>(test_inputs(pred.size(), seed, 1));
  std::vector<double> want(B);
  mse_forward_cpu<double>(want.data(), pred.data(), target.data(), B, K);
  auto d_pred = to_device<T>(pred);
  auto d_target = to_device<float>(target);
  auto d_loss = poisoned_device<float>(B);
  mse_forward_cuda<T>(d_loss.get(), d_pred.get(), d_target.get(), B, K, nullptr);
  expect_close(from_device(d_loss), want, 1e-5, what + " loss");  // fp32 sums either way

  // d(objective)/d(loss[b]): 1/B for the batch mean, but at most 1/64, so that over millions of
  // samples the gradient still shows against dpred's random start.
  const double scale = 1.0 / std::min(B, 64);
  const auto d0 = rounded_to<T>(test_inputs(pred.size(), seed, 2));
  auto want_d = d0;
  mse_backward_cpu<double>(want_d.data(), pred.data(), target.data(), B, K, scale);
  auto d_d = to_device<T>(d0);
  mse_backward_cuda<T>(d_d.get(), d_pred.get(), d_target.get(), B, K, static_cast<float>(scale),
                       nullptr);
  expect_close(from_device(d_d), want_d, tolerance<T>(), what + " dpred");
}

TEST(MseCuda, MatchesTheCpuReferenceOnOddShapes) {
  check_mse<float>(1, 1, 120);
  check_mse<float>(37, 5, 121);
  check_mse<float>(300, 13, 122);
  check_mse<bf16>(37, 5, 123);
  check_mse<bf16>(7, 11, 124);
}

// One thread per sample forward and per element backward: 2^21 + 37 samples of one target.
TEST(MseCuda, SamplesPastOnePassOfTheCappedGridMatchTheCpuReference) {
  const int B = static_cast<int>(kOnePass) + 37;
  check_mse<float>(B, 1, 125);
  check_mse<bf16>(B, 1, 126);
}

template <typename T>
void check_positions(int B, int Tin, int C, bool with_cls, uint64_t seed) {
  const std::string what = "positions B " + std::to_string(B) + " T " + std::to_string(Tin) +
                           " C " + std::to_string(C) + (with_cls ? " with cls" : "");
  const int Tx = Tin + (with_cls ? 1 : 0);
  const auto emb = rounded_to<T>(test_inputs(static_cast<size_t>(B) * Tin * C, seed, 0));
  const auto cls = rounded_to<T>(test_inputs(C, seed, 1));
  const auto wpe = rounded_to<T>(test_inputs(static_cast<size_t>(Tx) * C, seed, 2));
  std::vector<double> want(static_cast<size_t>(B) * Tx * C);
  positions_forward_cpu<double>(want.data(), emb.data(), with_cls ? cls.data() : nullptr,
                                wpe.data(), B, Tin, C);
  auto d_emb = to_device<T>(emb), d_cls = to_device<T>(cls), d_wpe = to_device<T>(wpe);
  auto d_x = poisoned_device<T>(want.size());
  positions_forward_cuda<T>(d_x.get(), d_emb.get(), with_cls ? d_cls.get() : nullptr, d_wpe.get(),
                            B, Tin, C, nullptr);
  expect_close(from_device(d_x), want, tolerance<T>(), what + " x");

  const auto dx = rounded_to<T>(test_inputs(want.size(), seed, 3));
  const auto demb0 = rounded_to<T>(test_inputs(emb.size(), seed, 4));
  const auto dcls0 = test_inputs(C, seed, 5), dwpe0 = test_inputs(wpe.size(), seed, 6);
  auto want_demb = demb0, want_dcls = dcls0, want_dwpe = dwpe0;
  positions_backward_cpu<double>(want_demb.data(), with_cls ? want_dcls.data() : nullptr,
                                 want_dwpe.data(), dx.data(), B, Tin, C);
  auto d_dx = to_device<T>(dx), d_demb = to_device<T>(demb0);
  auto d_dcls = to_device<float>(dcls0), d_dwpe = to_device<float>(dwpe0);
  positions_backward_cuda<T>(d_demb.get(), with_cls ? d_dcls.get() : nullptr, d_dwpe.get(),
                             d_dx.get(), B, Tin, C, nullptr);
  expect_close(from_device(d_demb), want_demb, tolerance<T>(), what + " demb");
  expect_close(from_device(d_dwpe), want_dwpe, 1e-5 * B, what + " dwpe");  // fp32 sums
  expect_close(from_device(d_dcls), want_dcls, 1e-5 * B, what + " dcls");
}

TEST(PositionsCuda, MatchTheCpuReferenceOnOddShapes) {
  for (bool cls : {true, false}) {
    check_positions<float>(3, 7, 5, cls, 120);
    check_positions<float>(13, 49, 97, cls, 121);
    check_positions<bf16>(3, 7, 5, cls, 122);
    check_positions<bf16>(5, 16, 64, cls, 123);
  }
}

// One thread per element forward and for demb, per (position, channel) for the parameters'
// gradient: one sequence of (2047 + cls) x 1031 >= 2,110,457 of each. The batch sum is the
// small shapes' to check.
TEST(PositionsCuda, ShapesPastOnePassOfTheCappedGridMatchTheCpuReference) {
  static_assert(size_t{2047} * 1031 > kOnePass);
  check_positions<float>(1, 2047, 1031, true, 127);
  check_positions<float>(1, 2047, 1031, false, 128);
  check_positions<bf16>(1, 2047, 1031, true, 129);
}

template <typename T>
void check_cls_pool(int B, int Tn, int C, uint64_t seed) {
  const std::string what =
      "cls pool B " + std::to_string(B) + " T " + std::to_string(Tn) + " C " + std::to_string(C);
  const auto x = rounded_to<T>(test_inputs(static_cast<size_t>(B) * Tn * C, seed, 0));
  std::vector<double> want(static_cast<size_t>(B) * C);
  cls_pool_forward_cpu<double>(want.data(), x.data(), B, Tn, C);
  auto d_x = to_device<T>(x);
  auto d_out = poisoned_device<T>(want.size());
  cls_pool_forward_cuda<T>(d_out.get(), d_x.get(), B, Tn, C, nullptr);
  expect_close(from_device(d_out), want, 0.0, what + " out");  // a copy: exact
  const auto dout = rounded_to<T>(test_inputs(want.size(), seed, 1));
  const auto dx0 = rounded_to<T>(test_inputs(x.size(), seed, 2));
  auto want_dx = dx0;
  cls_pool_backward_cpu<double>(want_dx.data(), dout.data(), B, Tn, C);
  auto d_dout = to_device<T>(dout);
  auto d_dx = to_device<T>(dx0);
  cls_pool_backward_cuda<T>(d_dx.get(), d_dout.get(), B, Tn, C, nullptr);
  expect_close(from_device(d_dx), want_dx, tolerance<T>(), what + " dx");
}

TEST(ClsPoolCuda, MatchesTheCpuReferenceOnOddShapes) {
  check_cls_pool<float>(3, 7, 5, 130);
  check_cls_pool<float>(13, 50, 97, 131);
  check_cls_pool<bf16>(3, 7, 5, 132);
  check_cls_pool<bf16>(11, 17, 64, 133);
}

// Pooling takes one thread per (sequence, channel), mean pooling's backward one per element:
// 1031 x 2053 = 2,116,643 pairs of 2 positions each.
constexpr int kWrapB = 1031, kWrapT = 2, kWrapC = 2053;
static_assert(size_t{kWrapB} * kWrapC > kOnePass);
TEST(MeanPoolCuda, ShapesPastOnePassOfTheCappedGridMatchTheCpuReference) {
  check_mean_pool<float>(kWrapB, kWrapT, kWrapC, false, 114);
  check_mean_pool<float>(kWrapB, kWrapT, kWrapC, true, 115);
  check_mean_pool<bf16>(kWrapB, kWrapT, kWrapC, true, 116);
}
TEST(ClsPoolCuda, ShapesPastOnePassOfTheCappedGridMatchTheCpuReference) {
  check_cls_pool<float>(kWrapB, kWrapT, kWrapC, 134);
  check_cls_pool<bf16>(kWrapB, kWrapT, kWrapC, 135);
}

template <typename T>
void check_attention_decode(int n_keys, int C, int NH, uint64_t seed) {
  const std::string what = "attention decode keys " + std::to_string(n_keys) + " C " +
                           std::to_string(C) + " NH " + std::to_string(NH);
  const auto q = rounded_to<T>(random_vector(C, seed, 0));
  const auto k = rounded_to<T>(random_vector(static_cast<size_t>(n_keys) * C, seed, 1));
  const auto v = rounded_to<T>(random_vector(static_cast<size_t>(n_keys) * C, seed, 2));
  std::vector<double> want(C), want_p(static_cast<size_t>(NH) * n_keys);
  attention_decode_cpu<double>(want.data(), want_p.data(), q.data(), k.data(), v.data(), n_keys, C,
                               NH);
  auto d_q = to_device<T>(q), d_k = to_device<T>(k), d_v = to_device<T>(v);
  auto d_out = poisoned_device<T>(C);
  auto d_p = poisoned_device<float>(want_p.size());
  attention_decode_cuda<T>(d_out.get(), d_p.get(), d_q.get(), d_k.get(), d_v.get(), n_keys, C, NH,
                           nullptr);
  expect_close(from_device(d_out), want, tolerance<T>(), what + " out");
  expect_close(from_device(d_p), want_p, 1e-5, what + " probs");  // fp32 softmax either way
}

TEST(AttentionDecodeCuda, MatchesTheCpuReferenceOnOddShapes) {
  check_attention_decode<float>(1, 24, 3, 140);
  check_attention_decode<float>(7, 24, 3, 141);
  check_attention_decode<float>(300, 40, 5, 142);
  check_attention_decode<bf16>(13, 24, 3, 143);
  check_attention_decode<bf16>(257, 64, 4, 144);
}

// One block of 256 threads per head strides over the keys and over the head's channels: head
// size 300 runs the channel loop twice, 259 keys the key loops.
TEST(AttentionDecodeCuda, HeadsAndKeysPastOneBlockMatchTheCpuReference) {
  check_attention_decode<float>(37, 300, 1, 145);
  check_attention_decode<float>(259, 600, 2, 146);
  check_attention_decode<bf16>(259, 600, 2, 147);
}

}  // namespace
}  // namespace dpt::kernels::test
