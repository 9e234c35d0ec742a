// Tests of the gradient-flossing loss and gradient (host/cpu/floss.cpp): the gradient, once,
// against central finite differences in double of the same loss computed by lyapunov_spectrum,
// and a descent sanity check.
//
// CUDA twin of the code under test: kernels/floss.cu
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "host/cpu/floss.h"
#include "tests/random_matrices.h"

namespace {

using rnnsweep::cpu::Activation;
using rnnsweep::cpu::floss_loss_and_gradient;
using rnnsweep::cpu::FlossResult;
using rnnsweep::cpu::lyapunov_spectrum;
using rnnsweep::cpu::qr_positive;
using rnnsweep::cpu::qr_positive_backward;
using Mat = rnnsweep::cpu::Mat<double>;
using Vec = rnnsweep::cpu::Vec<double>;

using rnnsweep::test::gaussian_matrix;
using rnnsweep::test::random_orthonormal_frame;

// W_h = gain * Z, Z ~ N(0, 1/H), as the trainer initialises it (docs/model.md, section 1).
Mat random_recurrent_weights(Eigen::Index H, double gain, std::mt19937_64& rng) {
  return gaussian_matrix(H, H, gain / std::sqrt(double(H)), rng);
}

// Fourth-order central differences of a scalar function of a matrix, entry by entry:
// f' = (8 (f(x+h) - f(x-h)) - (f(x+2h) - f(x-2h))) / (12 h) + O(h^4). Second-order differences
// are not enough here: a nearly singular Jacobian (one case below has lambda_min = -3.4 over two
// steps) gives the loss large higher derivatives, and their h^2 error reached 5e-7 relative.
// With h = 1e-4 the h^4 term is ~1e-8 in that worst case and ~1e-11 elsewhere, and cancellation
// costs eps * |f| / h ~ 1e-11.
Mat central_differences(const std::function<double(const Mat&)>& f, const Mat& X) {
  const double step = 1e-4;
  Mat gradient(X.rows(), X.cols());
  Mat shifted = X;
  auto f_shifted = [&](Eigen::Index i, Eigen::Index j, double offset) {
    shifted(i, j) = X(i, j) + offset;
    const double value = f(shifted);
    shifted(i, j) = X(i, j);
    return value;
  };
  for (Eigen::Index j = 0; j < X.cols(); ++j) {
    for (Eigen::Index i = 0; i < X.rows(); ++i) {
      const double near_difference = f_shifted(i, j, step) - f_shifted(i, j, -step);
      const double far_difference = f_shifted(i, j, 2 * step) - f_shifted(i, j, -2 * step);
      gradient(i, j) = (8 * near_difference - far_difference) / (12 * step);
    }
  }
  return gradient;
}

// Largest entrywise error relative to the largest entry of the reference: entries that are
// zero or tiny (relu columns that were never active) are judged on the gradient's own scale.
double relative_error(const Mat& actual, const Mat& reference) {
  return (actual - reference).cwiseAbs().maxCoeff() / reference.cwiseAbs().maxCoeff();
}

// The finite differences are good to ~1e-8 relative in the worst case here (see
// central_differences); 1e-6 leaves two orders of magnitude of margin, while any mistake in the
// adjoint (a missing term, a transposed factor, a wrong triangle in copyltu) is O(1).
constexpr double kGradientTolerance = 1e-6;

TEST(QrPositiveBackward, MatchesFiniteDifferences) {
  std::mt19937_64 rng(21);
  for (const auto& [rows, cols] : std::vector<std::pair<int, int>>{{6, 3}, {6, 6}, {5, 1}}) {
    const Mat M = gaussian_matrix(rows, cols, 1.0, rng);
    // A generic linear functional of both factors: <Q_bar, Q(M)> + <R_bar, R(M)>.
    const Mat Q_bar = gaussian_matrix(rows, cols, 1.0, rng);
    const Mat R_bar = gaussian_matrix(cols, cols, 1.0, rng).triangularView<Eigen::Upper>();
    auto functional = [&](const Mat& X) {
      Mat Q, R;
      qr_positive<double>(X, Q, R);
      return (Q_bar.array() * Q.array()).sum() + (R_bar.array() * R.array()).sum();
    };
    Mat Q, R;
    qr_positive<double>(M, Q, R);
    const Mat M_bar = qr_positive_backward<double>(Q, R, Q_bar, R_bar);
    const Mat reference = central_differences(functional, M);
    EXPECT_LT(relative_error(M_bar, reference), kGradientTolerance) << rows << " x " << cols;
    EXPECT_GT(reference.cwiseAbs().maxCoeff(), 1e-2) << "trivial gradient";
  }
}

struct GradientCase {
  Activation act;
  int k;
  int n;
};

std::string case_name(const testing::TestParamInfo<GradientCase>& info) {
  return std::string(info.param.act == Activation::relu ? "relu" : "identity") + "_k" +
         std::to_string(info.param.k) + "_n" + std::to_string(info.param.n);
}

// gtest prints parameters with this instead of their bytes
void PrintTo(const GradientCase& c, std::ostream* os) {
  *os << (c.act == Activation::relu ? "relu" : "identity") << " k=" << c.k << " n=" << c.n;
}

class FlossGradient : public testing::TestWithParam<GradientCase> {};

TEST_P(FlossGradient, MatchesFiniteDifferencesOfTheSpectrumLoss) {
  const auto [act, k, n] = GetParam();
  const int H = 6;
  std::mt19937_64 rng(31 + 7 * k + n);
  // relu at a chaotic gain with mixed-sign states (some slopes 0, some 1); the identity
  // activation with a different leak, so that both code paths see a full, mixed W_h gradient.
  const double a = act == Activation::relu ? 0.5 : 0.3;
  const Mat W_h = random_recurrent_weights(H, 1.5, rng);
  const Mat hs = gaussian_matrix(H, n, 1.0, rng);

  const FlossResult<double> result = floss_loss_and_gradient<double>(W_h, a, hs, k, act);
  auto loss = [&](const Mat& W) { return lyapunov_spectrum<double>(W, a, hs, {k}, act).squaredNorm(); };
  const Vec lambda = lyapunov_spectrum<double>(W_h, a, hs, {k}, act);

  // Same chain of the same operations: only summation-order rounding could differ.
  EXPECT_LT((result.lambda - lambda).cwiseAbs().maxCoeff(), 1e-14);
  EXPECT_NEAR(result.loss, lambda.squaredNorm(), 1e-13);
  const Mat reference = central_differences(loss, W_h);
  EXPECT_LT(relative_error(result.dL_dW_h, reference), kGradientTolerance);
  EXPECT_GT(reference.cwiseAbs().maxCoeff(), 1e-2) << "trivial gradient";
}

std::vector<GradientCase> all_gradient_cases() {
  std::vector<GradientCase> cases;
  for (const Activation act : {Activation::relu, Activation::identity})
    for (const int k : {3, 6})
      for (const int n : {1, 2, 10}) cases.push_back({act, k, n});
  return cases;
}

INSTANTIATE_TEST_SUITE_P(ChainedQr, FlossGradient, testing::ValuesIn(all_gradient_cases()), case_name);

TEST(FlossGradientFromRandomFrame, MatchesFiniteDifferences) {
  // The optional starting frame enters only as a constant; the gradient must still be exact.
  std::mt19937_64 rng(41);
  const int H = 6, k = 3, n = 10;
  const double a = 0.5;
  const Mat W_h = random_recurrent_weights(H, 1.5, rng);
  const Mat hs = gaussian_matrix(H, n, 1.0, rng);
  const Mat Q0 = random_orthonormal_frame(H, k, rng);
  const FlossResult<double> result = floss_loss_and_gradient<double>(W_h, a, hs, k, Activation::relu, &Q0);
  auto loss = [&](const Mat& W) {
    return lyapunov_spectrum<double>(W, a, hs, {k}, Activation::relu, &Q0).squaredNorm();
  };
  const Mat reference = central_differences(loss, W_h);
  EXPECT_LT(relative_error(result.dL_dW_h, reference), kGradientTolerance);
  EXPECT_GT(reference.cwiseAbs().maxCoeff(), 1e-2) << "trivial gradient";
}

TEST(FlossFloat, GradientAgreesWithDouble) {
  // The float path is what a float CUDA twin will be compared with. Over n = 20 chained steps
  // each QR and its adjoint lose a few eps_float = 6e-8 times a condition number of order 10
  // (measured 3e-7 on the gradient, 7e-8 on the loss), so 1e-5 relative is safe and a real
  // bug (O(1)) cannot meet it.
  std::mt19937_64 rng(51);
  const int H = 6, k = 3, n = 20;
  const double a = 0.5;
  const Mat W_h = random_recurrent_weights(H, 1.5, rng);
  const Mat hs = gaussian_matrix(H, n, 1.0, rng);
  const FlossResult<double> in_double = floss_loss_and_gradient<double>(W_h, a, hs, k);
  const FlossResult<float> in_float =
      floss_loss_and_gradient<float>(W_h.cast<float>(), float(a), hs.cast<float>(), k);
  EXPECT_LT(relative_error(in_float.dL_dW_h.cast<double>(), in_double.dL_dW_h), 1e-5);
  EXPECT_NEAR(in_float.loss, in_double.loss, 1e-5 * in_double.loss);
}

TEST(FlossDescent, PlainGradientStepsReduceTheLoss) {
  // A small fixed step along -dL/dW_h must lower L (the gradient points uphill), both when the
  // exponents are far below 0 (gain 0.2) and when the network is expanding (gain 2.0).
  std::mt19937_64 rng(61);
  const int H = 16, k = 8, n = 50, steps = 5;
  const double a = 0.5, learning_rate = 0.05;
  for (const double gain : {0.2, 2.0}) {
    Mat W_h = random_recurrent_weights(H, gain, rng);
    const Mat hs = gaussian_matrix(H, n, 1.0, rng);
    const double initial_loss = floss_loss_and_gradient<double>(W_h, a, hs, k).loss;
    double previous_loss = initial_loss;
    for (int step = 0; step < steps; ++step) {
      const FlossResult<double> result = floss_loss_and_gradient<double>(W_h, a, hs, k);
      EXPECT_LE(result.loss, previous_loss) << "gain " << gain << ", step " << step;
      previous_loss = result.loss;
      W_h -= learning_rate * result.dL_dW_h;
    }
    const double final_loss = floss_loss_and_gradient<double>(W_h, a, hs, k).loss;
    // Expect real progress, not just rounding-level decrease (measured: L falls to 0.79 of its
    // initial value at gain 0.2 and to 0.84 at gain 2.0 in five steps).
    EXPECT_LT(final_loss, 0.9 * initial_loss) << "gain " << gain;
  }
}

TEST(FlossAnnihilated, LossCoversOnlyTheLeadingDirectionsNoStepAnnihilates) {
  // a = 0 and only 3 of 8 units active at one step: J_t has rank 3 there, so directions 4..k
  // are annihilated. The result must equal the flossing of the first 3 exponents alone, with
  // a finite gradient (the R^{-T} of the QR adjoint never sees the annihilated R_ii).
  const int H = 8;
  std::mt19937_64 rng(5);
  std::normal_distribution<double> normal;
  Mat W_h(H, H), hs(H, 6);
  for (int i = 0; i < H * H; ++i) W_h.data()[i] = normal(rng) / std::sqrt(double(H));
  for (int i = 0; i < H * 6; ++i) hs.data()[i] = std::fabs(normal(rng)) + 0.1;  // all active
  hs.col(2).tail(H - 3).setConstant(-1.0);                                      // units 3..7 silent at step 2
  const Mat Q0 = Mat::Identity(H, 5);
  const auto r = floss_loss_and_gradient<double>(W_h, 0.0, hs, 5, Activation::relu, &Q0);
  EXPECT_EQ(r.k_used, 3);
  ASSERT_TRUE(r.dL_dW_h.allFinite());
  const Mat Q3 = Q0.leftCols(3);
  const auto direct = floss_loss_and_gradient<double>(W_h, 0.0, hs, 3, Activation::relu, &Q3);
  EXPECT_EQ(direct.k_used, 3);
  // the same computation on the same 3 columns: equal to rounding
  EXPECT_NEAR(r.loss, direct.loss, 1e-12 * direct.loss);
  EXPECT_LT((r.dL_dW_h - direct.dL_dW_h).cwiseAbs().maxCoeff(), 1e-12 * direct.dL_dW_h.cwiseAbs().maxCoeff());
  // and the spectrum reports those directions as -inf
  const Mat Q5 = Q0;
  const auto lambda =
      lyapunov_spectrum<double>(W_h, 0.0, hs, rnnsweep::cpu::SpectrumOptions{5}, Activation::relu, &Q5);
  for (int i = 3; i < 5; ++i) EXPECT_EQ(lambda(i), -std::numeric_limits<double>::infinity()) << i;
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(std::isfinite(lambda(i))) << i;
}

TEST(FlossInputs, RejectsInconsistentShapes) {
  const Mat W_h = Mat::Zero(4, 4), hs = Mat::Zero(4, 10), Q0_wrong = Mat::Identity(4, 2);
  EXPECT_THROW(floss_loss_and_gradient<double>(W_h, 0.5, hs, 0), std::invalid_argument);
  EXPECT_THROW(floss_loss_and_gradient<double>(W_h, 0.5, hs, 5), std::invalid_argument);
  EXPECT_THROW(floss_loss_and_gradient<double>(W_h, 0.5, Mat::Zero(3, 10), 2), std::invalid_argument);
  EXPECT_THROW(floss_loss_and_gradient<double>(W_h, 0.5, Mat::Zero(4, 0), 2), std::invalid_argument);
  EXPECT_THROW(floss_loss_and_gradient<double>(W_h, 0.5, hs, 3, Activation::relu, &Q0_wrong),
               std::invalid_argument);
}

}  // namespace
