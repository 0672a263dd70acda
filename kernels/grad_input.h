// How a backward pass delivers the gradient of its input.
#pragma once

namespace dpt::kernels {

// [Gradient write] Backward passes ADD into their input gradient by default ([Kernel contract],
// kernels/README.md), which lets branches meet in one buffer. Where the buffer holds nothing
// yet, `write` stores the gradient instead: the old contents are not read (not even a NaN in
// them), and the caller saves the pass that would zero the buffer first. The result is the same
// bits as zeroing and adding (x + 0 is x).
enum class GradInput { add, write };

}  // namespace dpt::kernels
