// Implementation of the error contract in errors.h.
#include "common/errors.h"

#include <cstdio>
#include <cstring>
#include <mutex>

namespace dpt {
namespace {
std::mutex g_context_mutex;
std::string g_context;
}  // namespace

void set_error_context(int rank, const std::string& host) {
  std::lock_guard<std::mutex> lock(g_context_mutex);
  g_context = "rank " + std::to_string(rank) + " on host " + host;
}

std::string error_context() {
  std::lock_guard<std::mutex> lock(g_context_mutex);
  return g_context;
}

void fail_check(const char* kind, const char* call, const std::string& detail, const char* func,
                const char* file, int line) {
  std::string msg = std::string(kind) + " failed: " + call;
  if (!detail.empty()) msg += ": " + detail;
  msg += " [in " + std::string(func) + " at " + file + ":" + std::to_string(line);
  const std::string ctx = error_context();
  if (!ctx.empty()) msg += ", " + ctx;
  msg += "]";
  throw RuntimeFailure(msg);
}

int exit_code_of_current_exception(std::string* what) {
  try {
    throw;
  } catch (const UsageError& e) {
    *what = e.what();
    return 2;
  } catch (const std::exception& e) {
    *what = e.what();
  } catch (...) {
    *what = "unknown exception";
  }
  return 1;
}

int report_exception(const char* program) {
  std::string what;
  const int code = exit_code_of_current_exception(&what);
  std::fprintf(stderr, "%s: error: %s\n", program, what.c_str());
  return code;
}

std::string errno_string(int err) {
  char buf[256];
  // GNU strerror_r may return a static string instead of filling buf.
  const char* s = strerror_r(err, buf, sizeof(buf));
  return std::string(s) + " (errno " + std::to_string(err) + ")";
}

}  // namespace dpt
