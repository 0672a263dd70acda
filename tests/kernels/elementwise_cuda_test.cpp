// gelu_*_cuda and residual_*_cuda against the CPU reference in double (float and bf16), for
// sizes with and without a tail after the 16-byte packs, for pointers off 16-byte alignment, and
// for sizes past one pass of the capped grid (the grid-stride loops run again).
#include <cuda_bf16.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/gelu.h"
#include "kernels/residual.h"
#include "tests/kernels/cuda_test_util.h"

namespace dpt::kernels::test {
namespace {

constexpr size_t kSizes[] = {1, 3, 7, 13, 64, 67 * 97, (1u << 16) + 5};
// Element offset into the device buffers: 0 keeps the 16-byte path, 1 forces the scalar one.
constexpr size_t kOffsets[] = {0, 1};

// One pass of the capped grid of gelu.cu and residual.cu (kMaxBlocks 4096 x kThreads 256): 2^20
// threads, each taking one pack of 16 / sizeof(T) elements on the 16-byte path (offset 0) and
// one element on the scalar path (offset 1). wrap_size gives the path 2^20 + 5 of its items and
// 3 elements more (the tail after the packs), so that some threads run the loop a second time.
constexpr size_t kOnePass = size_t{4096} * 256;
template <typename T>
constexpr size_t wrap_size(size_t offset) {
  return (offset == 0 ? 16 / sizeof(T) : 1) * (kOnePass + 5) + 3;
}

// [Wrap inputs]: kernel_test_util.h.

std::string label(const char* what, size_t n, size_t offset) {
  return std::string(what) + " n=" + std::to_string(n) + " offset=" + std::to_string(offset);
}

// Shifted inputs and outputs: [Placed buffers], cuda_test_util.h.

template <typename T>
void check_gelu(size_t n, size_t offset, uint64_t seed) {
  // Spread 3 reaches both saturated tails of the sigmoid form.
  const auto inp = rounded_to<T>(test_inputs(n, seed, 0, 3.0));
  std::vector<double> want(n);
  gelu_forward_cpu<double>(want.data(), inp.data(), n);
  auto d_inp = placed<T>(inp, offset);
  auto d_out = placed_poison<T>(n, offset);
  gelu_forward_cuda<T>(d_out.get(), d_inp.get(), n, nullptr);
  expect_close(d_out.values(), want, tolerance<T>(), label("gelu out", n, offset));

  const auto dout = rounded_to<T>(test_inputs(n, seed, 1));
  const auto dinp0 = rounded_to<T>(test_inputs(n, seed, 2));
  auto want_dinp = dinp0;
  gelu_backward_cpu<double>(want_dinp.data(), inp.data(), dout.data(), n);
  auto d_dout = placed<T>(dout, offset);
  auto d_dinp = placed<T>(dinp0, offset);
  gelu_backward_cuda<T>(d_dinp.get(), d_inp.get(), d_dout.get(), n, nullptr);
  expect_close(d_dinp.values(), want_dinp, tolerance<T>(), label("gelu dinp", n, offset));
  // [Gradient write]: written over NaN poison, the gradient alone.
  std::vector<double> want_written(n, 0.0);
  gelu_backward_cpu<double>(want_written.data(), inp.data(), dout.data(), n);
  auto d_written = placed_poison<T>(n, offset);
  gelu_backward_cuda<T>(d_written.get(), d_inp.get(), d_dout.get(), n, nullptr, GradInput::write);
  expect_close(d_written.values(), want_written, tolerance<T>(),
               label("gelu dinp written", n, offset));
}

template <typename T>
void check_residual(size_t n, size_t offset, uint64_t seed) {
  const auto a = rounded_to<T>(test_inputs(n, seed, 0));
  const auto b = rounded_to<T>(test_inputs(n, seed, 1));
  std::vector<double> want(n);
  residual_forward_cpu<double>(want.data(), a.data(), b.data(), n);
  auto d_a = placed<T>(a, offset);
  auto d_b = placed<T>(b, offset);
  auto d_out = placed_poison<T>(n, offset);
  residual_forward_cuda<T>(d_out.get(), d_a.get(), d_b.get(), n, nullptr);
  expect_close(d_out.values(), want, tolerance<T>(), label("residual out", n, offset));

  const auto dout = rounded_to<T>(test_inputs(n, seed, 2));
  const auto da0 = rounded_to<T>(test_inputs(n, seed, 3));
  const auto db0 = rounded_to<T>(test_inputs(n, seed, 4));
  auto want_da = da0, want_db = db0;
  residual_backward_cpu<double>(want_da.data(), want_db.data(), dout.data(), n);
  auto d_dout = placed<T>(dout, offset);
  auto d_da = placed<T>(da0, offset);
  auto d_db = placed<T>(db0, offset);
  residual_backward_cuda<T>(d_da.get(), d_db.get(), d_dout.get(), n, nullptr);
  expect_close(d_da.values(), want_da, tolerance<T>(), label("residual da", n, offset));
  expect_close(d_db.values(), want_db, tolerance<T>(), label("residual db", n, offset));
}

// da may be the dout buffer itself (as on the CPU): dout is read before da is written.
template <typename T>
void check_residual_backward_in_place(size_t n, uint64_t seed) {
  const auto dout = rounded_to<T>(test_inputs(n, seed, 0));
  const auto db0 = rounded_to<T>(test_inputs(n, seed, 1));
  auto want_da = dout, want_db = db0;
  residual_backward_cpu<double>(want_da.data(), want_db.data(), want_da.data(), n);
  auto d_dout = to_device<T>(dout);
  auto d_db = to_device<T>(db0);
  residual_backward_cuda<T>(d_dout.get(), d_db.get(), d_dout.get(), n, nullptr);
  expect_close(from_device(d_dout), want_da, tolerance<T>(), label("residual da=dout", n, 0));
  expect_close(from_device(d_db), want_db, tolerance<T>(), label("residual db", n, 0));
}

TEST(GeluCuda, ForwardAndBackwardMatchCpuReferenceFloat) {
  for (size_t n : kSizes)
    for (size_t off : kOffsets)
      check_gelu<float>(n, off, 800);
}
TEST(GeluCuda, ForwardAndBackwardMatchCpuReferenceBf16) {
  for (size_t n : kSizes)
    for (size_t off : kOffsets)
      check_gelu<bf16>(n, off, 801);
}
TEST(ResidualCuda, ForwardAndBackwardMatchCpuReferenceFloat) {
  for (size_t n : kSizes)
    for (size_t off : kOffsets)
      check_residual<float>(n, off, 810);
}
TEST(ResidualCuda, ForwardAndBackwardMatchCpuReferenceBf16) {
  for (size_t n : kSizes)
    for (size_t off : kOffsets)
      check_residual<bf16>(n, off, 811);
}
TEST(ResidualCuda, BackwardIntoTheDoutBufferMatchesCpuReference) {
  check_residual_backward_in_place<float>(1001, 820);
  check_residual_backward_in_place<bf16>(1001, 821);
}

// Past one pass of the capped grid, on both paths (wrap_size).
TEST(GeluCuda, SizesPastOnePassOfTheCappedGridMatchCpuReference) {
  for (size_t off : kOffsets) {
    check_gelu<float>(wrap_size<float>(off), off, 830);
    check_gelu<bf16>(wrap_size<bf16>(off), off, 831);
  }
}
TEST(ResidualCuda, SizesPastOnePassOfTheCappedGridMatchCpuReference) {
  for (size_t off : kOffsets) {
    check_residual<float>(wrap_size<float>(off), off, 840);
    check_residual<bf16>(wrap_size<bf16>(off), off, 841);
  }
}

}  // namespace
}  // namespace dpt::kernels::test
