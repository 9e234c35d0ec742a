// Gradient-flossing loss and its local gradient; see floss.h for the contract.
//
// Backward pass, step t = n..1 (Q_bar_n = 0 since the last frame feeds nothing):
//   R_bar_t = diag(dL/dR_t(i,i)) = diag(2 lambda_i / (n R_t(i,i)))   (L = sum lambda_i^2 and
//             lambda_i = (1/n) sum_t ln R_t(i,i); off-diagonal R entries do not enter L)
//   M_bar_t = qr_positive_backward(Q_t, R_t, Q_bar_t, R_bar_t)
//   M_t = a Q_{t-1} + (1 - a) W_h D_t Q_{t-1},  D_t = diag(f'(h_t)) constant, hence
//   W_h_bar += (1 - a) M_bar_t (D_t Q_{t-1})^T
//   Q_bar_{t-1} = J_t^T M_bar_t = a M_bar_t + (1 - a) D_t W_h^T M_bar_t
// Q_{t-1} reaches L through M_t only (R_{t-1} reaches it directly), so this is the whole of
// Q_bar_{t-1}; Q_0 is a constant and its adjoint is not needed.
//
// CUDA twin: kernels/floss.cu
#include "host/cpu/floss.h"

#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

namespace rnnsweep::cpu {

template <typename Real>
Mat<Real> qr_positive_backward(const Mat<Real>& Q, const Mat<Real>& R, const Mat<Real>& Q_bar,
                               const Mat<Real>& R_bar) {
  const Mat<Real> C = R * R_bar.transpose() - Q_bar.transpose() * Q;
  // copyltu(C): the lower triangle mirrored onto the upper one.
  const Mat<Real> C_sym = C.template selfadjointView<Eigen::Lower>();
  Mat<Real> M_bar = Q_bar + Q * C_sym;
  // M_bar R^{-T} as the solution X of X R^T = M_bar: a triangular solve is cheaper and better
  // conditioned than forming the inverse.
  R.transpose().template triangularView<Eigen::Lower>().template solveInPlace<Eigen::OnTheRight>(M_bar);
  return M_bar;
}

namespace {

// Forward and backward through the chain of the first k columns. Returns false, without a
// gradient, when some step annihilates one of them (see annihilation_floor in lyapunov.h);
// `first_annihilated` is then the smallest such column.
template <typename Real>
bool floss_chain(const Mat<Real>& W_h, Real a, const Mat<Real>& hs, const Mat<Real>& Q0, Activation act,
                 FlossResult<Real>& result, Eigen::Index& first_annihilated) {
  const Eigen::Index H = W_h.rows(), n = hs.cols(), k = Q0.cols();
  const Real floor = annihilation_floor(W_h, a);
  // Forward: the same chain as lyapunov_spectrum with a QR every step, keeping every frame and
  // triangle because the backward pass visits them in reverse.
  std::vector<Mat<Real>> frames(n + 1), triangles(n);
  std::vector<Vec<Real>> slopes(n);
  frames[0] = Q0;
  Mat<Real> J_frame(H, k);
  Vec<Real> log_growth_sum = Vec<Real>::Zero(k);
  first_annihilated = k;
  for (Eigen::Index t = 0; t < n; ++t) {
    slopes[t] = activation_slope<Real>(hs.col(t), act);
    apply_step_jacobian<Real>(W_h, a, slopes[t], frames[t], J_frame);
    qr_positive<Real>(J_frame, frames[t + 1], triangles[t]);
    const Vec<Real> logs = log_growth<Real>(triangles[t], floor);
    for (Eigen::Index i = 0; i < first_annihilated; ++i)
      if (!std::isfinite(logs(i))) first_annihilated = i;
    log_growth_sum += logs;
  }
  if (first_annihilated < k) return false;

  result.lambda = log_growth_sum / Real(n);
  result.loss = result.lambda.squaredNorm();
  result.dL_dW_h = Mat<Real>::Zero(H, H);
  result.k_used = int(k);

  // Backward. Indices are 0-based here: step t maps frames[t] to frames[t + 1] using hs.col(t).
  const Vec<Real> dL_dlog_growth = Real(2) * result.lambda / Real(n);
  Mat<Real> frame_bar = Mat<Real>::Zero(H, k);
  Mat<Real> R_bar = Mat<Real>::Zero(k, k);
  for (Eigen::Index t = n - 1; t >= 0; --t) {
    R_bar.diagonal() = dL_dlog_growth.cwiseQuotient(triangles[t].diagonal());
    const Mat<Real> J_frame_bar = qr_positive_backward<Real>(frames[t + 1], triangles[t], frame_bar, R_bar);
    result.dL_dW_h.noalias() +=
        ((Real(1) - a) * J_frame_bar) * (slopes[t].asDiagonal() * frames[t]).transpose();
    if (t > 0) {
      frame_bar = a * J_frame_bar;
      frame_bar.noalias() += (Real(1) - a) * (slopes[t].asDiagonal() * (W_h.transpose() * J_frame_bar));
    }
  }
  return true;
}

}  // namespace

template <typename Real>
FlossResult<Real> floss_loss_and_gradient(const Mat<Real>& W_h, Real a, const Mat<Real>& hs, int k,
                                          Activation act, const Mat<Real>* Q0) {
  const Eigen::Index H = W_h.rows(), n = hs.cols();
  auto fail = [](const std::string& what) {
    throw std::invalid_argument("floss_loss_and_gradient: " + what);
  };
  if (W_h.cols() != H || H == 0) fail("W_h must be square and non-empty");
  if (hs.rows() != H) fail("hs has " + std::to_string(hs.rows()) + " rows, W_h has " + std::to_string(H));
  if (n < 1) fail("need at least one step (hs has no columns)");
  if (k < 1 || k > H) fail("k = " + std::to_string(k) + " must be in 1.." + std::to_string(H));
  if (!(a >= Real(0) && a <= Real(1))) fail("leak a must be in [0, 1]");
  if (Q0 && (Q0->rows() != H || Q0->cols() != k)) fail("Q0 must be H x k");

  const Mat<Real> start = Q0 ? *Q0 : Mat<Real>(Mat<Real>::Identity(H, k));
  FlossResult<Real> result;
  Eigen::Index kept = k;
  // QR is nested (the first j columns of Q_t and R_t depend only on the first j columns of
  // the previous frame), so dropping the columns from the first annihilated one on leaves the
  // leading exponents exactly as they were. At most two passes: the second has none.
  while (kept > 0 && !floss_chain<Real>(W_h, a, hs, Mat<Real>(start.leftCols(kept)), act, result, kept)) {
  }
  if (kept == 0) {
    result.loss = Real(0);
    result.lambda.resize(0);
    result.dL_dW_h = Mat<Real>::Zero(H, H);
    result.k_used = 0;
  }
  return result;
}

#define RNNSWEEP_INSTANTIATE_FLOSS(Real)                                                                  \
  template Mat<Real> qr_positive_backward<Real>(const Mat<Real>&, const Mat<Real>&, const Mat<Real>&,     \
                                                const Mat<Real>&);                                        \
  template FlossResult<Real> floss_loss_and_gradient<Real>(const Mat<Real>&, Real, const Mat<Real>&, int, \
                                                           Activation, const Mat<Real>*);

RNNSWEEP_INSTANTIATE_FLOSS(float)
RNNSWEEP_INSTANTIATE_FLOSS(double)

#undef RNNSWEEP_INSTANTIATE_FLOSS

}  // namespace rnnsweep::cpu
