// [Batch] The rows of one micro-batch as a model reads them, whatever the data: token windows
// for language modelling, images, series or texts with their labels or targets. A dataset says
// which fields its samples fill (SampleFields); a BatchBuffer holds a micro-batch of them, and
// a Batch is the read-only view the model takes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace dpt::datasets {

// Values per sample in each field (0: the field is absent).
struct SampleFields {
  size_t tokens = 0;     // int32 token ids: a language-modelling window's inputs, or a text
  size_t values = 0;     // float: an image's pixels scaled to [0, 1] ([H, W, C]), a series [T, F]
  bool lengths = false;  // int32: the valid positions of a padded text
  size_t labels = 0;     // int32: next tokens (language modelling: = tokens) or one class
  size_t targets = 0;    // float: regression targets
  bool operator==(const SampleFields&) const = default;
};

struct Batch {
  int rows = 0;
  const int32_t* tokens = nullptr;   // [rows, fields.tokens]
  const float* values = nullptr;     // [rows, fields.values]
  const int32_t* lengths = nullptr;  // [rows]
  const int32_t* labels = nullptr;   // [rows, fields.labels]
  const float* targets = nullptr;    // [rows, fields.targets]
};

// Room for up to `capacity` samples of `fields`; allocated once.
class BatchBuffer {
 public:
  BatchBuffer() = default;
  BatchBuffer(const SampleFields& fields, size_t capacity)
      : fields_(fields),
        capacity_(capacity),
        tokens_(fields.tokens * capacity),
        values_(fields.values * capacity),
        lengths_(fields.lengths ? capacity : 0),
        labels_(fields.labels * capacity),
        targets_(fields.targets * capacity) {}

  const SampleFields& fields() const { return fields_; }
  size_t capacity() const { return capacity_; }
  // Row r's slice of each field (null where the field is absent).
  int32_t* tokens(size_t r) { return at(tokens_, fields_.tokens, r); }
  float* values(size_t r) { return at(values_, fields_.values, r); }
  int32_t* length(size_t r) { return at(lengths_, 1, r); }
  int32_t* labels(size_t r) { return at(labels_, fields_.labels, r); }
  float* targets(size_t r) { return at(targets_, fields_.targets, r); }

  // Rows [first, first + rows) as a Batch.
  Batch view(size_t first, int rows) const {
    return Batch{rows,
                 cat(tokens_, fields_.tokens, first),
                 cat(values_, fields_.values, first),
                 cat(lengths_, 1, first),
                 cat(labels_, fields_.labels, first),
                 cat(targets_, fields_.targets, first)};
  }

 private:
  template <typename T>
  static T* at(std::vector<T>& v, size_t per, size_t r) {
    return v.empty() ? nullptr : v.data() + r * per;
  }
  template <typename T>
  static const T* cat(const std::vector<T>& v, size_t per, size_t r) {
    return v.empty() ? nullptr : v.data() + r * per;
  }

  SampleFields fields_;
  size_t capacity_ = 0;
  std::vector<int32_t> tokens_;
  std::vector<float> values_;
  std::vector<int32_t> lengths_;
  std::vector<int32_t> labels_;
  std::vector<float> targets_;
};

}  // namespace dpt::datasets
