// Spectra and flossing of whole networks: driven trajectories consistent with the trainer,
// the starting frame, the paper's gain dependence, and flossing doing its job.
#include <gtest/gtest.h>

#include <cmath>

#include "host/cpu/model.h"
#include "host/cpu/spectra.h"
#include "host/cpu/tasks.h"

using namespace rnnsweep;
using namespace rnnsweep::cpu;

namespace {

struct Net {
  Config config;
  TaskParams task;
  Shape shape;
  std::vector<float> params;
  Net(TaskKind kind, double gain, int H = 32) {
    config.hidden = H;
    config.le_steps = 300;
    config.le_warmup = 50;
    config.le_batch = 2;
    config.floss_k = 16;
    task = config.task(kind);
    shape = {H, task.inputs(), task.outputs(), false};
    params.resize(ParamLayout(shape).size);
    init_params(shape, gain, 0, params.data());
  }
  std::vector<double> spectrum() const { return network_spectrum(config, task, shape, params.data(), 0); }
};

TEST(Spectra, DrivenStatesFollowTheTrainersForwardPass) {
  // The first trial of a driven trajectory is trial 0 of the same stream: the trainer's
  // forward pass on it must give the same states (both in double here, so to rounding).
  for (TaskKind kind : {TaskKind::romo, TaskKind::dms}) {
    Net n(kind, 1.2, 8);
    const int T = n.task.T();
    const Mat<double> hs = driven_states(n.shape, n.task.leak(), n.params.data(), n.task, Purpose::lyapunov_trials,
                                         0, 3, 0, 2 * T);
    Trials tr;
    fill_trials(n.task, Purpose::lyapunov_trials, 0, 3, 1, tr);
    std::vector<double> p(n.params.begin(), n.params.end());
    Forward<double> fwd;
    forward(n.shape, n.task.leak(), p.data(), tr, fwd);
    ASSERT_GT(fwd.h.cwiseAbs().maxCoeff(), 0.1) << "the trajectory must not be trivial";
    for (int t = 0; t < T; ++t) ASSERT_LT((hs.col(t) - fwd.h.col(t)).cwiseAbs().maxCoeff(), 1e-12) << "step " << t;
    // and the second trial continues from the end of the first, without a reset
    EXPECT_GT(hs.col(T).cwiseAbs().maxCoeff(), 0.0);
  }
}

TEST(Spectra, RandomFrameIsOrthonormalAndAFunctionOfTheSeed) {
  const Mat<double> Q = random_frame(16, 5, 7);
  EXPECT_LT((Q.transpose() * Q - Mat<double>::Identity(5, 5)).cwiseAbs().maxCoeff(), 1e-13);
  EXPECT_EQ(Q, random_frame(16, 5, 7));
  EXPECT_NE(Q, random_frame(16, 5, 8));
}

TEST(Spectra, NetworkSpectrumHasKSortedExponentsAndMatchesZeroRecurrence) {
  Net n(TaskKind::romo, 0.0, 8);
  auto l = n.spectrum();
  ASSERT_EQ(l.size(), 8u);
  for (double x : l) EXPECT_NEAR(x, std::log(0.5), 1e-12) << "W_h = 0: every exponent is ln a";
  Net m(TaskKind::romo, 1.5, 8);
  m.config.le_k = 3;
  l = m.spectrum();
  ASSERT_EQ(l.size(), 3u);
  EXPECT_GE(l[0], l[1]);
  EXPECT_GE(l[1], l[2]);
}

TEST(Spectra, MaxLyapunovExponentRisesWithGainBeforeTraining) {
  // SPEC section 7 / the paper's figure 3: small gains start far below 0, g ~ 1.5 near 0.
  // Measured here (H = 32, seed 0): romo -0.58, -0.43, -0.24, -0.07 and 2af -1.74, -0.93,
  // -0.42, 0.03 for gains 0.2, 0.5, 1.0, 1.5; the bounds leave room for other seeds.
  for (TaskKind kind : {TaskKind::romo, TaskKind::two_af}) {
    double previous = -INFINITY;
    for (double g : {0.2, 0.5, 1.0, 1.5}) {
      const double max_le = Net(kind, g).spectrum().front();
      EXPECT_GT(max_le, previous) << "gain " << g;
      previous = max_le;
      if (g == 0.2) {
        EXPECT_LT(max_le, -0.4) << "g = 0.2 is far below 0";
      }
      if (g == 1.5) {
        EXPECT_NEAR(max_le, 0.0, 0.2) << "g = 1.5 is near 0";
      }
    }
  }
}

TEST(Spectra, FlossingLowersTheLossAndMovesTheMaxLeTowardZero) {
  // 100 Adam steps at lr 1e-3 (SPEC defaults). Measured (H = 32, k = 16, romo): sum of the
  // first 16 lambda^2 6.9 -> 3.6 at g = 0.2 and 3.4 -> 1.5 at g = 2.0; we require a factor 1.5.
  for (double g : {0.2, 2.0}) {
    Net n(TaskKind::romo, g);
    auto sum_sq = [&](const std::vector<double>& l) {
      double s = 0;
      for (int i = 0; i < n.config.floss_k; ++i) s += l[i] * l[i];
      return s;
    };
    const auto before = n.spectrum();
    const auto curve = floss_network(n.config, n.task, n.shape, n.params.data(), 0);
    const auto after = n.spectrum();
    ASSERT_EQ(curve.size(), 100u);
    EXPECT_EQ(curve.front().k_used, 16) << "romo (a = 0.5) annihilates no direction";
    EXPECT_LT(curve.back().loss, curve.front().loss / 1.5) << "gain " << g;
    EXPECT_LT(sum_sq(after), sum_sq(before) / 1.5) << "gain " << g;
    EXPECT_LT(std::fabs(after.front()), std::fabs(before.front())) << "gain " << g << ": max LE toward 0";
  }
}

TEST(Spectra, FlossingTouchesOnlyTheRecurrentWeights) {
  Net n(TaskKind::dms, 1.0, 16);
  n.config.floss_iters = 3;
  n.config.floss_k = 4;
  const std::vector<float> before = n.params;
  floss_network(n.config, n.task, n.shape, n.params.data(), 0);
  const ParamLayout L(n.shape);
  for (int i = L.W_x; i < L.size; ++i) ASSERT_EQ(n.params[i], before[i]) << "parameter " << i;
  EXPECT_NE(std::vector<float>(n.params.begin(), n.params.begin() + L.W_x),
            std::vector<float>(before.begin(), before.begin() + L.W_x));
}

TEST(Spectra, ZeroLeakNetworksReportAnnihilatedDirectionsAsMinusInfinity) {
  // 2af has a = 0: J_t = W_h diag(f'(h_t)) has rank <= the number of active units, so the
  // trailing exponents are -inf, not ln of rounding noise; the leading ones stay finite, and
  // flossing with floss_k above the rank covers only the directions no step annihilated.
  Net n(TaskKind::two_af, 1.0);
  n.config.floss_k = 32;  // = H
  const auto l = n.spectrum();
  int finite = 0;
  for (double x : l) finite += std::isfinite(x);
  EXPECT_GT(finite, 0);
  EXPECT_LT(finite, 32) << "some direction is annihilated when a unit is silent";
  for (int i = 0; i < finite; ++i) EXPECT_GT(l[i], -20.0) << "finite exponents are not rounding noise";
  for (int i = finite; i < 32; ++i) EXPECT_EQ(l[i], -INFINITY);
  n.config.floss_iters = 2;
  const auto curve = floss_network(n.config, n.task, n.shape, n.params.data(), 0);
  EXPECT_GT(curve[0].k_used, 0);
  EXPECT_LT(curve[0].k_used, 32);
  EXPECT_TRUE(std::isfinite(curve[0].loss));
  EXPECT_LT(curve[0].loss, 20.0 * curve[0].k_used) << "no exponent near -37 in the loss";
}

}  // namespace
