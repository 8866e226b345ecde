// Double-precision forwards and finite differences for the gradient checks (see reference_backward.h).
#include "support/reference_backward.h"

#include <algorithm>
#include <cmath>

#include "support/reference_ops.h"

namespace mambacpp::ref {

Vd to_double(const std::vector<float>& v) { return Vd(v.begin(), v.end()); }

Vd linear_d(const Vd& x, const Vd& w, const Vd& bias, int64_t m, int64_t i, int64_t o) {
  Vd y(size_t(m * o));
  for (int64_t r = 0; r < m; ++r)
    for (int64_t c = 0; c < o; ++c) {
      double s = bias.empty() ? 0.0 : bias[c];
      for (int64_t k = 0; k < i; ++k) s += x[r * i + k] * w[c * i + k];
      y[r * o + c] = s;
    }
  return y;
}

Vd rmsnorm_d(const Vd& residual, const Vd& x, const Vd& w, int64_t m, int64_t d, double eps) {
  Vd out(size_t(m * d));
  for (int64_t r = 0; r < m; ++r) {
    double sq = 0;
    for (int64_t c = 0; c < d; ++c) {
      const double v = residual[r * d + c] + (x.empty() ? 0.0 : x[r * d + c]);
      sq += v * v;
    }
    const double s = 1.0 / std::sqrt(sq / double(d) + eps);
    for (int64_t c = 0; c < d; ++c)
      out[r * d + c] = (residual[r * d + c] + (x.empty() ? 0.0 : x[r * d + c])) * s * w[c];
  }
  return out;
}

Vd conv1d_d(const Vd& x, const Vd& w, const Vd& bias, const Vd& state_in, int64_t b, int64_t l, int64_t e,
            int64_t k, bool silu) {
  Vd out(size_t(b * l * e));
  for (int64_t bi = 0; bi < b; ++bi)
    for (int64_t c = 0; c < e; ++c)
      for (int64_t t = 0; t < l; ++t) {
        double s = bias.empty() ? 0.0 : bias[c];
        for (int64_t j = 0; j < k; ++j) {
          const int64_t p = t + j;  // index into state_in then x
          if (p < k - 1) {
            if (!state_in.empty()) s += w[c * k + j] * state_in[(bi * e + c) * (k - 1) + p];
          } else {
            s += w[c * k + j] * x[(bi * l + p - (k - 1)) * e + c];
          }
        }
        out[(bi * l + t) * e + c] = silu ? ref::silu(s) : s;
      }
  return out;
}

Vd scan_d(const ScanD& in) {
  const int64_t b = in.b, l = in.l, e = in.e, n = in.n;
  Vd out(size_t(b * l * e + b * e * n));
  Vd h(static_cast<size_t>(n));
  for (int64_t bi = 0; bi < b; ++bi)
    for (int64_t c = 0; c < e; ++c) {
      for (int64_t s = 0; s < n; ++s) h[s] = in.state_in.empty() ? 0.0 : in.state_in[(bi * e + c) * n + s];
      for (int64_t t = 0; t < l; ++t) {
        const int64_t tc = (bi * l + t) * e + c, ts = (bi * l + t) * n;
        const double raw = in.dt[tc] + (in.dt_bias.empty() ? 0.0 : in.dt_bias[c]);
        const double delta = in.dt_softplus ? softplus(raw) : raw;
        double y = in.D.empty() ? 0.0 : in.D[c] * in.u[tc];
        for (int64_t s = 0; s < n; ++s) {
          const double B = in.B[in.B_lti ? c * n + s : ts + s], C = in.C[in.C_lti ? c * n + s : ts + s];
          h[s] = std::exp(delta * in.A[c * n + s]) * h[s] + delta * B * in.u[tc];
          y += h[s] * C;
        }
        out[tc] = in.z.empty() ? y : y * silu(in.z[tc]);
      }
      for (int64_t s = 0; s < n; ++s) out[b * l * e + (bi * e + c) * n + s] = h[s];
    }
  return out;
}

double cross_entropy_d(const Vd& x, const Vd& w, const std::vector<int32_t>& targets, int64_t m, int64_t d,
                       int64_t v) {
  const Vd logits = linear_d(x, w, {}, m, d, v);
  double total = 0;
  for (int64_t r = 0; r < m; ++r) {
    if (targets[r] < 0) continue;
    const double* row = logits.data() + r * v;
    const double mx = *std::max_element(row, row + v);
    double sum = 0;
    for (int64_t c = 0; c < v; ++c) sum += std::exp(row[c] - mx);
    total += std::log(sum) + mx - row[targets[r]];
  }
  return total;
}

Vd numeric_grad(const std::function<Vd()>& f, Vd& x, const Vd& proj, double h) {
  auto project = [&](const Vd& y) {
    double s = 0;
    for (size_t i = 0; i < y.size(); ++i) s += y[i] * proj[i];
    return s;
  };
  Vd g(x.size());
  for (size_t j = 0; j < x.size(); ++j) {
    const double x0 = x[j], step = h * std::max(1.0, std::fabs(x0));
    x[j] = x0 + step;
    const double up = project(f());
    x[j] = x0 - step;
    const double down = project(f());
    x[j] = x0;
    g[j] = (up - down) / (2 * step);
  }
  return g;
}

}  // namespace mambacpp::ref
