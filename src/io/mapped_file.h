// MappedFile: a whole file mapped read-only into memory (mmap), unmapped on destruction. Move-only. Every error
// names the file and the operating system's reason. An empty file maps to a null pointer of size 0.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace mambacpp {

class MappedFile {
 public:
  // Maps `path`; throws Error if it cannot be opened, is not a regular file, or cannot be mapped.
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(MappedFile&& o) noexcept;
  MappedFile& operator=(MappedFile&& o) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  void release() noexcept;
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace mambacpp
