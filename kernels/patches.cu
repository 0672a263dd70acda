// [Patches] on the GPU: one thread per patch value; forward gathers it from the image, backward
// adds its gradient back (patches do not overlap, so no two threads add into one pixel).
#include <cuda_bf16.h>

#include "kernels/cuda_check.h"
#include "kernels/cuda_common.cuh"
#include "kernels/patches.h"

namespace dpt::kernels {
namespace {

constexpr int kThreads = 256;
constexpr unsigned kMaxBlocks = 8192;

using namespace cuda_detail;

// The image index of patch value o ([Patches] order).
__device__ __forceinline__ size_t image_index(size_t o, int H, int W, int C, int P) {
  const size_t row = static_cast<size_t>(P) * C, per_patch = row * P;
  const size_t gw = W / P, gh = H / P;
  const size_t patch = o / per_patch, within = o % per_patch;
  const size_t i = within / row, jc = within % row;
  const size_t pw = patch % gw, ph = (patch / gw) % gh, b = patch / (gw * gh);
  return ((b * H + ph * P + i) * W + pw * P) * C + jc;
}

template <typename T>
__global__ void patches_forward_kernel(T* out, const T* img, size_t n, int H, int W, int C, int P) {
  const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
  for (size_t o = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; o < n; o += stride)
    out[o] = img[image_index(o, H, W, C, P)];
}

template <typename T>
__global__ void patches_backward_kernel(T* dimg, const T* dout, size_t n, int H, int W, int C,
                                        int P) {
  const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
  for (size_t o = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; o < n; o += stride) {
    const size_t i = image_index(o, H, W, C, P);
    dimg[i] = from_f<T>(to_f(dimg[i]) + to_f(dout[o]));
  }
}

}  // namespace

template <typename T>
void patches_forward_cuda(T* out, const T* img, int B, int H, int W, int C, int P,
                          CudaStream stream) {
  check_patch_shape(B, H, W, C, P);
  DPT_CHECK(out && img, "patches_forward_cuda: null pointer");
  const size_t n = static_cast<size_t>(B) * H * W * C;
  patches_forward_kernel<T><<<grid_stride_blocks(n, kThreads, kMaxBlocks), kThreads, 0, stream>>>(
      out, img, n, H, W, C, P);
  DPT_CHECK_LAUNCH(stream);
}

template <typename T>
void patches_backward_cuda(T* dimg, const T* dout, int B, int H, int W, int C, int P,
                           CudaStream stream) {
  check_patch_shape(B, H, W, C, P);
  DPT_CHECK(dimg && dout, "patches_backward_cuda: null pointer");
  const size_t n = static_cast<size_t>(B) * H * W * C;
  patches_backward_kernel<T><<<grid_stride_blocks(n, kThreads, kMaxBlocks), kThreads, 0, stream>>>(
      dimg, dout, n, H, W, C, P);
  DPT_CHECK_LAUNCH(stream);
}

template void patches_forward_cuda<float>(float*, const float*, int, int, int, int, int,
                                          CudaStream);
template void patches_forward_cuda<__nv_bfloat16>(__nv_bfloat16*, const __nv_bfloat16*, int, int,
                                                  int, int, int, CudaStream);
template void patches_backward_cuda<float>(float*, const float*, int, int, int, int, int,
                                           CudaStream);
template void patches_backward_cuda<__nv_bfloat16>(__nv_bfloat16*, const __nv_bfloat16*, int, int,
                                                   int, int, int, CudaStream);

}  // namespace dpt::kernels
