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

// [GEMM epilogues] What a product applies to its result before storing it, beside the bias. aux
// is an M x N row-major matrix of the result's type with leading dimension ld_aux (elements
// between rows, at least N); it must not overlap C.
//   none:     C = alpha op(A) op(B) + beta C (+ bias); aux unused.
//   gelu_aux: aux = alpha op(A) op(B) (+ bias), the pre-activation, and C = gelu(aux)
//             (CUBLASLT_EPILOGUE_GELU_AUX_BIAS, or GELU_AUX without a bias).
//   dgelu:    C = (alpha op(A) op(B)) * gelu'(aux), aux only read (CUBLASLT_EPILOGUE_DGELU).
// gelu is the tanh approximation of kernels/gelu.h. gelu_aux and dgelu need beta = 0 (C is
// written, not read), TC = T, and dgelu takes no bias. They run fused, in one cuBLASLt product,
// where ld_aux is a multiple of 8 (cuBLASLt's rule), aux is 16-byte aligned (our precaution) and
// cuBLASLt offers an algorithm. Otherwise (the heuristic answers NOT_SUPPORTED or nothing,
// cublasLtMatmul refuses, or set_fused_epilogues(false)) they run unfused: the plain product,
// then a GELU kernel of gemm.cu with gelu.cu's formula, which gives the separate kernels' values.
// The two paths agree within rounding: the unfused one rounds the product to T before GELU, as
// the separate kernels always did; the fused one applies GELU to the fp32 sum.
enum class GemmEpilogue { none, gelu_aux, dgelu };

// How many epilogue products (gelu_aux, dgelu) of one GemmCuda ran fused in cuBLASLt and how
// many unfused, since it was made.
struct GemmEpilogueCounts {
  long long fused = 0;
  long long unfused = 0;
};

class GemmCuda {
 public:
  explicit GemmCuda(size_t workspace_bytes = size_t(32) << 20);
  ~GemmCuda();
  GemmCuda(const GemmCuda&) = delete;
  GemmCuda& operator=(const GemmCuda&) = delete;

  // C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C (+ bias), row-major, leading dims
  // lda, ldb, ldc in elements; with an epilogue, as [GEMM epilogues] says.
  template <typename T, typename TC>
  void gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const T* A, int lda,
            const T* B, int ldb, float beta, TC* C, int ldc, const TC* bias, CudaStream stream,
            GemmEpilogue epilogue = GemmEpilogue::none, TC* aux = nullptr, int ld_aux = 0);

  // batch independent products; operand i starts stride_x elements after operand i-1.
  template <typename T>
  void gemm_batched(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const T* A,
                    int lda, long long stride_a, const T* B, int ldb, long long stride_b,
                    float beta, T* C, int ldc, long long stride_c, int batch, CudaStream stream);

  // false sends every later epilogue product down the unfused path (tests compare the two
  // paths; a first run on a new machine can rule the fused one out). true by default.
  void set_fused_epilogues(bool enabled);
  GemmEpilogueCounts epilogue_counts() const;

 private:
  struct Impl;
  Impl* impl_;
};

}  // namespace dpt::kernels
