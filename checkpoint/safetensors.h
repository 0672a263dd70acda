// [Safetensors] Exported weights in the safetensors layout (huggingface/safetensors): an 8-byte
// little-endian header length N, N bytes of JSON naming each tensor's dtype, shape and
// [begin, end) byte offsets into the data that follows (contiguous, in header order, no holes),
// with "__metadata__" holding string pairs; the header is padded with spaces to a multiple of
// 8 bytes so that every tensor starts aligned. Data is raw little-endian float32, row-major.
// `safetensors.torch.load_file` reads it, as does a few lines of json and numpy.frombuffer.
#pragma once

#include <cstddef>
#include <map>
#include <string>
#include <vector>

namespace dpt::checkpoint {

struct ExportTensor {
  std::string name;
  std::vector<size_t> shape;  // as written
  const float* data = nullptr;
  bool transpose = false;  // data is [shape[1], shape[0]] row-major: written transposed
};

// Writes the tensors to path (the caller publishes it: a temporary name, then rename). Throws
// RuntimeFailure when a write fails, UsageError for a name that repeats.
void write_safetensors(const std::string& path, const std::vector<ExportTensor>& tensors,
                       const std::map<std::string, std::string>& metadata);

// The Hugging Face GPT-2 name of one of our language model's tensors
// ("blocks.3.attn.qkv.weight" -> "transformer.h.3.attn.c_attn.weight"), and whether its data
// must be transposed: GPT-2's Conv1D layers keep their weights as [in, out], ours are
// [out, in]. Throws UsageError for a tensor GPT-2 has no name for.
std::string hf_gpt2_name(const std::string& ours, bool* transpose);

}  // namespace dpt::checkpoint
