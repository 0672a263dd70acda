// How many CPU threads the kernels use (OpenMP and the OpenMP build of OpenBLAS).
#pragma once

namespace dpt::kernels {

// Sets the thread count of later kernel calls; n >= 1.
void set_cpu_threads(int n);
int cpu_threads();

}  // namespace dpt::kernels
