// Linear layer on the GPU (torch.nn.Linear layout): the three products through GemmCuda, the bias
// gradient a deterministic two-pass column sum of our own.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <string>

#include "common/errors.h"
#include "kernels/cuda_check.h"
#include "kernels/cuda_common.cuh"
#include "kernels/linear.h"

namespace dpt::kernels {
namespace {

using bf16 = __nv_bfloat16;

// [Bias gradient on the GPU]
// dbias[j] += sum_n dout[n, j] in two passes with a partition that depends on N only:
//   1. the N rows are cut into bias_slices(N) slices of rows_per_slice(N) rows; one block per
//      (slice, 32 columns) sums its slice, each of kRowLanes thread rows taking every
//      kRowLanes-th row in order, then thread row 0 adds the kRowLanes partial sums in order
//      and writes partial[slice, j] (scratch);
//   2. one thread per column adds partial[0..slices-1, j] in order and adds the total to dbias.
// Every sum has a fixed order, so two runs give the same bits, whatever the scheduling.
constexpr int kColumns = 32;          // columns per block: one warp reads 32 adjacent values
constexpr int kRowLanes = 8;          // thread rows per block
constexpr int kMinRowsPerSlice = 64;  // below this a slice is not worth a block
constexpr int kMaxSlices = 64;        // caps the scratch at kMaxSlices * OC floats
constexpr int kBlockThreads = kColumns * kRowLanes;

int bias_slices(int N) {
  return std::min(kMaxSlices, (N + kMinRowsPerSlice - 1) / kMinRowsPerSlice);
}
int rows_per_slice(int N, int slices) {
  return (N + slices - 1) / slices;
}

using namespace cuda_detail;

template <typename T>
__global__ void __launch_bounds__(kBlockThreads)
    bias_partial_kernel(float* partial, const T* dout, int N, int OC, int ld, int rows_per_slice) {
  __shared__ float lane_sums[kRowLanes][kColumns];
  const int j = blockIdx.x * kColumns + threadIdx.x;
  const int slice = blockIdx.y;
  const int row0 = slice * rows_per_slice;
  const int row1 = min(N, row0 + rows_per_slice);
  float acc = 0.0f;
  if (j < OC) {
    for (int n = row0 + threadIdx.y; n < row1; n += kRowLanes)
      acc += to_f(dout[static_cast<size_t>(n) * ld + j]);
  }
  lane_sums[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && j < OC) {
    float s = 0.0f;
    for (int r = 0; r < kRowLanes; ++r)
      s += lane_sums[r][threadIdx.x];
    partial[static_cast<size_t>(slice) * OC + j] = s;
  }
}

__global__ void bias_reduce_kernel(float* dbias, const float* partial, int slices, int OC) {
  const int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= OC) return;
  float s = 0.0f;
  for (int k = 0; k < slices; ++k)
    s += partial[static_cast<size_t>(k) * OC + j];
  dbias[j] += s;
}

// The leading dimension of out / dout: OC when 0, else at least OC.
int check_sizes(int N, int C, int OC, int ld_out) {
  DPT_CHECK(N >= 0 && C > 0 && OC > 0, "linear: bad sizes N=" + std::to_string(N) +
                                           " C=" + std::to_string(C) + " OC=" + std::to_string(OC));
  const int ld = ld_out == 0 ? OC : ld_out;
  DPT_CHECK(ld >= OC, "linear: ld_out " + std::to_string(ld) + " < OC " + std::to_string(OC));
  return ld;
}

}  // namespace

template <typename T>
void linear_forward_cuda(T* out, const T* inp, const T* weight, const T* bias, int N, int C, int OC,
                         GemmCuda& gemm, CudaStream stream, int ld_out) {
  const int ld = check_sizes(N, C, OC, ld_out);
  // out = inp weight^T (+ bias through the epilogue); beta = 0 overwrites out.
  gemm.gemm<T, T>(false, true, N, OC, C, 1.0f, inp, C, weight, C, 0.0f, out, ld, bias, stream);
}

size_t linear_backward_scratch_floats(int N, int OC) {
  if (N <= 0 || OC <= 0) return 0;
  return static_cast<size_t>(bias_slices(N)) * OC;
}

template <typename T>
void linear_backward_cuda(T* dinp, float* dweight, float* dbias, const T* dout, const T* inp,
                          const T* weight, float* scratch, int N, int C, int OC, GemmCuda& gemm,
                          CudaStream stream, GradInput dinp_mode, int ld_out) {
  const int ld = check_sizes(N, C, OC, ld_out);
  DPT_CHECK(dbias == nullptr || scratch != nullptr,
            "linear backward: the bias gradient needs linear_backward_scratch_floats(N, OC) floats "
            "of scratch");
  if (N == 0) return;  // no rows: every gradient gets + 0
  // beta = 1: backward adds into the gradients ([Kernel contract]); beta = 0 writes dinp
  // without reading it ([Gradient write]).
  if (dinp != nullptr) {
    const float beta = dinp_mode == GradInput::add ? 1.0f : 0.0f;
    gemm.gemm<T, T>(false, false, N, C, OC, 1.0f, dout, ld, weight, C, beta, dinp, C, nullptr,
                    stream);
  }
  // bf16 operands accumulate straight into the fp32 weight gradient.
  gemm.gemm<T, float>(true, false, OC, C, N, 1.0f, dout, ld, inp, C, 1.0f, dweight, C, nullptr,
                      stream);
  if (dbias == nullptr) return;

  const int slices = bias_slices(N);
  const dim3 block(kColumns, kRowLanes);
  const dim3 grid((OC + kColumns - 1) / kColumns, slices);
  bias_partial_kernel<T>
      <<<grid, block, 0, stream>>>(scratch, dout, N, OC, ld, rows_per_slice(N, slices));
  DPT_CHECK_LAUNCH(stream);
  constexpr int kThreads = 256;
  bias_reduce_kernel<<<(OC + kThreads - 1) / kThreads, kThreads, 0, stream>>>(dbias, scratch,
                                                                              slices, OC);
  DPT_CHECK_LAUNCH(stream);
}

template <typename T>
void linear_gelu_forward_cuda(T* out_gelu, T* out_pre, const T* inp, const T* weight, const T* bias,
                              int N, int C, int OC, GemmCuda& gemm, CudaStream stream) {
  check_sizes(N, C, OC, 0);
  // out_pre = inp weight^T + bias, out_gelu = gelu(out_pre): one product, GELU in the epilogue
  // ([GELU epilogues]).
  gemm.gemm<T, T>(false, true, N, OC, C, 1.0f, inp, C, weight, C, 0.0f, out_gelu, OC, bias, stream,
                  GemmEpilogue::gelu_aux, out_pre, OC);
}

template <typename T>
void linear_dgelu_backward_cuda(T* dpre, float* dweight, float* dbias, const T* dout, const T* inp,
                                const T* pre, const T* weight, float* scratch, int N, int C, int OC,
                                GemmCuda& gemm, CudaStream stream) {
  check_sizes(N, C, OC, 0);
  DPT_CHECK(dpre != nullptr && pre != nullptr, "linear dgelu backward: dpre and pre are required");
  // dweight and dbias as linear_backward_cuda's, which also checks the scratch before anything
  // is launched (no dinp: written below).
  linear_backward_cuda<T>(nullptr, dweight, dbias, dout, inp, weight, scratch, N, C, OC, gemm,
                          stream);
  // dpre = (dout weight) * gelu'(pre), written: one product, the GELU derivative in the epilogue.
  // The epilogue only reads its aux matrix (pre); GemmCuda takes one pointer for both directions.
  gemm.gemm<T, T>(false, false, N, C, OC, 1.0f, dout, OC, weight, C, 0.0f, dpre, C, nullptr, stream,
                  GemmEpilogue::dgelu, const_cast<T*>(pre), C);
}

template void linear_forward_cuda<float>(float*, const float*, const float*, const float*, int, int,
                                         int, GemmCuda&, CudaStream, int);
template void linear_forward_cuda<bf16>(bf16*, const bf16*, const bf16*, const bf16*, int, int, int,
                                        GemmCuda&, CudaStream, int);
template void linear_backward_cuda<float>(float*, float*, float*, const float*, const float*,
                                          const float*, float*, int, int, int, GemmCuda&,
                                          CudaStream, GradInput, int);
template void linear_backward_cuda<bf16>(bf16*, float*, float*, const bf16*, const bf16*,
                                         const bf16*, float*, int, int, int, GemmCuda&, CudaStream,
                                         GradInput, int);

template void linear_gelu_forward_cuda<float>(float*, float*, const float*, const float*,
                                              const float*, int, int, int, GemmCuda&, CudaStream);
template void linear_gelu_forward_cuda<bf16>(bf16*, bf16*, const bf16*, const bf16*, const bf16*,
                                             int, int, int, GemmCuda&, CudaStream);
template void linear_dgelu_backward_cuda<float>(float*, float*, float*, const float*, const float*,
                                                const float*, const float*, float*, int, int, int,
                                                GemmCuda&, CudaStream);
template void linear_dgelu_backward_cuda<bf16>(bf16*, float*, float*, const bf16*, const bf16*,
                                               const bf16*, const bf16*, float*, int, int, int,
                                               GemmCuda&, CudaStream);

}  // namespace dpt::kernels
