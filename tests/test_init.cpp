// The `init` axis (host/init.cpp): each initial connectivity has its defining property, the
// gain scales one random draw per seed, and gaussian is the study's init bit for bit.
#include <gtest/gtest.h>

#include <Eigen/Dense>
#include <cmath>
#include <vector>

#include "rnnsweep/init.h"
#include "rnnsweep/model.h"

namespace rnnsweep {
namespace {

constexpr int kH = 64;

std::vector<float> params_of(InitKind kind, double gain, std::uint32_t seed, const InitOptions& o = {},
                             int H = kH) {
  Shape s;
  s.H = H;
  std::vector<float> p(ParamLayout(s).size);
  init_network(s, kind, o, gain, seed, p.data());
  return p;
}

Eigen::MatrixXd W_h_of(const std::vector<float>& p, int H = kH) {
  Eigen::MatrixXd W(H, H);
  for (int c = 0; c < H; ++c)
    for (int r = 0; r < H; ++r) W(r, c) = p[c * H + r];  // column-major, rnnsweep/model.h
  return W;
}

TEST(Init, GaussianIsTheStudysInitBitForBit) {
  Shape s;
  s.H = kH;
  std::vector<float> want(ParamLayout(s).size);
  init_params(s, 1.3, 7, want.data());
  EXPECT_EQ(params_of(InitKind::gaussian, 1.3, 7), want);
}

TEST(Init, EveryInitKeepsTheInputAndReadoutWeights) {
  // only W_h changes with the init: W_x, w (and the biases) are those of init_params
  Shape s;
  s.H = kH;
  const ParamLayout L(s);
  const auto gaussian = params_of(InitKind::gaussian, 1.0, 3);
  for (InitKind k : {InitKind::orthogonal, InitKind::lowrank, InitKind::sparse, InitKind::dale}) {
    const auto p = params_of(k, 1.0, 3);
    EXPECT_TRUE(std::equal(p.begin() + L.W_x, p.end(), gaussian.begin() + L.W_x)) << init_name(k);
    EXPECT_FALSE(std::equal(p.begin(), p.begin() + L.W_x, gaussian.begin())) << init_name(k) << " changes W_h";
  }
}

TEST(Init, AllGainsOfASeedScaleTheSameDraw) {
  for (InitKind k : {InitKind::orthogonal, InitKind::sparse, InitKind::dale}) {
    const Eigen::MatrixXd a = W_h_of(params_of(k, 0.5, 2)), b = W_h_of(params_of(k, 2.0, 2));
    EXPECT_LT((4.0 * a - b).cwiseAbs().maxCoeff(), 1e-6) << init_name(k);
    const Eigen::MatrixXd other = W_h_of(params_of(k, 0.5, 3));
    EXPECT_GT((a - other).cwiseAbs().maxCoeff(), 0.1) << init_name(k) << ": another seed, another draw";
  }
  // lowrank: g Z + strength m n^T / H, with Z, m and n the same at every gain
  const Eigen::MatrixXd lo = W_h_of(params_of(InitKind::lowrank, 0.5, 2)),
                        hi = W_h_of(params_of(InitKind::lowrank, 2.0, 2)),
                        z = W_h_of(params_of(InitKind::gaussian, 1.0, 2));
  EXPECT_LT(((hi - lo) - 1.5 * z).cwiseAbs().maxCoeff(), 1e-5);
}

TEST(Init, OrthogonalHasEverySingularValueEqualToTheGain) {
  for (double g : {0.5, 1.0, 1.7}) {
    const Eigen::JacobiSVD<Eigen::MatrixXd> svd(W_h_of(params_of(InitKind::orthogonal, g, 5)));
    const Eigen::VectorXd sv = svd.singularValues();
    EXPECT_NEAR(sv.maxCoeff(), g, 1e-5 * g) << "gain " << g;
    EXPECT_NEAR(sv.minCoeff(), g, 1e-5 * g) << "gain " << g;
  }
  // and it is not the identity or a permutation: entries spread like g / sqrt(H)
  const Eigen::MatrixXd W = W_h_of(params_of(InitKind::orthogonal, 1.0, 5));
  EXPECT_LT(W.cwiseAbs().maxCoeff(), 0.8);
  EXPECT_NEAR(W.squaredNorm() / (kH * kH), 1.0 / kH, 1e-6);
}

TEST(Init, SparseKeepsTheDensityAndTheRowVariance) {
  InitOptions o;
  o.sparse_density = 0.25;
  const Eigen::MatrixXd W = W_h_of(params_of(InitKind::sparse, 1.2, 9, o));
  const Eigen::MatrixXd Z = W_h_of(params_of(InitKind::gaussian, 1.2, 9));  // g Z / sqrt(H)
  int kept = 0;
  for (int r = 0; r < kH; ++r)
    for (int c = 0; c < kH; ++c) {
      if (W(r, c) == 0) continue;
      ++kept;
      // a kept entry is the gaussian entry rescaled by 1 / sqrt(density)
      EXPECT_NEAR(W(r, c), Z(r, c) / std::sqrt(0.25), 1e-6) << r << "," << c;
    }
  // 4096 Bernoulli(0.25) draws: standard deviation 0.0068 of the fraction
  EXPECT_NEAR(double(kept) / (kH * kH), 0.25, 0.03);
  // the second moment per entry, and so the gain, is that of the gaussian init: g^2 / H
  EXPECT_NEAR(W.squaredNorm() / (kH * kH), 1.44 / kH, 0.15 * 1.44 / kH);
}

TEST(Init, DaleHasFixedColumnSignsAndBalancedInput) {
  InitOptions o;
  o.dale_excitatory = 0.75;
  const double g = 1.5;
  const Eigen::MatrixXd W = W_h_of(params_of(InitKind::dale, g, 4, o));
  const Eigen::MatrixXd Z = W_h_of(params_of(InitKind::gaussian, g, 4));
  const int n_e = dale_excitatory_units(kH, 0.75);
  ASSERT_EQ(n_e, 48);
  const double c_e = std::sqrt(16.0 / 48.0), c_i = std::sqrt(48.0 / 16.0);
  for (int c = 0; c < kH; ++c)
    for (int r = 0; r < kH; ++r) {
      if (c < n_e)
        EXPECT_NEAR(W(r, c), c_e * std::abs(Z(r, c)), 1e-6) << "excitatory column " << c;
      else
        EXPECT_NEAR(W(r, c), -c_i * std::abs(Z(r, c)), 1e-6) << "inhibitory column " << c;
    }
  // balance: the excitatory and inhibitory weight per row cancel in expectation, so the mean
  // entry is zero up to sampling (each row sum has standard deviation about g sqrt(1 - 2/pi))
  const double mean_row_sum = W.rowwise().sum().mean();
  EXPECT_NEAR(mean_row_sum, 0.0, 4 * g * std::sqrt(1 - 2 / M_PI) / std::sqrt(double(kH)));
  EXPECT_NEAR(W.squaredNorm() / (kH * kH), g * g / kH, 0.15 * g * g / kH);
  // the fraction is clamped so that both populations exist
  EXPECT_EQ(dale_excitatory_units(2, 0.99), 1);
  EXPECT_EQ(dale_excitatory_units(4, 0.01), 1);
}

TEST(Init, LowrankAddsAStructureOfTheGivenRank) {
  for (int rank : {1, 3}) {
    InitOptions o;
    o.lowrank_rank = rank;
    o.lowrank_strength = 2.0;
    const Eigen::MatrixXd D =
        W_h_of(params_of(InitKind::lowrank, 0.8, 6, o)) - W_h_of(params_of(InitKind::gaussian, 0.8, 6));
    const Eigen::VectorXd sv = Eigen::JacobiSVD<Eigen::MatrixXd>(D).singularValues();
    // rank r: r singular values of order strength (|m||n| / H ~ strength), the rest float rounding
    for (int i = 0; i < rank; ++i) EXPECT_GT(sv(i), 0.3) << "rank " << rank << " index " << i;
    EXPECT_LT(sv(rank), 1e-5) << "rank " << rank;
  }
}

}  // namespace
}  // namespace rnnsweep
