// layernorm_forward_cuda / layernorm_backward_cuda against the CPU reference in double (float
// and bf16, odd shapes, the 16-byte and the scalar paths), and the backward's determinism;
// residual_layernorm_forward_cuda against the CPU reference and, bit for bit, against
// residual_forward_cuda then layernorm_forward_cuda ([Residual LayerNorm]).
#include <cuda_bf16.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/layernorm.h"
#include "kernels/residual.h"
#include "tests/kernels/cuda_test_util.h"

namespace dpt::kernels::test {
namespace {

struct Shape {
  int N, C;
};
// C = 96 / 64 take the 16-byte path for both dtypes; C = 2304 gives each lane many packs;
// N = 5000 makes the dweight / dbias reduction use its largest slice count.
constexpr Shape kShapes[] = {{1, 1},   {3, 7},    {5, 13},   {11, 96}, {13, 1},
                             {67, 97}, {7, 2304}, {300, 64}, {5000, 8}};

std::string label(const char* what, const Shape& s) {
  return std::string(what) + " N=" + std::to_string(s.N) + " C=" + std::to_string(s.C);
}

// Rows offset by 3 with spread 2: a one-pass E[x^2] - E[x]^2 would lose digits here.
std::vector<double> shifted_rows(size_t n, uint64_t seed, uint64_t stream) {
  auto v = random_vector(n, seed, stream, 2.0);
  for (double& x : v)
    x += 3.0;
  return v;
}

template <typename T>
void check_forward(const Shape& s, uint64_t seed) {
  const size_t n = static_cast<size_t>(s.N) * s.C;
  const auto inp = rounded_to<T>(shifted_rows(n, seed, 0));
  const auto w = rounded_to<T>(random_vector(s.C, seed, 1));
  const auto b = rounded_to<T>(random_vector(s.C, seed, 2));
  std::vector<double> want(n), want_mean(s.N), want_rstd(s.N);
  layernorm_forward_cpu<double>(want.data(), want_mean.data(), want_rstd.data(), inp.data(),
                                w.data(), b.data(), s.N, s.C);

  auto d_out = poisoned_device<T>(n);
  auto d_mean = poisoned_device<float>(s.N);
  auto d_rstd = poisoned_device<float>(s.N);
  auto d_inp = to_device<T>(inp);
  auto d_w = to_device<T>(w);
  auto d_b = to_device<T>(b);
  layernorm_forward_cuda<T>(d_out.get(), d_mean.get(), d_rstd.get(), d_inp.get(), d_w.get(),
                            d_b.get(), s.N, s.C, nullptr);
  expect_close(from_device(d_out), want, tolerance<T>(), label("layernorm out", s));
  // The statistics are fp32 results from exactly representable inputs: fp32 bound for either T.
  expect_close(from_device(d_mean), want_mean, tolerance<float>(), label("layernorm mean", s));
  expect_close(from_device(d_rstd), want_rstd, tolerance<float>(), label("layernorm rstd", s));
}

// Backward inputs: mean / rstd come from the double forward rounded to fp32, and both sides
// read exactly those values.
struct BackwardInputs {
  std::vector<double> dout, inp, w, mean, rstd, dinp0, dw0, db0;
};
template <typename T>
BackwardInputs backward_inputs(const Shape& s, uint64_t seed) {
  const size_t n = static_cast<size_t>(s.N) * s.C;
  BackwardInputs in;
  in.inp = rounded_to<T>(shifted_rows(n, seed, 0));
  in.w = rounded_to<T>(random_vector(s.C, seed, 1));
  in.dout = rounded_to<T>(random_vector(n, seed, 3));
  std::vector<double> out(n), mean(s.N), rstd(s.N), bias(s.C, 0.0);
  layernorm_forward_cpu<double>(out.data(), mean.data(), rstd.data(), in.inp.data(), in.w.data(),
                                bias.data(), s.N, s.C);
  in.mean = rounded_to<float>(mean);
  in.rstd = rounded_to<float>(rstd);
  in.dinp0 = rounded_to<T>(random_vector(n, seed, 4));
  in.dw0 = rounded_to<float>(random_vector(s.C, seed, 5));
  in.db0 = rounded_to<float>(random_vector(s.C, seed, 6));
  return in;
}

template <typename T>
void check_backward(const Shape& s, uint64_t seed) {
  const BackwardInputs in = backward_inputs<T>(s, seed);
  auto want_dinp = in.dinp0, want_dw = in.dw0, want_db = in.db0;
  layernorm_backward_cpu<double>(want_dinp.data(), want_dw.data(), want_db.data(), in.dout.data(),
                                 in.inp.data(), in.w.data(), in.mean.data(), in.rstd.data(), s.N,
                                 s.C);

  auto d_dinp = to_device<T>(in.dinp0);
  auto d_dw = to_device<float>(in.dw0);
  auto d_db = to_device<float>(in.db0);
  auto d_dout = to_device<T>(in.dout);
  auto d_inp = to_device<T>(in.inp);
  auto d_w = to_device<T>(in.w);
  auto d_mean = to_device<float>(in.mean);
  auto d_rstd = to_device<float>(in.rstd);
  // Poisoned scratch: every partial must be written before it is read.
  auto d_scratch = poisoned_device<float>(layernorm_backward_scratch_floats(s.N, s.C));
  layernorm_backward_cuda<T>(d_dinp.get(), d_dw.get(), d_db.get(), d_dout.get(), d_inp.get(),
                             d_w.get(), d_mean.get(), d_rstd.get(), d_scratch.get(), s.N, s.C,
                             nullptr);
  expect_close(from_device(d_dinp), want_dinp, tolerance<T>(), label("layernorm dinp", s));
  // fp32 sums of exactly representable inputs: the fp32 bound holds for either T.
  expect_close(from_device(d_dw), want_dw, tolerance<float>(), label("layernorm dweight", s));
  expect_close(from_device(d_db), want_db, tolerance<float>(), label("layernorm dbias", s));
}

template <typename T>
void check_backward_deterministic() {
  const Shape s{2048, 768};
  const BackwardInputs in = backward_inputs<T>(s, 720);
  auto d_dout = to_device<T>(in.dout);
  auto d_inp = to_device<T>(in.inp);
  auto d_w = to_device<T>(in.w);
  auto d_mean = to_device<float>(in.mean);
  auto d_rstd = to_device<float>(in.rstd);
  DeviceBuffer<float> d_scratch(layernorm_backward_scratch_floats(s.N, s.C));
  std::vector<T> dinp_runs[2];
  std::vector<float> dw_runs[2], db_runs[2];
  for (int run = 0; run < 2; ++run) {
    auto d_dinp = to_device<T>(in.dinp0);
    auto d_dw = to_device<float>(in.dw0);
    auto d_db = to_device<float>(in.db0);
    layernorm_backward_cuda<T>(d_dinp.get(), d_dw.get(), d_db.get(), d_dout.get(), d_inp.get(),
                               d_w.get(), d_mean.get(), d_rstd.get(), d_scratch.get(), s.N, s.C,
                               nullptr);
    dinp_runs[run] = host_copy(d_dinp);
    dw_runs[run] = host_copy(d_dw);
    db_runs[run] = host_copy(d_db);
  }
  EXPECT_EQ(std::memcmp(dinp_runs[0].data(), dinp_runs[1].data(), dinp_runs[0].size() * sizeof(T)),
            0);
  EXPECT_EQ(std::memcmp(dw_runs[0].data(), dw_runs[1].data(), dw_runs[0].size() * 4), 0);
  EXPECT_EQ(std::memcmp(db_runs[0].data(), db_runs[1].data(), db_runs[0].size() * 4), 0);
}

TEST(LayerNormCuda, ForwardMatchesCpuReferenceFloat) {
  for (const Shape& s : kShapes)
    check_forward<float>(s, 700);
}
TEST(LayerNormCuda, ForwardMatchesCpuReferenceBf16) {
  for (const Shape& s : kShapes)
    check_forward<bf16>(s, 701);
}
TEST(LayerNormCuda, BackwardMatchesCpuReferenceAndAddsIntoGradientsFloat) {
  for (const Shape& s : kShapes)
    check_backward<float>(s, 710);
}
TEST(LayerNormCuda, BackwardMatchesCpuReferenceAndAddsIntoGradientsBf16) {
  for (const Shape& s : kShapes)
    check_backward<bf16>(s, 711);
}
TEST(LayerNormCuda, BackwardIsBitwiseDeterministicFloat) {
  check_backward_deterministic<float>();
}
TEST(LayerNormCuda, BackwardIsBitwiseDeterministicBf16) {
  check_backward_deterministic<bf16>();
}

// --- [Residual LayerNorm] -------------------------------------------------------------------

// Every N with every C: C = 64 and 768 lay rows out in 16-byte packs for both dtypes, 1, 7, 13
// and 1023 element by element. The kernel has no grid-stride loop (a warp per row, a block per 8
// rows); 4099 rows make 513 blocks, the last one partial.
std::vector<Shape> fused_shapes() {
  std::vector<Shape> shapes;
  for (int n : {1, 5, 67}) {
    for (int c : {1, 7, 13, 64, 768, 1023})
      shapes.push_back({n, c});
  }
  shapes.push_back({4099, 96});
  return shapes;
}

// Element offsets of the pointers from their 16-byte aligned allocations: `inputs` for a and b,
// `rows` for res_out, ln_out, weight and bias (the row layout follows the latter).
struct Offsets {
  size_t inputs, rows;
};
// Packed rows and inputs; packed rows with a and b read element by element; single elements.
constexpr Offsets kOffsets[] = {{0, 0}, {1, 0}, {1, 1}};

std::string label(const char* what, const Shape& s, const Offsets& o) {
  return label(what, s) + " offsets " + std::to_string(o.inputs) + "/" + std::to_string(o.rows);
}

// Placed buffers: [Placed buffers], cuda_test_util.h.

// Inputs of the fused forward, already rounded to T: a like a residual stream (offset rows,
// which a one-pass variance would lose digits on), b like a projection added to it.
struct FusedInputs {
  std::vector<double> a, b, w, bias;
};
template <typename T>
FusedInputs fused_inputs(const Shape& s, uint64_t seed) {
  const size_t n = static_cast<size_t>(s.N) * s.C;
  return {rounded_to<T>(shifted_rows(n, seed, 0)), rounded_to<T>(random_vector(n, seed, 1)),
          rounded_to<T>(random_vector(s.C, seed, 2)), rounded_to<T>(random_vector(s.C, seed, 3))};
}

template <typename T>
void check_fused_reference(const Shape& s, const Offsets& o, uint64_t seed) {
  const size_t n = static_cast<size_t>(s.N) * s.C;
  const FusedInputs in = fused_inputs<T>(s, seed);
  // res_out is exact: the kernel rounds the fp32 sum of two T values to T, and the double sum
  // rounded to fp32 then to T is that same value (double holds fp32 sums' correct rounding).
  std::vector<double> want_res(n);
  residual_forward_cpu<double>(want_res.data(), in.a.data(), in.b.data(), n);
  want_res = rounded_to<T>(want_res);
  // The statistics come from the ROUNDED res_out.
  std::vector<double> want_ln(n), want_mean(s.N), want_rstd(s.N);
  layernorm_forward_cpu<double>(want_ln.data(), want_mean.data(), want_rstd.data(), want_res.data(),
                                in.w.data(), in.bias.data(), s.N, s.C);

  auto d_a = placed<T>(in.a, o.inputs);
  auto d_b = placed<T>(in.b, o.inputs);
  auto d_w = placed<T>(in.w, o.rows);
  auto d_bias = placed<T>(in.bias, o.rows);
  auto d_res = placed_poison<T>(n, o.rows);
  auto d_ln = placed_poison<T>(n, o.rows);
  auto d_mean = poisoned_device<float>(s.N);
  auto d_rstd = poisoned_device<float>(s.N);
  residual_layernorm_forward_cuda<T>(d_res.get(), d_ln.get(), d_mean.get(), d_rstd.get(), d_a.get(),
                                     d_b.get(), d_w.get(), d_bias.get(), s.N, s.C, nullptr);
  const std::vector<double> res = d_res.values();
  size_t unequal = 0, first = 0;
  for (size_t i = 0; i < n; ++i) {
    if (!(res[i] == want_res[i]) && unequal++ == 0) first = i;  // NaN is unequal
  }
  EXPECT_EQ(unequal, 0u) << label("fused res_out", s, o) << ": " << unequal << " of " << n
                         << " elements are not a + b rounded to T, first [" << first << "] "
                         << res[first] << ", want " << want_res[first];
  expect_close(d_ln.values(), want_ln, tolerance<T>(), label("fused ln_out", s, o));
  // fp32 statistics of exactly representable inputs: the fp32 bound for either T.
  expect_close(from_device(d_mean), want_mean, tolerance<float>(), label("fused mean", s, o));
  expect_close(from_device(d_rstd), want_rstd, tolerance<float>(), label("fused rstd", s, o));
}

// got and want hold the same bits, element by element, and none of them is NaN poison left
// unwritten (which would equal itself).
template <typename T>
void expect_same_bits(const std::vector<T>& got, const std::vector<T>& want,
                      const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  size_t differ = 0, first = 0, nonfinite = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (!std::isfinite(to_float(got[i]))) ++nonfinite;
    if (std::memcmp(&got[i], &want[i], sizeof(T)) != 0 && differ++ == 0) first = i;
  }
  EXPECT_EQ(nonfinite, 0u) << what << ": non-finite elements (poison left unwritten?)";
  EXPECT_EQ(differ, 0u) << what << ": " << differ << " of " << got.size()
                        << " elements differ from the two-kernel path, first [" << first << "] "
                        << to_float(got[first]) << ", two kernels " << to_float(want[first]);
}

template <typename T>
void check_fused_bitwise(const Shape& s, const Offsets& o, uint64_t seed) {
  const size_t n = static_cast<size_t>(s.N) * s.C;
  const FusedInputs in = fused_inputs<T>(s, seed);
  auto d_a = placed<T>(in.a, o.inputs);
  auto d_b = placed<T>(in.b, o.inputs);
  auto d_w = placed<T>(in.w, o.rows);
  auto d_bias = placed<T>(in.bias, o.rows);

  // The two launches the fused kernel replaces, on pointers placed alike.
  auto two_res = placed_poison<T>(n, o.rows);
  auto two_ln = placed_poison<T>(n, o.rows);
  auto two_mean = poisoned_device<float>(s.N);
  auto two_rstd = poisoned_device<float>(s.N);
  residual_forward_cuda<T>(two_res.get(), d_a.get(), d_b.get(), n, nullptr);
  layernorm_forward_cuda<T>(two_ln.get(), two_mean.get(), two_rstd.get(), two_res.get(), d_w.get(),
                            d_bias.get(), s.N, s.C, nullptr);

  auto res = placed_poison<T>(n, o.rows);
  auto ln = placed_poison<T>(n, o.rows);
  auto mean = poisoned_device<float>(s.N);
  auto rstd = poisoned_device<float>(s.N);
  residual_layernorm_forward_cuda<T>(res.get(), ln.get(), mean.get(), rstd.get(), d_a.get(),
                                     d_b.get(), d_w.get(), d_bias.get(), s.N, s.C, nullptr);

  expect_same_bits(res.bits(), two_res.bits(), label("fused res_out", s, o));
  expect_same_bits(ln.bits(), two_ln.bits(), label("fused ln_out", s, o));
  expect_same_bits(host_copy(mean), host_copy(two_mean), label("fused mean", s, o));
  expect_same_bits(host_copy(rstd), host_copy(two_rstd), label("fused rstd", s, o));
}

TEST(ResidualLayerNormCuda, MatchesCpuReferenceFloat) {
  for (const Shape& s : fused_shapes()) {
    for (const Offsets& o : kOffsets)
      check_fused_reference<float>(s, o, 730);
  }
}
TEST(ResidualLayerNormCuda, MatchesCpuReferenceBf16) {
  for (const Shape& s : fused_shapes()) {
    for (const Offsets& o : kOffsets)
      check_fused_reference<bf16>(s, o, 731);
  }
}
TEST(ResidualLayerNormCuda, IsBitwiseResidualThenLayerNormFloat) {
  for (const Shape& s : fused_shapes()) {
    for (const Offsets& o : kOffsets)
      check_fused_bitwise<float>(s, o, 732);
  }
}
TEST(ResidualLayerNormCuda, IsBitwiseResidualThenLayerNormBf16) {
  for (const Shape& s : fused_shapes()) {
    for (const Offsets& o : kOffsets)
      check_fused_bitwise<bf16>(s, o, 733);
  }
}
TEST(ResidualLayerNormCuda, RejectsResOutAsLnOut) {
  DeviceBuffer<float> x(4), stats(2);
  expect_runtime_failure_mentioning(
      [&] {
        residual_layernorm_forward_cuda<float>(x.get(), x.get(), stats.get(), stats.get() + 1,
                                               x.get(), x.get(), x.get(), x.get(), 1, 4, nullptr);
      },
      {"residual_layernorm_forward_cuda", "must differ"});
}

TEST(LayerNormCuda, ScratchCoversEveryRowSliceAndGrowsWithN) {
  // Two fp32 partial rows (weight, bias) per slice: at least 2 C, never more than one slice
  // per row.
  for (const Shape& s : kShapes) {
    const size_t f = layernorm_backward_scratch_floats(s.N, s.C);
    EXPECT_GE(f, 2u * s.C) << label("scratch", s);
    EXPECT_LE(f, 2u * s.C * static_cast<size_t>(s.N)) << label("scratch", s);
    EXPECT_EQ(f % (2u * s.C), 0u) << label("scratch", s);
  }
}

}  // namespace
}  // namespace dpt::kernels::test
