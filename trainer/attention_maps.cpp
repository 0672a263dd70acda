// Attention rollout in double.
#include "trainer/attention_maps.h"

#include "common/errors.h"

namespace dpt::trainer {

std::vector<double> attention_rollout(std::span<const float> att, int L, int NH, int T) {
  const size_t TT = static_cast<size_t>(T) * T;
  DPT_CHECK(L > 0 && NH > 0 && T > 0 && att.size() == static_cast<size_t>(L) * NH * TT,
            "attention_rollout: att must be [L, NH, T, T]");
  std::vector<double> rollout(TT, 0.0), w(TT), next(TT);
  for (int i = 0; i < T; ++i)
    rollout[static_cast<size_t>(i) * T + i] = 1.0;
  for (int l = 0; l < L; ++l) {
    // W = 0.5 mean_h(A) + 0.5 I, rows renormalized.
    for (int i = 0; i < T; ++i) {
      double row = 0;
      for (int j = 0; j < T; ++j) {
        double a = 0;
        for (int h = 0; h < NH; ++h)
          a += att[((static_cast<size_t>(l) * NH + h) * T + i) * T + j];
        const double v = 0.5 * a / NH + (i == j ? 0.5 : 0.0);
        w[static_cast<size_t>(i) * T + j] = v;
        row += v;
      }
      for (int j = 0; j < T; ++j)
        w[static_cast<size_t>(i) * T + j] /= row;
    }
    // rollout = W_l . rollout
    for (int i = 0; i < T; ++i)
      for (int j = 0; j < T; ++j) {
        double s = 0;
        for (int k = 0; k < T; ++k)
          s += w[static_cast<size_t>(i) * T + k] * rollout[static_cast<size_t>(k) * T + j];
        next[static_cast<size_t>(i) * T + j] = s;
      }
    rollout.swap(next);
  }
  return rollout;
}

}  // namespace dpt::trainer
