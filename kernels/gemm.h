// Row-major general matrix product on the CPU through BLAS (sgemm / dgemm).
#pragma once

#include <cstddef>
#include "kernels/cuda_stream.h"

namespace dpt::kernels {

// C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C, all row-major with leading dimensions
// lda, ldb, ldc (elements between consecutive rows). op(X) = X^T when trans_x is true.
template <typename T>
void gemm_cpu(bool trans_a, bool trans_b, int M, int N, int K, T alpha, const T* A, int lda,
              const T* B, int ldb, T beta, T* C, int ldc);

// --- CUDA ([CUDA kernel contract], kernels/README.md) ----------------------------------------
// [GEMM on the GPU] Matrix products through cuBLASLt with the same row-major meaning as
// gemm_cpu. One GemmCuda per device holds the handle and a workspace, made at start-up; the
// product itself allocates nothing. Operand types: A and B are T (float or __nv_bfloat16);
// C/D is T or float (bf16 operands accumulating straight into fp32 weight gradients); the
// compute type is fp32 (CUBLAS_COMPUTE_32F; no TF32 for T = float, so that fp32 runs are the
// verification path). bias (nullable, type TC, length N) is added to every row of the result
// through the cuBLASLt epilogue.
class GemmCuda {
 public:
  explicit GemmCuda(size_t workspace_bytes = size_t(32) << 20);
  ~GemmCuda();
  GemmCuda(const GemmCuda&) = delete;
  GemmCuda& operator=(const GemmCuda&) = delete;

  // C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C (+ bias), row-major, leading dims
  // lda, ldb, ldc in elements.
  template <typename T, typename TC>
  void gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const T* A, int lda,
            const T* B, int ldb, float beta, TC* C, int ldc, const TC* bias, CudaStream stream);

  // batch independent products; operand i starts stride_x elements after operand i-1.
  template <typename T>
  void gemm_batched(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const T* A,
                    int lda, long long stride_a, const T* B, int ldb, long long stride_b,
                    float beta, T* C, int ldc, long long stride_c, int batch, CudaStream stream);

 private:
  struct Impl;
  Impl* impl_;
};

}  // namespace dpt::kernels
