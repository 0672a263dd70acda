// Durable file operations (see durable.h).
#include "storage/durable.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>

#include "common/errors.h"

namespace dpt::storage {

bool write_all(int fd, const void* data, size_t n) {
  const auto* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

bool pwrite_all(int fd, const void* data, size_t n, uint64_t offset) {
  const auto* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::pwrite(fd, p, n, static_cast<off_t>(offset));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
    offset += static_cast<uint64_t>(w);
  }
  return true;
}

bool pread_all(int fd, void* data, size_t n, uint64_t offset) {
  auto* p = static_cast<char*>(data);
  while (n > 0) {
    const ssize_t r = ::pread(fd, p, n, static_cast<off_t>(offset));
    if (r < 0 && errno == EINTR) continue;
    if (r == 0) errno = 0;
    if (r <= 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
    offset += static_cast<uint64_t>(r);
  }
  return true;
}

namespace {
bool sync_fd_of(const std::string& path, int flags, std::string* why) {
  const int fd = ::open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0) {
    *why = "cannot open " + path + " to sync it: " + errno_string(errno);
    return false;
  }
  const bool ok = ::fsync(fd) == 0 || ((flags & O_DIRECTORY) && errno == EINVAL);
  if (!ok) *why = "fsync of " + path + " failed: " + errno_string(errno);
  ::close(fd);
  return ok;
}
}  // namespace

void fsync_path(const std::string& path) {
  std::string why;
  if (!sync_fd_of(path, O_RDONLY, &why)) throw RuntimeFailure(why);
}

void fsync_directory(const std::string& dir) {
  std::string why;
  if (!sync_directory(dir, &why)) throw RuntimeFailure(why);
}

bool sync_directory(const std::string& dir, std::string* why) {
  return sync_fd_of(dir.empty() ? std::string(".") : dir, O_RDONLY | O_DIRECTORY, why);
}

std::string temp_suffix() {
  char host[256] = "host";
  ::gethostname(host, sizeof(host) - 1);
  return std::string(".tmp.") + host + "." + std::to_string(::getpid());
}

void publish_file(const std::string& tmp, const std::string& file) {
  fsync_path(tmp);
  if (::rename(tmp.c_str(), file.c_str()) != 0)
    throw RuntimeFailure("renaming " + tmp + " to " + file + " failed: " + errno_string(errno));
  const std::string dir = std::filesystem::path(file).parent_path().string();
  fsync_directory(dir.empty() ? "." : dir);
}

bool write_file_atomic(const std::string& file, const std::string& text, std::string* why) {
  const std::string tmp = file + temp_suffix();
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    *why = "cannot create " + tmp + ": " + errno_string(errno);
    return false;
  }
  bool ok = write_all(fd, text.data(), text.size());
  if (!ok) *why = "cannot write " + tmp + ": " + errno_string(errno);
  if (ok && ::fsync(fd) != 0) {
    ok = false;
    *why = "fsync of " + tmp + " failed: " + errno_string(errno);
  }
  if (::close(fd) != 0 && ok) {
    ok = false;
    *why = "closing " + tmp + " failed: " + errno_string(errno);
  }
  if (ok && ::rename(tmp.c_str(), file.c_str()) != 0) {
    ok = false;
    *why = "cannot rename " + tmp + " to " + file + ": " + errno_string(errno);
  }
  if (!ok) {
    ::unlink(tmp.c_str());
    return false;
  }
  return sync_directory(std::filesystem::path(file).parent_path().string(), why);
}

}  // namespace dpt::storage
