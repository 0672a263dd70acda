// Durable file operations: the steps of an atomic publication (write under a temporary name,
// fsync, rename, fsync the directory) and complete reads and writes at an offset.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace dpt::storage {

// Whole-buffer I/O that retries short transfers and EINTR; false with errno set on failure
// (a read that meets the end of the file sets errno to 0).
bool write_all(int fd, const void* data, size_t n);
bool pwrite_all(int fd, const void* data, size_t n, uint64_t offset);
bool pread_all(int fd, void* data, size_t n, uint64_t offset);

// fsync of a file or a directory by path; throws RuntimeFailure naming the path. File systems
// that cannot fsync a directory answer EINVAL, which counts as done: nothing more is possible.
void fsync_path(const std::string& path);
void fsync_directory(const std::string& dir);
// The non-throwing form for callers that report a failure as a warning.
bool sync_directory(const std::string& dir, std::string* why);

// ".tmp.<host>.<pid>": jobs on several nodes may write the same file on a shared file system
// at once, and pids repeat across nodes.
std::string temp_suffix();

// Publishes a file written under a temporary name (file + temp_suffix()) atomically and
// durably: fsync of tmp, rename to file, fsync of file's directory. Throws RuntimeFailure
// naming what failed.
void publish_file(const std::string& tmp, const std::string& file);

// Writes text to file atomically and durably: a temporary beside it, fsync, rename, fsync of
// the directory. False with *why set on failure (the temporary is removed).
bool write_file_atomic(const std::string& file, const std::string& text, std::string* why);

}  // namespace dpt::storage
