// [Sample format] A sample shard is an HDF5 file of N labelled samples for classification or
// regression (docs/data-format.md will carry the full text once the trainer reads them):
//   /inputs    [N, ...]: images uint8 [N, H, W, C] or [N, H, W] (one channel); series float32
//              or float16 [N, T, F] or [N, T] (one feature); text integer token ids [N, T]
//   /labels    [N] integer classes in [0, num_classes)          (classification), or
//   /targets   [N, K] or [N] float32 or float64 targets         (regression); exactly one
//   /lengths   optional [N] integers in [1, T]: text positions past a length are padding
//   attributes on /: format_version = 1 (required); optional num_classes (else the largest
//   label + 1), class_names (strings, one per class), vocab_size (text: token ids are below
//   it; else the largest id + 1), kind ("image" | "series" | "text",
//   else inferred: uint8 of rank 3 or 4 is an image, floating point a series, any other
//   integer input text)
// A file an h5py user writes with /inputs, /labels and format_version alone is complete.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace dpt::datasets {

inline constexpr int kSampleFormatVersion = 1;
inline constexpr const char* kInputsName = "inputs";
inline constexpr const char* kLabelsName = "labels";
inline constexpr const char* kTargetsName = "targets";
inline constexpr const char* kLengthsName = "lengths";

enum class SampleKind { image, series, text };
enum class SampleTask { classify, regress };
const char* sample_kind_name(SampleKind k);  // "image", "series", "text"
const char* sample_task_name(SampleTask t);  // "classify", "regress"

// What validation learned about one sample shard.
struct SampleShardFacts {
  std::string path;
  uint64_t file_size = 0;
  int64_t mtime_ns = 0;
  SampleKind kind = SampleKind::image;
  std::string input_type;              // "uint8", "float32", "float16", "int32", ...
  uint64_t num_samples = 0;            // N
  std::vector<uint64_t> sample_shape;  // one sample: [H, W, C], [T, F] or [T] (C, F made explicit)
  SampleTask task = SampleTask::classify;
  int64_t num_classes = 0;   // classify: the attribute, else the largest label + 1
  uint64_t num_targets = 0;  // regress: K
  bool has_lengths = false;
  int64_t vocab_size = 0;  // text: the attribute vocab_size, else the largest token id + 1
  std::vector<std::string> class_names;  // empty when the shard names none
};

}  // namespace dpt::datasets
