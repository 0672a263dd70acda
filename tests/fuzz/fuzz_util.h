// What the fuzz targets share: the input as a file (the readers under test take paths), and
// the one rule every target checks: a reader of untrusted input either succeeds or throws
// UsageError, the project's "bad input, exit 2" ([Error contract]); any other exception, like a
// crash, is a finding.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include "common/errors.h"

namespace dpt::fuzz {

// A file in /dev/shm (memory, no disk wear) holding the input, rewritten for every input.
inline const std::string& input_file(const char* name) {
  static const std::string path =
      "/dev/shm/dpt-fuzz-" + std::to_string(::getpid()) + "-" + std::string(name);
  return path;
}

inline void write_input(const std::string& path, const uint8_t* data, size_t size) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) std::abort();
  for (size_t done = 0; done < size;) {
    const ssize_t n = ::write(fd, data + done, size - done);
    if (n <= 0) std::abort();
    done += static_cast<size_t>(n);
  }
  ::close(fd);
}

// Runs fn; a UsageError is an accepted answer, anything else thrown is a finding (abort, so that
// libFuzzer saves the input).
template <typename F>
void usage_errors_only(const char* target, F&& fn) {
  try {
    fn();
  } catch (const UsageError&) {
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: not a UsageError: %s\n", target, e.what());
    std::abort();
  } catch (...) {
    std::fprintf(stderr, "%s: a non-standard exception\n", target);
    std::abort();
  }
}

}  // namespace dpt::fuzz
