// Shared helpers of the kernel tests: seeded random inputs, NaN poison, central finite
// differences and tolerance checks that fail on NaN.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <typeinfo>
#include <vector>

#include "common/errors.h"
#include "common/rng.h"
#include "kernels/cpu_threads.h"

namespace dpt::kernels::test {

// n standard-normal values of stream `stream` under `seed`, times `scale`: never zeros.
inline std::vector<double> random_vector(size_t n, uint64_t seed, uint64_t stream,
                                         double scale = 1.0) {
  std::vector<double> v(n);
  for (size_t i = 0; i < n; ++i) {
    v[i] = scale * random_normal(seed, stream, i);
  }
  return v;
}

// [Wrap inputs] The cases sized to wrap a grid-stride loop hold millions of elements, where
// random_vector's Box-Muller draw (a log, a square root and a cosine per element) would take
// most of the test's time. Above kNormalUpTo elements the inputs are uniform draws of the same
// spread instead, one counter value each; never 0, since 2u - 1 is an even multiple of 2^-53
// and the 2^-53 added makes it odd. Smaller cases keep random_vector's draws.
inline constexpr size_t kNormalUpTo = size_t{1} << 20;
inline std::vector<double> uniform_inputs(size_t n, uint64_t seed, uint64_t stream,
                                          double scale = 1.0) {
  std::vector<double> v(n);
  const double spread = scale * std::sqrt(3.0);  // the variance of a standard normal
  for (size_t i = 0; i < n; ++i)
    v[i] = spread * (2.0 * random_unit(seed, stream, i) - 1.0 + 0x1.0p-53);
  return v;
}
inline std::vector<double> test_inputs(size_t n, uint64_t seed, uint64_t stream,
                                       double scale = 1.0) {
  return n <= kNormalUpTo ? random_vector(n, seed, stream, scale)
                          : uniform_inputs(n, seed, stream, scale);
}

// [Padded vocabulary] rows: `rows` rows of `width` values of x, ld apart, the padding holding
// `fill` (NaN: a kernel that reads it into a result fails); and back.
template <typename X>
std::vector<X> padded_rows(const std::vector<X>& x, int rows, int width, int ld, X fill) {
  std::vector<X> out(static_cast<size_t>(rows) * ld, fill);
  for (int r = 0; r < rows; ++r)
    std::copy_n(x.begin() + static_cast<std::ptrdiff_t>(r) * width, width,
                out.begin() + static_cast<std::ptrdiff_t>(r) * ld);
  return out;
}
template <typename X>
std::vector<X> unpadded_rows(const std::vector<X>& x, int rows, int width, int ld) {
  std::vector<X> out(static_cast<size_t>(rows) * width);
  for (int r = 0; r < rows; ++r)
    std::copy_n(x.begin() + static_cast<std::ptrdiff_t>(r) * ld, width,
                out.begin() + static_cast<std::ptrdiff_t>(r) * width);
  return out;
}

// Uniform ids in [0, V).
inline std::vector<int32_t> random_ids(size_t n, int V, uint64_t seed, uint64_t stream) {
  std::vector<int32_t> ids(n);
  uint64_t index = 0;
  for (size_t i = 0; i < n; ++i) {
    ids[i] = static_cast<int32_t>(random_below(seed, stream, &index, V));
  }
  return ids;
}

template <typename T>
std::vector<T> cast_to(const std::vector<double>& v) {
  return std::vector<T>(v.begin(), v.end());
}

template <typename T>
std::vector<double> to_double(const std::vector<T>& v) {
  return std::vector<double>(v.begin(), v.end());
}

template <typename T>
std::vector<T> poisoned(size_t n) {
  return std::vector<T>(n, std::numeric_limits<T>::quiet_NaN());
}

inline double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    s += a[i] * b[i];
  }
  return s;
}

inline std::vector<double> minus(const std::vector<double>& a, const std::vector<double>& b) {
  std::vector<double> d(a.size());
  for (size_t i = 0; i < a.size(); ++i) {
    d[i] = a[i] - b[i];
  }
  return d;
}

// Central differences (L(x + h e_i) - L(x - h e_i)) / 2h of `objective`, which reads x.
inline std::vector<double> numeric_gradient(std::vector<double>& x,
                                            const std::function<double()>& objective,
                                            double h = 1e-5) {
  std::vector<double> g(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double saved = x[i];
    x[i] = saved + h;
    const double up = objective();
    x[i] = saved - h;
    const double down = objective();
    x[i] = saved;
    g[i] = (up - down) / (2.0 * h);
  }
  return g;
}

// Each element must satisfy |got - want| <= rtol * max(|got|, |want|) + atol; NaN fails.
// Reports the count of bad elements and the first few.
inline void expect_all_close(const std::vector<double>& got, const std::vector<double>& want,
                             double rtol, double atol, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  size_t bad = 0;
  std::string first;
  for (size_t i = 0; i < got.size(); ++i) {
    const double err = std::fabs(got[i] - want[i]);
    const double bound = rtol * std::max(std::fabs(got[i]), std::fabs(want[i])) + atol;
    if (!(err <= bound)) {
      if (bad < 5) {
        first += "\n  [" + std::to_string(i) + "] got " + std::to_string(got[i]) + " want " +
                 std::to_string(want[i]) + " err " + std::to_string(err);
      }
      ++bad;
    }
  }
  EXPECT_EQ(bad, 0u) << what << ": " << bad << " of " << got.size() << " elements out of tolerance"
                     << first;
}

// [Closeness] How far a result computed in a lower precision (a CUDA kernel's) is from the
// reference, in two measures that the tests bound together:
//   - norm_rel: ||got - want|| / ||want|| over the whole tensor, the overall accuracy;
//   - worst:    max_i |got_i - want_i| / (|want_i| + rms(want)), each element against its own
//               size and the tensor's typical size (so that a value near zero by cancellation
//               is not held to a relative bound it cannot meet).
// The norm alone lets a few wrong elements through: five wrong elements of 65,541 move it by
// sqrt(5 / 65541) ~ 0.009 of the tensor's norm, inside bf16's bound; the per-element measure
// sees each one. Non-finite values are counted apart (NaN fails every bound).
struct Closeness {
  double norm_rel = 0.0;
  double worst = 0.0;
  size_t worst_at = 0;
  size_t nonfinite = 0, first_nonfinite = 0;
};
inline Closeness closeness(const std::vector<double>& got, const std::vector<double>& want) {
  Closeness c;
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < want.size(); ++i)
    den += want[i] * want[i];
  const double rms = want.empty() ? 0.0 : std::sqrt(den / static_cast<double>(want.size()));
  for (size_t i = 0; i < got.size() && i < want.size(); ++i) {
    if (!std::isfinite(got[i])) {
      if (c.nonfinite++ == 0) c.first_nonfinite = i;
      continue;
    }
    const double err = std::fabs(got[i] - want[i]);
    num += err * err;
    const double e = err / std::max(std::fabs(want[i]) + rms, 1e-30);
    if (e > c.worst) {
      c.worst = e;
      c.worst_at = i;
    }
  }
  c.norm_rel = std::sqrt(num) / std::max(std::sqrt(den), 1e-30);
  return c;
}
// The per-element bound is this multiple of the norm bound: one element may be off by a few
// roundings more than the average, not by its own size.
inline constexpr double kElementTolFactor = 8.0;

// Tolerances of the finite-difference checks in double: h = 1e-5 leaves a truncation error
// ~h^2 and a rounding error ~1e-16 |L| / h, both far below these.
inline constexpr double kGradRtol = 1e-6;
inline constexpr double kGradAtol = 1e-8;

// Sets the kernels' thread count for one scope and restores it afterwards.
class ScopedCpuThreads {
 public:
  explicit ScopedCpuThreads(int n) : saved_(cpu_threads()) { set_cpu_threads(n); }
  ~ScopedCpuThreads() { set_cpu_threads(saved_); }
  ScopedCpuThreads(const ScopedCpuThreads&) = delete;
  ScopedCpuThreads& operator=(const ScopedCpuThreads&) = delete;

 private:
  int saved_;
};

// Expects `call` to throw E (RuntimeFailure, UsageError) whose message mentions every string in
// `parts`.
template <typename E>
void expect_error_mentioning(const std::function<void()>& call,
                             const std::vector<std::string>& parts) {
  try {
    call();
    ADD_FAILURE() << "expected " << typeid(E).name() << ", nothing was thrown";
  } catch (const E& e) {
    const std::string msg = e.what();
    for (const auto& p : parts) {
      EXPECT_NE(msg.find(p), std::string::npos) << "message lacks '" << p << "': " << msg;
    }
  }
}
inline void expect_runtime_failure_mentioning(const std::function<void()>& call,
                                              const std::vector<std::string>& parts) {
  expect_error_mentioning<RuntimeFailure>(call, parts);
}

}  // namespace dpt::kernels::test
