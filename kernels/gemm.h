// Row-major general matrix product on the CPU through BLAS (sgemm / dgemm).
#pragma once

namespace dpt::kernels {

// C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C, all row-major with leading dimensions
// lda, ldb, ldc (elements between consecutive rows). op(X) = X^T when trans_x is true.
template <typename T>
void gemm_cpu(bool trans_a, bool trans_b, int M, int N, int K, T alpha, const T* A, int lda,
              const T* B, int ldb, T beta, T* C, int ldc);

}  // namespace dpt::kernels
