// [Patches] on the CPU: a gather of every patch row forward, its transpose (an add back into the
// image) backward.
#include <cstddef>
#include <cstdint>
#include <string>

#include "common/errors.h"
#include "kernels/patches.h"

namespace dpt::kernels {

void check_patch_shape(int B, int H, int W, int C, int P) {
  if (B <= 0 || H <= 0 || W <= 0 || C <= 0 || P <= 0 || H % P != 0 || W % P != 0) {
    throw UsageError("images of " + std::to_string(H) + " x " + std::to_string(W) + " x " +
                     std::to_string(C) + " (batch " + std::to_string(B) +
                     ") cannot be cut into patches of " + std::to_string(P) + " x " +
                     std::to_string(P) + ": the patch size must divide the height and width");
  }
}

namespace {

// Calls f(patch_value_index, image_index) for every element, one patch row of P*C values at a
// time (contiguous in both), parallel over (b, patch, patch row).
template <typename F>
void for_each_patch_row(int B, int H, int W, int C, int P, F f) {
  check_patch_shape(B, H, W, C, P);
  const int64_t gw = W / P, gh = H / P, row = static_cast<int64_t>(P) * C;
  const int64_t rows = static_cast<int64_t>(B) * gh * gw * P;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t i = r % P, patch = r / P;  // patch = (b * gh + ph) * gw + pw
    const int64_t pw = patch % gw, ph = (patch / gw) % gh, b = patch / (gw * gh);
    const int64_t src = ((b * H + ph * P + i) * W + pw * P) * C;
    const int64_t dst = patch * P * row + i * row;
    for (int64_t k = 0; k < row; ++k)
      f(static_cast<size_t>(dst + k), static_cast<size_t>(src + k));
  }
}

}  // namespace

template <typename T>
void patches_forward_cpu(T* out, const T* img, int B, int H, int W, int C, int P) {
  for_each_patch_row(B, H, W, C, P, [&](size_t o, size_t i) { out[o] = img[i]; });
}

template <typename T>
void patches_backward_cpu(T* dimg, const T* dout, int B, int H, int W, int C, int P) {
  for_each_patch_row(B, H, W, C, P, [&](size_t o, size_t i) { dimg[i] += dout[o]; });
}

template void patches_forward_cpu<float>(float*, const float*, int, int, int, int, int);
template void patches_forward_cpu<double>(double*, const double*, int, int, int, int, int);
template void patches_backward_cpu<float>(float*, const float*, int, int, int, int, int);
template void patches_backward_cpu<double>(double*, const double*, int, int, int, int, int);

}  // namespace dpt::kernels
