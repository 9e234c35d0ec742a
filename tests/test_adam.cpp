// Adam against a step computed by hand with PyTorch's formulas, and SGD.
#include <gtest/gtest.h>

#include "host/cpu/adam.h"

using namespace rnnsweep::cpu;

TEST(Adam, TwoStepsMatchHandComputation) {
  // lr 0.01, betas (0.9, 0.999), eps 1e-8, p = (1, -2), gradients (0.1, -0.3) then (0.2, 0.1).
  // Step 1: m = 0.1 g, v = 0.001 g^2, so m / bc1 = g and sqrt(v / bc2) = |g|:
  //   p -= 0.01 * g / (|g| + 1e-8)  ->  (0.990000001, -1.990000000333)
  // Step 2, coordinate 0: m = 0.9 * 0.01 + 0.1 * 0.2 = 0.029, v = 0.999 * 1e-5 + 0.001 * 0.04
  //   = 4.999e-5, bc1 = 0.19, bc2 = 0.001999: p -= 0.01 * (0.029 / 0.19) / (sqrt(v / bc2) + eps).
  // Expected values evaluated in double from those expressions.
  std::vector<double> p = {1.0, -2.0};
  AdamState<double> st(2);
  const AdamHyper hp;
  const double g1[] = {0.1, -0.3}, g2[] = {0.2, 0.1};
  adam_step(p.data(), g1, 2, 0.01, hp, st);
  EXPECT_NEAR(p[0], 0.9900000009999999, 1e-15);
  EXPECT_NEAR(p[1], -1.9900000003333334, 1e-15);
  adam_step(p.data(), g2, 2, 0.01, hp, st);
  // 1e-15: a few ulps of a number of magnitude 1 (same formulas, maybe another order)
  EXPECT_NEAR(p[0], 0.9803481813521252, 1e-15);
  EXPECT_NEAR(p[1], -1.9859978147928081, 1e-15);
  EXPECT_EQ(st.step, 2);
}

TEST(Adam, FloatStepAgreesWithDouble) {
  std::vector<float> pf = {1.0f, -2.0f};
  std::vector<double> pd = {1.0, -2.0};
  AdamState<float> sf(2);
  AdamState<double> sd(2);
  const float gf[] = {0.1f, -0.3f};
  const double gd[] = {0.1f, -0.3f};
  for (int i = 0; i < 5; ++i) {
    adam_step(pf.data(), gf, 2, 1e-3, AdamHyper{}, sf);
    adam_step(pd.data(), gd, 2, 1e-3, AdamHyper{}, sd);
  }
  // float rounding of O(1) numbers over five steps
  EXPECT_NEAR(pf[0], pd[0], 1e-6);
  EXPECT_NEAR(pf[1], pd[1], 1e-6);
}

TEST(Sgd, StepIsMinusLrTimesGradient) {
  std::vector<double> p = {1.0, -2.0};
  const double g[] = {0.5, -0.25};
  sgd_step(p.data(), g, 2, 0.1);
  EXPECT_DOUBLE_EQ(p[0], 0.95);
  EXPECT_DOUBLE_EQ(p[1], -1.975);
}
