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

template <typename T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t n) : n_(n) {
    if (n > 0) DPT_CHECK_CUDA(cudaMalloc(reinterpret_cast<void**>(&p_), n * sizeof(T)));
  }
  ~DeviceBuffer() { release(); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept
      : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
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
    if (p_ && cudaFree(p_) != cudaSuccess) std::fprintf(stderr, "warning: cudaFree failed\n");
    p_ = nullptr;
  }
  T* p_ = nullptr;
  size_t n_ = 0;
};

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

namespace dpt::kernels {

// Page-locked host memory (cudaMallocHost), so that copies to and from the device run
// asynchronously and at full PCIe/NVLink speed.
template <typename T>
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  explicit PinnedBuffer(size_t n) : n_(n) {
    if (n > 0) DPT_CHECK_CUDA(cudaMallocHost(reinterpret_cast<void**>(&p_), n * sizeof(T)));
  }
  ~PinnedBuffer() { release(); }
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  PinnedBuffer(PinnedBuffer&& o) noexcept
      : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)) {}
  PinnedBuffer& operator=(PinnedBuffer&& o) noexcept {
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
    if (p_ && cudaFreeHost(p_) != cudaSuccess)
      std::fprintf(stderr, "warning: cudaFreeHost failed\n");
    p_ = nullptr;
  }
  T* p_ = nullptr;
  size_t n_ = 0;
};

}  // namespace dpt::kernels
