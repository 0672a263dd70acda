// A plain file of bytes as a token stream (byte-level vocabulary of 256). The spine's data
// source until HDF5 shards arrive; also the in-memory source that tests build directly.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace dpt::datasets {

class ByteFile {
 public:
  static constexpr int kVocabSize = 256;

  // Reads the whole file. Missing, unreadable or empty files throw UsageError naming the path.
  static ByteFile load(const std::string& path);
  // Wraps bytes already in memory (tests, generated data); `name` appears in messages.
  ByteFile(std::vector<uint8_t> bytes, std::string name);

  const std::string& name() const { return name_; }
  size_t size() const { return bytes_.size(); }
  const uint8_t* data() const { return bytes_.data(); }

 private:
  std::vector<uint8_t> bytes_;
  std::string name_;
};

}  // namespace dpt::datasets
