// A named view into a flat buffer: what the model's [Parameter layout], the optimizer,
// communication and checkpoints all describe tensors with.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace dpt {

struct TensorView {
  std::string name;           // "blocks.3.attn.qkv.weight" (PyTorch-style)
  size_t offset = 0;          // elements from the start of the flat buffer
  std::vector<size_t> shape;  // row-major
  size_t numel() const {
    size_t n = 1;
    for (size_t d : shape)
      n *= d;
    return n;
  }
};

}  // namespace dpt
