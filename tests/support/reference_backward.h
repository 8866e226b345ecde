// Double-precision forward ops for gradient checks, and central finite differences.
//
// The forwards repeat the mathematics of ops.h (and of the fused head + cross-entropy of ops_backward.h) as
// plain loops over double inputs, so that a central difference with a small step measures the true derivative
// to about 1e-9: the backward ops (f32) are compared against these numbers. Shapes use the legend of ops.h;
// every array is contiguous in the order of its shape comment; an empty vector is an absent optional argument.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

namespace mambacpp::ref {

using Vd = std::vector<double>;

Vd to_double(const std::vector<float>& v);

// y (m, o) = x (m, i) · wᵀ (o, i) + bias (o).
Vd linear_d(const Vd& x, const Vd& w, const Vd& bias, int64_t m, int64_t i, int64_t o);
// out (m, d) = r / sqrt(mean(r²) + eps) · w with r = residual + x (x may be empty).
Vd rmsnorm_d(const Vd& residual, const Vd& x, const Vd& w, int64_t m, int64_t d, double eps);
// out (b, l, e) of the causal conv1d (act = SiLU when `silu`), from state_in (b, e, k-1) or zeros.
Vd conv1d_d(const Vd& x, const Vd& w, const Vd& bias, const Vd& state_in, int64_t b, int64_t l, int64_t e,
            int64_t k, bool silu);

struct ScanD {
  int64_t b = 0, l = 0, e = 0, n = 0;
  Vd u, dt, z;       // (b, l, e); z may be empty
  Vd B, C;           // (b, l, n), or (e, n) when B_lti / C_lti (time-invariant)
  bool B_lti = false, C_lti = false;
  Vd A;              // (e, n)
  Vd D, dt_bias;     // (e) or empty
  Vd state_in;       // (b, e, n) or empty
  bool dt_softplus = true;
};
// y (b, l, e) followed by the final state (b, e, n), as one vector.
Vd scan_d(const ScanD& in);

// Σ over rows with targets[r] ≥ 0 of −log softmax(x (m, d) · wᵀ (v, d))[targets[r]].
double cross_entropy_d(const Vd& x, const Vd& w, const std::vector<int32_t>& targets, int64_t m, int64_t d,
                       int64_t v);

// ∂/∂x[j] of Σ_i f()[i] · proj[i], for every j, by central differences of step h·max(1, |x[j]|); f reads x,
// which is perturbed in place and restored.
Vd numeric_grad(const std::function<Vd()>& f, Vd& x, const Vd& proj, double h = 1e-6);

}  // namespace mambacpp::ref
