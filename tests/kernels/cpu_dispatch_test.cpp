// [CPU dispatch]: the AVX2 versions of the elementwise loops give the same bits as the baseline
// (SSE2) versions, for sizes that leave every kind of remainder, with one and two threads.
#include "kernels/cpu_dispatch.h"

#include <gtest/gtest.h>

#include <vector>

#include "kernel_test_util.h"
#include "kernels/adamw.h"
#include "kernels/gelu.h"

namespace dpt::kernels::test {
namespace {

// Runs f with the baseline and then with AVX2 and expects the same vectors back.
template <typename F>
void expect_same_bits_both_ways(F f, const char* what) {
  const bool saved = set_cpu_use_avx2(false);
  const std::vector<std::vector<float>> base = f();
  set_cpu_use_avx2(true);
  ASSERT_TRUE(cpu_use_avx2());
  const std::vector<std::vector<float>> wide = f();
  set_cpu_use_avx2(saved);
  ASSERT_EQ(base.size(), wide.size());
  for (size_t k = 0; k < base.size(); ++k)
    EXPECT_EQ(base[k], wide[k]) << what << ", output " << k;  // bitwise for non-NaN floats
}

TEST(CpuDispatch, Avx2GivesTheBaselineBitsForGeluAndAdamW) {
  if (!cpu_has_avx2()) GTEST_SKIP() << "this processor has no AVX2";
  for (const int threads : {1, 2}) {
    ScopedCpuThreads scoped(threads);
    for (const size_t n : {size_t{1}, size_t{7}, size_t{1003}, size_t{65541}}) {
      const std::vector<float> x = cast_to<float>(random_vector(n, 61, 1, 4.0));
      const std::vector<float> g = cast_to<float>(random_vector(n, 61, 2));
      const std::vector<float> d0 = cast_to<float>(random_vector(n, 61, 3));
      expect_same_bits_both_ways(
          [&] {
            std::vector<float> out(n), add = d0, write(n);
            gelu_forward_cpu<float>(out.data(), x.data(), n);
            gelu_backward_cpu<float>(add.data(), x.data(), g.data(), n);
            gelu_backward_cpu<float>(write.data(), x.data(), g.data(), n, GradInput::write);
            return std::vector<std::vector<float>>{out, add, write};
          },
          "gelu");
      expect_same_bits_both_ways(
          [&] {
            std::vector<float> w = x, m = cast_to<float>(random_vector(n, 61, 4, 0.1));
            std::vector<float> v = cast_to<float>(random_vector(n, 61, 5, 0.1));
            for (float& e : v)
              e = e * e;  // second moments are squares
            const AdamWParams p{1e-3, 0.9, 0.95, 1e-8, 0.1, 0.7, 3};
            adamw_update_cpu<float>(w.data(), m.data(), v.data(), g.data(), n, p);
            return std::vector<std::vector<float>>{w, m, v};
          },
          "adamw");
    }
  }
}

}  // namespace
}  // namespace dpt::kernels::test
