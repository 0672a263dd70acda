// Shared helpers of the CUDA kernel tests (label gpu): device copies of host vectors in the
// kernel's dtype, rounding of reference inputs to that dtype, and the norm-relative error check
// with tolerances by dtype ([CUDA kernel contract]).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "kernels/attention.h"
#include "kernels/device_buffer.h"
#include "tests/kernels/kernel_test_util.h"

namespace dpt::kernels::test {

using bf16 = __nv_bfloat16;

template <typename T>
inline float to_float(T x) {
  if constexpr (std::is_same_v<T, bf16>)
    return __bfloat162float(x);
  else
    return static_cast<float>(x);
}
template <typename T>
inline T from_float(float x) {
  if constexpr (std::is_same_v<T, bf16>)
    return __float2bfloat16(x);  // round to nearest even
  else
    return static_cast<T>(x);
}

// v with every element rounded to T and back: the reference sees exactly the kernel's inputs.
template <typename T>
std::vector<double> rounded_to(const std::vector<double>& v) {
  std::vector<double> r(v.size());
  for (size_t i = 0; i < v.size(); ++i)
    r[i] = to_float(from_float<T>(static_cast<float>(v[i])));
  return r;
}

// A device array of T filled from doubles (converted through float).
template <typename T>
DeviceBuffer<T> to_device(const std::vector<double>& v) {
  std::vector<T> h(v.size());
  for (size_t i = 0; i < v.size(); ++i)
    h[i] = from_float<T>(static_cast<float>(v[i]));
  DeviceBuffer<T> d(v.size());
  copy_to_device(d.get(), h.data(), h.size(), nullptr);  // [Host copies]
  return d;
}
inline DeviceBuffer<int32_t> ids_to_device(const std::vector<int32_t>& v) {
  DeviceBuffer<int32_t> d(v.size());
  copy_to_device(d.get(), v.data(), v.size(), nullptr);
  return d;
}
// A device array of n elements that all read as NaN (poison for written outputs).
template <typename T>
DeviceBuffer<T> poisoned_device(size_t n) {
  return to_device<T>(std::vector<double>(n, std::nan("")));
}
// Synchronizes, checks for asynchronous errors, and copies back as doubles.
template <typename T>
std::vector<double> from_device(const DeviceBuffer<T>& d) {
  DPT_CHECK_CUDA(cudaDeviceSynchronize());
  std::vector<T> h(d.size());
  DPT_CHECK_CUDA(cudaMemcpy(h.data(), d.get(), d.bytes(), cudaMemcpyDeviceToHost));
  std::vector<double> r(h.size());
  for (size_t i = 0; i < h.size(); ++i)
    r[i] = to_float(h[i]);
  return r;
}

// Synchronizes, checks for asynchronous errors, and copies back in the device's own type (for
// bit-exact comparisons).
template <typename T>
std::vector<T> host_copy(const DeviceBuffer<T>& d) {
  DPT_CHECK_CUDA(cudaDeviceSynchronize());
  std::vector<T> h(d.size());
  DPT_CHECK_CUDA(cudaMemcpy(h.data(), d.get(), d.bytes(), cudaMemcpyDeviceToHost));
  return h;
}

// An [Attention mask] in both places: the lengths on the host for the reference, on the device
// for the kernels; with_lengths false keeps the lengths out of the mask (every sequence full).
struct DeviceMask {
  DeviceMask(std::vector<int32_t> lengths, bool causal, bool with_lengths)
      : lens(std::move(lengths)), device(ids_to_device(lens)) {
    cpu = {causal, with_lengths ? lens.data() : nullptr};
    gpu = {causal, with_lengths ? device.get() : nullptr};
    name = std::string(causal ? " causal" : " bidirectional") + (with_lengths ? " lengths" : "");
  }
  std::vector<int32_t> lens;
  DeviceBuffer<int32_t> device;
  AttentionMask cpu, gpu;
  std::string name;
};

// [Placed buffers] A device copy of v placed `offset` elements into its allocation (the
// elements before it hold 0.5): offset 1 takes every pointer a kernel gets off the 16-byte grid,
// which sends packed kernels to their scalar versions; offset 0 is a plain copy.
template <typename T>
struct Placed {
  DeviceBuffer<T> buf;
  size_t offset = 0;
  T* get() const { return buf.get() + offset; }
  std::vector<double> values() const {
    const std::vector<double> h = from_device(buf);
    return std::vector<double>(h.begin() + static_cast<std::ptrdiff_t>(offset), h.end());
  }
  std::vector<T> bits() const {  // in the device's own type, for bitwise comparisons
    const std::vector<T> h = host_copy(buf);
    return std::vector<T>(h.begin() + static_cast<std::ptrdiff_t>(offset), h.end());
  }
};
template <typename T>
Placed<T> placed(const std::vector<double>& v, size_t offset) {
  std::vector<double> padded(offset, 0.5);
  padded.insert(padded.end(), v.begin(), v.end());
  return {to_device<T>(padded), offset};
}
template <typename T>
Placed<T> placed_poison(size_t n, size_t offset) {  // NaN: an unwritten element fails
  return placed<T>(std::vector<double>(n, std::nan("")), offset);
}

// Norm-relative tolerance of a result computed in T with fp32 accumulation.
template <typename T>
constexpr double tolerance() {
  return std::is_same_v<T, bf16> ? 1e-2 : 1e-5;
}

// [Closeness] (kernel_test_util.h): norm_rel <= tol over the tensor, every element within
// kElementTolFactor * tol of its own size plus the tensor's typical size, and every element
// finite (NaN never passes).
inline void expect_close(const std::vector<double>& got, const std::vector<double>& want,
                         double tol, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  const Closeness c = closeness(got, want);
  ASSERT_EQ(c.nonfinite, 0u) << what << ": " << c.nonfinite << " non-finite elements, first at "
                             << c.first_nonfinite;
  EXPECT_LE(c.norm_rel, tol) << what << ": relative error " << c.norm_rel << " over " << got.size()
                             << " elements";
  EXPECT_LE(c.worst, kElementTolFactor * tol)
      << what << ": element " << c.worst_at << " is " << got[c.worst_at] << ", want "
      << want[c.worst_at] << " (error " << c.worst << " of its size plus the tensor's rms, bound "
      << kElementTolFactor * tol << ")";
}

}  // namespace dpt::kernels::test
