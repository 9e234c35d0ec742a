// The tasks of docs/model.md, section 3: lengths, period boundaries, labels, input statistics, and the
// determinism of the counter-based trial streams.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <set>

#include "host/cpu/tasks.h"
#include "rnnsweep/config.h"

using namespace rnnsweep;
using namespace rnnsweep::cpu;

namespace {

TaskParams task_of(TaskKind k) { return Config::make_task(k); }

float x_at(const Trials& t, int step, int b, int i) { return t.x[(size_t(step) * t.Bt + b) * t.I + i]; }
int label_at(const Trials& t, int step, int b) { return t.label[size_t(step) * t.Bt + b]; }

TEST(Tasks, ShapesAndLeaks) {
  EXPECT_EQ(task_of(TaskKind::romo).T(), 56);
  EXPECT_EQ(task_of(TaskKind::two_af).T(), 22);
  EXPECT_EQ(task_of(TaskKind::dms).T(), 32);
  EXPECT_DOUBLE_EQ(task_of(TaskKind::romo).leak(), 0.5);
  EXPECT_DOUBLE_EQ(task_of(TaskKind::two_af).leak(), 0.0);
  EXPECT_DOUBLE_EQ(task_of(TaskKind::dms).leak(), 0.0);
  EXPECT_EQ(task_of(TaskKind::romo).inputs(), 1);
  EXPECT_EQ(task_of(TaskKind::romo).outputs(), 2);
  EXPECT_EQ(task_of(TaskKind::dms).inputs(), 3);
  EXPECT_EQ(task_of(TaskKind::dms).outputs(), 3);
}

TEST(Tasks, RomoTrialStructure) {
  const int B = 4000;
  const Trials t = training_trials(task_of(TaskKind::romo), 7, 0, B);
  std::set<int> delays;
  int f1_larger = 0;
  for (int b = 0; b < B; ++b) {
    // f1 on [6, 8); f2 on [8 + d, 10 + d); nothing else
    const float f1 = x_at(t, 6, b, 0);
    ASSERT_EQ(x_at(t, 7, b, 0), f1);
    int d = -1;
    for (int s = 8; s < t.T; ++s)
      if (x_at(t, s, b, 0) != 0) {
        d = s - 8;
        break;
      }
    ASSERT_GE(d, 4) << "delay = int(U(2, 8) / 0.5) >= 4";
    ASSERT_LE(d, 15) << "delay = int(U(2, 8) / 0.5) <= 15";
    delays.insert(d);
    const float f2 = x_at(t, 8 + d, b, 0);
    ASSERT_EQ(x_at(t, 9 + d, b, 0), f2);
    for (int s = 0; s < t.T; ++s) {
      const bool on = (s >= 6 && s < 8) || (s >= 8 + d && s < 10 + d);
      if (!on) {
        ASSERT_EQ(x_at(t, s, b, 0), 0.0f) << "trial " << b << " step " << s;
      }
    }
    ASSERT_GE(f1, 0.5f);
    ASSERT_LT(f1, 1.5f);
    ASSERT_GE(f2, 0.5f);
    ASSERT_LT(f2, 1.5f);
    ASSERT_GE(std::fabs(double(f1) - double(f2)), 0.2 - 1e-6) << "|f1 - f2| >= 0.2 (float rounding)";
    f1_larger += f1 > f2;
    const int correct = f1 > f2 ? 0 : 1;
    for (int s = 0; s < t.T; ++s) {
      const bool response = s >= 20 + d && s < 40 + d;
      for (int o = 0; o < 2; ++o) {
        const size_t k = (size_t(s) * B + b) * 2 + o;
        ASSERT_EQ(t.target[k], response && o == correct ? 0.5f : 0.0f) << "step " << s;
        ASSERT_EQ(t.mask[k], response || s < 10 + d ? 1.0f : 0.0f) << "step " << s;
      }
    }
  }
  EXPECT_EQ(delays.size(), 12u) << "every delay 4..15 occurs";
  // f1 > f2 is a fair coin: 4000 trials, 5 sigma = 0.04
  EXPECT_NEAR(f1_larger / double(B), 0.5, 0.04);
}

TEST(Tasks, TwoAfTrialStructure) {
  const int B = 4000;
  TaskParams p = task_of(TaskKind::two_af);
  p.sigma = 0;  // exact coherences
  const Trials t = training_trials(p, 3, 5, B);
  std::map<long, int> coherence_count;
  int choice1 = 0;
  for (int b = 0; b < B; ++b) {
    const int label = label_at(t, 21, b);
    ASSERT_TRUE(label == 1 || label == 2);
    choice1 += label == 2;
    for (int s = 0; s < 21; ++s) ASSERT_EQ(label_at(t, s, b), 0);
    for (int s = 0; s < 22; ++s) ASSERT_EQ(x_at(t, s, b, 0), s < 21 ? 1.0f : 0.0f) << "fixation cue";
    for (int s : {0, 21}) {
      ASSERT_EQ(x_at(t, s, b, 1), 0.0f);
      ASSERT_EQ(x_at(t, s, b, 2), 0.0f);
    }
    // stimulus steps 1..20: 0.5 +- coh / 200 on the chosen / other channel
    const double diff = double(x_at(t, 1, b, 1)) - x_at(t, 1, b, 2);
    const double coh = std::fabs(diff) * 100;
    coherence_count[std::lround(coh * 10)]++;
    if (coh > 1) {
      ASSERT_EQ(diff > 0, label == 1) << "the stronger channel is the answer";
    }
    for (int s = 1; s <= 20; ++s) ASSERT_NEAR(x_at(t, s, b, 1) + x_at(t, s, b, 2), 1.0f, 1e-6);
  }
  const std::set<long> expected = {0, 64, 128, 256, 512};  // coherence * 10
  std::set<long> seen;
  for (auto& [c, n] : coherence_count) {
    seen.insert(c);
    EXPECT_NEAR(n / double(B), 0.2, 0.035) << "coherence " << c / 10.0;  // 5 sigma of 4000 draws
  }
  EXPECT_EQ(seen, expected);
  EXPECT_NEAR(choice1 / double(B), 0.5, 0.04);  // fair coin, 4000 draws: 5 sigma
}

// 2af.fixation_cue = "neurogym": the cue is on during the fixation period only (neurogym 2.x),
// everything else the classic trial's, from the same random words.
TEST(Tasks, TwoAfNeurogymFixationCueIsOffFromTheStimulusOn) {
  const int B = 200;
  TaskParams classic = task_of(TaskKind::two_af);
  classic.delay_ms = 300;  // steps: fixation 0, stimulus 1..20, delay 21..23, decision 24
  TaskParams neurogym = classic;
  neurogym.fixation_off_after_fixation = true;
  ASSERT_EQ(classic.T(), 25);
  const Trials c = training_trials(classic, 3, 5, B), n = training_trials(neurogym, 3, 5, B);
  for (int b = 0; b < B; ++b)
    for (int s = 0; s < 25; ++s) {
      ASSERT_EQ(x_at(c, s, b, 0), s < 24 ? 1.0f : 0.0f) << "classic: on until the decision";
      ASSERT_EQ(x_at(n, s, b, 0), s < 1 ? 1.0f : 0.0f) << "neurogym: on during fixation only";
      for (int i = 1; i < 3; ++i) ASSERT_EQ(x_at(n, s, b, i), x_at(c, s, b, i));
      ASSERT_EQ(label_at(n, s, b), label_at(c, s, b));
    }
}

TEST(Tasks, DmsTrialStructure) {
  const int B = 4000;
  TaskParams p = task_of(TaskKind::dms);
  p.sigma = 0;
  const Trials t = training_trials(p, 9, 2, B);
  int matches = 0;
  for (int b = 0; b < B; ++b) {
    for (int s = 0; s < 32; ++s) {
      ASSERT_EQ(x_at(t, s, b, 0), s < 23 ? 1.0f : 0.0f) << "fixation until the decision at step 23";
      const bool stim = (s >= 3 && s < 8) || (s >= 18 && s < 23);
      if (!stim) {
        ASSERT_EQ(x_at(t, s, b, 1), 0.0f);
        ASSERT_EQ(x_at(t, s, b, 2), 0.0f);
      }
    }
    // sample angle 0 -> channels (1, 0); pi -> (0, 1)
    const bool sample_is_0 = x_at(t, 3, b, 1) > 0.5f;
    const bool test_is_0 = x_at(t, 18, b, 1) > 0.5f;
    ASSERT_NEAR(x_at(t, 3, b, 1) + x_at(t, 3, b, 2), 1.0f, 1e-6);
    const int label = label_at(t, 23, b);
    ASSERT_EQ(label, sample_is_0 == test_is_0 ? 1 : 2);
    matches += label == 1;
    for (int s = 0; s < 32; ++s) ASSERT_EQ(label_at(t, s, b), s >= 23 ? label : 0);
  }
  EXPECT_NEAR(matches / double(B), 0.5, 0.04);  // fair coin, 4000 draws: 5 sigma
}

// Noise: on stimulus steps x1 + x2 - 1 is the sum of two N(0, sigma^2) draws.
double noise_std(TaskKind kind, int step) {
  const int B = 5000;
  const Trials t = training_trials(task_of(kind), 1, 0, B);
  double sum = 0, sum2 = 0;
  for (int b = 0; b < B; ++b) {
    const double n = (double(x_at(t, step, b, 1)) + x_at(t, step, b, 2) - 1.0) / std::sqrt(2.0);
    sum += n, sum2 += n * n;
  }
  EXPECT_NEAR(sum / B, 0.0, 0.01);  // 7 sigma of the mean of 5000 draws of std 0.1
  return std::sqrt(sum2 / B);
}

TEST(Tasks, InputNoiseStd) {
  // sample std of 5000 normals is within ~1% (1 sigma) of the truth; 4% is 4 sigma
  EXPECT_NEAR(noise_std(TaskKind::two_af, 5), 0.1, 0.004);
  EXPECT_NEAR(noise_std(TaskKind::dms, 4), 0.1, 0.004);
  EXPECT_NEAR(noise_std(TaskKind::dms, 20), 0.1, 0.004);
}

TEST(Tasks, StreamsArePureFunctionsOfSeedAndIteration) {
  for (TaskKind k : {TaskKind::romo, TaskKind::two_af, TaskKind::dms}) {
    const Trials a = training_trials(task_of(k), 4, 17, 8), b = training_trials(task_of(k), 4, 17, 8);
    EXPECT_EQ(a.x, b.x);
    EXPECT_EQ(a.label, b.label);
    EXPECT_EQ(a.target, b.target);
    EXPECT_NE(a.x, training_trials(task_of(k), 5, 17, 8).x) << "another data seed";
    EXPECT_NE(a.x, training_trials(task_of(k), 4, 18, 8).x) << "another iteration";
    // Trial b does not depend on the batch size: the first 3 of 8 are the batch of 3.
    const Trials small = training_trials(task_of(k), 4, 17, 3);
    for (int s = 0; s < a.T; ++s)
      for (int tr = 0; tr < 3; ++tr)
        for (int i = 0; i < a.I; ++i) ASSERT_EQ(x_at(small, s, tr, i), x_at(a, s, tr, i));
  }
}

}  // namespace
