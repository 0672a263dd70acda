// patches_*_cuda, mean_pool_*_cuda and mse_*_cuda against the CPU reference in double (float
// and bf16) on odd shapes; outputs poisoned first, gradients accumulated onto random values.
#include <cuda_bf16.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/mse.h"
#include "kernels/patches.h"
#include "kernels/pooling.h"
#include "tests/kernels/cuda_test_util.h"

namespace dpt::kernels::test {
namespace {

template <typename T>
void check_patches(int B, int H, int W, int C, int P, uint64_t seed) {
  const size_t n = static_cast<size_t>(B) * H * W * C;
  const std::string what = "patches " + std::to_string(B) + "x" + std::to_string(H) + "x" +
                           std::to_string(W) + "x" + std::to_string(C) + " P " + std::to_string(P);
  const auto img = rounded_to<T>(random_vector(n, seed, 0));
  std::vector<double> want(n);
  patches_forward_cpu<double>(want.data(), img.data(), B, H, W, C, P);
  auto d_img = to_device<T>(img);
  auto d_out = poisoned_device<T>(n);
  patches_forward_cuda<T>(d_out.get(), d_img.get(), B, H, W, C, P, nullptr);
  // A gather moves values unchanged: exact in any dtype.
  expect_close(from_device(d_out), want, 0.0, what + " out");

  const auto dout = rounded_to<T>(random_vector(n, seed, 1));
  const auto dimg0 = rounded_to<T>(random_vector(n, seed, 2));
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

template <typename T>
void check_mean_pool(int B, int Tn, int C, bool with_lengths, uint64_t seed) {
  const std::string what = "mean pool B " + std::to_string(B) + " T " + std::to_string(Tn) + " C " +
                           std::to_string(C) + (with_lengths ? " with lengths" : "");
  const auto x = rounded_to<T>(random_vector(static_cast<size_t>(B) * Tn * C, seed, 0));
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

  const auto dout = rounded_to<T>(random_vector(want.size(), seed, 1));
  const auto dx0 = rounded_to<T>(random_vector(x.size(), seed, 2));
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
  const auto pred = rounded_to<T>(random_vector(static_cast<size_t>(B) * K, seed, 0));
  const auto target = rounded_to<float>(random_vector(pred.size(), seed, 1));
  std::vector<double> want(B);
  mse_forward_cpu<double>(want.data(), pred.data(), target.data(), B, K);
  auto d_pred = to_device<T>(pred);
  auto d_target = to_device<float>(target);
  auto d_loss = poisoned_device<float>(B);
  mse_forward_cuda<T>(d_loss.get(), d_pred.get(), d_target.get(), B, K, nullptr);
  expect_close(from_device(d_loss), want, 1e-5, what + " loss");  // fp32 sums either way

  const double scale = 1.0 / B;
  const auto d0 = rounded_to<T>(random_vector(pred.size(), seed, 2));
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

}  // namespace
}  // namespace dpt::kernels::test
