// Optimizers over a flat parameter block. CUDA twin: kernels/adam.cu.
#pragma once

#include <cmath>
#include <cstddef>
#include <vector>

namespace rnnsweep::cpu {

struct AdamHyper {
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
};

template <typename Real>
struct AdamState {
  std::vector<Real> m, v;
  long step = 0;
  explicit AdamState(size_t n = 0) : m(n, Real(0)), v(n, Real(0)) {}
};

// One Adam step with PyTorch's semantics and order of operations (torch.optim.Adam,
// non-fused, amsgrad off): p -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps).
template <typename Real>
void adam_step(Real* p, const Real* grad, size_t n, double lr, const AdamHyper& hp, AdamState<Real>& st) {
  ++st.step;
  const Real b1 = Real(hp.beta1), b2 = Real(hp.beta2);
  const double bc1 = 1.0 - std::pow(hp.beta1, double(st.step));
  const double bc2 = 1.0 - std::pow(hp.beta2, double(st.step));
  const Real step_size = Real(lr / bc1), sqrt_bc2 = Real(std::sqrt(bc2)), eps = Real(hp.eps);
  for (size_t i = 0; i < n; ++i) {
    st.m[i] = b1 * st.m[i] + (1 - b1) * grad[i];
    st.v[i] = b2 * st.v[i] + (1 - b2) * grad[i] * grad[i];
    p[i] -= step_size * st.m[i] / (std::sqrt(st.v[i]) / sqrt_bc2 + eps);
  }
}

template <typename Real>
void sgd_step(Real* p, const Real* grad, size_t n, double lr) {
  for (size_t i = 0; i < n; ++i) p[i] -= Real(lr) * grad[i];
}

}  // namespace rnnsweep::cpu
