// The leaky ReLU RNN of docs/model.md, section 1 on the CPU, for one network: forward pass, task loss,
// and the gradients of the three learning rules. Templated on the scalar so that training runs
// in float (as the CUDA backend will) and the gradient tests run the same code in double.
// CUDA twins: kernels/train_step.cu (forward, loss, BPTT), kernels/eprop.cu (e-prop, RFLO).
//
// Shapes: H hidden, I inputs, O outputs, T steps, Bt trials. Time-major blocks: a matrix
// with T * Bt columns holds step t in columns [t * Bt, (t + 1) * Bt).
#pragma once

#include <type_traits>

#include "host/cpu/linalg.h"
#include "host/cpu/tasks.h"
#include "rnnsweep/model.h"

namespace rnnsweep::cpu {

// Views of one network's parameter block (layout: include/rnnsweep/model.h), or of a gradient
// block with the same layout. Scalar is Real for writable views, const Real for read-only ones.
template <typename Scalar>
struct NetView {
  using Real = std::remove_const_t<Scalar>;
  template <typename M>
  using Map = Eigen::Map<std::conditional_t<std::is_const_v<Scalar>, const M, M>>;
  Map<Mat<Real>> W_h, W_x, w;
  Map<Vec<Real>> b, b_out;
  NetView(const Shape& s, Scalar* p)
      : W_h(p, s.H, s.H),
        W_x(p + ParamLayout(s).W_x, s.H, s.I),
        w(p + ParamLayout(s).w, s.O, s.H),
        b(p + ParamLayout(s).b, s.bias ? s.H : 0),
        b_out(p + ParamLayout(s).b_out, s.bias ? s.O : 0) {}
};
template <typename Real>
using Net = NetView<Real>;
template <typename Real>
using ConstNet = NetView<const Real>;

// Everything the forward pass leaves for the backward pass.
template <typename Real>
struct Forward {
  Mat<Real> x;  // I x (T Bt): the inputs, in Real
  Mat<Real> h;  // H x ((T + 1) Bt): h_0 = 0, then h_1 .. h_T
  Mat<Real> f;  // relu(h), same shape
  Mat<Real> y;  // O x (T Bt): y_t = w f(h_{t+1}) + b_out
};

template <typename Real>
void forward(const Shape& s, Real a, const Real* params, const Trials& trials, Forward<Real>& fwd);

struct LossValue {
  double loss;
  double accuracy;  // see task_loss
};

// Loss of docs/model.md, section 3 and, if dL_dy is given, its gradient (O x T Bt).
// romo: 0.5 sum mask (y - target)^2 / sum mask; accuracy = fraction of trials whose output,
// averaged over the response period, is larger on the correct channel.
// 2af, dms: mean cross-entropy over all T Bt steps; accuracy = fraction of decision steps
// (label != 0) whose argmax equals the label.
template <typename Real>
LossValue task_loss(const Trials& trials, const Mat<Real>& y, Mat<Real>* dL_dy);

// Exact gradient (BPTT) of the loss whose output gradient is dL_dy; writes the whole block.
template <typename Real>
void bptt_gradient(const Shape& s, Real a, const Real* params, const Forward<Real>& fwd,
                   const Mat<Real>& dL_dy, Real* grad);

// e-prop (feedback = w^T) and RFLO (feedback = B), forward-mode eligibility traces
// (docs/model.md, section 4); writes the whole block. feedback is H x O.
template <typename Real>
void eprop_gradient(const Shape& s, Real a, const Real* params, const Forward<Real>& fwd,
                    const Mat<Real>& dL_dy, const Mat<Real>& feedback, Real* grad);

}  // namespace rnnsweep::cpu
