// Row-major matrix product on the CPU: a checked front end to BLAS sgemm / dgemm, the one place
// the CPU reference does matrix products.
#include "kernels/gemm.h"

#include <cblas.h>
#include <algorithm>
#include <string>

#include "common/errors.h"

namespace dpt::kernels {
namespace {

CBLAS_TRANSPOSE blas_op(bool trans) {
  return trans ? CblasTrans : CblasNoTrans;
}

void blas_gemm(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda,
               const float* B, int ldb, float beta, float* C, int ldc) {
  cblas_sgemm(CblasRowMajor, blas_op(ta), blas_op(tb), M, N, K, alpha, A, lda, B, ldb, beta, C,
              ldc);
}

void blas_gemm(bool ta, bool tb, int M, int N, int K, double alpha, const double* A, int lda,
               const double* B, int ldb, double beta, double* C, int ldc) {
  cblas_dgemm(CblasRowMajor, blas_op(ta), blas_op(tb), M, N, K, alpha, A, lda, B, ldb, beta, C,
              ldc);
}

std::string shape_text(bool ta, bool tb, int M, int N, int K, int lda, int ldb, int ldc) {
  return "trans_a=" + std::to_string(ta) + " trans_b=" + std::to_string(tb) +
         " M=" + std::to_string(M) + " N=" + std::to_string(N) + " K=" + std::to_string(K) +
         " lda=" + std::to_string(lda) + " ldb=" + std::to_string(ldb) +
         " ldc=" + std::to_string(ldc);
}

}  // namespace

template <typename T>
void gemm_cpu(bool trans_a, bool trans_b, int M, int N, int K, T alpha, const T* A, int lda,
              const T* B, int ldb, T beta, T* C, int ldc) {
  // BLAS reports bad arguments through xerbla, which prints and carries on; checking here turns
  // them into a RuntimeFailure that names the shapes. Row-major: A is stored M x K, or K x M
  // when transposed, so its rows hold K (or M) elements.
  DPT_CHECK(M >= 0 && N >= 0 && K >= 0,
            "negative size: " + shape_text(trans_a, trans_b, M, N, K, lda, ldb, ldc));
  DPT_CHECK(lda >= std::max(1, trans_a ? M : K) && ldb >= std::max(1, trans_b ? K : N) &&
                ldc >= std::max(1, N),
            "leading dimension shorter than a row: " +
                shape_text(trans_a, trans_b, M, N, K, lda, ldb, ldc));
  if (M == 0 || N == 0) return;
  blas_gemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

template void gemm_cpu<float>(bool, bool, int, int, int, float, const float*, int, const float*,
                              int, float, float*, int);
template void gemm_cpu<double>(bool, bool, int, int, int, double, const double*, int, const double*,
                               int, double, double*, int);

}  // namespace dpt::kernels
