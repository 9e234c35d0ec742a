// Tests of the CPU Lyapunov spectrum (host/cpu/lyapunov.cpp) against cases whose exponents are
// known in closed form, and against the invariances the QR method must have.
//
// CUDA twin of the code under test: kernels/lyapunov.cu
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <complex>
#include <functional>
#include <random>
#include <stdexcept>
#include <vector>

#include "host/cpu/lyapunov.h"
#include "tests/random_matrices.h"

namespace {

using rnnsweep::cpu::Activation;
using rnnsweep::cpu::lyapunov_spectrum;
using rnnsweep::cpu::qr_positive;
using rnnsweep::cpu::SpectrumOptions;
using Mat = rnnsweep::cpu::Mat<double>;
using Vec = rnnsweep::cpu::Vec<double>;

using rnnsweep::test::gaussian_matrix;
using rnnsweep::test::random_orthonormal_frame;

Mat random_orthogonal(Eigen::Index n, std::mt19937_64& rng) { return random_orthonormal_frame(n, n, rng); }

// W_h = gain * Z, Z ~ N(0, 1/H), as the trainer initialises it (docs/model.md, section 1).
Mat random_recurrent_weights(Eigen::Index H, double gain, std::mt19937_64& rng) {
  return gaussian_matrix(H, H, gain / std::sqrt(double(H)), rng);
}

// Hidden states of the relu network driven by white noise through random input weights,
// warm-up dropped: the kind of trajectory the trainer hands to lyapunov_spectrum.
Mat driven_trajectory(const Mat& W_h, double a, Eigen::Index n, Eigen::Index warmup, std::mt19937_64& rng) {
  const Eigen::Index H = W_h.rows();
  const Vec input_weights = gaussian_matrix(H, 1, 1.0, rng);
  std::normal_distribution<double> noise(0.0, 1.0);
  Vec h = Vec::Zero(H);
  Mat hs(H, n);
  for (Eigen::Index t = 0; t < warmup + n; ++t) {
    h = a * h + (1 - a) * (W_h * h.cwiseMax(0.0) + input_weights * noise(rng));
    if (t >= warmup) hs.col(t - warmup) = h;
  }
  return hs;
}

Vec sorted_decreasing(Vec v) {
  std::sort(v.data(), v.data() + v.size(), std::greater<double>());
  return v;
}

void expect_all_near(const Vec& actual, const Vec& expected, double tolerance) {
  ASSERT_EQ(actual.size(), expected.size());
  for (Eigen::Index i = 0; i < actual.size(); ++i)
    EXPECT_NEAR(actual(i), expected(i), tolerance) << "exponent " << i;
}

TEST(QrPositive, FactorsAreOrthonormalUpperTriangularWithPositiveDiagonal) {
  std::mt19937_64 rng(11);
  for (const auto& [rows, cols] : std::vector<std::pair<int, int>>{{8, 8}, {8, 3}, {5, 1}}) {
    const Mat M = gaussian_matrix(rows, cols, 1.0, rng);
    Mat Q, R;
    qr_positive<double>(M, Q, R);
    ASSERT_EQ(Q.rows(), rows);
    ASSERT_EQ(Q.cols(), cols);
    ASSERT_EQ(R.rows(), cols);
    ASSERT_EQ(R.cols(), cols);
    // Householder QR is backward stable: errors are a few eps times ||M|| ~ sqrt(rows) here,
    // so 1e-13 leaves two orders of magnitude of margin.
    EXPECT_LT((Q.transpose() * Q - Mat::Identity(cols, cols)).cwiseAbs().maxCoeff(), 1e-13);
    EXPECT_LT((Q * R - M).cwiseAbs().maxCoeff(), 1e-13);
    for (Eigen::Index j = 0; j < cols; ++j) {
      EXPECT_GT(R(j, j), 0.0) << "diagonal entry " << j;
      for (Eigen::Index i = j + 1; i < cols; ++i)
        EXPECT_EQ(R(i, j), 0.0) << "below the diagonal at " << i << "," << j;
    }
  }
}

TEST(QrPositive, SignFixFlipsFactorsThatHouseholderLeavesNegative) {
  // A diagonal matrix with negative entries: Householder leaves signs to fix (a non-trivial
  // input for the sign fix), and the unique positive factorisation is known exactly.
  Mat M = Mat::Zero(3, 3);
  M.diagonal() << -2.0, 3.0, -0.5;
  Mat Q, R;
  qr_positive<double>(M, Q, R);
  Mat expected_Q = Mat::Zero(3, 3);
  expected_Q.diagonal() << -1.0, 1.0, -1.0;
  // Exact up to one rounding of each entry.
  EXPECT_LT((Q - expected_Q).cwiseAbs().maxCoeff(), 1e-15);
  EXPECT_LT((R.diagonal() - Vec((Vec(3) << 2.0, 3.0, 0.5).finished())).cwiseAbs().maxCoeff(), 1e-15);
}

TEST(LyapunovSpectrum, ZeroRecurrenceGivesLogLeakForEveryExponent) {
  // J_t = a I whatever h_t is, so every R_t = a I.
  std::mt19937_64 rng(1);
  const int H = 7, n = 50;
  const Mat hs = gaussian_matrix(H, n, 1.0, rng);  // mixed signs: the relu slopes must not matter
  for (const double a : {0.5, 0.9}) {
    const Vec lambda = lyapunov_spectrum<double>(Mat::Zero(H, H), a, hs, {H});
    // Each step is exact up to the rounding of one QR of a multiple of I.
    expect_all_near(lambda, Vec::Constant(H, std::log(a)), 1e-12);
  }
}

TEST(LyapunovSpectrum, ScaledOrthogonalWithoutLeakGivesLogAbsGain) {
  // With a = 0, J = c O maps the orthonormal frame to |c| times an orthonormal frame, so
  // R_t = |c| I at every step: the analytic check lambda = ln|a + (1 - a) c| in the case
  // where it holds for every orthogonal O (see the next test for a > 0).
  std::mt19937_64 rng(2);
  const int H = 6, n = 40;
  const Mat O = random_orthogonal(H, rng);
  const Mat hs = gaussian_matrix(H, n, 1.0, rng);  // ignored by the identity activation
  for (const double c : {0.5, 1.3, -0.8, -2.0}) {
    const Vec lambda = lyapunov_spectrum<double>(c * O, 0.0, hs, {H}, Activation::identity);
    // Exact up to rounding of one QR per step.
    expect_all_near(lambda, Vec::Constant(H, std::log(std::abs(c))), 1e-12);
  }
}

TEST(LyapunovSpectrum, LeakyScaledOrthogonalGivesLogEigenvalueModuli) {
  // For a > 0, J = a I + (1 - a) c O is normal, with eigenvalues a + (1 - a) c e^{i theta} for
  // the eigen-angles theta of O, so its exponents are ln|a + (1 - a) c e^{i theta}|. They all
  // equal ln|a + (1 - a) c| only when every theta is 0 (O = I), so a random O would not do: O is
  // built from 2x2 rotations by known angles in a random orthonormal basis. theta = 0 contributes
  // the textbook ln|a + (1 - a) c| twice; theta = pi gives ln|a - (1 - a) c|.
  std::mt19937_64 rng(3);
  const std::vector<double> angles = {0.0, M_PI / 3, 2 * M_PI / 3, M_PI};
  const int H = 2 * int(angles.size()), n = 4000;
  Mat rotations = Mat::Zero(H, H);
  for (size_t b = 0; b < angles.size(); ++b) {
    const double cos_t = std::cos(angles[b]), sin_t = std::sin(angles[b]);
    rotations.block(2 * b, 2 * b, 2, 2) << cos_t, -sin_t, sin_t, cos_t;
  }
  const Mat basis = random_orthogonal(H, rng);
  const Mat O = basis * rotations * basis.transpose();
  const Mat hs = gaussian_matrix(H, n, 1.0, rng);

  for (const auto& [a, c] :
       std::vector<std::pair<double, double>>{{0.5, 1.5}, {0.3, -0.8}, {0.8, 2.0}, {0.5, -3.0}}) {
    Vec expected(H);
    for (size_t b = 0; b < angles.size(); ++b) {
      const double modulus = std::abs(a + (1 - a) * c * std::polar(1.0, angles[b]));
      expected(2 * b) = expected(2 * b + 1) = std::log(modulus);
    }
    const Vec lambda = lyapunov_spectrum<double>(c * O, a, hs, {H}, Activation::identity);
    // The QR iteration needs a transient to align the frame with the eigen-planes; its cost,
    // bounded by a few units of log growth, is spread over n steps: O(1/n) = 2.5e-4 per unit.
    // 5e-3 allows 20 units, while a wrong spectrum would be off by >= 0.1 (closest distinct pair).
    expect_all_near(lambda, sorted_decreasing(expected), 5e-3);
    // The fastest direction: the theta = 0 plane when c > 0, the theta = pi plane when c < 0.
    const double largest = c > 0 ? std::log(std::abs(a + (1 - a) * c)) : std::log(std::abs(a - (1 - a) * c));
    EXPECT_NEAR(lambda(0), largest, 5e-3);
  }
}

TEST(LyapunovSpectrum, DiagonalRecurrenceWithActiveNeuronsGivesLogDiagonal) {
  // All h_t > 0 makes every slope 1, so J = diag(a + (1 - a) d) is constant and diagonal; started
  // from identity columns the frame never mixes, so the exponents come out in the diagonal's
  // order, not sorted (see lyapunov.h), and are sorted here before comparing.
  std::mt19937_64 rng(4);
  const double a = 0.5;
  const Vec d = (Vec(6) << 0.3, -1.8, 1.4, -0.2, 2.5, 0.9).finished();
  const Mat hs = gaussian_matrix(6, 30, 1.0, rng).cwiseAbs() + Mat::Constant(6, 30, 0.01);
  const Vec lambda = lyapunov_spectrum<double>(Mat(d.asDiagonal()), a, hs, {6});
  const Vec expected = (a + (1 - a) * d.array()).abs().log().matrix();
  // Every step factorises a diagonal matrix: exact up to rounding.
  expect_all_near(sorted_decreasing(lambda), sorted_decreasing(expected), 1e-12);
}

TEST(LyapunovSpectrum, FullSpectrumSumsToMeanLogDeterminant) {
  // prod_i R_t(i,i) = |det J_t| when k = H, so sum_i lambda_i = (1/n) sum_t ln|det J_t|.
  std::mt19937_64 rng(5);
  const int H = 10, n = 200;
  const double a = 0.5;
  const Mat W_h = random_recurrent_weights(H, 1.5, rng);
  const Mat hs = gaussian_matrix(H, n, 1.0, rng);
  double log_det_sum = 0.0;
  for (int t = 0; t < n; ++t) {
    const Vec slope = (hs.col(t).array() > 0.0).cast<double>().matrix();
    const Mat J = a * Mat::Identity(H, H) + (1 - a) * W_h * slope.asDiagonal();
    log_det_sum += std::log(std::abs(J.partialPivLu().determinant()));
  }
  const Vec lambda = lyapunov_spectrum<double>(W_h, a, hs, {H});
  // Both sides are exact up to rounding of order eps * cond(J_t) per step, averaged over n
  // (measured 2e-15); 1e-12 leaves margin for other compilers and BLAS-free Eigen kernels.
  EXPECT_NEAR(lambda.sum(), log_det_sum / n, 1e-12);
  // The test would be vacuous if the Jacobians were volume preserving.
  EXPECT_GT(std::abs(log_det_sum / n), 0.1);
}

TEST(LyapunovSpectrum, IndependentOfTheStartingFrame) {
  // Oseledets: almost every orthonormal start converges to the same exponents; what differs is
  // a transient of bounded log growth, so the difference decays like 1/n.
  std::mt19937_64 rng(6);
  const int H = 16, n = 2000;
  const double a = 0.5;
  // Contracting, near the edge of chaos (max LE about -0.06), mildly chaotic (about +0.1).
  for (const double gain : {0.8, 1.5, 2.5}) {
    const Mat W_h = random_recurrent_weights(H, gain, rng);
    const Mat hs = driven_trajectory(W_h, a, n, 100, rng);
    const bool some_neuron_always_silent = (!(hs.array() > 0.0).rowwise().any()).any();
    for (const int k : {H, 4}) {
      const Mat Q0 = random_orthonormal_frame(H, k, rng), other_Q0 = random_orthonormal_frame(H, k, rng);
      const Vec from_random = lyapunov_spectrum<double>(W_h, a, hs, {k}, Activation::relu, &Q0);
      const Vec from_other_random = lyapunov_spectrum<double>(W_h, a, hs, {k}, Activation::relu, &other_Q0);
      // Transients of a few units of log growth over n = 2000 steps measure up to ~4e-3;
      // 1e-2 (20 units) leaves margin and is still below the gaps between distinct exponents
      // of these networks (a few 1e-2 and more), so a wrong direction would show.
      expect_all_near(from_other_random, from_random, 1e-2);
      // The identity start is only comparable where no neuron is silent for good (see the trap
      // test below); the chaotic relu networks here all have such neurons.
      if (!some_neuron_always_silent) {
        const Vec from_identity = lyapunov_spectrum<double>(W_h, a, hs, {k});
        expect_all_near(from_identity, from_random, 1e-2);
      }
      if (gain > 2.0) {
        EXPECT_GT(from_random(0), 0.0) << "the gain 2.5 network should be chaotic";
      } else {
        EXPECT_FALSE(some_neuron_always_silent) << "gain " << gain << " should compare the identity start";
      }
    }
  }
}

TEST(LyapunovSpectrum, ReorthonormalisingEveryFewStepsGivesTheSameExponents) {
  // The product of the R factors' diagonals of a chain of QRs equals the diagonal of the R of
  // the product, so QR every 5 steps is the same exponent in exact arithmetic; n = 1998 is not
  // a multiple of 5, which exercises the final partial product.
  std::mt19937_64 rng(7);
  const int H = 12, n = 1998;
  const double a = 0.5;
  const Mat W_h = random_recurrent_weights(H, 1.5, rng);
  const Mat hs = driven_trajectory(W_h, a, n, 100, rng);
  const Vec every_step = lyapunov_spectrum<double>(W_h, a, hs, {H, 1});
  const Vec every_fifth = lyapunov_spectrum<double>(W_h, a, hs, {H, 5});
  // The exponents spread over about 1, so five-step products have condition numbers near
  // e^5 ~ 150 and cost ~150 eps per step in ln R_ii (measured difference 2e-15); 1e-10 is safe
  // and far below any real difference.
  expect_all_near(every_fifth, every_step, 1e-10);
  EXPECT_GT(every_step(0) - every_step(H - 1), 0.5) << "the spectrum should not be degenerate";
}

TEST(LyapunovSpectrum, IdentityStartStaysOnPermanentlySilentNeuron) {
  // Documents the trap described in lyapunov.h: with neuron 0 silent throughout, e_0 is an
  // eigenvector of every J_t with eigenvalue a, the first identity column never leaves it and
  // reports ln a as the "largest" exponent; a random start finds the true largest exponent.
  std::mt19937_64 rng(8);
  const int H = 8, n = 500;
  const double a = 0.5;
  const Mat W_h = random_recurrent_weights(H, 3.0, rng);
  Mat hs = gaussian_matrix(H, n, 1.0, rng);
  hs.row(0) = -hs.row(0).cwiseAbs();
  const Mat Q0 = random_orthonormal_frame(H, H, rng);
  const Vec from_identity = lyapunov_spectrum<double>(W_h, a, hs, {H});
  const Vec from_random = lyapunov_spectrum<double>(W_h, a, hs, {H}, Activation::relu, &Q0);
  // e_0 is exactly invariant, so this is exact up to rounding.
  EXPECT_NEAR(from_identity(0), std::log(a), 1e-12);
  // Gain 3 makes the top exponent far above ln a (about +0.18 here).
  EXPECT_GT(from_random(0), std::log(a) + 0.5);
  // The full spectrum is a set both starts agree on, up to order and the O(1/n) transient:
  // 1e-2 allows 5 units of log growth over n = 500 (measured 2e-3).
  expect_all_near(sorted_decreasing(from_identity), sorted_decreasing(from_random), 1e-2);
}

TEST(LyapunovSpectrum, FloatAgreesWithDoubleFromARandomStart) {
  // Each step loses ~eps_float = 6e-8 relative accuracy in R_ii and the errors average out over
  // n steps (measured 7e-7), so 1e-5 is safe. (From the identity start the two precisions would
  // differ by ~21/n, see lyapunov.h, which is why the frame is random here.)
  std::mt19937_64 rng(9);
  const int H = 16, n = 500;
  const double a = 0.5;
  const Mat W_h = random_recurrent_weights(H, 1.5, rng);
  const Mat hs = driven_trajectory(W_h, a, n, 100, rng);
  const Mat Q0 = random_orthonormal_frame(H, H, rng);
  const Vec in_double = lyapunov_spectrum<double>(W_h, a, hs, {H}, Activation::relu, &Q0);
  const rnnsweep::cpu::Mat<float> Q0_float = Q0.cast<float>();
  const Vec in_float = lyapunov_spectrum<float>(W_h.cast<float>(), float(a), hs.cast<float>(), {H},
                                                Activation::relu, &Q0_float)
                           .cast<double>();
  expect_all_near(in_float, in_double, 1e-5);
}

TEST(LyapunovSpectrum, RejectsInconsistentShapes) {
  const Mat W_h = Mat::Zero(4, 4), hs = Mat::Zero(4, 10), Q0_wrong = Mat::Identity(4, 3);
  EXPECT_THROW(lyapunov_spectrum<double>(W_h, 0.5, hs, {0}), std::invalid_argument);
  EXPECT_THROW(lyapunov_spectrum<double>(W_h, 0.5, hs, {5}), std::invalid_argument);
  EXPECT_THROW(lyapunov_spectrum<double>(W_h, 0.5, hs, {2, 0}), std::invalid_argument);
  EXPECT_THROW(lyapunov_spectrum<double>(W_h, 0.5, Mat::Zero(3, 10), {2}), std::invalid_argument);
  EXPECT_THROW(lyapunov_spectrum<double>(W_h, 0.5, Mat::Zero(4, 0), {2}), std::invalid_argument);
  EXPECT_THROW(lyapunov_spectrum<double>(Mat::Zero(4, 3), 0.5, hs, {2}), std::invalid_argument);
  EXPECT_THROW(lyapunov_spectrum<double>(W_h, 0.5, hs, {2}, Activation::relu, &Q0_wrong),
               std::invalid_argument);
  Mat Q, R;
  EXPECT_THROW(qr_positive<double>(Mat::Zero(2, 3), Q, R), std::invalid_argument);
}

}  // namespace
