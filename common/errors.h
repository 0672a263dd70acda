// Error types and the one checking-macro family every folder uses.
//
// [Error contract]
// - UsageError: the user's input or configuration is wrong (an option, a file, a size).
//   main() maps it to exit code 2. The message says what is wrong, where, and what to change.
// - RuntimeFailure: a call failed while doing valid work (a library call, I/O, a collective).
//   main() maps it to exit code 1. The message names the call, function, file:line, rank, host.
// - The DPT_CHECK family throws RuntimeFailure through one [[noreturn]] handler. Library
//   specific aliases (CUDA, cuBLAS, NCCL, MPI, HDF5) live next to the code that uses the library
//   and expand to DPT_CHECK_GEN, so every failure reads the same.
#pragma once

#include <stdexcept>
#include <string>

namespace dpt {

class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class RuntimeFailure : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Rank and host are added to every failure message once comm/ knows them.
void set_error_context(int rank, const std::string& host);
std::string error_context();  // "rank 3 on host gpu-017", or "" before set_error_context

// Throws RuntimeFailure: "<kind> failed: <call>: <detail> [in func at file:line, rank r on host
// h]".
[[noreturn]] void fail_check(const char* kind, const char* call, const std::string& detail,
                             const char* func, const char* file, int line);

// Inside a catch block: the [Error contract] exit code of the exception in flight (2 for
// UsageError, else 1); *what receives its message.
int exit_code_of_current_exception(std::string* what);

// For a tool's main(), inside a catch block: prints "<program>: error: <what>" to stderr and
// returns the [Error contract] exit code of the exception in flight (2 for UsageError, else 1).
int report_exception(const char* program);

// "strerror(errno)" as a std::string, thread-safe.
std::string errno_string(int err);

}  // namespace dpt

// Generic form: `ok` is evaluated once against the call's result `_dpt_rc`; `describe` turns
// _dpt_rc into text.
#define DPT_CHECK_GEN(kind, call, ok, describe)                                 \
  do {                                                                          \
    auto _dpt_rc = (call);                                                      \
    if (!(ok)) {                                                                \
      ::dpt::fail_check(kind, #call, (describe), __func__, __FILE__, __LINE__); \
    }                                                                           \
  } while (0)

// An internal invariant or precondition; `msg` is any expression convertible to std::string.
#define DPT_CHECK(cond, msg)                                                  \
  do {                                                                        \
    if (!(cond)) {                                                            \
      ::dpt::fail_check("check", #cond, (msg), __func__, __FILE__, __LINE__); \
    }                                                                         \
  } while (0)

// libc/POSIX calls that return -1 and set errno.
#define DPT_CHECK_POSIX(call) DPT_CHECK_GEN("libc", call, _dpt_rc != -1, ::dpt::errno_string(errno))
