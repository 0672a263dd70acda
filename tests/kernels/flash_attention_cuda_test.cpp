// flash_attention_forward_cuda / flash_attention_backward_cuda ([Fused attention]) against the
// unfused CUDA path and the CPU reference in double on inputs rounded to the dtype: sequences
// that are not a multiple of the tiles, head sizes 32, 64 and 128, every [Attention mask], the
// ADD contract of the backward, a sequence of 1024, the same bits in two runs of either pass,
// and the usage error for other head sizes.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <type_traits>
#include <vector>

#include "common/errors.h"
#include "kernels/attention.h"
#include "kernels/flash_attention.h"
#include "tests/kernels/cuda_test_util.h"

namespace dpt::kernels::test {
namespace {

struct Shape {
  int B, T, C, NH;
};

// T of 1, 13, 65, 100 and 200: below, just past and across the kernels' 32- and 64-row tiles;
// head sizes 32, 64 and 128; one head and several; B from 1 to 3.
const Shape kShapes[] = {{1, 1, 32, 1},  {2, 13, 64, 1},   {3, 65, 128, 1}, {1, 100, 64, 2},
                         {3, 13, 96, 3}, {2, 100, 384, 3}, {2, 65, 128, 2}, {1, 200, 64, 1}};

std::string describe(const Shape& s) {
  return "B=" + std::to_string(s.B) + " T=" + std::to_string(s.T) + " C=" + std::to_string(s.C) +
         " NH=" + std::to_string(s.NH);
}

size_t qkv_elems(const Shape& s) {
  return size_t(s.B) * s.T * 3 * s.C;
}
size_t btc_elems(const Shape& s) {
  return size_t(s.B) * s.T * s.C;
}
size_t lse_elems(const Shape& s) {
  return size_t(s.B) * s.NH * s.T;
}
size_t att_elems(const Shape& s) {
  return size_t(s.B) * s.NH * s.T * s.T;
}

// See gemm_cuda_test.cpp: pageable uploads may still be in flight on a non-blocking stream.
void sync_uploads() {
  DPT_CHECK_CUDA(cudaDeviceSynchronize());
}

// The mask's lengths 1 + (T - 1)(b + 1) / (B + 1): every sequence padded (except T = 1), the
// lengths inside tiles rather than on their edges (DeviceMask, cuda_test_util.h).
struct Masks : DeviceMask {
  Masks(const Shape& s, bool causal, bool with_lengths)
      : DeviceMask(lengths(s), causal, with_lengths) {}
  static std::vector<int32_t> lengths(const Shape& s) {
    std::vector<int32_t> lens;
    for (int b = 0; b < s.B; ++b)
      lens.push_back(1 + (s.T - 1) * (b + 1) / (s.B + 1));
    return lens;
  }
};

struct Inputs {
  std::vector<double> qkv, dout, dqkv0;
};
Inputs random_inputs(const Shape& s, uint64_t seed) {
  // dqkv0: what the caller's dqkv already holds (finite, not zero: the backward ADDS).
  return {random_vector(qkv_elems(s), seed, 1), random_vector(btc_elems(s), seed, 2),
          random_vector(qkv_elems(s), seed, 3, 0.5)};
}

// out, lse (fused and reference only) and, with the backward, dqkv.
struct Results {
  std::vector<double> out, lse, dqkv;
};

// The CPU reference in double on the inputs rounded to T ([Tiled attention], itself checked
// against the plain attention); dqkv starts from dqkv0 rounded to T.
template <typename T>
Results reference(const Shape& s, const Masks& m, const Inputs& in, bool backward) {
  const std::vector<double> qkv = rounded_to<T>(in.qkv);
  Results r{std::vector<double>(btc_elems(s)), std::vector<double>(lse_elems(s)), {}};
  flash_attention_forward_cpu<double>(r.out.data(), r.lse.data(), qkv.data(), s.B, s.T, s.C, s.NH,
                                      m.cpu);
  if (backward) {
    const std::vector<double> dout = rounded_to<T>(in.dout);
    r.dqkv = rounded_to<T>(in.dqkv0);
    flash_attention_backward_cpu<double>(r.dqkv.data(), dout.data(), qkv.data(), r.out.data(),
                                         r.lse.data(), s.B, s.T, s.C, s.NH, m.cpu);
  }
  return r;
}

// The fused path: the backward from the forward's own out and lse. Written outputs and the
// scratch are poisoned with NaN (the backward writes its scratch before reading it); dqkv holds
// dqkv0.
template <typename T>
Results fused(cudaStream_t stream, const Shape& s, const Masks& m, const Inputs& in,
              bool backward) {
  DeviceBuffer<T> qkv = to_device<T>(in.qkv), dout = to_device<T>(in.dout);
  DeviceBuffer<T> out = poisoned_device<T>(btc_elems(s)), dqkv = to_device<T>(in.dqkv0);
  DeviceBuffer<float> lse = poisoned_device<float>(lse_elems(s));
  DeviceBuffer<float> scratch =
      poisoned_device<float>(flash_attention_cuda_scratch_floats(s.B, s.T, s.C, s.NH));
  sync_uploads();
  flash_attention_forward_cuda<T>(out.get(), lse.get(), qkv.get(), s.B, s.T, s.C, s.NH, stream,
                                  m.gpu);
  if (backward) {
    flash_attention_backward_cuda<T>(dqkv.get(), scratch.get(), dout.get(), qkv.get(), out.get(),
                                     lse.get(), s.B, s.T, s.C, s.NH, stream, m.gpu);
  }
  return {from_device(out), from_device(lse), backward ? from_device(dqkv) : std::vector<double>{}};
}

// The unfused path (attention.h) on the same inputs; it has no lse.
template <typename T>
Results unfused(GemmCuda& gemm, cudaStream_t stream, const Shape& s, const Masks& m,
                const Inputs& in, bool backward) {
  DeviceBuffer<T> qkv = to_device<T>(in.qkv), dout = to_device<T>(in.dout);
  DeviceBuffer<T> out = poisoned_device<T>(btc_elems(s)), att = poisoned_device<T>(att_elems(s));
  DeviceBuffer<T> dqkv = to_device<T>(in.dqkv0);
  DeviceBuffer<T> scratch = poisoned_device<T>(attention_cuda_scratch_elems(s.B, s.T, s.C, s.NH));
  sync_uploads();
  attention_forward_cuda<T>(out.get(), att.get(), qkv.get(), scratch.get(), s.B, s.T, s.C, s.NH,
                            gemm, stream, m.gpu);
  if (backward) {
    attention_backward_cuda<T>(dqkv.get(), scratch.get(), dout.get(), qkv.get(), att.get(), s.B,
                               s.T, s.C, s.NH, gemm, stream, m.gpu);
  }
  return {from_device(out), {}, backward ? from_device(dqkv) : std::vector<double>{}};
}

// The fused results against the reference within the dtype's tolerance, and against the unfused
// path within twice it (each is within the tolerance of the truth). lse is held to fp32's bound
// in both dtypes: the scores come from the T inputs with exact products and fp32 sums (tensor
// cores for bf16), and the softmax statistics are fp32. A CPU emulation of the kernels (the
// .cu's code, wmma emulated) over these shapes gave at most 4e-7 (norm) for lse in both dtypes
// and for out and dqkv in fp32, 2.2e-3 for out and dqkv in bf16.
template <typename T>
void check_case(GemmCuda& gemm, cudaStream_t stream, const Shape& s, const Masks& m, uint64_t seed,
                bool backward) {
  const std::string what = std::string(std::is_same_v<T, bf16> ? "bf16 " : "fp32 ") + describe(s) +
                           m.name + " (seed " + std::to_string(seed) + ")";
  const Inputs in = random_inputs(s, seed);
  const Results want = reference<T>(s, m, in, backward);
  const Results got = fused<T>(stream, s, m, in, backward);
  const Results peer = unfused<T>(gemm, stream, s, m, in, backward);
  expect_close(got.out, want.out, tolerance<T>(), what + " out");
  expect_close(got.lse, want.lse, tolerance<float>(), what + " lse");
  expect_close(got.out, peer.out, 2 * tolerance<T>(), what + " out against unfused");
  if (backward) {
    expect_close(got.dqkv, want.dqkv, tolerance<T>(), what + " dqkv");
    expect_close(got.dqkv, peer.dqkv, 2 * tolerance<T>(), what + " dqkv against unfused");
  }
}

// Every shape with the four masks: causal, causal with padding, bidirectional (with and
// without padding).
template <typename T>
void check_all(uint64_t seed, bool backward) {
  GemmCuda gemm;
  CudaStreamHandle stream;
  for (const Shape& s : kShapes) {
    for (const bool causal : {true, false}) {
      for (const bool lengths : {false, true}) {
        const Masks m(s, causal, lengths);
        check_case<T>(gemm, stream.get(), s, m, seed++, backward);
        if (testing::Test::HasFatalFailure()) return;
      }
    }
  }
}

TEST(FlashAttentionCuda, ForwardMatchesUnfusedAndCpuReferenceOnOddShapesInFp32AndBf16) {
  check_all<float>(100, false);
  check_all<bf16>(200, false);
}

TEST(FlashAttentionCuda, BackwardAddsGradientsMatchingUnfusedAndCpuReferenceInFp32AndBf16) {
  check_all<float>(300, true);
  check_all<bf16>(400, true);
}

// GPT-2's sequence length in bf16: 16 query tiles and 16 key tiles per head, the causal skip
// over many tiles, and padding deep inside the sequence.
TEST(FlashAttentionCuda, Bf16SequenceOf1024MatchesUnfusedAndCpuReference) {
  GemmCuda gemm;
  CudaStreamHandle stream;
  const Shape hs64{1, 1024, 128, 2}, hs128{2, 1024, 128, 1};
  check_case<bf16>(gemm, stream.get(), hs64, Masks(hs64, true, false), 500, true);
  check_case<bf16>(gemm, stream.get(), hs128, Masks(hs128, false, true), 501, true);
  check_case<bf16>(gemm, stream.get(), hs128, Masks(hs128, true, true), 502, true);
}

// [Fused attention] has no atomics: two runs give the same bits, in out, lse and all of dqkv
// (the q channels, summed by the dQ kernel, and the k, v channels). T = 129 and 200: a partial
// last tile, several tiles of 32 and of 64 rows; head sizes 64 and 128; lengths inside tiles.
const Shape kRepeatShapes[] = {{3, 129, 192, 3}, {2, 200, 256, 2}};

template <typename T>
void check_forward_repeatable(uint64_t seed) {
  CudaStreamHandle stream;
  for (const Shape& s : kRepeatShapes) {
    const Masks m(s, true, true);
    DeviceBuffer<T> qkv = to_device<T>(random_vector(qkv_elems(s), seed++, 1));
    std::vector<T> outs[2];
    std::vector<float> lses[2];
    for (int run = 0; run < 2; ++run) {
      DeviceBuffer<T> out = poisoned_device<T>(btc_elems(s));
      DeviceBuffer<float> lse = poisoned_device<float>(lse_elems(s));
      sync_uploads();
      flash_attention_forward_cuda<T>(out.get(), lse.get(), qkv.get(), s.B, s.T, s.C, s.NH,
                                      stream.get(), m.gpu);
      outs[run] = host_copy(out);
      lses[run] = host_copy(lse);
    }
    const std::string what = describe(s) + m.name;
    EXPECT_EQ(std::memcmp(outs[0].data(), outs[1].data(), outs[0].size() * sizeof(T)), 0)
        << what << " out";
    EXPECT_EQ(std::memcmp(lses[0].data(), lses[1].data(), lses[0].size() * sizeof(float)), 0)
        << what << " lse";
  }
}

TEST(FlashAttentionCuda, ForwardIsBitIdenticalAcrossRuns) {
  check_forward_repeatable<float>(600);
  check_forward_repeatable<bf16>(610);
}

// One forward, then two backward runs from the same dqkv0, each with freshly poisoned scratch.
template <typename T>
void check_backward_repeatable(uint64_t seed) {
  CudaStreamHandle stream;
  for (const Shape& s : kRepeatShapes) {
    for (const bool causal : {true, false}) {
      const Masks m(s, causal, true);
      const Inputs in = random_inputs(s, seed++);
      DeviceBuffer<T> qkv = to_device<T>(in.qkv), dout = to_device<T>(in.dout);
      DeviceBuffer<T> out = poisoned_device<T>(btc_elems(s));
      DeviceBuffer<float> lse = poisoned_device<float>(lse_elems(s));
      sync_uploads();
      flash_attention_forward_cuda<T>(out.get(), lse.get(), qkv.get(), s.B, s.T, s.C, s.NH,
                                      stream.get(), m.gpu);
      std::vector<T> dqkvs[2];
      for (int run = 0; run < 2; ++run) {
        DeviceBuffer<T> dqkv = to_device<T>(in.dqkv0);
        DeviceBuffer<float> scratch =
            poisoned_device<float>(flash_attention_cuda_scratch_floats(s.B, s.T, s.C, s.NH));
        sync_uploads();
        flash_attention_backward_cuda<T>(dqkv.get(), scratch.get(), dout.get(), qkv.get(),
                                         out.get(), lse.get(), s.B, s.T, s.C, s.NH, stream.get(),
                                         m.gpu);
        dqkvs[run] = host_copy(dqkv);
      }
      EXPECT_EQ(std::memcmp(dqkvs[0].data(), dqkvs[1].data(), dqkvs[0].size() * sizeof(T)), 0)
          << (std::is_same_v<T, bf16> ? "bf16 " : "fp32 ") << describe(s) << m.name << " dqkv";
    }
  }
}

TEST(FlashAttentionCuda, BackwardIsBitIdenticalAcrossRunsInFp32AndBf16) {
  check_backward_repeatable<float>(700);
  check_backward_repeatable<bf16>(710);
}

TEST(FlashAttentionCuda, ScratchHoldsOneDotPerRowAndHead) {
  EXPECT_EQ(flash_attention_cuda_scratch_floats(3, 13, 96, 3), 3u * 3 * 13);
  EXPECT_EQ(flash_attention_cuda_scratch_floats(1, 1, 128, 1), 1u);
}

// Head size 48 (C = 48, one head) and channels that do not split into the heads (C = 100,
// NH = 3): a usage error that names the supported sizes and the way out, from both passes and
// the scratch size, before anything is launched.
TEST(FlashAttentionCuda, OtherHeadSizesThrowUsageErrorNamingUnfusedAttention) {
  CudaStreamHandle stream;
  const int B = 1, T = 5;
  const int heads[][2] = {{48, 1}, {100, 3}};  // {C, NH}
  for (const auto& h : heads) {
    const int C = h[0], NH = h[1];
    DeviceBuffer<bf16> qkv(size_t(B) * T * 3 * C), out(size_t(B) * T * C), dqkv(qkv.size());
    DeviceBuffer<float> lse(size_t(B) * NH * T), scratch(lse.size());
    const std::vector<std::string> parts = {"32, 64 and 128", "--attention unfused"};
    expect_error_mentioning<UsageError>(
        [&] {
          flash_attention_forward_cuda<bf16>(out.get(), lse.get(), qkv.get(), B, T, C, NH,
                                             stream.get());
        },
        parts);
    expect_error_mentioning<UsageError>(
        [&] {
          flash_attention_backward_cuda<bf16>(dqkv.get(), scratch.get(), out.get(), qkv.get(),
                                              out.get(), lse.get(), B, T, C, NH, stream.get());
        },
        parts);
    expect_error_mentioning<UsageError>([&] { flash_attention_cuda_scratch_floats(B, T, C, NH); },
                                        parts);
  }
  EXPECT_NO_THROW(flash_attention_cuda_scratch_floats(B, T, 64, 2));  // hs = 32
}

}  // namespace
}  // namespace dpt::kernels::test
