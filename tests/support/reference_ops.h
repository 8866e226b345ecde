// Reference implementations of every op in ops.h: plain loops in double over contiguous inputs, written for
// clarity, not speed. They are the oracle the CPU ops are tested against. Inputs are the same f32 values the
// op sees (bf16/f16 weights are passed converted to f32, which is exact); outputs are double.
//
// Shapes use the legend of ops.h; every array is contiguous, in the order of its shape comment. An empty span
// is an absent optional argument.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace mambacpp::ref {

double silu(double x);
// log(1 + e^x), and x itself above 20 (the reference definition).
double softplus(double x);

// y (m, o) = x (m, i) · wᵀ (o, i) + bias (o).
std::vector<double> linear(std::span<const float> x, std::span<const float> w, std::span<const float> bias,
                           int64_t m, int64_t i, int64_t o);

// out (m, d) = table (v, d)[ids (m)].
std::vector<double> embedding(std::span<const int32_t> ids, std::span<const float> table, int64_t d);

struct RmsNormResult {
  std::vector<double> out;       // (m, d)
  std::vector<double> residual;  // (m, d): residual + x
};
// residual (m, d) += x (m, d) (if given); out = residual / sqrt(mean(residual²) + eps) · w (d).
RmsNormResult rmsnorm(std::span<const float> residual, std::span<const float> x, std::span<const float> w,
                      int64_t m, int64_t d, double eps);

struct ConvResult {
  std::vector<double> out;    // (b, l, e)
  std::vector<double> state;  // (b, e, k-1): the last k-1 inputs
};
// out[b, t, c] = act(bias[c] + Σ_j w[c, j] · xx[b, t + j, c]), xx = state_in (b, e, k-1) then x (b, l, e).
ConvResult conv1d_causal(std::span<const float> x, std::span<const float> w, std::span<const float> bias,
                         std::span<const float> state_in, int64_t b, int64_t l, int64_t e, int64_t k, bool silu);

struct ScanInputs {
  int64_t b = 0, l = 0, e = 0, n = 0;
  std::span<const float> u, dt, z;  // (b, l, e); z may be empty
  std::span<const float> B, C;      // (b, l, n), or (e, n) when B_lti / C_lti (time-invariant)
  bool B_lti = false, C_lti = false;
  std::span<const float> A;         // (e, n)
  std::span<const float> D, dt_bias;  // (e) or empty
  std::span<const float> state_in;    // (b, e, n) or empty
  bool dt_softplus = true;
};
struct ScanResult {
  std::vector<double> y;      // (b, l, e)
  std::vector<double> state;  // (b, e, n)
};
// The selective scan of ops.h, one channel and one state element at a time.
ScanResult selective_scan(const ScanInputs& in);

}  // namespace mambacpp::ref
