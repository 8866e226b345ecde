// Shared test helpers (see test_util.h).
#include "support/test_util.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <fstream>
#include <random>
#include <sstream>

#include "core/error.h"
#include "core/rng.h"

extern char** environ;

namespace mambacpp::test {

std::string golden(const std::string& rel) { return std::string(MAMBACPP_GOLDEN_DIR) + "/" + rel; }

std::string shared_file(const std::string& rel) {
  const std::string p = std::string(MAMBACPP_SHARED_DIR) + "/" + rel;
  return std::filesystem::exists(p) ? p : std::string();
}

TempDir::TempDir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "mambacpp-test-XXXXXX").string();
  char* p = mkdtemp(tmpl.data());
  if (!p) throw std::runtime_error("mkdtemp failed");
  path_ = p;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot read " + path);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), std::streamsize(bytes.size()));
  if (!f) throw std::runtime_error("cannot write " + path);
}

RunResult run_cli(const std::vector<std::string>& args) {
  TempDir dir;
  const std::string out_path = dir.file("stdout"), err_path = dir.file("stderr");
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_addopen(&fa, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  std::vector<std::string> all = {MAMBACPP_CLI};
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : all) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  RunResult r;
  if (posix_spawn(&pid, MAMBACPP_CLI, &fa, nullptr, argv.data(), environ) != 0) {
    posix_spawn_file_actions_destroy(&fa);
    throw std::runtime_error(std::string("cannot start ") + MAMBACPP_CLI);
  }
  posix_spawn_file_actions_destroy(&fa);
  int status = 0;
  waitpid(pid, &status, 0);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = read_file(out_path);
  r.err = read_file(err_path);
  return r;
}

void expect_error(const std::function<void()>& f, const std::vector<std::string>& parts) {
  try {
    f();
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const std::string& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
    return;
  }
  ADD_FAILURE() << "no mambacpp::Error thrown";
}

std::vector<float> random_vector(size_t n, uint64_t seed, float lo, float hi) {
  Rng rng(seed);
  std::vector<float> v(n);
  for (auto& x : v) x = lo + float(rng.uniform()) * (hi - lo);
  return v;
}

std::string Closeness::describe() const {
  std::ostringstream ss;
  ss << "rel_l2=" << rel_l2 << " max_abs=" << max_abs << " worst at [" << worst << "]: got " << worst_got
     << ", expected " << worst_ref << (any_nan ? " (NaN present)" : "");
  return ss.str();
}

template <typename R>
static Closeness compare_impl(const float* got, const R* ref, size_t n) {
  Closeness c;
  double num = 0, den = 0;
  for (size_t i = 0; i < n; ++i) {
    const double g = got[i], r = double(ref[i]);
    if (std::isnan(g) || std::isnan(r)) c.any_nan = true;
    const double d = std::abs(g - r);
    num += d * d;
    den += r * r;
    if (d > c.max_abs || (i == 0)) {
      c.max_abs = d;
      c.worst = i;
      c.worst_got = g;
      c.worst_ref = r;
    }
  }
  c.rel_l2 = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  return c;
}

Closeness compare(const float* got, const double* ref, size_t n) { return compare_impl(got, ref, n); }
Closeness compare(const float* got, const float* ref, size_t n) { return compare_impl(got, ref, n); }

template <typename R>
static ::testing::AssertionResult is_close_impl(const float* got, const R* ref, size_t n, double tol) {
  const Closeness c = compare(got, ref, n);
  if (!c.any_nan && c.rel_l2 <= tol) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "tolerance " << tol << ": " << c.describe();
}

::testing::AssertionResult is_close(const float* got, const double* ref, size_t n, double tol) {
  return is_close_impl(got, ref, n, tol);
}
::testing::AssertionResult is_close(const float* got, const float* ref, size_t n, double tol) {
  return is_close_impl(got, ref, n, tol);
}

}  // namespace mambacpp::test
