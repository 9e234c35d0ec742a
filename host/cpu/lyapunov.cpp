// Lyapunov spectrum by the QR method; see lyapunov.h for the contract.
//
// CUDA twin: kernels/lyapunov.cu
#include "host/cpu/lyapunov.h"

#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

namespace rnnsweep::cpu {

template <typename Real>
Vec<Real> activation_slope(const Eigen::Ref<const Vec<Real>>& h, Activation act) {
  if (act == Activation::identity) return Vec<Real>::Ones(h.size());
  return (h.array() > Real(0)).template cast<Real>().matrix();
}

template <typename Real>
void apply_step_jacobian(const Mat<Real>& W_h, Real a, const Vec<Real>& slope, const Mat<Real>& frame,
                         Mat<Real>& J_frame) {
  // W_h diag(f') Q = W_h (diag(f') Q): scaling the rows of the thin frame costs H k instead of
  // the H^2 of scaling the columns of W_h, and J itself is never needed.
  J_frame = a * frame;
  J_frame.noalias() += ((Real(1) - a) * W_h) * (slope.asDiagonal() * frame);
}

template <typename Real>
void qr_positive(const Mat<Real>& M, Mat<Real>& Q, Mat<Real>& R) {
  const Eigen::Index rows = M.rows(), k = M.cols();
  if (rows < k) {
    throw std::invalid_argument("qr_positive: need a tall or square matrix, got " + std::to_string(rows) +
                                " x " + std::to_string(k));
  }
  const Eigen::HouseholderQR<Mat<Real>> householder(M);
  // Applying the reflectors to the first k identity columns builds the thin Q without the
  // full rows x rows matrix.
  Q = householder.householderQ() * Mat<Real>::Identity(rows, k);
  R = householder.matrixQR().topRows(k).template triangularView<Eigen::Upper>();
  // Householder picks whichever sign of R_ii avoids cancellation; flipping row i of R together
  // with column i of Q leaves Q R unchanged and gives the unique factorisation with R_ii > 0.
  for (Eigen::Index i = 0; i < k; ++i) {
    if (R(i, i) < Real(0)) {
      R.row(i) *= Real(-1);
      Q.col(i) *= Real(-1);
    }
  }
}

template <typename Real>
Real annihilation_floor(const Mat<Real>& W_h, Real a) {
  // Relative floor: far above rounding (1e-16 in double, 1e-7 in float, times sqrt(H)) and
  // far below the smallest singular values random Jacobians reach in practice (a value below
  // 1e-10 of the norm has probability ~H * 1e-10 per step for double).
  const Real relative = sizeof(Real) >= 8 ? Real(1e-10) : Real(1e-4);
  return relative * (a + (Real(1) - a) * W_h.norm());
}

// ln R_ii, or -inf where the step annihilated direction i (R_ii <= floor).
template <typename Real>
Vec<Real> log_growth(const Mat<Real>& R, Real floor) {
  Vec<Real> out(R.cols());
  for (Eigen::Index i = 0; i < R.cols(); ++i)
    out(i) = R(i, i) > floor ? std::log(R(i, i)) : -std::numeric_limits<Real>::infinity();
  return out;
}

namespace {

template <typename Real>
void check_spectrum_inputs(const Mat<Real>& W_h, Real a, const Mat<Real>& hs, const SpectrumOptions& opt,
                           const Mat<Real>* Q0) {
  const Eigen::Index H = W_h.rows();
  auto fail = [](const std::string& what) { throw std::invalid_argument("lyapunov_spectrum: " + what); };
  if (W_h.cols() != H || H == 0) fail("W_h must be square and non-empty");
  if (hs.rows() != H)
    fail("hs has " + std::to_string(hs.rows()) + " rows, W_h is " + std::to_string(H) + " x " +
         std::to_string(H));
  if (hs.cols() < 1) fail("need at least one step (hs has no columns)");
  if (opt.k < 1 || opt.k > H) fail("k = " + std::to_string(opt.k) + " must be in 1.." + std::to_string(H));
  if (opt.reortho_every < 1) fail("reortho_every must be >= 1");
  if (!(a >= Real(0) && a <= Real(1))) fail("leak a must be in [0, 1]");
  if (Q0 && (Q0->rows() != H || Q0->cols() != opt.k)) fail("Q0 must be H x k");
}

}  // namespace

template <typename Real>
Vec<Real> lyapunov_spectrum(const Mat<Real>& W_h, Real a, const Mat<Real>& hs, const SpectrumOptions& opt,
                            Activation act, const Mat<Real>* Q0) {
  check_spectrum_inputs(W_h, a, hs, opt, Q0);
  const Eigen::Index H = W_h.rows(), n = hs.cols(), k = opt.k;

  Mat<Real> frame = Q0 ? *Q0 : Mat<Real>(Mat<Real>::Identity(H, k));
  Mat<Real> J_frame(H, k), R(k, k);
  Vec<Real> log_growth_sum = Vec<Real>::Zero(k);
  const Real floor = annihilation_floor(W_h, a);

  for (Eigen::Index t = 0; t < n; ++t) {
    apply_step_jacobian<Real>(W_h, a, activation_slope<Real>(hs.col(t), act), frame, J_frame);
    // Between QRs the frame just carries the product of Jacobians; the last step always
    // factorises so that every step's growth is counted.
    const bool factorise = (t + 1) % opt.reortho_every == 0 || t + 1 == n;
    if (factorise) {
      qr_positive<Real>(J_frame, frame, R);
      // With reortho_every > 1 the floor is for one step; a product of several Jacobians only
      // pushes annihilated directions further below it.
      log_growth_sum += log_growth<Real>(R, floor);
    } else {
      frame.swap(J_frame);
    }
  }
  return log_growth_sum / Real(n);
}

#define RNNSWEEP_INSTANTIATE_LYAPUNOV(Real)                                                           \
  template Vec<Real> activation_slope<Real>(const Eigen::Ref<const Vec<Real>>&, Activation);          \
  template void apply_step_jacobian<Real>(const Mat<Real>&, Real, const Vec<Real>&, const Mat<Real>&, \
                                          Mat<Real>&);                                                \
  template void qr_positive<Real>(const Mat<Real>&, Mat<Real>&, Mat<Real>&);                          \
  template Real annihilation_floor<Real>(const Mat<Real>&, Real);                                     \
  template Vec<Real> log_growth<Real>(const Mat<Real>&, Real);                                        \
  template Vec<Real> lyapunov_spectrum<Real>(const Mat<Real>&, Real, const Mat<Real>&,                \
                                             const SpectrumOptions&, Activation, const Mat<Real>*);

RNNSWEEP_INSTANTIATE_LYAPUNOV(float)
RNNSWEEP_INSTANTIATE_LYAPUNOV(double)

#undef RNNSWEEP_INSTANTIATE_LYAPUNOV

}  // namespace rnnsweep::cpu
