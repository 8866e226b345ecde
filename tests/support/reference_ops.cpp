// Reference ops in double (see reference_ops.h).
#include "support/reference_ops.h"

#include <cmath>

namespace mambacpp::ref {

double silu(double x) { return x / (1.0 + std::exp(-x)); }
double softplus(double x) { return x > 20.0 ? x : std::log1p(std::exp(x)); }

std::vector<double> linear(std::span<const float> x, std::span<const float> w, std::span<const float> bias,
                           int64_t m, int64_t i, int64_t o) {
  std::vector<double> y(size_t(m * o));
  for (int64_t r = 0; r < m; ++r)
    for (int64_t c = 0; c < o; ++c) {
      double s = bias.empty() ? 0.0 : double(bias[c]);
      for (int64_t k = 0; k < i; ++k) s += double(x[r * i + k]) * double(w[c * i + k]);
      y[r * o + c] = s;
    }
  return y;
}

std::vector<double> embedding(std::span<const int32_t> ids, std::span<const float> table, int64_t d) {
  std::vector<double> out(ids.size() * size_t(d));
  for (size_t r = 0; r < ids.size(); ++r)
    for (int64_t c = 0; c < d; ++c) out[r * d + c] = table[size_t(ids[r]) * d + c];
  return out;
}

RmsNormResult rmsnorm(std::span<const float> residual, std::span<const float> x, std::span<const float> w,
                      int64_t m, int64_t d, double eps) {
  RmsNormResult res{std::vector<double>(size_t(m * d)), std::vector<double>(size_t(m * d))};
  for (int64_t r = 0; r < m; ++r) {
    double sq = 0;
    for (int64_t c = 0; c < d; ++c) {
      const double v = double(residual[r * d + c]) + (x.empty() ? 0.0 : double(x[r * d + c]));
      res.residual[r * d + c] = v;
      sq += v * v;
    }
    const double scale = 1.0 / std::sqrt(sq / double(d) + eps);
    for (int64_t c = 0; c < d; ++c) res.out[r * d + c] = res.residual[r * d + c] * scale * double(w[c]);
  }
  return res;
}

ConvResult conv1d_causal(std::span<const float> x, std::span<const float> w, std::span<const float> bias,
                         std::span<const float> state_in, int64_t b, int64_t l, int64_t e, int64_t k, bool silu) {
  ConvResult res{std::vector<double>(size_t(b * l * e)), std::vector<double>(size_t(b * e * (k - 1)))};
  for (int64_t bi = 0; bi < b; ++bi)
    for (int64_t c = 0; c < e; ++c) {
      // xx[p], p in [0, k-1+l): the k-1 remembered inputs, then this channel of x.
      auto xx = [&](int64_t p) -> double {
        if (p < k - 1) return state_in.empty() ? 0.0 : double(state_in[(bi * e + c) * (k - 1) + p]);
        return double(x[(bi * l + (p - (k - 1))) * e + c]);
      };
      for (int64_t t = 0; t < l; ++t) {
        double s = bias.empty() ? 0.0 : double(bias[c]);
        for (int64_t j = 0; j < k; ++j) s += double(w[c * k + j]) * xx(t + j);
        res.out[(bi * l + t) * e + c] = silu ? ref::silu(s) : s;
      }
      for (int64_t j = 0; j < k - 1; ++j) res.state[(bi * e + c) * (k - 1) + j] = xx(l + j);
    }
  return res;
}

ScanResult selective_scan(const ScanInputs& in) {
  const int64_t b = in.b, l = in.l, e = in.e, n = in.n;
  ScanResult res{std::vector<double>(size_t(b * l * e)), std::vector<double>(size_t(b * e * n))};
  std::vector<double> h(static_cast<size_t>(n));
  for (int64_t bi = 0; bi < b; ++bi)
    for (int64_t c = 0; c < e; ++c) {
      for (int64_t s = 0; s < n; ++s) h[s] = in.state_in.empty() ? 0.0 : double(in.state_in[(bi * e + c) * n + s]);
      for (int64_t t = 0; t < l; ++t) {
        const int64_t tc = (bi * l + t) * e + c;  // index into (b, l, e)
        const int64_t ts = (bi * l + t) * n;      // row of (b, l, n)
        const double raw = double(in.dt[tc]) + (in.dt_bias.empty() ? 0.0 : double(in.dt_bias[c]));
        const double delta = in.dt_softplus ? softplus(raw) : raw;
        const double u = in.u[tc];
        double y = 0;
        for (int64_t s = 0; s < n; ++s) {
          const double B = in.B[in.B_lti ? c * n + s : ts + s], C = in.C[in.C_lti ? c * n + s : ts + s];
          h[s] = std::exp(delta * double(in.A[c * n + s])) * h[s] + delta * B * u;
          y += h[s] * C;
        }
        if (!in.D.empty()) y += double(in.D[c]) * u;
        if (!in.z.empty()) y *= silu(double(in.z[tc]));
        res.y[tc] = y;
      }
      for (int64_t s = 0; s < n; ++s) res.state[(bi * e + c) * n + s] = h[s];
    }
  return res;
}

}  // namespace mambacpp::ref
