// Helpers shared by the CUDA kernel files (internal: included by .cu files only): fp32 <->
// storage-type conversion, 16-byte packs, grid sizing and the fixed-order sum reductions.
#pragma once

#include <cuda_bf16.h>

#include <cstddef>
#include <cstdint>

namespace dpt::kernels::cuda_detail {

// Storage type T (float or __nv_bfloat16) <-> the fp32 every kernel computes in.
__device__ __forceinline__ float to_f(float x) {
  return x;
}
__device__ __forceinline__ float to_f(__nv_bfloat16 x) {
  return __bfloat162float(x);
}
template <typename T>
__device__ __forceinline__ T from_f(float x);
template <>
__device__ __forceinline__ float from_f<float>(float x) {
  return x;
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float x) {
  return __float2bfloat16(x);  // round to nearest even
}

// VEC consecutive elements moved as one load or store (16 bytes when VEC = 16 / sizeof(T)); the
// address must be aligned to the pack's size.
template <typename T, int VEC>
struct alignas(sizeof(T) * VEC) Pack {
  T v[VEC];
};
template <typename T, int VEC>
__device__ __forceinline__ Pack<T, VEC> load_pack(const T* p) {
  return *reinterpret_cast<const Pack<T, VEC>*>(p);
}
template <typename T, int VEC>
__device__ __forceinline__ void store_pack(T* p, const Pack<T, VEC>& x) {
  *reinterpret_cast<Pack<T, VEC>*>(p) = x;
}

// Whether p may be read / written as 16-byte packs.
inline bool aligned16(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

// Blocks for a grid-stride loop over `work` items with `threads` per block: one item per thread
// if that fits in max_blocks blocks (the loop covers the rest), and at least one block.
inline unsigned grid_stride_blocks(size_t work, int threads, unsigned max_blocks) {
  const size_t t = static_cast<size_t>(threads);
  const size_t b = (work + t - 1) / t;
  return static_cast<unsigned>(b < 1 ? 1 : (b > max_blocks ? max_blocks : b));
}

// Butterfly sum over a full warp (offsets 16, 8, 4, 2, 1): every lane ends with the same total,
// combined in the same order in every run.
__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1)
    x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}

// Sum over the block in a fixed order: warp_sum in each warp, then warp 0 takes the warps' sums
// (zeros past the last warp) through warp_sum again. blockDim.x must be a multiple of 32 and
// every thread must call it (it holds a barrier); the result is valid in thread 0.
__device__ inline float block_sum(float x) {
  __shared__ float warp_part[32];
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  x = warp_sum(x);
  if (lane == 0) warp_part[warp] = x;
  __syncthreads();
  float total = 0.0f;
  if (warp == 0) {
    total = lane < static_cast<int>(blockDim.x / 32) ? warp_part[lane] : 0.0f;
    total = warp_sum(total);
  }
  return total;
}

}  // namespace dpt::kernels::cuda_detail
