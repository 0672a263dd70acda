// bench-attention: causal self-attention on the GPU at GPT-2 small's shape (T = 1024, 12 heads of
// 64), fused ([Fused attention]) and unfused, forward and backward, against the time the same
// products take as cuBLAS batched products (the peer measured in the same run). Prints a table:
// milliseconds (median of repeats, after warm-up) and the ratio of each pass to its products.
//
// The products' time: the forward's two products (S = Q K^T and O = P V) and the backward's
// four (dV = P^T dO, dP = dO V^T, dQ = dS K, dK = dS^T Q) are each one [B*NH] batch of
// T x T x hs products; causal attention needs half of each, so the products' time of a pass is
// half the measured time of its full products. The goal: each fused pass within 2x.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "kernels/attention.h"
#include "kernels/cuda_check.h"
#include "kernels/cuda_device.h"
#include "kernels/device_buffer.h"
#include "kernels/flash_attention.h"
#include "kernels/gemm.h"

namespace k = dpt::kernels;
using bf16 = __nv_bfloat16;

namespace {

// Median milliseconds of `repeats` runs of fn on stream, after 3 warm-up runs.
double median_ms(cudaStream_t stream, int repeats, const std::function<void()>& fn) {
  cudaEvent_t start, stop;
  DPT_CHECK_CUDA(cudaEventCreate(&start));
  DPT_CHECK_CUDA(cudaEventCreate(&stop));
  std::vector<double> ms;
  for (int r = 0; r < repeats + 3; ++r) {
    DPT_CHECK_CUDA(cudaEventRecord(start, stream));
    fn();
    DPT_CHECK_CUDA(cudaEventRecord(stop, stream));
    DPT_CHECK_CUDA(cudaEventSynchronize(stop));
    float t = 0;
    DPT_CHECK_CUDA(cudaEventElapsedTime(&t, start, stop));
    if (r >= 3) ms.push_back(t);
  }
  DPT_CHECK_CUDA(cudaEventDestroy(start));
  DPT_CHECK_CUDA(cudaEventDestroy(stop));
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

template <typename T>
void fill_device(T* p, size_t n, cudaStream_t stream) {
  std::vector<T> h(n);
  for (size_t i = 0; i < n; ++i)
    h[i] = static_cast<T>(static_cast<float>((i * 37) % 101) / 101.0f - 0.5f);
  k::copy_to_device(p, h.data(), n, stream);
}

}  // namespace

int main(int argc, char** argv) {
  const int B = argc > 1 ? std::atoi(argv[1]) : 8;
  const int Tn = argc > 2 ? std::atoi(argv[2]) : 1024;
  const int NH = argc > 3 ? std::atoi(argv[3]) : 12;
  const int hs = argc > 4 ? std::atoi(argv[4]) : 64;
  const int repeats = argc > 5 ? std::atoi(argv[5]) : 20;
  if (B <= 0 || Tn <= 0 || NH <= 0 || hs <= 0 || repeats <= 0) {
    std::fprintf(stderr, "usage: bench-attention [B T NH head_size repeats], all positive\n");
    return 2;
  }
  try {
    if (k::cuda_device_count() == 0) {
      std::fprintf(stderr, "bench-attention: no CUDA device\n");
      return 2;
    }
    const int C = NH * hs;
    const size_t n_qkv = size_t(B) * Tn * 3 * C, n_out = size_t(B) * Tn * C;
    k::CudaStreamHandle stream_handle;
    cudaStream_t s = stream_handle.get();
    k::GemmCuda gemm;
    k::DeviceBuffer<bf16> qkv(n_qkv), out(n_out), dout(n_out), dqkv(n_qkv);
    k::DeviceBuffer<bf16> att(size_t(B) * NH * Tn * Tn);
    k::DeviceBuffer<bf16> scratch(k::attention_cuda_scratch_elems(B, Tn, C, NH));
    k::DeviceBuffer<float> lse(size_t(B) * NH * Tn);
    k::DeviceBuffer<float> fscratch(k::flash_attention_cuda_scratch_floats(B, Tn, C, NH));
    fill_device(qkv.get(), n_qkv, s);
    fill_device(dout.get(), n_out, s);
    DPT_CHECK_CUDA(cudaMemsetAsync(dqkv.get(), 0, n_qkv * sizeof(bf16), s));

    const double fused_fwd = median_ms(s, repeats, [&] {
      k::flash_attention_forward_cuda(out.get(), lse.get(), qkv.get(), B, Tn, C, NH, s);
    });
    const double fused_bwd = median_ms(s, repeats, [&] {
      k::flash_attention_backward_cuda(dqkv.get(), fscratch.get(), dout.get(), qkv.get(), out.get(),
                                       lse.get(), B, Tn, C, NH, s);
    });
    const double unfused_fwd = median_ms(s, repeats, [&] {
      k::attention_forward_cuda(out.get(), att.get(), qkv.get(), scratch.get(), B, Tn, C, NH, gemm,
                                s);
    });
    const double unfused_bwd = median_ms(s, repeats, [&] {
      k::attention_backward_cuda(dqkv.get(), scratch.get(), dout.get(), qkv.get(), att.get(), B, Tn,
                                 C, NH, gemm, s);
    });
    // One full T x T x hs product per head, twice (S = Q K^T, then O = P V), from [B*NH, T, hs]
    // operands in the unfused scratch: the products at cuBLAS's own rate.
    bf16* q = scratch.get();
    bf16* kk = q + size_t(B) * NH * Tn * hs;
    const long long sq = static_cast<long long>(Tn) * hs, ss = static_cast<long long>(Tn) * Tn;
    const double products2 = median_ms(s, repeats, [&] {
      gemm.gemm_batched<bf16>(false, true, Tn, Tn, hs, 1.0f, q, hs, sq, kk, hs, sq, 0.0f, att.get(),
                              Tn, ss, B * NH, s);
      gemm.gemm_batched<bf16>(false, false, Tn, hs, Tn, 1.0f, att.get(), Tn, ss, kk, hs, sq, 0.0f,
                              q, hs, sq, B * NH, s);
    });
    const double fwd_products = products2 / 2;  // causal: half of the two products
    const double bwd_products = products2;      // causal: half of four products
    const double flops_fwd = 2.0 * 2.0 * B * NH * double(Tn) * Tn * hs / 2;
    std::printf("\nbench-attention: %s, causal, B=%d T=%d NH=%d hs=%d bf16, median of %d\n",
                k::cuda_device_name(0).c_str(), B, Tn, NH, hs, repeats);
    std::printf("%-9s %10s %10s %13s %12s %14s\n", "pass", "fused ms", "unfused ms", "products ms",
                "fused/prod", "fused TFLOP/s");
    std::printf("%-9s %10.3f %10.3f %13.3f %12.2f %14.1f\n", "forward", fused_fwd, unfused_fwd,
                fwd_products, fused_fwd / fwd_products, flops_fwd / fused_fwd / 1e9);
    std::printf("%-9s %10.3f %10.3f %13.3f %12.2f %14.1f\n", "backward", fused_bwd, unfused_bwd,
                bwd_products, fused_bwd / bwd_products, 2 * flops_fwd / fused_bwd / 1e9);
    std::printf(
        "(goal: fused/prod <= 2 each way; products = cuBLAS batched bf16 at the same "
        "shape, halved for the causal mask)\n");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench-attention: %s\n", e.what());
    return 1;
  }
  return 0;
}
