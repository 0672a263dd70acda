// gemm_cpu against a naive triple loop: every transpose combination, padded leading dimensions,
// alpha / beta, and float against double.
#include "kernels/gemm.h"

#include <gtest/gtest.h>

#include <limits>
#include <vector>

#include "kernel_test_util.h"

namespace dpt::kernels::test {
namespace {

struct GemmCase {
  bool ta, tb;
  int M, N, K;
  int pad;  // extra elements at the end of every row of A, B and C
};

// Stored shapes: A is M x K (K x M when transposed), B is K x N (N x K when transposed).
int rows_a(const GemmCase& c) {
  return c.ta ? c.K : c.M;
}
int cols_a(const GemmCase& c) {
  return c.ta ? c.M : c.K;
}
int rows_b(const GemmCase& c) {
  return c.tb ? c.N : c.K;
}
int cols_b(const GemmCase& c) {
  return c.tb ? c.K : c.N;
}

// C = alpha op(A) op(B) + beta C on the first N columns of each padded row.
void naive_gemm(const GemmCase& c, double alpha, const std::vector<double>& A, int lda,
                const std::vector<double>& B, int ldb, double beta, std::vector<double>& C,
                int ldc) {
  for (int i = 0; i < c.M; ++i) {
    for (int j = 0; j < c.N; ++j) {
      double s = 0.0;
      for (int k = 0; k < c.K; ++k) {
        const double a = c.ta ? A[k * lda + i] : A[i * lda + k];
        const double b = c.tb ? B[j * ldb + k] : B[k * ldb + j];
        s += a * b;
      }
      C[i * ldc + j] = alpha * s + beta * C[i * ldc + j];
    }
  }
}

const GemmCase kCases[] = {
    {false, false, 5, 7, 11, 3}, {false, true, 5, 7, 11, 2},  {true, false, 5, 7, 11, 4},
    {true, true, 5, 7, 11, 1},   {false, false, 13, 1, 5, 2}, {true, true, 1, 13, 7, 3},
};

TEST(Gemm, MatchesNaiveProductForAllTransposesAndPaddedLeadingDims) {
  uint64_t stream = 0;
  for (const GemmCase& c : kCases) {
    const int lda = cols_a(c) + c.pad, ldb = cols_b(c) + c.pad, ldc = c.N + c.pad;
    const auto A = random_vector(static_cast<size_t>(rows_a(c)) * lda, 1, stream++);
    const auto B = random_vector(static_cast<size_t>(rows_b(c)) * ldb, 1, stream++);
    const auto C0 = random_vector(static_cast<size_t>(c.M) * ldc, 1, stream++);
    const double alpha = 0.75, beta = -1.25;
    std::vector<double> want = C0;
    naive_gemm(c, alpha, A, lda, B, ldb, beta, want, ldc);
    std::vector<double> got = C0;
    gemm_cpu<double>(c.ta, c.tb, c.M, c.N, c.K, alpha, A.data(), lda, B.data(), ldb, beta,
                     got.data(), ldc);
    SCOPED_TRACE(::testing::Message() << "ta=" << c.ta << " tb=" << c.tb << " M=" << c.M
                                      << " N=" << c.N << " K=" << c.K);
    // The padding columns of C are part of `want` unchanged, so this also checks gemm leaves
    // them alone.
    expect_all_close(got, want, 1e-13, 1e-13, "gemm double");
  }
}

TEST(Gemm, BetaZeroOverwritesPoisonedOutputAndLeavesPaddingAlone) {
  // Forward kernels rely on beta = 0 ignoring the old contents (BLAS semantics), NaN included.
  const GemmCase c{false, true, 7, 5, 13, 3};
  const int lda = cols_a(c) + c.pad, ldb = cols_b(c) + c.pad, ldc = c.N + c.pad;
  const auto A = random_vector(static_cast<size_t>(rows_a(c)) * lda, 2, 0);
  const auto B = random_vector(static_cast<size_t>(rows_b(c)) * ldb, 2, 1);
  std::vector<double> want(static_cast<size_t>(c.M) * ldc, 0.0);
  naive_gemm(c, 1.0, A, lda, B, ldb, 0.0, want, ldc);
  std::vector<double> got = poisoned<double>(want.size());
  gemm_cpu<double>(c.ta, c.tb, c.M, c.N, c.K, 1.0, A.data(), lda, B.data(), ldb, 0.0, got.data(),
                   ldc);
  for (int i = 0; i < c.M; ++i) {
    for (int j = 0; j < ldc; ++j) {
      const double g = got[i * ldc + j];
      if (j < c.N) {
        EXPECT_NEAR(g, want[i * ldc + j], 1e-13) << "i=" << i << " j=" << j;
      } else {
        EXPECT_TRUE(std::isnan(g)) << "padding written at i=" << i << " j=" << j;
      }
    }
  }
}

TEST(Gemm, FloatAgreesWithDouble) {
  uint64_t stream = 100;
  for (const GemmCase& c : kCases) {
    const int lda = cols_a(c) + c.pad, ldb = cols_b(c) + c.pad, ldc = c.N + c.pad;
    const auto A = random_vector(static_cast<size_t>(rows_a(c)) * lda, 3, stream++);
    const auto B = random_vector(static_cast<size_t>(rows_b(c)) * ldb, 3, stream++);
    const auto C0 = random_vector(static_cast<size_t>(c.M) * ldc, 3, stream++);
    std::vector<double> d = C0;
    gemm_cpu<double>(c.ta, c.tb, c.M, c.N, c.K, 0.5, A.data(), lda, B.data(), ldb, 2.0, d.data(),
                     ldc);
    const auto Af = cast_to<float>(A), Bf = cast_to<float>(B);
    auto f = cast_to<float>(C0);
    gemm_cpu<float>(c.ta, c.tb, c.M, c.N, c.K, 0.5f, Af.data(), lda, Bf.data(), ldb, 2.0f, f.data(),
                    ldc);
    // Inputs are exact in float; sums of K ~ 10 products of unit normals round at ~1e-6.
    expect_all_close(to_double(f), d, 1e-5, 1e-5, "gemm float vs double");
  }
}

TEST(Gemm, RejectsLeadingDimensionShorterThanRow) {
  std::vector<double> A(20, 1.0), B(20, 1.0), C(20, 0.0);
  EXPECT_THROW(
      gemm_cpu<double>(false, false, 2, 2, 4, 1.0, A.data(), 3, B.data(), 2, 0.0, C.data(), 2),
      RuntimeFailure);
}

}  // namespace
}  // namespace dpt::kernels::test
