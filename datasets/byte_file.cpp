// Loading a file of bytes with errors that name the path and say what to do.
#include "datasets/byte_file.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <memory>

#include "common/errors.h"

namespace dpt::datasets {

ByteFile::ByteFile(std::vector<uint8_t> bytes, std::string name)
    : bytes_(std::move(bytes)), name_(std::move(name)) {}

ByteFile ByteFile::load(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    throw UsageError("--data " + path + ": " + errno_string(errno) +
                     ". Pass an existing file of training text (any bytes; byte-level "
                     "vocabulary of 256), e.g. the corpus scripts/demo.sh writes to data/.");
  }
  if (S_ISDIR(st.st_mode)) {
    throw UsageError("--data " + path + " is a directory; pass a single file of bytes.");
  }
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!f) {
    throw UsageError("--data " + path + ": cannot open for reading: " + errno_string(errno) +
                     ". Check the file's permissions.");
  }
  std::vector<uint8_t> bytes(static_cast<size_t>(st.st_size));
  const size_t got = bytes.empty() ? 0 : std::fread(bytes.data(), 1, bytes.size(), f.get());
  if (got != bytes.size()) {
    // The file shrank under us or the device failed: not something an option can fix.
    throw RuntimeFailure("reading --data " + path + ": got " + std::to_string(got) + " of " +
                         std::to_string(bytes.size()) + " bytes" +
                         (std::ferror(f.get()) ? " (" + errno_string(errno) + ")" : "") +
                         "; was the file changed while training started?");
  }
  if (bytes.empty()) {
    throw UsageError("--data " + path + " is empty; pass a file with training text.");
  }
  return ByteFile(std::move(bytes), path);
}

}  // namespace dpt::datasets
