// The CUDA stream type without the CUDA headers, so that CPU-only translation units can declare
// and call through the CUDA entry points. Same type as cudaStream_t (struct CUstream_st*).
#pragma once

struct CUstream_st;

namespace dpt::kernels {

using CudaStream = CUstream_st*;

}  // namespace dpt::kernels
