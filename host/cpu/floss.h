// Gradient flossing (docs/lyapunov.md, section 2; Engelken 2023): the loss L = sum_{i<k} lambda_i^2 on the
// leading Lyapunov exponents and its gradient with respect to W_h, made local as in the paper.
//
// Locality: the hidden states h_t (columns of hs, H x n) are constants, as if detached, so the
// slopes f'(h_t) are fixed. L depends on W_h only through the explicit W_h in each step Jacobian
// J_t = a I + (1 - a) W_h diag(f'(h_t)) and through the chain of thin QR factorisations
//     Q_0 = I[:, :k] (or a given frame),  M_t = J_t Q_{t-1},  (Q_t, R_t) = qr_positive(M_t),
//     lambda_i = (1/n) sum_t ln R_t(i,i),  t = 1..n
// -- the same lambda as lyapunov_spectrum with a QR every step. Reverse mode runs the chain
// backwards with the thin-QR adjoint (Seeger et al. 2018; BackwardsLinalg.jl qr.jl).
//
// CUDA twin: kernels/floss.cu
#pragma once

#include "host/cpu/lyapunov.h"

namespace rnnsweep::cpu {

template <typename Real>
struct FlossResult {
  Real loss;          // sum_{i < k_used} lambda_i^2
  Vec<Real> lambda;   // k_used exponents, QR order (as lyapunov_spectrum returns them)
  Mat<Real> dL_dW_h;  // H x H
  int k_used;         // k, or fewer when a step annihilates a direction (see below)
};

// Adjoint of thin QR (M = Q R, M tall or square, R with positive diagonal): given the loss
// gradients Q_bar (m x k) and R_bar (k x k) of the factors, returns M_bar (m x k):
//     M_bar = (Q_bar + Q copyltu(C)) R^{-T},   C = R R_bar^T - Q_bar^T Q,
// copyltu(C) = the symmetric matrix whose lower triangle is C's. Only the upper triangle of
// R_bar matters (R is upper triangular), so its strictly lower part must be zero. Exposed so that
// tests can check it on its own.
template <typename Real>
Mat<Real> qr_positive_backward(const Mat<Real>& Q, const Mat<Real>& R, const Mat<Real>& Q_bar,
                               const Mat<Real>& R_bar);

// L and dL/dW_h along hs (H x n, n >= 1) for the first k exponents (1..H).
// When a step annihilates one of the k directions (R_ii at or below annihilation_floor, which
// happens with a = 0 whenever fewer than k units are active), that exponent is -inf whatever
// W_h is and has no gradient; the loss then covers the k_used < k leading exponents that no
// step annihilated (k_used = 0: loss 0, zero gradient).
// Q0, as in lyapunov_spectrum, replaces the identity columns as the (constant) starting frame;
// see lyapunov.h for why a random frame is the safer start for relu networks.
// Stores the n + 1 frames (H x k each) of the forward pass for the backward pass.
template <typename Real>
FlossResult<Real> floss_loss_and_gradient(const Mat<Real>& W_h, Real a, const Mat<Real>& hs, int k,
                                          Activation act = Activation::relu, const Mat<Real>* Q0 = nullptr);

}  // namespace rnnsweep::cpu
