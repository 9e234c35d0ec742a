// Lyapunov spectrum of the leaky rate RNN by the QR method (docs/lyapunov.md, section 1; Vogt et al. 2022).
//
// The caller runs the network forward, drops the warm-up steps, and hands over the hidden states
// h_t (one column each). For each of them the step Jacobian
//     J_t = a I + (1 - a) W_h diag(f'(h_t))                                    (H x H)
// is applied to an orthonormal frame Q (H x k), the frame is re-orthonormalised by a QR
// factorisation with diag(R) > 0, and ln R_ii is accumulated: lambda_i = (1/n) sum_t ln R_t(i,i),
// natural log per time step. Shapes: H hidden, k exponents, n steps.
//
// CUDA twin: kernels/lyapunov.cu
#pragma once

#include "host/cpu/linalg.h"

namespace rnnsweep::cpu {

// identity exists only for analytic tests (f' = 1): the trainer always uses relu.
enum class Activation { relu, identity };

struct SpectrumOptions {
  int k;                  // number of exponents (1..H)
  int reortho_every = 1;  // QR every this many steps (1 = every step); plain Jacobian products in
                          // between, so the caller must pick it small enough that a product of
                          // that many Jacobians neither overflows nor loses the weak directions
};

// f'(h) elementwise: for relu 1 where h > 0 and 0 elsewhere (f'(0) = 0, the convention of
// PyTorch's relu backward, so the BPTT and Jacobian slopes agree); for identity all ones.
template <typename Real>
Vec<Real> activation_slope(const Eigen::Ref<const Vec<Real>>& h, Activation act);

// J_frame = J frame with J = a I + (1 - a) W_h diag(slope), without ever forming J.
// frame and J_frame are H x k and must not alias.
template <typename Real>
void apply_step_jacobian(const Mat<Real>& W_h, Real a, const Vec<Real>& slope, const Mat<Real>& frame,
                         Mat<Real>& J_frame);

// Thin QR, M = Q R with M (m x k, m >= k), Q (m x k) orthonormal columns, R (k x k) upper
// triangular with diag(R) > 0 (a zero R_ii of a rank-deficient M stays 0). The sign convention
// makes the factorisation unique for full-rank M, which is what makes ln R_ii meaningful and the
// factorisation differentiable. Throws std::invalid_argument for a wide M.
template <typename Real>
void qr_positive(const Mat<Real>& M, Mat<Real>& Q, Mat<Real>& R);

// lambda (length k) = (1/n) sum_t ln R_t(i,i) along the n columns of hs (H x n).
//
// The exponents are returned in the order QR produces them, not re-sorted: the QR iteration
// pushes the fastest-growing direction into the first column, the fastest-growing plane into the
// first two, and so on, so the order is already decreasing on average (the order Oseledets'
// theorem gives in the limit). Keeping it leaves index i the exponent of frame column i, which is
// what the CUDA twin produces and what the flossing gradient differentiates; at finite n two
// close exponents may come out slightly out of order. When no mixing happens -- a diagonal W_h
// started from identity columns -- the order is that of the diagonal, so tests of that case sort
// before comparing.
//
// Q0, if given, is an H x k orthonormal starting frame used instead of the first k columns of I.
// The identity start (the textbook default) has a trap with relu: while neuron j is silent,
// J_t e_j = a e_j, so the column e_j sits in an exactly invariant direction and leaves it only
// through rounding error. If neuron j is silent throughout, lambda_j = ln a whatever the true
// spectrum (a stuck first column hides the maximal exponent); if it is silent for a while, the
// escape time, and with it lambda, depends on machine precision (float and double then differ by
// about ln(eps_float / eps_double) / n = 21 / n). A random orthonormal Q0 avoids both, which is
// why a caller comparing backends or reporting the max LE should pass one.
//
// Annihilated directions. With a = 0 (2af, dms) J_t = W_h diag(f'(h_t)) has rank at most the
// number of active units, so QR steps meet directions that J_t maps to zero. In exact
// arithmetic R_ii = 0 and the exponent is -inf; in floating point R_ii is rounding noise
// (~1e-16 of ||J|| in double), whose logarithm (-27 .. -37) would pass for a finite exponent
// and, in flossing, dominate the loss. So an R_ii at or below annihilation_floor (a tiny fraction
// of the bound a + (1 - a) ||W_h||_F >= ||J_t||) counts as exactly 0 and gives -inf.
template <typename Real>
Real annihilation_floor(const Mat<Real>& W_h, Real a);

// ln R_ii for each i, -inf where R_ii <= floor.
template <typename Real>
Vec<Real> log_growth(const Mat<Real>& R, Real floor);
template <typename Real>
Vec<Real> lyapunov_spectrum(const Mat<Real>& W_h, Real a, const Mat<Real>& hs, const SpectrumOptions& opt,
                            Activation act = Activation::relu, const Mat<Real>* Q0 = nullptr);

}  // namespace rnnsweep::cpu
