// Shared test helpers: paths to golden files, a temporary folder, running the CLI, random data, and
// closeness checks that report the worst element and its index.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace mambacpp::test {

// Absolute path of a file under tests/golden.
std::string golden(const std::string& rel);
// Absolute path of a file under ../shared (the data beside the checkout), or "" when it is absent.
std::string shared_file(const std::string& rel);

// A fresh empty folder, removed with its contents on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::filesystem::path& path() const { return path_; }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

std::string read_file(const std::string& path);
void write_file(const std::string& path, const std::string& bytes);

struct RunResult {
  int code = -1;    // exit code; 128 + signal if killed by a signal
  std::string out;  // stdout
  std::string err;  // stderr
};
// Runs the built `mambacpp` CLI with the given arguments (no shell), capturing both streams.
RunResult run_cli(const std::vector<std::string>& args);

// Uniform values in [lo, hi), deterministic for a seed.
std::vector<float> random_vector(size_t n, uint64_t seed, float lo = -1.0f, float hi = 1.0f);

// ‖got − ref‖₂ / ‖ref‖₂ (ref ≠ 0), with the index and values of the worst absolute difference.
struct Closeness {
  double rel_l2 = 0;
  double max_abs = 0;
  size_t worst = 0;
  double worst_got = 0, worst_ref = 0;
  bool any_nan = false;
  std::string describe() const;
};
Closeness compare(const float* got, const double* ref, size_t n);
Closeness compare(const float* got, const float* ref, size_t n);

// Expects `f` to throw mambacpp::Error whose message contains every one of `parts`.
void expect_error(const std::function<void()>& f, const std::vector<std::string>& parts);

// Success when the relative L2 error is at most `tol` and nothing is NaN; the failure message names the
// worst element. EXPECT_CLOSE(got, ref, n, tol) << "context" reports it.
::testing::AssertionResult is_close(const float* got, const double* ref, size_t n, double tol);
::testing::AssertionResult is_close(const float* got, const float* ref, size_t n, double tol);
#define EXPECT_CLOSE(got, ref, n, tol) EXPECT_TRUE(::mambacpp::test::is_close((got), (ref), (n), (tol)))

}  // namespace mambacpp::test
