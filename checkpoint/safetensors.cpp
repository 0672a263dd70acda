// The safetensors writer and the GPT-2 name map.
#include "checkpoint/safetensors.h"

#include <bit>
#include <boost/json.hpp>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <set>

#include "common/errors.h"

namespace dpt::checkpoint {

static_assert(std::endian::native == std::endian::little,
              "safetensors stores little-endian data; this writer copies memory as it is");

void write_safetensors(const std::string& path, const std::vector<ExportTensor>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  // The header, in tensor order (offsets follow the same order, so the data has no holes).
  boost::json::object header;
  if (!metadata.empty()) {
    boost::json::object meta;
    for (const auto& [k, v] : metadata)
      meta[k] = v;
    header["__metadata__"] = std::move(meta);
  }
  std::set<std::string> seen;
  uint64_t offset = 0;
  for (const ExportTensor& t : tensors) {
    if (!seen.insert(t.name).second)
      throw UsageError("safetensors export: tensor '" + t.name + "' appears twice");
    size_t n = 1;
    boost::json::array shape;
    for (size_t d : t.shape) {
      n *= d;
      shape.push_back(static_cast<uint64_t>(d));
    }
    DPT_CHECK(!t.transpose || t.shape.size() == 2, "only matrices are transposed");
    const uint64_t bytes = n * sizeof(float);
    header[t.name] = boost::json::object{
        {"dtype", "F32"}, {"shape", std::move(shape)}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = boost::json::serialize(header);
  text.append((8 - (8 + text.size()) % 8) % 8, ' ');  // data starts at a multiple of 8
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "wb"), &std::fclose);
  if (!f) throw RuntimeFailure("cannot create " + path + ": " + errno_string(errno));
  const uint64_t n = text.size();
  bool ok = std::fwrite(&n, 8, 1, f.get()) == 1 &&
            std::fwrite(text.data(), 1, text.size(), f.get()) == text.size();
  std::vector<float> scratch;
  for (const ExportTensor& t : tensors) {
    size_t count = 1;
    for (size_t d : t.shape)
      count *= d;
    const float* src = t.data;
    if (t.transpose) {  // out[i][j] = in[j][i], in being [shape[1], shape[0]]
      const size_t rows = t.shape[0], cols = t.shape[1];
      scratch.resize(count);
      for (size_t j = 0; j < cols; ++j)
        for (size_t i = 0; i < rows; ++i)
          scratch[i * cols + j] = t.data[j * rows + i];
      src = scratch.data();
    }
    ok = ok && std::fwrite(src, sizeof(float), count, f.get()) == count;
  }
  if (!ok || std::fflush(f.get()) != 0)
    throw RuntimeFailure("writing " + path + " failed: " + errno_string(errno));
  if (std::fclose(f.release()) != 0)
    throw RuntimeFailure("closing " + path + " failed: " + errno_string(errno));
}

std::string hf_gpt2_name(const std::string& ours, bool* transpose) {
  *transpose = false;
  if (ours == "wte.weight") return "transformer.wte.weight";
  if (ours == "wpe.weight") return "transformer.wpe.weight";
  if (ours == "ln_f.weight") return "transformer.ln_f.weight";
  if (ours == "ln_f.bias") return "transformer.ln_f.bias";
  const std::string prefix = "blocks.";
  if (ours.rfind(prefix, 0) == 0) {
    const size_t dot = ours.find('.', prefix.size());
    const std::string layer = ours.substr(prefix.size(), dot - prefix.size());
    const std::string rest = ours.substr(dot + 1);
    static const std::map<std::string, std::pair<std::string, bool>> kMap = {
        {"ln1.weight", {"ln_1.weight", false}},
        {"ln1.bias", {"ln_1.bias", false}},
        {"attn.qkv.weight", {"attn.c_attn.weight", true}},
        {"attn.qkv.bias", {"attn.c_attn.bias", false}},
        {"attn.proj.weight", {"attn.c_proj.weight", true}},
        {"attn.proj.bias", {"attn.c_proj.bias", false}},
        {"ln2.weight", {"ln_2.weight", false}},
        {"ln2.bias", {"ln_2.bias", false}},
        {"mlp.fc.weight", {"mlp.c_fc.weight", true}},
        {"mlp.fc.bias", {"mlp.c_fc.bias", false}},
        {"mlp.proj.weight", {"mlp.c_proj.weight", true}},
        {"mlp.proj.bias", {"mlp.c_proj.bias", false}},
    };
    if (const auto it = kMap.find(rest); it != kMap.end()) {
      *transpose = it->second.second;
      return "transformer.h." + layer + "." + it->second.first;
    }
  }
  throw UsageError("--names hf-gpt2: tensor '" + ours +
                   "' has no GPT-2 name (only language models export with GPT-2's names); pass "
                   "--names ours");
}

}  // namespace dpt::checkpoint
