// Move-only owners of device memory, streams and events for CUDA-built code (.cu files and the
// CUDA replica). Allocation happens at construction only ([Allocate once]); the destructors
// never throw (a failing cudaFree is reported and ignored).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdio>
#include <utility>

#include "kernels/cuda_check.h"

namespace dpt::kernels {

// Where a CudaBuffer's memory lives: device memory, or page-locked host memory (cudaMallocHost)
// so that copies to and from the device run asynchronously and at full link speed.
struct DeviceMemory {
  static cudaError_t allocate(void** p, size_t bytes) { return cudaMalloc(p, bytes); }
  static cudaError_t release(void* p) { return cudaFree(p); }
};
struct PinnedHostMemory {
  static cudaError_t allocate(void** p, size_t bytes) { return cudaMallocHost(p, bytes); }
  static cudaError_t release(void* p) { return cudaFreeHost(p); }
};

template <typename T, typename Memory>
class CudaBuffer {
 public:
  CudaBuffer() = default;
  explicit CudaBuffer(size_t n) : n_(n) {
    if (n > 0) DPT_CHECK_CUDA(Memory::allocate(reinterpret_cast<void**>(&p_), n * sizeof(T)));
  }
  ~CudaBuffer() { release(); }
  CudaBuffer(const CudaBuffer&) = delete;
  CudaBuffer& operator=(const CudaBuffer&) = delete;
  CudaBuffer(CudaBuffer&& o) noexcept
      : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)) {}
  CudaBuffer& operator=(CudaBuffer&& o) noexcept {
    if (this != &o) {
      release();
      p_ = std::exchange(o.p_, nullptr);
      n_ = std::exchange(o.n_, 0);
    }
    return *this;
  }

  T* get() const { return p_; }
  size_t size() const { return n_; }
  size_t bytes() const { return n_ * sizeof(T); }

 private:
  void release() noexcept {
    if (p_ && Memory::release(p_) != cudaSuccess)
      std::fprintf(stderr, "warning: freeing CUDA memory failed\n");
    p_ = nullptr;
  }
  T* p_ = nullptr;
  size_t n_ = 0;
};

template <typename T>
using DeviceBuffer = CudaBuffer<T, DeviceMemory>;
template <typename T>
using PinnedBuffer = CudaBuffer<T, PinnedHostMemory>;

// [Host copies] cudaMemcpy from pageable host memory returns once the bytes are staged, before
// they reach the device, and cudaMemset returns at once; both run on the legacy default stream,
// which does not order the non-blocking streams this project computes and communicates on. So
// a copy that feeds later work goes on the stream that consumes it (nullptr: the legacy
// stream), and has finished when these return. Not for the step loop, which must not wait.
template <typename T>
void copy_to_device(T* dst, const T* src, size_t n, cudaStream_t stream) {
  if (n == 0) return;
  DPT_CHECK_CUDA(cudaMemcpyAsync(dst, src, n * sizeof(T), cudaMemcpyHostToDevice, stream));
  DPT_CHECK_CUDA(cudaStreamSynchronize(stream));
}
template <typename T>
void copy_to_host(T* dst, const T* src, size_t n, cudaStream_t stream) {
  if (n == 0) return;
  DPT_CHECK_CUDA(cudaMemcpyAsync(dst, src, n * sizeof(T), cudaMemcpyDeviceToHost, stream));
  DPT_CHECK_CUDA(cudaStreamSynchronize(stream));
}
inline void fill_device_bytes(void* dst, int byte, size_t bytes, cudaStream_t stream) {
  if (bytes == 0) return;
  DPT_CHECK_CUDA(cudaMemsetAsync(dst, byte, bytes, stream));
  DPT_CHECK_CUDA(cudaStreamSynchronize(stream));
}

class CudaStreamHandle {
 public:
  CudaStreamHandle() { DPT_CHECK_CUDA(cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking)); }
  ~CudaStreamHandle() {
    if (s_) cudaStreamDestroy(s_);
  }
  CudaStreamHandle(const CudaStreamHandle&) = delete;
  CudaStreamHandle& operator=(const CudaStreamHandle&) = delete;
  cudaStream_t get() const { return s_; }

 private:
  cudaStream_t s_ = nullptr;
};

class CudaEventHandle {
 public:
  explicit CudaEventHandle(unsigned flags = cudaEventDisableTiming) {
    DPT_CHECK_CUDA(cudaEventCreateWithFlags(&e_, flags));
  }
  ~CudaEventHandle() {
    if (e_) cudaEventDestroy(e_);
  }
  CudaEventHandle(const CudaEventHandle&) = delete;
  CudaEventHandle& operator=(const CudaEventHandle&) = delete;
  cudaEvent_t get() const { return e_; }

 private:
  cudaEvent_t e_ = nullptr;
};

}  // namespace dpt::kernels
