// What the CUDA scan forward suites (test_cuda_scan.cpp, test_cuda_scan_variants.cpp) share: their tolerances,
// written once, and the CudaScan fixture, which skips every test where no GPU is present.
#pragma once

#include <gtest/gtest.h>

#include "cuda/cuda_test_util.h"

namespace mambacpp::test {

// Relative L2 tolerances. f32 results carry only ex2.approx (relative error ~2⁻²² per exponential, compounded
// along the state's memory), the softplus polynomial (2e-7) and f32 rounding: about 1e-7 to 7e-7 measured on an
// H100 over this table. bf16 and f16 outputs add their own rounding, 2⁻⁹ and 2⁻¹¹ relative (1.6e-3 to 1.9e-3
// and 2e-4 measured).
constexpr double kTolF32 = 1e-5;
constexpr double kTolBf16Out = 3e-3;
constexpr double kTolF16Out = 5e-4;

class CudaScan : public ::testing::Test {
 protected:
  void SetUp() override { SKIP_WITHOUT_GPU(); }
};

}  // namespace mambacpp::test
