// Exact gradient by backpropagation through time. CUDA twin: kernels/train_step.cu.
//
// With delta_t = dL/dh_t (all paths), for t = T .. 1:
//   delta_t = f'(h_t) * (w^T dL/dy_{t-1}) + a delta_{t+1} + (1 - a) f'(h_t) * (W_h^T delta_{t+1})
// and the parameter gradients are sums over steps, each done as one product over all T Bt
// columns: dW_h = (1 - a) Delta F^T, dW_x = (1 - a) Delta X^T, dw = G F^T.
#include "host/cpu/model.h"

namespace rnnsweep::cpu {

template <typename Real>
void bptt_gradient(const Shape& s, Real a, const Real* params, const Forward<Real>& fwd,
                   const Mat<Real>& dL_dy, Real* grad) {
  const ConstNet<Real> net(s, params);
  Net<Real> g(s, grad);
  const Eigen::Index TB = dL_dy.cols(), Bt = fwd.h.cols() - TB, T = TB / Bt;
  // Scratch reused across calls on this thread (see forward() in model.cpp for why).
  thread_local Eigen::Array<Real, Eigen::Dynamic, Eigen::Dynamic> active;  // f'(h_1) .. f'(h_T)
  thread_local Mat<Real> delta, through_W;
  active = (fwd.h.rightCols(TB).array() > Real(0)).template cast<Real>();

  // delta starts as the direct term f'(h_{t+1}) (w^T dL/dy_t) and is completed in place.
  delta.noalias() = net.w.transpose() * dL_dy;
  delta.array() *= active;
  for (Eigen::Index t = T - 2; t >= 0; --t) {
    // column block t holds delta_{t+1}; block t + 1 holds delta_{t+2}, already complete
    auto later = delta.middleCols((t + 1) * Bt, Bt);
    through_W.noalias() = net.W_h.transpose() * later;
    delta.middleCols(t * Bt, Bt).array() +=
        a * later.array() + (1 - a) * active.middleCols(t * Bt, Bt) * through_W.array();
  }
  g.W_h.noalias() = (1 - a) * delta * fwd.f.leftCols(TB).transpose();
  g.W_x.noalias() = (1 - a) * delta * fwd.x.transpose();
  g.w.noalias() = dL_dy * fwd.f.rightCols(TB).transpose();
  if (s.bias) {
    g.b = (1 - a) * delta.rowwise().sum();
    g.b_out = dL_dy.rowwise().sum();
  }
}

template void bptt_gradient<float>(const Shape&, float, const float*, const Forward<float>&,
                                   const Mat<float>&, float*);
template void bptt_gradient<double>(const Shape&, double, const double*, const Forward<double>&,
                                    const Mat<double>&, double*);

}  // namespace rnnsweep::cpu
