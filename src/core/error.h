// Errors: every failure a user can cause is a mambacpp::Error with a message that names the file, tensor,
// option or line at fault. Library code throws; only the CLI turns an Error into "error: ..." and exit code 1.
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace mambacpp {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace mambacpp

// MAMBA_CHECK(cond, "format {}", args...): throws mambacpp::Error with the formatted message when cond is false.
#define MAMBA_CHECK(cond, ...)                \
  do {                                        \
    if (!(cond)) ::mambacpp::fail(__VA_ARGS__); \
  } while (0)
