// [Mean squared error] on the CPU: each sample's mean over its targets, summed in k order.
#include "kernels/mse.h"

namespace dpt::kernels {

template <typename T>
void mse_forward_cpu(T* loss, const T* pred, const T* target, int B, int K) {
  for (int b = 0; b < B; ++b) {
    T s = T(0);
    for (int k = 0; k < K; ++k) {
      const T d = pred[b * K + k] - target[b * K + k];
      s += d * d;
    }
    loss[b] = s / static_cast<T>(K);
  }
}

template <typename T>
void mse_backward_cpu(T* dpred, const T* pred, const T* target, int B, int K, double scale) {
  const T f = static_cast<T>(2.0 * scale / K);
  for (int i = 0; i < B * K; ++i)
    dpred[i] += f * (pred[i] - target[i]);
}

template void mse_forward_cpu<float>(float*, const float*, const float*, int, int);
template void mse_forward_cpu<double>(double*, const double*, const double*, int, int);
template void mse_backward_cpu<float>(float*, const float*, const float*, int, int, double);
template void mse_backward_cpu<double>(double*, const double*, const double*, int, int, double);

}  // namespace dpt::kernels
