// The learning rules against independent oracles, in double (docs/model.md, section 4):
// - BPTT against central finite differences of the task loss, every parameter;
// - e-prop against (1) a detached-BPTT written here with plain loops and (2) finite
//   differences of the surrogate model whose recurrent presynaptic rates are frozen constants,
//   which is exactly what autograd of `W_h f(h_t.detach())` differentiates;
// - RFLO against the detached-BPTT with B in place of w^T.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "host/cpu/model.h"

using namespace rnnsweep;
using namespace rnnsweep::cpu;

namespace {

struct Case {
  TaskKind task;
  double gain;
  bool bias;
};

std::string case_name(const testing::TestParamInfo<Case>& info) {
  const char* t[] = {"romo", "twoaf", "dms"};
  return std::string(t[int(info.param.task)]) + "_g" + std::to_string(int(info.param.gain * 10)) +
         (info.param.bias ? "_bias" : "");
}

// A small network (H = 6) with the trainer's initialisation, in double, on a batch of 3 trials.
struct SmallNet {
  Shape shape;
  double a;
  Trials trials;
  std::vector<double> params;

  SmallNet(TaskKind kind, double gain, bool bias, std::uint32_t seed = 3) {
    TaskParams task;
    task.kind = kind;
    shape = {6, task.inputs(), task.outputs(), bias};
    a = task.leak();
    trials = training_trials(task, seed, 0, 3);
    std::vector<float> p(ParamLayout(shape).size);
    init_params(shape, gain, seed, p.data());
    params.assign(p.begin(), p.end());
  }

  double loss(const std::vector<double>& p) const {
    Forward<double> fwd;
    forward(shape, a, p.data(), trials, fwd);
    return task_loss(trials, fwd.y, static_cast<Mat<double>*>(nullptr)).loss;
  }
};

// Central differences of `f` at every entry of p. h = 1e-6 balances truncation error
// (~h^2 * f''' ~ 1e-12) against rounding (~1e-16 / h ~ 1e-10) for O(1) losses.
template <typename F>
std::vector<double> finite_differences(F f, std::vector<double> p) {
  const double h = 1e-6;
  std::vector<double> g(p.size());
  for (size_t i = 0; i < p.size(); ++i) {
    const double keep = p[i];
    p[i] = keep + h;
    const double up = f(p);
    p[i] = keep - h;
    const double down = f(p);
    p[i] = keep;
    g[i] = (up - down) / (2 * h);
  }
  return g;
}

// |a - b| <= tol * max(1e-3, max |b|): relative to the gradient's scale, so tiny entries
// don't demand more digits than finite differences have.
void expect_close(const std::vector<double>& got, const std::vector<double>& want, double tol,
                  const std::string& what) {
  ASSERT_EQ(got.size(), want.size());
  double scale = 1e-3;
  for (double w : want) scale = std::max(scale, std::fabs(w));
  for (size_t i = 0; i < got.size(); ++i)
    EXPECT_NEAR(got[i], want[i], tol * scale) << what << ", parameter " << i;
}

double max_abs(const std::vector<double>& v) {
  double m = 0;
  for (double x : v) m = std::max(m, std::fabs(x));
  return m;
}

std::vector<double> bptt(const SmallNet& s, const std::vector<double>& p) {
  Forward<double> fwd;
  forward(s.shape, s.a, p.data(), s.trials, fwd);
  Mat<double> dL_dy;
  task_loss(s.trials, fwd.y, &dL_dy);
  std::vector<double> g(p.size());
  bptt_gradient(s.shape, s.a, p.data(), fwd, dL_dy, g.data());
  return g;
}

std::vector<double> eprop(const SmallNet& s, const std::vector<double>& p, const Mat<double>* B = nullptr) {
  Forward<double> fwd;
  forward(s.shape, s.a, p.data(), s.trials, fwd);
  Mat<double> dL_dy;
  task_loss(s.trials, fwd.y, &dL_dy);
  const Mat<double> feedback = B ? *B : Mat<double>(ConstNet<double>(s.shape, p.data()).w.transpose());
  std::vector<double> g(p.size());
  eprop_gradient(s.shape, s.a, p.data(), fwd, dL_dy, feedback, g.data());
  return g;
}

// Reverse mode through the model with the recurrent presynaptic rate detached, written with
// scalar loops and no code shared with host/cpu/eprop.cpp:
//   delta_t = f'(h_t) (feedback dL/dy_{t-1}) + a delta_{t+1}     (no W_h^T path)
std::vector<double> detached_bptt(const SmallNet& s, const std::vector<double>& p,
                                  const Mat<double>& feedback) {
  const int H = s.shape.H, I = s.shape.I, O = s.shape.O, T = s.trials.T, Bt = s.trials.Bt;
  Forward<double> fwd;
  forward(s.shape, s.a, p.data(), s.trials, fwd);
  Mat<double> dL_dy;
  task_loss(s.trials, fwd.y, &dL_dy);
  const ParamLayout L(s.shape);
  std::vector<double> g(p.size(), 0.0);
  for (int b = 0; b < Bt; ++b) {
    std::vector<double> delta(H, 0.0);  // delta_{t+1}
    for (int t = T - 1; t >= 0; --t) {
      const int col = t * Bt + b;         // y_t, x_t
      const int hcol = (t + 1) * Bt + b;  // h_{t+1}
      for (int j = 0; j < H; ++j) {
        double direct = 0;
        for (int o = 0; o < O; ++o) direct += feedback(j, o) * dL_dy(o, col);
        delta[j] = (fwd.h(j, hcol) > 0 ? direct : 0.0) + s.a * delta[j];
      }
      // h_{t+1} = a h_t + (1 - a)(W_h f(h_t) + W_x x_t + b): parameters of step t
      for (int j = 0; j < H; ++j) {
        const double d = (1 - s.a) * delta[j];
        for (int k = 0; k < H; ++k) g[L.W_h + k * H + j] += d * std::max(0.0, fwd.h(k, t * Bt + b));
        for (int i = 0; i < I; ++i) g[L.W_x + i * H + j] += d * s.trials.x[size_t(col) * I + i];
        if (s.shape.bias) g[L.b + j] += d;
      }
      for (int o = 0; o < O; ++o) {
        for (int k = 0; k < H; ++k) g[L.w + k * O + o] += dL_dy(o, col) * std::max(0.0, fwd.h(k, hcol));
        if (s.shape.bias) g[L.b_out + o] += dL_dy(o, col);
      }
    }
  }
  return g;
}

// The loss of the surrogate network whose recurrent input uses the frozen rates f(h*_t) of the
// unperturbed network: its exact gradient at p* is the e-prop gradient.
double surrogate_loss(const SmallNet& s, const Forward<double>& frozen, const std::vector<double>& p) {
  const ConstNet<double> net(s.shape, p.data());
  const int T = s.trials.T, Bt = s.trials.Bt;
  const Mat<double> x =
      Eigen::Map<const Eigen::MatrixXf>(s.trials.x.data(), s.shape.I, T * Bt).cast<double>();
  Mat<double> h = Mat<double>::Zero(s.shape.H, Bt), y(s.shape.O, T * Bt);
  for (int t = 0; t < T; ++t) {
    Mat<double> u = net.W_h * frozen.f.middleCols(t * Bt, Bt) + net.W_x * x.middleCols(t * Bt, Bt);
    if (s.shape.bias) u.colwise() += net.b;
    h = s.a * h + (1 - s.a) * u;
    y.middleCols(t * Bt, Bt) = net.w * h.cwiseMax(0.0);
    if (s.shape.bias) y.middleCols(t * Bt, Bt).colwise() += net.b_out;
  }
  return task_loss(s.trials, y, static_cast<Mat<double>*>(nullptr)).loss;
}

// gtest prints parameters with this instead of their bytes
void PrintTo(const Case& c, std::ostream* os) {
  *os << "task " << int(c.task) << ", gain " << c.gain << (c.bias ? ", bias" : "");
}

class Gradients : public testing::TestWithParam<Case> {};

TEST_P(Gradients, BpttMatchesFiniteDifferences) {
  const Case c = GetParam();
  SmallNet s(c.task, c.gain, c.bias);
  const auto g = bptt(s, s.params);
  const auto fd = finite_differences([&](const std::vector<double>& p) { return s.loss(p); }, s.params);
  ASSERT_GT(max_abs(fd), 1e-6) << "the loss must depend on the parameters for this test to mean anything";
  // 1e-6 of the gradient scale: finite differences are good to ~1e-9 here, float-free.
  expect_close(g, fd, 1e-6, "bptt");
}

TEST_P(Gradients, EpropMatchesDetachedBptt) {
  const Case c = GetParam();
  SmallNet s(c.task, c.gain, c.bias);
  const Mat<double> wT = ConstNet<double>(s.shape, s.params.data()).w.transpose();
  // Same sums in another order: agreement to rounding (1e-12 of the scale).
  expect_close(eprop(s, s.params), detached_bptt(s, s.params, wT), 1e-12, "eprop vs detached bptt");
}

TEST_P(Gradients, EpropMatchesFiniteDifferencesOfFrozenRateSurrogate) {
  const Case c = GetParam();
  SmallNet s(c.task, c.gain, c.bias);
  Forward<double> frozen;
  forward(s.shape, s.a, s.params.data(), s.trials, frozen);
  ASSERT_NEAR(surrogate_loss(s, frozen, s.params), s.loss(s.params), 1e-12)
      << "surrogate must equal the model at p*";
  const auto fd = finite_differences(
      [&](const std::vector<double>& p) { return surrogate_loss(s, frozen, p); }, s.params);
  expect_close(eprop(s, s.params), fd, 1e-6, "eprop vs finite differences of the surrogate");
}

TEST_P(Gradients, RfloMatchesDetachedBpttWithB) {
  const Case c = GetParam();
  SmallNet s(c.task, c.gain, c.bias);
  const std::vector<float> Bf = rflo_feedback(s.shape, 11);
  const Mat<double> B = Eigen::Map<const Eigen::MatrixXf>(Bf.data(), s.shape.H, s.shape.O).cast<double>();
  const auto rflo = eprop(s, s.params, &B);
  expect_close(rflo, detached_bptt(s, s.params, B), 1e-12, "rflo vs detached bptt with B");
  // The readout is trained with its exact gradient by every rule.
  const auto exact = bptt(s, s.params);
  const ParamLayout L(s.shape);
  // the same product dL/dy f(h)^T in double in both: rounding only
  for (int i = L.w; i < L.b; ++i) EXPECT_NEAR(rflo[i], exact[i], 1e-12 * (1 + std::fabs(exact[i])));
}

TEST_P(Gradients, EpropDiffersFromBpttWhenRecurrent) {
  const Case c = GetParam();
  if (c.gain == 0) GTEST_SKIP() << "no recurrence";
  SmallNet s(c.task, c.gain, c.bias);
  const auto e = eprop(s, s.params), b = bptt(s, s.params);
  const ParamLayout L(s.shape);
  double diff = 0, scale = 0;
  for (int i = L.W_h; i < L.W_x; ++i)
    diff = std::max(diff, std::fabs(e[i] - b[i])), scale = std::max(scale, std::fabs(b[i]));
  // The truncation drops the W_h^T path, which carries a sizeable share of the gradient at
  // these gains: 1% of the scale is far above rounding and far below the typical gap.
  EXPECT_GT(diff, 1e-2 * scale);
}

INSTANTIATE_TEST_SUITE_P(AllTasks, Gradients,
                         testing::Values(Case{TaskKind::romo, 0.5, false}, Case{TaskKind::romo, 1.5, true},
                                         Case{TaskKind::two_af, 0.8, false},
                                         Case{TaskKind::two_af, 2.0, true}, Case{TaskKind::dms, 1.0, false},
                                         Case{TaskKind::dms, 1.5, true}),
                         case_name);

TEST(Gradients, EpropEqualsBpttWithoutRecurrence) {
  for (TaskKind k : {TaskKind::romo, TaskKind::two_af, TaskKind::dms}) {
    SmallNet s(k, 0.0, true);  // gain 0: W_h = 0
    // With W_h = 0 the dropped path is identically zero: equal to rounding.
    expect_close(eprop(s, s.params), bptt(s, s.params), 1e-12, "eprop vs bptt at W_h = 0");
  }
}

TEST(Gradients, BpttWithDeadUnits) {
  // Units 0 and 1 get a strongly negative bias, no recurrent input and negative input weights
  // (romo's input is >= 0), so they are silent at
  // every step: f' = 0 there, the kink is never approached, and the gradients must still match.
  SmallNet s(TaskKind::romo, 1.2, true);
  const ParamLayout L(s.shape);
  for (int j : {0, 1}) {
    s.params[L.b + j] = -20.0;
    for (int i = 0; i < s.shape.I; ++i)
      s.params[L.W_x + i * s.shape.H + j] = -std::fabs(s.params[L.W_x + i * s.shape.H + j]);
    for (int k = 0; k < s.shape.H; ++k) s.params[L.W_h + k * s.shape.H + j] = 0.0;
  }
  Forward<double> fwd;
  forward(s.shape, s.a, s.params.data(), s.trials, fwd);
  ASSERT_LT(fwd.h.row(0).rightCols(fwd.h.cols() - s.trials.Bt).maxCoeff(), 0.0) << "unit 0 must be dead";
  ASSERT_LT(fwd.h.row(1).rightCols(fwd.h.cols() - s.trials.Bt).maxCoeff(), 0.0) << "unit 1 must be dead";
  ASSERT_GT(fwd.h.bottomRows(4).maxCoeff(), 0.0) << "other units must be alive";
  const auto g = bptt(s, s.params);
  const auto fd = finite_differences([&](const std::vector<double>& p) { return s.loss(p); }, s.params);
  expect_close(g, fd, 1e-6, "bptt with dead units");
  EXPECT_EQ(g[L.b + 0], 0.0);  // a dead unit's bias has no effect on the loss: exactly 0
}

TEST(Gradients, SgdStepAlongBpttGradientLowersTheLoss) {
  // First-order check of the whole pipeline: L(p - lr g) ~ L(p) - lr |g|^2.
  SmallNet s(TaskKind::dms, 1.0, false);
  const auto g = bptt(s, s.params);
  double g2 = 0;
  for (double x : g) g2 += x * x;
  const double lr = 1e-4;
  std::vector<double> p = s.params;
  for (size_t i = 0; i < p.size(); ++i) p[i] -= lr * g[i];
  const double drop = s.loss(s.params) - s.loss(p);
  // second-order terms are O(lr^2 |g|^2 ||Hessian||): 1% of the first-order drop at this lr
  EXPECT_NEAR(drop, lr * g2, 1e-2 * lr * g2);
}

TEST(Gradients, FloatTrainingPathAgreesWithDouble) {
  // The trainer runs the same code in float: its gradient equals the double one to float
  // precision (1e-4 of the scale allows for T = 56 steps of accumulated rounding).
  SmallNet s(TaskKind::romo, 1.0, false);
  std::vector<float> pf(s.params.begin(), s.params.end());
  Forward<float> fwd;
  forward(s.shape, float(s.a), pf.data(), s.trials, fwd);
  Mat<float> dL_dy;
  task_loss(s.trials, fwd.y, &dL_dy);
  std::vector<float> gf(pf.size());
  bptt_gradient(s.shape, float(s.a), pf.data(), fwd, dL_dy, gf.data());
  expect_close(std::vector<double>(gf.begin(), gf.end()), bptt(s, s.params), 1e-4, "float vs double");
}

}  // namespace
