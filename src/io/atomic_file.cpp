// Atomic file and link replacement (atomic_file.h).
#include "io/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "core/error.h"

namespace mambacpp {

namespace {

void sync_parent(const std::string& path) {
  const std::string parent = std::filesystem::path(path).parent_path().string();
  const int dfd = ::open(parent.empty() ? "." : parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return;
  ::fsync(dfd);
  ::close(dfd);
}

}  // namespace

void write_all(int fd, const void* data, size_t n, const std::string& path) {
  const auto* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    MAMBA_CHECK(w > 0, "{}: write failed: {}", path, w < 0 ? std::strerror(errno) : "no space written");
    p += w;
    n -= size_t(w);
  }
}

void write_file_atomic(const std::string& path, const std::function<void(int fd)>& body) {
  std::string tmp = path + ".tmp-XXXXXX";
  int fd = ::mkstemp(tmp.data());
  MAMBA_CHECK(fd >= 0, "{}: cannot create a temporary file beside it: {}", path, std::strerror(errno));
  try {
    MAMBA_CHECK(::fchmod(fd, 0644) == 0, "{}: cannot set permissions: {}", tmp, std::strerror(errno));
    body(fd);
    MAMBA_CHECK(::fsync(fd) == 0, "{}: cannot flush to disk: {}", path, std::strerror(errno));
    const int rc = ::close(fd);
    fd = -1;
    MAMBA_CHECK(rc == 0, "{}: cannot close: {}", path, std::strerror(errno));
    MAMBA_CHECK(::rename(tmp.c_str(), path.c_str()) == 0, "{}: cannot replace it with the new file: {}", path,
                std::strerror(errno));
  } catch (...) {
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  // Make the rename itself durable; the new file is complete and in place whether or not this succeeds.
  sync_parent(path);
}

void write_file_atomic(const std::string& path, std::string_view bytes) {
  write_file_atomic(path, [&](int fd) { write_all(fd, bytes.data(), bytes.size(), path); });
}

std::string read_whole_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  MAMBA_CHECK(in.good(), "{}: cannot open for reading: {}", path, std::strerror(errno));
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  MAMBA_CHECK(!in.bad(), "{}: read failed", path);
  return s;
}

void replace_symlink(const std::string& link, const std::string& target) {
  const std::string tmp = link + ".tmp-link";
  ::unlink(tmp.c_str());
  MAMBA_CHECK(::symlink(target.c_str(), tmp.c_str()) == 0, "{}: cannot create a link to {}: {}", link, target,
              std::strerror(errno));
  if (::rename(tmp.c_str(), link.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    fail("{}: cannot replace the link: {}", link, std::strerror(err));
  }
  sync_parent(link);
}

}  // namespace mambacpp
