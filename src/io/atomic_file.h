// File helpers: crash-safe replacement of outputs (a file is written to a temporary name beside its
// final path, flushed to disk and renamed over it, so a reader sees either the old or the new file, never a
// part), and whole-file reading.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>

namespace mambacpp {

// Writes `bytes` to `path` atomically. On failure (a full disk, a size limit, no permission) throws Error
// naming `path`, removes the temporary file and leaves `path` as it was.
void write_file_atomic(const std::string& path, std::string_view bytes);
// The same, with the content written by `body` to the temporary file's descriptor (for large outputs).
void write_file_atomic(const std::string& path, const std::function<void(int fd)>& body);
// Writes all `n` bytes to `fd`, retrying short writes; throws Error naming `path` on failure.
void write_all(int fd, const void* data, size_t n, const std::string& path);

// The whole content of `path`; throws Error naming it when it cannot be read.
std::string read_whole_file(const std::string& path);

// Points the symbolic link `link` at `target` (a name relative to the link's folder), replacing any previous
// link atomically (a new link under a temporary name, renamed over `link`).
void replace_symlink(const std::string& link, const std::string& target);

}  // namespace mambacpp
