// GemmCuda (cuBLASLt / cuBLAS) against the CPU reference gemm_cpu<double> on inputs rounded to the
// kernel's dtype: every transpose pair, odd shapes, padded leading dimensions, beta 0 and 1, bias,
// bf16 operands into fp32, batched products, odd pointer offsets, run-to-run bits, and the GELU
// epilogues fused and unfused.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "kernels/gelu.h"
#include "kernels/gemm.h"
#include "tests/kernels/cuda_test_util.h"

namespace dpt::kernels::test {
namespace {

// Stored shapes (row-major): A is M x K (K x M when transposed), B is K x N (N x K).
struct Shape {
  int M, N, K;
};

const Shape kShapes[] = {{1, 1, 1},   {3, 5, 7},   {7, 13, 11}, {13, 7, 5},  {67, 97, 13},
                         {97, 67, 5}, {13, 1, 97}, {1, 67, 3},  {11, 3, 67}, {5, 11, 97}};

std::string describe(const char* what, bool ta, bool tb, const Shape& s, float alpha, float beta,
                     bool bias, int pad) {
  return std::string(what) + " ta=" + std::to_string(ta) + " tb=" + std::to_string(tb) +
         " M=" + std::to_string(s.M) + " N=" + std::to_string(s.N) + " K=" + std::to_string(s.K) +
         " alpha=" + std::to_string(alpha) + " beta=" + std::to_string(beta) +
         " bias=" + std::to_string(bias) + " pad=" + std::to_string(pad);
}

// Waits for the uploads: cudaMemcpy from pageable memory may return before its DMA has landed,
// and the products run on a non-blocking stream that does not wait for the default stream.
void sync_uploads() {
  DPT_CHECK_CUDA(cudaDeviceSynchronize());
}

bool same_bits(double a, double b) {
  return std::memcmp(&a, &b, sizeof(double)) == 0;
}

void expect_bit_identical(const std::vector<double>& a, const std::vector<double>& b,
                          const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  size_t diff = 0;
  for (size_t i = 0; i < a.size(); ++i)
    diff += !same_bits(a[i], b[i]);
  EXPECT_EQ(diff, 0u) << what << ": " << diff << " of " << a.size() << " elements differ";
}

// `v` with `offset` leading NaN elements: its device copy's data starts `offset` elements into
// the allocation, so that pointer is aligned to sizeof(T) * offset bytes at most.
std::vector<double> with_offset(const std::vector<double>& v, int offset) {
  std::vector<double> r(offset, std::nan(""));
  r.insert(r.end(), v.begin(), v.end());
  return r;
}

// The logical rows x cols of a row-major matrix with leading dimension ld.
std::vector<double> logical(const std::vector<double>& m, int rows, int cols, int ld,
                            size_t first = 0) {
  std::vector<double> r;
  r.reserve(static_cast<size_t>(rows) * cols);
  for (int i = 0; i < rows; ++i)
    for (int j = 0; j < cols; ++j)
      r.push_back(m[first + static_cast<size_t>(i) * ld + j]);
  return r;
}

// A stored rows x cols matrix with ld = cols + pad: random values, NaN in the padding (a product
// that reads the padding turns NaN). `ref` receives the values rounded to T, padding 0.
template <typename T>
std::vector<double> operand(int rows, int cols, int pad, uint64_t seed, uint64_t stream,
                            std::vector<double>* ref) {
  const int ld = cols + pad;
  std::vector<double> v(static_cast<size_t>(rows) * ld, std::nan(""));
  const std::vector<double> r = random_vector(static_cast<size_t>(rows) * cols, seed, stream);
  ref->assign(v.size(), 0.0);
  const std::vector<double> rr = rounded_to<T>(r);
  for (int i = 0; i < rows; ++i) {
    for (int j = 0; j < cols; ++j) {
      v[static_cast<size_t>(i) * ld + j] = r[static_cast<size_t>(i) * cols + j];
      (*ref)[static_cast<size_t>(i) * ld + j] = rr[static_cast<size_t>(i) * cols + j];
    }
  }
  return v;
}

// One product on the GPU against gemm_cpu<double> (+ bias): C poisoned with NaN when beta = 0,
// random when beta != 0; the padding of C must keep its bits. `offset` shifts every device
// pointer by that many elements (misaligned operands).
// bf16 operands into an fp32 result: each bf16 x bf16 product is exact in fp32, but tensor
// cores add the products of a K-block with fewer guard bits than IEEE fp32 addition and
// cuBLASLt may split K, so the sum is not fp32's correctly rounded one. 1e-4 leaves room for
// that at K = 8192 and still fails any wrong product, which is off by its own size.
template <typename T, typename TC>
constexpr double gemm_tolerance() {
  if constexpr (std::is_same_v<T, bf16> && std::is_same_v<TC, float>)
    return 1e-4;
  else
    return tolerance<TC>();
}

template <typename T, typename TC>
void check_gemm(GemmCuda& gemm, cudaStream_t stream, bool ta, bool tb, const Shape& s, float alpha,
                float beta, bool with_bias, int pad, int offset, uint64_t seed) {
  const std::string what = describe("gemm", ta, tb, s, alpha, beta, with_bias, pad) +
                           " offset=" + std::to_string(offset);
  const int rows_a = ta ? s.K : s.M, cols_a = ta ? s.M : s.K;
  const int rows_b = tb ? s.N : s.K, cols_b = tb ? s.K : s.N;
  const int lda = cols_a + pad, ldb = cols_b + pad, ldc = s.N + pad;
  std::vector<double> ref_a, ref_b;
  const std::vector<double> a = operand<T>(rows_a, cols_a, pad, seed, 1, &ref_a);
  const std::vector<double> b = operand<T>(rows_b, cols_b, pad, seed, 2, &ref_b);
  const size_t c_elems = static_cast<size_t>(s.M) * ldc;
  std::vector<double> c0 =
      beta == 0.0f ? std::vector<double>(c_elems, std::nan("")) : random_vector(c_elems, seed, 3);
  const std::vector<double> bias = random_vector(s.N, seed, 4);

  // Reference: C0 and bias as the kernel sees them (rounded to TC); beta = 0 ignores C0.
  std::vector<double> want = beta == 0.0f ? std::vector<double>(c_elems, 0.0) : rounded_to<TC>(c0);
  gemm_cpu<double>(ta, tb, s.M, s.N, s.K, alpha, ref_a.data(), lda, ref_b.data(), ldb, beta,
                   want.data(), ldc);
  if (with_bias) {
    const std::vector<double> rb = rounded_to<TC>(bias);
    for (int i = 0; i < s.M; ++i)
      for (int j = 0; j < s.N; ++j)
        want[static_cast<size_t>(i) * ldc + j] += rb[j];
  }

  DeviceBuffer<T> d_a = to_device<T>(with_offset(a, offset));
  DeviceBuffer<T> d_b = to_device<T>(with_offset(b, offset));
  DeviceBuffer<TC> d_c = to_device<TC>(with_offset(c0, offset));
  DeviceBuffer<TC> d_bias = to_device<TC>(with_offset(bias, offset));
  const std::vector<double> before = from_device(d_c);
  sync_uploads();
  gemm.gemm<T, TC>(ta, tb, s.M, s.N, s.K, alpha, d_a.get() + offset, lda, d_b.get() + offset, ldb,
                   beta, d_c.get() + offset, ldc, with_bias ? d_bias.get() + offset : nullptr,
                   stream);
  const std::vector<double> got = from_device(d_c);

  expect_close(logical(got, s.M, s.N, ldc, offset), logical(want, s.M, s.N, ldc),
               gemm_tolerance<T, TC>(), what);
  // Nothing outside the M x N result changes (the row padding and the leading offset).
  size_t touched = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const size_t e = i - std::min<size_t>(i, offset);
    const bool inside = i >= static_cast<size_t>(offset) && static_cast<int>(e % ldc) < s.N;
    if (!inside && !same_bits(got[i], before[i])) ++touched;
  }
  EXPECT_EQ(touched, 0u) << what << ": elements outside the result were written";
}

template <typename T, typename TC>
void check_all_shapes(uint64_t seed) {
  GemmCuda gemm;
  CudaStreamHandle stream;
  for (const Shape& s : kShapes) {
    for (int t = 0; t < 4; ++t) {
      const bool ta = t & 1, tb = t & 2;
      for (const float beta : {0.0f, 1.0f}) {
        // alpha != 1 with beta = 1: both scalars reach the product.
        const float alpha = beta == 0.0f ? 1.0f : 0.75f;
        for (const bool with_bias : {false, true}) {
          const int pad = (s.M + s.N + t) % 3;  // padded leading dimensions on most cases
          check_gemm<T, TC>(gemm, stream.get(), ta, tb, s, alpha, beta, with_bias, pad, 0, seed++);
          if (testing::Test::HasFatalFailure()) return;
        }
      }
    }
  }
}

TEST(GemmCuda, Fp32MatchesDoubleReferenceForOddShapesEveryTransposeBetaAndBias) {
  check_all_shapes<float, float>(100);
}

TEST(GemmCuda, Bf16MatchesDoubleReferenceForOddShapesEveryTransposeBetaAndBias) {
  check_all_shapes<bf16, bf16>(200);
}

// bf16 operands accumulate straight into fp32 (weight gradients). Both sides see the same bf16
// inputs; the bound is gemm_tolerance's.
TEST(GemmCuda, Bf16OperandsIntoFp32MatchDoubleReference) {
  check_all_shapes<bf16, float>(300);
}

// Values, not only repeatability, where the inner dimension is long: K = 8192 (a 124M model's
// weight gradients sum over B*T = 8192 rows at micro-batch 8), every transpose, each dtype pair.
TEST(GemmCuda, LongInnerDimensionMatchesDoubleReference) {
  GemmCuda gemm;
  CudaStreamHandle stream;
  uint64_t seed = 350;
  const Shape s{67, 97, 8192};
  for (int t = 0; t < 4; ++t) {
    const bool ta = t & 1, tb = t & 2;
    check_gemm<float, float>(gemm, stream.get(), ta, tb, s, 1.0f, 0.0f, false, 1, 0, seed++);
    check_gemm<bf16, bf16>(gemm, stream.get(), ta, tb, s, 1.0f, 0.0f, true, 0, 0, seed++);
    check_gemm<bf16, float>(gemm, stream.get(), ta, tb, s, 1.0f, 1.0f, false, 2, 0, seed++);
  }
}

// Operands that start 1 or 3 elements into an allocation (2- to 12-byte alignment) still get a
// working algorithm and the right result: the plan's alignments come from the pointers.
TEST(GemmCuda, OperandsAtOddElementOffsetsMatchDoubleReference) {
  GemmCuda gemm;
  CudaStreamHandle stream;
  uint64_t seed = 400;
  for (const int offset : {1, 3}) {
    for (int t = 0; t < 4; ++t) {
      const bool ta = t & 1, tb = t & 2;
      for (const Shape& s : {Shape{67, 97, 13}, Shape{13, 7, 5}, Shape{64, 64, 64}}) {
        check_gemm<float, float>(gemm, stream.get(), ta, tb, s, 0.75f, 1.0f, true, 1, offset,
                                 seed++);
        check_gemm<bf16, bf16>(gemm, stream.get(), ta, tb, s, 1.0f, 0.0f, true, 0, offset, seed++);
        check_gemm<bf16, float>(gemm, stream.get(), ta, tb, s, 1.0f, 1.0f, true, 2, offset, seed++);
      }
    }
  }
}

// K = 0: the product is empty, C = beta C + bias (and beta = 0 does not read the NaN in C).
// A is M x 0 and B (transposed) N x 0: with padded rows their buffers are not empty.
TEST(GemmCuda, EmptyInnerDimensionGivesBetaTimesCPlusBias) {
  GemmCuda gemm;
  CudaStreamHandle stream;
  for (const float beta : {0.0f, 1.0f}) {
    check_gemm<float, float>(gemm, stream.get(), false, true, Shape{5, 7, 0}, 1.0f, beta, true, 1,
                             0, 500);
    check_gemm<bf16, bf16>(gemm, stream.get(), false, true, Shape{3, 13, 0}, 1.0f, beta, true, 2, 0,
                           501);
    check_gemm<bf16, float>(gemm, stream.get(), false, true, Shape{7, 5, 0}, 1.0f, beta, false, 1,
                            0, 502);
  }
}

TEST(GemmCuda, RejectsLeadingDimensionShorterThanARow) {
  GemmCuda gemm;
  DeviceBuffer<float> buf(64);
  expect_runtime_failure_mentioning(
      [&] {
        gemm.gemm<float, float>(false, false, 4, 4, 4, 1.0f, buf.get(), 3, buf.get(), 4, 0.0f,
                                buf.get(), 4, nullptr, nullptr);
      },
      {"leading dimension", "lda=3"});
}

// Bits do not depend on the run: the same product (a long K, where split-K algorithms are
// likely) twice from the same inputs, with beta = 1 and a bias.
template <typename T, typename TC>
void check_repeatable(uint64_t seed) {
  GemmCuda gemm;
  CudaStreamHandle stream;
  const int M = 64, N = 96, K = 8192;
  DeviceBuffer<T> a = to_device<T>(random_vector(size_t(M) * K, seed, 1));
  DeviceBuffer<T> b = to_device<T>(random_vector(size_t(K) * N, seed, 2));
  const std::vector<double> c0 = random_vector(size_t(M) * N, seed, 3);
  DeviceBuffer<TC> bias = to_device<TC>(random_vector(N, seed, 4));
  std::vector<double> runs[2];
  for (auto& run : runs) {
    DeviceBuffer<TC> c = to_device<TC>(c0);
    sync_uploads();
    gemm.gemm<T, TC>(true, false, M, N, K, 1.0f, a.get(), M, b.get(), N, 1.0f, c.get(), N,
                     bias.get(), stream.get());
    run = from_device(c);
  }
  expect_bit_identical(runs[0], runs[1], "gemm twice");
}

TEST(GemmCuda, RepeatedProductsAreBitIdentical) {
  check_repeatable<float, float>(600);
  check_repeatable<bf16, bf16>(601);
  check_repeatable<bf16, float>(602);
}

// --- batched ----------------------------------------------------------------------------------

// batch products with strides larger than a matrix (NaN in the gaps); each item against
// gemm_cpu<double>; the gaps of C keep their bits.
template <typename T>
void check_batched(GemmCuda& gemm, cudaStream_t stream, bool ta, bool tb, const Shape& s, int batch,
                   float alpha, float beta, int pad, uint64_t seed) {
  const std::string what = describe("gemm_batched", ta, tb, s, alpha, beta, false, pad) +
                           " batch=" + std::to_string(batch);
  const int rows_a = ta ? s.K : s.M, cols_a = ta ? s.M : s.K;
  const int rows_b = tb ? s.N : s.K, cols_b = tb ? s.K : s.N;
  const int lda = cols_a + pad, ldb = cols_b + pad, ldc = s.N + pad;
  const long long gap = 5;
  const long long sa = static_cast<long long>(rows_a) * lda + gap;
  const long long sb = static_cast<long long>(rows_b) * ldb + gap;
  const long long sc = static_cast<long long>(s.M) * ldc + gap;
  std::vector<double> a(sa * batch, std::nan("")), b(sb * batch, std::nan(""));
  std::vector<double> ref_a(a.size(), 0.0), ref_b(b.size(), 0.0);
  for (int i = 0; i < batch; ++i) {
    std::vector<double> ra, rb;
    const std::vector<double> ai = operand<T>(rows_a, cols_a, pad, seed, 10 + i, &ra);
    const std::vector<double> bi = operand<T>(rows_b, cols_b, pad, seed, 100 + i, &rb);
    std::copy(ai.begin(), ai.end(), a.begin() + i * sa);
    std::copy(ra.begin(), ra.end(), ref_a.begin() + i * sa);
    std::copy(bi.begin(), bi.end(), b.begin() + i * sb);
    std::copy(rb.begin(), rb.end(), ref_b.begin() + i * sb);
  }
  const std::vector<double> c0 = beta == 0.0f ? std::vector<double>(sc * batch, std::nan(""))
                                              : random_vector(sc * batch, seed, 3);
  std::vector<double> want = beta == 0.0f ? std::vector<double>(c0.size(), 0.0) : rounded_to<T>(c0);
  for (int i = 0; i < batch; ++i) {
    gemm_cpu<double>(ta, tb, s.M, s.N, s.K, alpha, ref_a.data() + i * sa, lda,
                     ref_b.data() + i * sb, ldb, beta, want.data() + i * sc, ldc);
  }

  DeviceBuffer<T> d_a = to_device<T>(a), d_b = to_device<T>(b), d_c = to_device<T>(c0);
  const std::vector<double> before = from_device(d_c);
  sync_uploads();
  gemm.gemm_batched<T>(ta, tb, s.M, s.N, s.K, alpha, d_a.get(), lda, sa, d_b.get(), ldb, sb, beta,
                       d_c.get(), ldc, sc, batch, stream);
  const std::vector<double> got = from_device(d_c);
  for (int i = 0; i < batch; ++i) {
    expect_close(logical(got, s.M, s.N, ldc, i * sc), logical(want, s.M, s.N, ldc, i * sc),
                 tolerance<T>(), what + " item " + std::to_string(i));
  }
  size_t touched = 0;
  for (size_t e = 0; e < got.size(); ++e) {
    const size_t in_item = e % sc;
    const bool inside = in_item < static_cast<size_t>(s.M) * ldc && int(in_item % ldc) < s.N;
    if (!inside && !same_bits(got[e], before[e])) ++touched;
  }
  EXPECT_EQ(touched, 0u) << what << ": elements outside the results were written";
}

template <typename T>
void check_all_batched(uint64_t seed) {
  GemmCuda gemm;
  CudaStreamHandle stream;
  const Shape shapes[] = {{1, 1, 1}, {5, 7, 3}, {13, 13, 7}, {33, 5, 33}, {11, 67, 13}};
  for (const Shape& s : shapes) {
    for (int t = 0; t < 4; ++t) {
      const bool ta = t & 1, tb = t & 2;
      for (const float beta : {0.0f, 1.0f}) {
        for (const int batch : {1, 3, 5}) {
          const float alpha = beta == 0.0f ? 0.5f : 1.0f;
          check_batched<T>(gemm, stream.get(), ta, tb, s, batch, alpha, beta, (s.K + t) % 2,
                           seed++);
          if (testing::Test::HasFatalFailure()) return;
        }
      }
    }
  }
}

TEST(GemmCudaBatched, Fp32MatchesDoubleReferencePerItemWithGapsBetweenItems) {
  check_all_batched<float>(700);
}

TEST(GemmCudaBatched, Bf16MatchesDoubleReferencePerItemWithGapsBetweenItems) {
  check_all_batched<bf16>(800);
}

// K = 0 in a batch: every item becomes beta C.
TEST(GemmCudaBatched, EmptyInnerDimensionGivesBetaTimesC) {
  GemmCuda gemm;
  CudaStreamHandle stream;
  check_batched<float>(gemm, stream.get(), false, true, Shape{3, 5, 0}, 3, 1.0f, 0.0f, 1, 900);
  check_batched<bf16>(gemm, stream.get(), true, false, Shape{5, 3, 0}, 2, 1.0f, 1.0f, 0, 901);
}

template <typename T>
void check_batched_repeatable(uint64_t seed) {
  GemmCuda gemm;
  CudaStreamHandle stream;
  const int M = 97, N = 97, K = 33, batch = 24;
  DeviceBuffer<T> a = to_device<T>(random_vector(size_t(M) * K * batch, seed, 1));
  DeviceBuffer<T> b = to_device<T>(random_vector(size_t(K) * N * batch, seed, 2));
  std::vector<double> runs[2];
  for (auto& run : runs) {
    DeviceBuffer<T> c = poisoned_device<T>(size_t(M) * N * batch);
    sync_uploads();
    gemm.gemm_batched<T>(false, true, M, N, K, 0.25f, a.get(), K, M * K, b.get(), K, N * K, 0.0f,
                         c.get(), N, M * N, batch, stream.get());
    run = from_device(c);
  }
  expect_bit_identical(runs[0], runs[1], "gemm_batched twice");
}

TEST(GemmCudaBatched, RepeatedProductsAreBitIdentical) {
  check_batched_repeatable<float>(1000);
  check_batched_repeatable<bf16>(1001);
}

// --- GELU epilogues ([GEMM epilogues], gemm.h) ------------------------------------------------

// GELU and its gradient in double (gelu_cpu.cpp) on compact vectors.
std::vector<double> gelu_of(const std::vector<double>& x) {
  std::vector<double> y(x.size());
  gelu_forward_cpu<double>(y.data(), x.data(), x.size());
  return y;
}
std::vector<double> dgelu_of(const std::vector<double>& pre, const std::vector<double>& d) {
  std::vector<double> y(pre.size());
  gelu_backward_cpu<double>(y.data(), pre.data(), d.data(), pre.size(), GradInput::write);
  return y;
}

// The compact rows x cols matrix v stored with leading dimension ld, NaN in the padding.
std::vector<double> padded(const std::vector<double>& v, int rows, int cols, int ld) {
  std::vector<double> r(static_cast<size_t>(rows) * ld, std::nan(""));
  for (int i = 0; i < rows; ++i)
    std::copy_n(v.begin() + static_cast<std::ptrdiff_t>(i) * cols, cols,
                r.begin() + static_cast<std::ptrdiff_t>(i) * ld);
  return r;
}

// Elements whose bits changed: those in columns [cols, ld) of each row (the padding) when
// cols < ld, every element when cols is 0.
size_t changed_outside(const std::vector<double>& got, const std::vector<double>& before, int cols,
                       int ld) {
  size_t n = 0;
  for (size_t i = 0; i < got.size(); ++i)
    n += static_cast<int>(i % ld) >= cols && !same_bits(got[i], before[i]);
  return n;
}

const char* epilogue_text(GemmEpilogue e) {
  return e == GemmEpilogue::gelu_aux ? "gemm gelu_aux" : "gemm dgelu";
}

// One epilogue product against the double reference: gelu_aux writes aux = alpha op(A) op(B)
// (+ bias) and C = gelu(aux); dgelu writes C = (alpha op(A) op(B)) * gelu'(aux) from a random aux.
// C (and gelu_aux's aux) poisoned with NaN; nothing outside the M x N results changes, and dgelu
// leaves aux as it was. alpha = 1/sqrt(K) keeps the product's entries near 1, where GELU bends,
// rather than in its nearly linear tails. ld_aux = N + aux_pad: a multiple of 8 takes the fused
// path where cuBLASLt has one, other values the unfused one.
template <typename T>
void check_epilogue(GemmCuda& gemm, cudaStream_t stream, GemmEpilogue epilogue, bool ta, bool tb,
                    const Shape& s, bool with_bias, int pad, int aux_pad, uint64_t seed) {
  const float alpha = 1.0f / std::sqrt(static_cast<float>(std::max(s.K, 1)));
  const std::string what =
      describe(epilogue_text(epilogue), ta, tb, s, alpha, 0.0f, with_bias, pad) +
      " aux_pad=" + std::to_string(aux_pad);
  const bool dgelu = epilogue == GemmEpilogue::dgelu;
  const int rows_a = ta ? s.K : s.M, cols_a = ta ? s.M : s.K;
  const int rows_b = tb ? s.N : s.K, cols_b = tb ? s.K : s.N;
  const int lda = cols_a + pad, ldb = cols_b + pad, ldc = s.N + pad, ld_aux = s.N + aux_pad;
  std::vector<double> ref_a, ref_b;
  const std::vector<double> a = operand<T>(rows_a, cols_a, pad, seed, 1, &ref_a);
  const std::vector<double> b = operand<T>(rows_b, cols_b, pad, seed, 2, &ref_b);
  const size_t mn = static_cast<size_t>(s.M) * s.N;
  std::vector<double> product(mn, 0.0);
  gemm_cpu<double>(ta, tb, s.M, s.N, s.K, alpha, ref_a.data(), lda, ref_b.data(), ldb, 0.0,
                   product.data(), s.N);
  const std::vector<double> bias = rounded_to<T>(random_vector(s.N, seed, 4));
  // dgelu's aux: pre-activations of size about 1.5, rounded to T as the kernel sees them.
  const std::vector<double> pre = rounded_to<T>(random_vector(mn, seed, 5, 1.5));
  std::vector<double> want_aux = dgelu ? pre : product;
  if (with_bias) {
    for (size_t e = 0; e < mn; ++e)
      want_aux[e] += bias[e % s.N];
  }
  const std::vector<double> want_c = dgelu ? dgelu_of(pre, product) : gelu_of(want_aux);

  DeviceBuffer<T> d_a = to_device<T>(a), d_b = to_device<T>(b), d_bias = to_device<T>(bias);
  DeviceBuffer<T> d_c = poisoned_device<T>(static_cast<size_t>(s.M) * ldc);
  DeviceBuffer<T> d_aux = dgelu ? to_device<T>(padded(pre, s.M, s.N, ld_aux))
                                : poisoned_device<T>(static_cast<size_t>(s.M) * ld_aux);
  const std::vector<double> before_c = from_device(d_c), before_aux = from_device(d_aux);
  sync_uploads();
  gemm.gemm<T, T>(ta, tb, s.M, s.N, s.K, alpha, d_a.get(), lda, d_b.get(), ldb, 0.0f, d_c.get(),
                  ldc, with_bias ? d_bias.get() : nullptr, stream, epilogue, d_aux.get(), ld_aux);
  const std::vector<double> got_c = from_device(d_c), got_aux = from_device(d_aux);

  expect_close(logical(got_c, s.M, s.N, ldc), want_c, tolerance<T>(), what + " C");
  EXPECT_EQ(changed_outside(got_c, before_c, s.N, ldc), 0u) << what << ": C's padding written";
  if (dgelu) {
    EXPECT_EQ(changed_outside(got_aux, before_aux, 0, ld_aux), 0u) << what << ": aux written";
  } else {
    expect_close(logical(got_aux, s.M, s.N, ld_aux), want_aux, tolerance<T>(), what + " aux");
    EXPECT_EQ(changed_outside(got_aux, before_aux, s.N, ld_aux), 0u)
        << what << ": aux's padding written";
  }
}

// N a multiple of 8 (the fused path's ld_aux rule can hold) and not; K = 1 and long sums.
const Shape kEpilogueShapes[] = {{1, 8, 1},    {7, 16, 13}, {67, 64, 97}, {13, 40, 5},
                                 {64, 64, 64}, {3, 5, 7},   {67, 97, 13}, {13, 1, 97}};

template <typename T>
void check_all_epilogues(GemmCuda& gemm, uint64_t seed) {
  CudaStreamHandle stream;
  for (const GemmEpilogue epilogue : {GemmEpilogue::gelu_aux, GemmEpilogue::dgelu}) {
    for (const Shape& s : kEpilogueShapes) {
      for (int t = 0; t < 4; ++t) {
        const bool ta = t & 1, tb = t & 2;
        const int pad = (s.M + s.N + t) % 3;
        for (const int aux_pad : {0, 3, 8}) {
          for (const bool with_bias : {false, true}) {
            if (with_bias && epilogue == GemmEpilogue::dgelu) continue;
            check_epilogue<T>(gemm, stream.get(), epilogue, ta, tb, s, with_bias, pad, aux_pad,
                              seed++);
            if (testing::Test::HasFatalFailure()) return;
          }
        }
      }
    }
  }
  // K = 0: gelu_aux gives aux = bias and C = gelu(bias), dgelu C = 0. B is N x 0 with padded
  // rows, so that its buffer is not empty (as in EmptyInnerDimensionGivesBetaTimesCPlusBias).
  check_epilogue<T>(gemm, stream.get(), GemmEpilogue::gelu_aux, false, true, Shape{5, 8, 0}, true,
                    1, 0, seed++);
  check_epilogue<T>(gemm, stream.get(), GemmEpilogue::dgelu, false, true, Shape{3, 16, 0}, false, 2,
                    8, seed++);
}

// Both paths on every case: fused where cuBLASLt takes it, then with fusion switched off, where
// no product may run fused.
template <typename T>
void check_epilogues_fused_and_unfused(uint64_t seed) {
  {
    GemmCuda gemm;
    check_all_epilogues<T>(gemm, seed);
  }
  GemmCuda gemm;
  gemm.set_fused_epilogues(false);
  check_all_epilogues<T>(gemm, seed + 10000);
  EXPECT_EQ(gemm.epilogue_counts().fused, 0);
  EXPECT_GT(gemm.epilogue_counts().unfused, 0);
}

TEST(GemmCuda, GeluEpiloguesFp32MatchDoubleReferenceFusedAndUnfused) {
  check_epilogues_fused_and_unfused<float>(1100);
}

TEST(GemmCuda, GeluEpiloguesBf16MatchDoubleReferenceFusedAndUnfused) {
  check_epilogues_fused_and_unfused<bf16>(1200);
}

// The three products the MLP runs (gelu_aux with and without bias, dgelu) at a size cuBLASLt
// serves: with ld_aux a multiple of 8 and 16-byte aligned buffers they run fused in bf16 (the
// point of the epilogues; if this fails, every other epilogue test only checked the fallback);
// ld_aux = 65 always runs unfused. fp32 support is cuBLASLt's choice and only reported.
template <typename T>
GemmEpilogueCounts run_mlp_epilogues(int ld_aux) {
  GemmCuda gemm;
  CudaStreamHandle stream;
  const int n = 64;
  DeviceBuffer<T> a = to_device<T>(random_vector(size_t(n) * n, 1300, 1, 0.125));
  DeviceBuffer<T> b = to_device<T>(random_vector(size_t(n) * n, 1300, 2, 0.125));
  DeviceBuffer<T> bias = to_device<T>(random_vector(n, 1300, 3));
  DeviceBuffer<T> c(size_t(n) * n), aux = to_device<T>(random_vector(size_t(n) * ld_aux, 1300, 4));
  sync_uploads();
  gemm.gemm<T, T>(false, true, n, n, n, 1.0f, a.get(), n, b.get(), n, 0.0f, c.get(), n, bias.get(),
                  stream.get(), GemmEpilogue::gelu_aux, aux.get(), ld_aux);
  gemm.gemm<T, T>(false, true, n, n, n, 1.0f, a.get(), n, b.get(), n, 0.0f, c.get(), n, nullptr,
                  stream.get(), GemmEpilogue::gelu_aux, aux.get(), ld_aux);
  gemm.gemm<T, T>(false, false, n, n, n, 1.0f, a.get(), n, b.get(), n, 0.0f, c.get(), n, nullptr,
                  stream.get(), GemmEpilogue::dgelu, aux.get(), ld_aux);
  DPT_CHECK_CUDA(cudaStreamSynchronize(stream.get()));
  return gemm.epilogue_counts();
}

TEST(GemmCuda, Bf16GeluEpiloguesRunFusedWhereTheAuxRulesAllow) {
  const GemmEpilogueCounts bf16_counts = run_mlp_epilogues<bf16>(64);
  EXPECT_EQ(bf16_counts.fused, 3);
  EXPECT_EQ(bf16_counts.unfused, 0);
  const GemmEpilogueCounts odd_ld = run_mlp_epilogues<bf16>(65);
  EXPECT_EQ(odd_ld.fused, 0);
  EXPECT_EQ(odd_ld.unfused, 3);
  const GemmEpilogueCounts fp32_counts = run_mlp_epilogues<float>(64);
  EXPECT_EQ(fp32_counts.fused + fp32_counts.unfused, 3);
  std::printf("fp32 GELU epilogues: %lld of 3 fused by cuBLASLt\n", fp32_counts.fused);
  testing::Test::RecordProperty("fp32_fused_epilogues", std::to_string(fp32_counts.fused));
}

// The unfused path gives the values of the separate kernels it stands for: the plain product,
// then gelu_forward_cuda / gelu_backward_cuda (GradInput::write) of gelu.cu, whose formula
// gemm.cu repeats. Compared by value (-0 and +0 are one value); any other difference means the
// two copies of the formula have drifted apart.
template <typename T>
void check_unfused_matches_separate_kernels(uint64_t seed) {
  GemmCuda gemm;
  gemm.set_fused_epilogues(false);
  CudaStreamHandle stream;
  const int M = 67, N = 96, K = 97;
  const size_t mn = size_t(M) * N;
  const float alpha = 0.1f;
  DeviceBuffer<T> a = to_device<T>(random_vector(size_t(M) * K, seed, 1));
  DeviceBuffer<T> b = to_device<T>(random_vector(size_t(N) * K, seed, 2));
  DeviceBuffer<T> bias = to_device<T>(random_vector(N, seed, 3));
  DeviceBuffer<T> pre = to_device<T>(random_vector(mn, seed, 4, 1.5));
  DeviceBuffer<T> fused_c = poisoned_device<T>(mn), fused_aux = poisoned_device<T>(mn);
  DeviceBuffer<T> sep_c = poisoned_device<T>(mn), sep_aux = poisoned_device<T>(mn);
  DeviceBuffer<T> fused_d = poisoned_device<T>(mn), sep_product = poisoned_device<T>(mn),
                  sep_d = poisoned_device<T>(mn);
  sync_uploads();
  cudaStream_t st = stream.get();
  gemm.gemm<T, T>(false, true, M, N, K, alpha, a.get(), K, b.get(), K, 0.0f, fused_c.get(), N,
                  bias.get(), st, GemmEpilogue::gelu_aux, fused_aux.get(), N);
  gemm.gemm<T, T>(false, true, M, N, K, alpha, a.get(), K, b.get(), K, 0.0f, sep_aux.get(), N,
                  bias.get(), st);
  gelu_forward_cuda<T>(sep_c.get(), sep_aux.get(), mn, st);
  gemm.gemm<T, T>(false, true, M, N, K, alpha, a.get(), K, b.get(), K, 0.0f, fused_d.get(), N,
                  nullptr, st, GemmEpilogue::dgelu, pre.get(), N);
  gemm.gemm<T, T>(false, true, M, N, K, alpha, a.get(), K, b.get(), K, 0.0f, sep_product.get(), N,
                  nullptr, st);
  gelu_backward_cuda<T>(sep_d.get(), pre.get(), sep_product.get(), mn, st, GradInput::write);
  const auto differing = [](const std::vector<double>& x, const std::vector<double>& y) {
    size_t n = 0;
    for (size_t i = 0; i < x.size(); ++i)
      n += !(x[i] == y[i]);  // NaN differs from everything
    return n;
  };
  EXPECT_EQ(differing(from_device(fused_aux), from_device(sep_aux)), 0u) << "gelu_aux: aux";
  EXPECT_EQ(differing(from_device(fused_c), from_device(sep_c)), 0u) << "gelu_aux: C";
  EXPECT_EQ(differing(from_device(fused_d), from_device(sep_d)), 0u) << "dgelu: C";
  EXPECT_EQ(gemm.epilogue_counts().fused, 0);
}

TEST(GemmCuda, UnfusedEpiloguesMatchSeparateGeluKernelsExactly) {
  check_unfused_matches_separate_kernels<float>(1400);
  check_unfused_matches_separate_kernels<bf16>(1401);
}

TEST(GemmCuda, RejectsEpiloguePreconditions) {
  GemmCuda gemm;
  DeviceBuffer<float> buf(64), aux(64);
  expect_runtime_failure_mentioning(
      [&] {
        gemm.gemm<float, float>(false, false, 4, 4, 4, 1.0f, buf.get(), 4, buf.get(), 4, 1.0f,
                                buf.get(), 4, nullptr, nullptr, GemmEpilogue::gelu_aux, aux.get(),
                                8);
      },
      {"gelu_aux", "beta must be 0"});
  expect_runtime_failure_mentioning(
      [&] {
        gemm.gemm<float, float>(false, false, 4, 4, 4, 1.0f, buf.get(), 4, buf.get(), 4, 0.0f,
                                buf.get(), 4, buf.get(), nullptr, GemmEpilogue::dgelu, aux.get(),
                                8);
      },
      {"dgelu", "takes no bias"});
  expect_runtime_failure_mentioning(
      [&] {
        gemm.gemm<float, float>(false, false, 4, 4, 4, 1.0f, buf.get(), 4, buf.get(), 4, 0.0f,
                                buf.get(), 4, nullptr, nullptr, GemmEpilogue::dgelu, aux.get(), 3);
      },
      {"ld_aux=3", "shorter than a row"});
  expect_runtime_failure_mentioning(
      [&] {
        gemm.gemm<float, float>(false, false, 4, 4, 4, 1.0f, buf.get(), 4, buf.get(), 4, 0.0f,
                                buf.get(), 4, nullptr, nullptr, GemmEpilogue::gelu_aux, buf.get(),
                                4);
      },
      {"gelu_aux", "must not be the result"});
}

}  // namespace
}  // namespace dpt::kernels::test
