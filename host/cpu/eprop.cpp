// e-prop and RFLO: the paper's truncated gradient in forward mode. CUDA twin: kernels/eprop.cu.
//
// Per batch element (docs/model.md, section 4):
//   e_{t+1} = a e_t + (1 - a) f(h_t)     presynaptic trace of W_h
//   q_{t+1} = a q_t + (1 - a) x_t        trace of W_x
//   c_{t+1} = a c_t + (1 - a)            trace of the bias (the same for every unit)
//   L_t     = f'(h_{t+1}) * (feedback dL/dy_t)      learning signal; feedback = w^T or B
//   dW_h = sum_t L_t e_{t+1}^T,  dW_x = sum_t L_t q_{t+1}^T,  dw exact.
// The traces only look back, so they could run inside the forward loop; here each sum over
// (t, trial) is one product over the T Bt columns, which is what makes e-prop cheaper than BPTT.
#include "host/cpu/model.h"

namespace rnnsweep::cpu {

template <typename Real>
void eprop_gradient(const Shape& s, Real a, const Real* params, const Forward<Real>& fwd,
                    const Mat<Real>& dL_dy, const Mat<Real>& feedback, Real* grad) {
  (void)params;  // e-prop never reads W_h backwards: that is the point of the rule
  Net<Real> g(s, grad);
  const Eigen::Index TB = dL_dy.cols(), Bt = fwd.h.cols() - TB, T = TB / Bt;
  // Scratch reused across calls on this thread (see forward() in model.cpp for why).
  thread_local Mat<Real> signal, e_trace, q_trace;
  thread_local Vec<Real> c_trace;
  signal.noalias() = feedback * dL_dy;
  signal.array() *= (fwd.h.rightCols(TB).array() > Real(0)).template cast<Real>();  // f'(h_{t+1})

  e_trace.resize(s.H, TB);
  q_trace.resize(s.I, TB);
  c_trace.resize(T);
  for (Eigen::Index t = 0; t < T; ++t) {
    auto e = e_trace.middleCols(t * Bt, Bt);
    auto q = q_trace.middleCols(t * Bt, Bt);
    e = (1 - a) * fwd.f.middleCols(t * Bt, Bt);
    q = (1 - a) * fwd.x.middleCols(t * Bt, Bt);
    c_trace(t) = 1 - a;
    if (t > 0) {
      e += a * e_trace.middleCols((t - 1) * Bt, Bt);
      q += a * q_trace.middleCols((t - 1) * Bt, Bt);
      c_trace(t) += a * c_trace(t - 1);
    }
  }
  g.W_h.noalias() = signal * e_trace.transpose();
  g.W_x.noalias() = signal * q_trace.transpose();
  g.w.noalias() = dL_dy * fwd.f.rightCols(TB).transpose();
  if (s.bias) {
    g.b.setZero();
    for (Eigen::Index t = 0; t < T; ++t) g.b += c_trace(t) * signal.middleCols(t * Bt, Bt).rowwise().sum();
    g.b_out = dL_dy.rowwise().sum();
  }
}

template void eprop_gradient<float>(const Shape&, float, const float*, const Forward<float>&,
                                    const Mat<float>&, const Mat<float>&, float*);
template void eprop_gradient<double>(const Shape&, double, const double*, const Forward<double>&,
                                     const Mat<double>&, const Mat<double>&, double*);

}  // namespace rnnsweep::cpu
