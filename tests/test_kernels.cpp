// The kernels against their CPU twins, value by value on the same random numbers: the fused
// training step (loss, accuracy, gradient of every rule, optimizer, divergence), the spectra and
// flossing. Runs on the block emulator everywhere and on the GPU where there is one (see
// tests/kernel_test_support.h).
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <set>
#include <cstdlib>
#include <functional>
#include <string>
#include <limits>
#include <stdexcept>
#include <vector>

#include "host/cpu/adam.h"
#include "host/cpu/model.h"
#include "host/cpu/spectra.h"
#include "host/cpu/tasks.h"
#include "kernels/floss.cuh"
#include "kernels/lyapunov.cuh"
#include "kernels/train_layered.cuh"
#include "kernels/train_step.cuh"
#include "rnnsweep/config.h"
#include "tests/kernel_test_support.h"

using namespace rnnsweep;
using rnnsweep::cuda::DeviceBuffer;
#if RNNSWEEP_EMULATED
namespace emu = rnnsweep::emu;
#endif

namespace {

size_t max_shared() {
  cudaDeviceProp prop;
  CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  return prop.sharedMemPerBlockOptin;
}

// The largest |difference| between two arrays, relative to the largest |expected| entry: the
// tolerances below are relative to each array's scale, because float sums over T Bt terms in
// different orders differ by a few ulps of their largest partial sums, not of each entry.
double scaled_error(const std::vector<double>& got, const std::vector<double>& expected) {
  double scale = 0, worst = 0;
  for (size_t i = 0; i < expected.size(); ++i) {
    scale = std::max(scale, std::fabs(expected[i]));
    worst = std::max(worst, std::fabs(got[i] - expected[i]));
  }
  return worst / std::max(scale, 1e-30);
}

// K networks of one task on the device, with everything launch_train_step needs, and the
// CPU reference of the same networks next to it.
struct TrainHarness {
  TaskParams task;
  Shape shape;
  int K, T, Bt, P;
  std::vector<NetworkSpec> specs;
  std::vector<float> params;  // host mirror, K x P (the CPU reference's own copy)
  DeviceBuffer<float> params_dev, feedback, grad_out;
  DeviceBuffer<int> rule;
  DeviceBuffer<double> lr;
  DeviceBuffer<std::uint32_t> data_seed;
  cuda::TrainLaunchPlan plan;
  cuda::TrainScratch scratch;
  cuda::TrainChunk chunk;

  TrainHarness(TaskKind kind, const std::vector<NetworkSpec>& networks, bool bias, cuda::Optimizer optimizer,
               int hidden = test::kHidden, int batch = test::kBatch,
               cuda::Precision precision = cuda::Precision::fp32, bool layered = false)
      : task(Config::make_task(kind)),
        shape{hidden, task.inputs(), task.outputs(), bias},
        K(int(networks.size())),
        T(task.T()),
        Bt(batch),
        P(ParamLayout(shape).size),
        specs(networks),
        plan(layered ? layered_plan() : cuda::plan_train_step(shape, Bt, T, max_shared(), precision)),
        scratch(task, shape, K, Bt, any_bptt(networks), !plan.grad_shared, 1, plan.layered) {
    params.resize(size_t(K) * P);
    std::vector<float> B(size_t(K) * shape.H * shape.O, 0.0f);
    std::vector<int> rules(K);
    std::vector<double> lrs(K);
    std::vector<std::uint32_t> seeds(K);
    for (int n = 0; n < K; ++n) {
      init_params(shape, specs[n].gain, specs[n].seed, params.data() + size_t(n) * P);
      const std::vector<float> b = rflo_feedback(shape, specs[n].seed);
      std::copy(b.begin(), b.end(), B.begin() + size_t(n) * shape.H * shape.O);
      rules[n] = int(specs[n].rule);
      lrs[n] = specs[n].lr;
      seeds[n] = specs[n].data_seed;
    }
    params_dev = DeviceBuffer<float>(params.size());
    params_dev.upload(params.data(), params.size());
    feedback = DeviceBuffer<float>(B.size());
    feedback.upload(B.data(), B.size());
    rule = DeviceBuffer<int>(K);
    rule.upload(rules.data(), K);
    lr = DeviceBuffer<double>(K);
    lr.upload(lrs.data(), K);
    data_seed = DeviceBuffer<std::uint32_t>(K);
    data_seed.upload(seeds.data(), K);
    grad_out = DeviceBuffer<float>(params.size());
    chunk = scratch.chunk(params_dev.get(), feedback.get(), rule.get(), lr.get(), data_seed.get());
    chunk.grad_out = grad_out.get();
    chunk.optimizer = optimizer;
  }

  static cuda::TrainLaunchPlan layered_plan() {
    cuda::TrainLaunchPlan p;
    p.layered = true;
    return p;
  }
  static bool any_bptt(const std::vector<NetworkSpec>& networks) {
    // the fused kernels' harness always has the history; the layered path runs its backward
    // only for chunks with a bptt network, which the mixed-rule test checks both ways
    return std::any_of(networks.begin(), networks.end(), [](const NetworkSpec& s) { return s.rule == Rule::bptt; }) ||
           networks.empty();
  }

  struct StepResult {
    std::vector<double> loss, accuracy, grad;  // K, K, K x P
    std::vector<int> diverged_at;              // K
    // CPU only: what one trial (romo) or one decision step (2af, dms) changes the accuracy by
    std::vector<double> accuracy_unit;         // K
    // CPU only: the smallest |h| of the forward pass relative to the largest. A pre-activation
    // within float rounding of 0 flips its ReLU under another summation order, and the two
    // gradients then differ by that unit's whole contribution, not by rounding.
    std::vector<double> relu_margin;  // K
  };

  StepResult device_step(std::uint32_t iteration) {
    cuda::launch_train_step(chunk, plan, iteration, 0, long(iteration) + 1, nullptr);
    StepResult r{std::vector<double>(K), std::vector<double>(K), {}, std::vector<int>(K), {}, {}};
    scratch.loss_log.download(r.loss.data(), K);
    scratch.accuracy_log.download(r.accuracy.data(), K);
    scratch.diverged_at.download(r.diverged_at.data(), K);
    std::vector<float> g(params.size());
    grad_out.download(g.data(), g.size());
    r.grad.assign(g.begin(), g.end());
    return r;
  }

  // The CPU pipeline of host/cpu/train.cpp for one iteration of network n, on the mirror.
  // Adam state is per network: the mirror keeps one AdamState per network in adam_states.
  std::vector<cpu::AdamState<float>> adam_states;
  StepResult cpu_step(std::uint32_t iteration, cuda::Optimizer optimizer) {
    if (adam_states.empty()) adam_states.assign(K, cpu::AdamState<float>(P));
    StepResult r{std::vector<double>(K), std::vector<double>(K), std::vector<double>(size_t(K) * P), {},
                 std::vector<double>(K), std::vector<double>(K)};
    const float a = float(task.leak());
    for (int n = 0; n < K; ++n) {
      float* p = params.data() + size_t(n) * P;
      const cpu::Trials trials = cpu::training_trials(task, specs[n].data_seed, iteration, Bt);
      cpu::Forward<float> fwd;
      cpu::Mat<float> dL_dy;
      cpu::forward(shape, a, p, trials, fwd);
      const cpu::LossValue lv = cpu::task_loss(trials, fwd.y, &dL_dy);
      r.loss[n] = lv.loss;
      r.accuracy[n] = lv.accuracy;
      double smallest = 1e300, largest = 0;  // exact zeros (no drive at all) cannot flip
      for (Eigen::Index e = Eigen::Index(Bt) * shape.H; e < fwd.h.size(); ++e) {
        const double v = std::fabs(double(fwd.h.data()[e]));
        if (v > 0) smallest = std::min(smallest, v);
        largest = std::max(largest, v);
      }
      r.relu_margin[n] = largest > 0 ? smallest / largest : 1.0;
      const long decisions = std::count_if(trials.label.begin(), trials.label.end(), [](int l) { return l != 0; });
      r.accuracy_unit[n] = task.classification() ? 1.0 / double(std::max(decisions, 1L)) : 1.0 / Bt;
      std::vector<float> g(P);
      if (specs[n].rule == Rule::bptt) {
        cpu::bptt_gradient(shape, a, p, fwd, dL_dy, g.data());
      } else {
        cpu::Mat<float> feedback_matrix =
            specs[n].rule == Rule::rflo ? cpu::Mat<float>(Eigen::Map<const cpu::Mat<float>>(
                                              rflo_feedback(shape, specs[n].seed).data(), shape.H, shape.O))
                                        : cpu::Mat<float>(cpu::ConstNet<float>(shape, p).w.transpose());
        cpu::eprop_gradient(shape, a, p, fwd, dL_dy, feedback_matrix, g.data());
      }
      std::copy(g.begin(), g.end(), r.grad.begin() + size_t(n) * P);
      if (optimizer == cuda::Optimizer::adam)
        cpu::adam_step(p, g.data(), size_t(P), specs[n].lr, cpu::AdamHyper{}, adam_states[n]);
      else
        cpu::sgd_step(p, g.data(), size_t(P), specs[n].lr);
    }
    return r;
  }

  std::vector<double> device_params() {
    std::vector<float> p(params.size());
    params_dev.download(p.data(), p.size());
    return {p.begin(), p.end()};
  }
};

NetworkSpec spec(Rule rule, double gain, std::uint32_t seed, double lr) {
  return NetworkSpec{0, TaskKind::romo, rule, gain, lr, seed, seed + 100, false};
}

struct StepCase {
  TaskKind task;
  Rule rule;
  bool bias;
};

std::string case_name(const testing::TestParamInfo<StepCase>& info) {
  std::string task = task_name(info.param.task);
  if (task == "2af") task = "twoaf";
  return task + "_" + rule_name(info.param.rule) + (info.param.bias ? "_bias" : "");
}

class TrainStep : public testing::TestWithParam<StepCase> {};

// One iteration of every network of the harness, device against CPU.
void expect_step_matches(const TrainHarness& h, const TrainHarness::StepResult& dev,
                         const TrainHarness::StepResult& ref, std::uint32_t it) {
  for (int n = 0; n < h.K; ++n) {
    const std::string what = "network " + std::to_string(n) + " (" + rule_name(h.specs[n].rule) +
                             ") iteration " + std::to_string(it);
    ASSERT_EQ(dev.diverged_at[n], -1) << what;
    // The loss is a double sum of float outputs: agreement to float rounding of y (measured on
    // the emulator: at most 7e-8 relative, at H = 64, batch 32 as at H = 16, batch 4).
    EXPECT_NEAR(dev.loss[n], ref.loss[n], 1e-5 * std::fabs(ref.loss[n])) << what;
    // Accuracy counts argmaxes of float outputs summed in another order: an output pair within
    // rounding of a tie may flip, so one trial (romo) or one decision step may differ.
    EXPECT_NEAR(dev.accuracy[n], ref.accuracy[n], ref.accuracy_unit[n] * (1 + 1e-9)) << what;
    const std::vector<double> got(dev.grad.begin() + size_t(n) * h.P, dev.grad.begin() + size_t(n + 1) * h.P);
    const std::vector<double> want(ref.grad.begin() + size_t(n) * h.P, ref.grad.begin() + size_t(n + 1) * h.P);
    double largest = 0;
    for (double g : want) largest = std::max(largest, std::fabs(g));
    ASSERT_GT(largest, 1e-6) << "the gradient must not be trivial; " << what;
    // Float sums over T Bt (up to ~1800) terms in another order. Measured on the emulator: at
    // most 2e-7 of the scale at H = 16, batch 4, and 2.8e-6 at H = 64, batch 32 (rflo, after one
    // update); 2e-5 leaves a factor of 7 for the GPU's fused multiply-adds and its own order.
    // A failure with a tiny ReLU margin is a pre-activation within rounding of 0 that flipped.
    EXPECT_LT(scaled_error(got, want), 2e-5)
        << "gradient of " << what << " (ReLU margin " << ref.relu_margin[n] << ")";
  }
}

TEST_P(TrainStep, LossGradientAndSgdUpdateMatchTheCpu) {
  RNNSWEEP_NEED_DEVICE();
  const StepCase c = GetParam();
  // Two networks with different gains, seeds and learning rates in one launch: the kernel must
  // keep them apart.
  // Learning rates small enough that three steps stay near the start: a larger step lets the
  // float rounding differences grow chaotically and the comparison would test nothing. Gains
  // below 1 for the same reason: on the GPU (H = 64) the kernels sum in another order than the
  // CPU, and at gain > 1 BPTT amplifies a ReLU flipped by a pre-activation within rounding of 0
  // far beyond rounding (see TrainStepRegisters).
  TrainHarness h(c.task, {spec(c.rule, 0.5, 3, 2e-3), spec(c.rule, 0.95, 4, 1e-3)}, c.bias,
                 cuda::Optimizer::sgd);
  for (std::uint32_t it = 0; it < 3; ++it) {
    const auto dev = h.device_step(it);
    const auto ref = h.cpu_step(it, cuda::Optimizer::sgd);
    expect_step_matches(h, dev, ref, it);
  }
  // Three SGD steps later the weights still agree to float rounding.
  const std::vector<double> want(h.params.begin(), h.params.end());
  EXPECT_LT(scaled_error(h.device_params(), want), 1e-5);
}

TEST(TrainStepPaperShape, EveryRuleAtHidden64Batch32MatchesTheCpu) {
  RNNSWEEP_NEED_DEVICE();
  // The study's shape, on the emulator too: BPTT on 256 threads of one row each, e-prop and RFLO
  // on 128 threads of two rows each (romo's instance), each thread summing 8 batch columns of a
  // full tile of the step products, where the small cases above leave most of each tile empty.
  // One launch holds one network of each rule; romo (the longest trials) with biases; two
  // iterations, so that the second starts from updated weights.
  TrainHarness h(TaskKind::romo, {spec(Rule::bptt, 0.9, 3, 1e-3), spec(Rule::eprop, 1.0, 4, 1e-3),
                                  spec(Rule::rflo, 0.5, 5, 1e-3)},
                 true, cuda::Optimizer::sgd, 64, 32);
  ASSERT_EQ(h.plan.name(), "registers threads=128 bptt-threads=256")
      << "the study's shape runs the register instances";
  for (std::uint32_t it = 0; it < 2; ++it) {
    const auto dev = h.device_step(it);
    const auto ref = h.cpu_step(it, cuda::Optimizer::sgd);
    expect_step_matches(h, dev, ref, it);
  }
  const std::vector<double> want(h.params.begin(), h.params.end());
  EXPECT_LT(scaled_error(h.device_params(), want), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(AllTasksRulesBias, TrainStep, testing::ValuesIn([] {
                           std::vector<StepCase> cases;
                           for (TaskKind t : {TaskKind::romo, TaskKind::two_af, TaskKind::dms})
                             for (Rule r : {Rule::bptt, Rule::eprop, Rule::rflo})
                               for (bool bias : {false, true}) cases.push_back({t, r, bias});
                           return cases;
                         }()),
                         case_name);

// Every register instance (kernels/train_registers.cu), every task, rule and bias: one launch
// of two networks (different gains, seeds, learning rates), one iteration and its update,
// against the CPU. (The paper-shape test above runs one instance for two iterations.)
struct InstanceCase {
  int H, Bt;
  TaskKind task;
};

class TrainStepRegisters : public testing::TestWithParam<InstanceCase> {
#if RNNSWEEP_EMULATED
  // 108 launches of up to 512 threads: two schedules here (the paper-shape test and the small
  // cases run all six; every instance has the same barriers), unless RNNSWEEP_EMU_SCHEDULES says.
  emu::ScopedSchedules schedules_{std::getenv("RNNSWEEP_EMU_SCHEDULES") ? emu::schedules() : emu::quick_schedules()};
#endif
};

TEST_P(TrainStepRegisters, EveryRuleAndBiasMatchesTheCpu) {
  RNNSWEEP_NEED_DEVICE();
  const InstanceCase c = GetParam();
  for (Rule rule : {Rule::bptt, Rule::eprop, Rule::rflo})
    for (bool bias : {false, true}) {
      SCOPED_TRACE(std::string(rule_name(rule)) + (bias ? " with bias" : ""));
      // Gains below 1: the register instance sums in another order than the CPU, and at
      // larger gains BPTT amplifies the rare ReLU that flips on a pre-activation within
      // rounding of 0 (seen at gain 1.4, 2af, H = 64: |h| = 1.8e-7 of a largest 70) into a
      // difference far above rounding; below 1 such a flip stays a rounding-sized change.
      TrainHarness h(c.task, {spec(rule, 0.6, 3, 1e-3), spec(rule, 0.95, 5, 2e-3)}, bias, cuda::Optimizer::sgd,
                     c.H, c.Bt);
      ASSERT_TRUE(h.plan.registers) << h.plan.name();
      expect_step_matches(h, h.device_step(0), h.cpu_step(0, cuda::Optimizer::sgd), 0);
      const std::vector<double> want(h.params.begin(), h.params.end());
      EXPECT_LT(scaled_error(h.device_params(), want), 1e-5);
    }
}

INSTANTIATE_TEST_SUITE_P(AllInstancesAndTasks, TrainStepRegisters, testing::ValuesIn([] {
                           std::vector<InstanceCase> cases;
                           // every instance of RNNSWEEP_REGISTER_INSTANCES (H = 128 at batch 64
                           // has none: its BPTT needs more shared memory than a block gets)
                           for (int H : {32, 64, 128})
                             for (int Bt : {16, 32, 64})
                               for (TaskKind t : {TaskKind::romo, TaskKind::two_af, TaskKind::dms})
                                 if (H < 128 || Bt < 64) cases.push_back({H, Bt, t});
                           return cases;
                         }()),
                         [](const testing::TestParamInfo<InstanceCase>& info) {
                           std::string task = task_name(info.param.task);
                           if (task == "2af") task = "twoaf";
                           return "H" + std::to_string(info.param.H) + "_batch" + std::to_string(info.param.Bt) + "_" +
                                  task;
                         });

// Every tensor-core instance (kernels/train_mma.cu, precision tf32x3), every task, rule and bias,
// against the CPU's FP32, with the tolerances of the FP32 kernels: the 3xTF32 split keeps FP32's
// accuracy (docs/precision.md). The emulator's mma sums each k-tile in order with FMAs; the
// tensor cores' own order and rounding are checked against the FP32 kernel on a GPU
// (TrainStepMma.MatchesTheFp32KernelAfterManyIterations, and bench_cuda).
class TrainStepMma : public testing::TestWithParam<InstanceCase> {
#if RNNSWEEP_EMULATED
  emu::ScopedSchedules schedules_{std::getenv("RNNSWEEP_EMU_SCHEDULES") ? emu::schedules() : emu::quick_schedules()};
#endif
};

TEST_P(TrainStepMma, EveryRuleAndBiasMatchesTheCpu) {
  RNNSWEEP_NEED_DEVICE();
  const InstanceCase c = GetParam();
  for (Rule rule : {Rule::bptt, Rule::eprop, Rule::rflo})
    for (bool bias : {false, true}) {
      SCOPED_TRACE(std::string(rule_name(rule)) + (bias ? " with bias" : ""));
      TrainHarness h(c.task, {spec(rule, 0.6, 3, 1e-3), spec(rule, 0.95, 5, 2e-3)}, bias, cuda::Optimizer::sgd,
                     c.H, c.Bt, cuda::Precision::tf32x3);
      ASSERT_TRUE(h.plan.mma) << h.plan.name();
      // two iterations (the second from updated weights) where the emulator is quick
      const std::uint32_t iterations = c.H * c.Bt <= 1024 ? 2 : 1;
      for (std::uint32_t it = 0; it < iterations; ++it) {
        expect_step_matches(h, h.device_step(it), h.cpu_step(it, cuda::Optimizer::sgd), it);
        const std::vector<double> want(h.params.begin(), h.params.end());
        EXPECT_LT(scaled_error(h.device_params(), want), 1e-5);
      }
    }
}

INSTANTIATE_TEST_SUITE_P(AllInstancesAndTasks, TrainStepMma, testing::ValuesIn([] {
                           std::vector<InstanceCase> cases;  // every instance of RNNSWEEP_MMA_INSTANCES
                           for (int H : {32, 64})
                             for (int Bt : {16, 32, 64})
                               for (TaskKind t : {TaskKind::romo, TaskKind::two_af, TaskKind::dms})
                                 cases.push_back({H, Bt, t});
                           return cases;
                         }()),
                         [](const testing::TestParamInfo<InstanceCase>& info) {
                           std::string task = task_name(info.param.task);
                           if (task == "2af") task = "twoaf";
                           return "H" + std::to_string(info.param.H) + "_batch" + std::to_string(info.param.Bt) + "_" +
                                  task;
                         });

// tf32x3 against fp32 over many Adam iterations, every task and rule, with the CPU beside both;
// prints one CSV line per task, rule, gain and measure (docs/precision.md quotes them).
// - forced: at every iteration the tf32x3 kernel and the CPU start from the FP32 kernel's weights
//   and Adam state, so that their losses, gradients and updates are compared with FP32's on the
//   same inputs all along a 100-iteration trajectory: the arithmetic's own accuracy. tf32x3's
//   largest distance must be within the FP32 kernels' one-step tolerances, or within 8 times the
//   CPU's largest (BPTT at H = 64 meets, somewhere in 100 iterations, a pre-activation within
//   rounding of 0 whose ReLU flips under another summation order: then two FP32 orders differ
//   by as much, see TrainStepRegisters).
// - free: tf32x3 runs on its own; after many iterations its distance from the FP32 kernel is the
//   dynamics' growth of rounding differences. Printed, not checked: at gain 1.5 (chaotic) it is
//   chance.
// On the GPU: H = 64, batch 32, 100 iterations; on the emulator a smaller instance and fewer
// iterations, unless RNNSWEEP_PRECISION_SHAPE=H:BATCH:ITERATIONS says otherwise.
TEST(TrainStepMma, MatchesTheFp32KernelAfterManyIterations) {
  RNNSWEEP_NEED_DEVICE();
  int H = test::kEmulated ? 32 : 64, Bt = test::kEmulated ? 16 : 32, iterations = test::kEmulated ? 8 : 100;
  if (const char* env = std::getenv("RNNSWEEP_PRECISION_SHAPE")) {
    ASSERT_EQ(std::sscanf(env, "%d:%d:%d", &H, &Bt, &iterations), 3) << "RNNSWEEP_PRECISION_SHAPE=H:BATCH:ITERATIONS";
  }
#if RNNSWEEP_EMULATED
  emu::ScopedSchedules one{{emu::schedules().front()}};  // accuracy, not races (TrainStepMma above)
#endif
  std::printf("precision_csv,task,rule,gain,H,batch,iterations,measure,tf32x3_vs_fp32,fp32_vs_cpu\n");
  const double gains[] = {0.8, 1.0, 1.5};  // ordered, the edge of chaos, chaotic
  for (TaskKind task : {TaskKind::romo, TaskKind::two_af, TaskKind::dms})
    for (Rule rule : {Rule::bptt, Rule::eprop, Rule::rflo}) {
      SCOPED_TRACE(std::string(task_name(task)) + " " + rule_name(rule));
      std::vector<NetworkSpec> nets;
      for (int k = 0; k < 3; ++k) nets.push_back(spec(rule, gains[k], 3 + k, 1e-3));
      TrainHarness fp32(task, nets, false, cuda::Optimizer::adam, H, Bt);
      TrainHarness forced(task, nets, false, cuda::Optimizer::adam, H, Bt, cuda::Precision::tf32x3);
      TrainHarness free(task, nets, false, cuda::Optimizer::adam, H, Bt, cuda::Precision::tf32x3);
      ASSERT_TRUE(forced.plan.mma && free.plan.mma && !fp32.plan.mma);
      const int K = fp32.K, P = fp32.P;
      // per network: forced loss, gradient, weights; free loss; fp32-vs-CPU loss
      // per network and measure (loss, gradient, weights), each iteration's distance from the FP32
      // kernel: tf32x3's and the CPU's, both forced to the FP32 kernel's state
      std::vector<std::array<std::vector<double>, 3>> tf(K), cpu(K);
      std::vector<double> free_loss(K);
      TrainHarness::StepResult a, b, ref, c;
      std::vector<float> params(size_t(K) * P), m(params.size()), v(params.size());
      auto per_network = [&](const std::vector<double>& x, const std::vector<double>& y, int n) {
        return scaled_error(std::vector<double>(x.begin() + size_t(n) * P, x.begin() + size_t(n + 1) * P),
                            std::vector<double>(y.begin() + size_t(n) * P, y.begin() + size_t(n + 1) * P));
      };
      for (int it = 0; it < iterations; ++it) {
        // the forced run starts from the FP32 kernel's state
        fp32.params_dev.download(params.data(), params.size());
        fp32.scratch.adam_m.download(m.data(), m.size());
        fp32.scratch.adam_v.download(v.data(), v.size());
        forced.params_dev.upload(params.data(), params.size());
        forced.scratch.adam_m.upload(m.data(), m.size());
        forced.scratch.adam_v.upload(v.data(), v.size());
        if (fp32.adam_states.empty()) fp32.adam_states.assign(K, cpu::AdamState<float>(P));
        std::copy(params.begin(), params.end(), fp32.params.begin());  // (the CPU's mirror too)
        for (int n = 0; n < K; ++n) {
          std::copy_n(m.begin() + size_t(n) * P, P, fp32.adam_states[n].m.begin());
          std::copy_n(v.begin() + size_t(n) * P, P, fp32.adam_states[n].v.begin());
          fp32.adam_states[n].step = it;
        }
        a = forced.device_step(std::uint32_t(it));
        b = fp32.device_step(std::uint32_t(it));
        c = free.device_step(std::uint32_t(it));
        ref = fp32.cpu_step(std::uint32_t(it), cuda::Optimizer::adam);
        const std::vector<double> pa = forced.device_params(), pb = fp32.device_params();
        const std::vector<double> pr(fp32.params.begin(), fp32.params.end());
        for (int n = 0; n < K; ++n) {
          ASSERT_EQ(a.diverged_at[n], -1);
          cpu[n][0].push_back(std::fabs(ref.loss[n] - b.loss[n]) / std::fabs(b.loss[n]));
          cpu[n][1].push_back(per_network(ref.grad, b.grad, n));
          cpu[n][2].push_back(per_network(pr, pb, n));
          tf[n][0].push_back(std::fabs(a.loss[n] - b.loss[n]) / std::fabs(b.loss[n]));
          tf[n][1].push_back(per_network(a.grad, b.grad, n));
          tf[n][2].push_back(per_network(pa, pb, n));
          free_loss[n] = std::max(free_loss[n], std::fabs(c.loss[n] - b.loss[n]) / std::fabs(b.loss[n]));
        }
      }
      const std::vector<double> pb = fp32.device_params(), pc = free.device_params();
      for (int n = 0; n < K; ++n) {
        const char* t = task_name(task);
        const char* r = rule_name(rule);
        auto line = [&](const char* measure, double x, double y) {
          std::printf("precision_csv,%s,%s,%.1f,%d,%d,%d,%s,%.3g,%.3g\n", t, r, gains[n], H, Bt, iterations, measure, x, y);
        };
        const char* names[3] = {"loss", "gradient", "weights"};
        const double tolerance[3] = {1e-5, 2e-5, 1e-5};  // expect_step_matches's, one step
        for (int k = 0; k < 3; ++k) {
          // the median iteration's distance, the largest, and the iterations past 10x the
          // tolerance (a ReLU flipped by a pre-activation within rounding of 0)
          auto stats = [&](std::vector<double> x) {
            std::sort(x.begin(), x.end());
            const long flips = std::count_if(x.begin(), x.end(), [&](double d) { return d > 10 * tolerance[k]; });
            return std::array<double, 3>{x[x.size() / 2], x.back(), double(flips)};
          };
          const auto t_stats = stats(tf[n][k]), c_stats = stats(cpu[n][k]);
          const std::string measure = std::string("forced_") + names[k];
          line((measure + "_median").c_str(), t_stats[0], c_stats[0]);
          line((measure + "_max").c_str(), t_stats[1], c_stats[1]);
          line((measure + "_flipped_iterations").c_str(), t_stats[2], c_stats[2]);
          // within the FP32 kernels' one-step tolerance at the median iteration; flips no more
          // often than between the two FP32 computations, give or take chance (3)
          EXPECT_LT(t_stats[0], tolerance[k]) << measure << ", gain " << gains[n];
          EXPECT_LE(t_stats[2], c_stats[2] + 3) << measure << ", gain " << gains[n];
        }
        line("free_loss", free_loss[n], std::nan(""));
        line("free_weights", per_network(pc, pb, n), std::nan(""));
      }
    }
}

TEST(TrainStepMmaPlan, Fp32ByDefaultAndWhereNoInstanceExists) {
  const Shape paper{64, 1, 2, false};
  EXPECT_TRUE(cuda::plan_train_step(paper, 32, 56, 227 * 1024).registers);
  EXPECT_TRUE(cuda::plan_train_step(paper, 32, 56, 227 * 1024, cuda::Precision::tf32x3).mma);
  // H = 128 has no tensor-core instance: tf32x3 runs the FP32 register kernel
  const cuda::TrainLaunchPlan big = cuda::plan_train_step(Shape{128, 1, 2, false}, 32, 56, 227 * 1024,
                                                          cuda::Precision::tf32x3);
  EXPECT_FALSE(big.mma);
  EXPECT_TRUE(big.registers);
  EXPECT_EQ(cuda::train_candidates(paper, 32, 56, 227 * 1024, cuda::Precision::tf32x3).size(), 1u);
}

TEST(TrainStepShapes, SizesThatDoNotDivideTheBlockMatchTheCpu) {
  RNNSWEEP_NEED_DEVICE();
  // H = 20, batch 3 (64 threads) and H = 7, batch 9 (64 threads): a thread's entries are not
  // one row, so the step products take their entry-by-entry path; H = 16, batch 20 (256
  // threads): the grouped path, whose second group of columns is only partly filled. All must
  // give the CPU's gradient.
  for (const auto& [hidden, batch] : {std::pair{20, 3}, std::pair{7, 9}, std::pair{16, 20}})
    for (Rule rule : {Rule::bptt, Rule::eprop}) {
      TrainHarness h(TaskKind::dms, {spec(rule, 1.2, 5, 1e-3)}, true, cuda::Optimizer::sgd, hidden, batch);
      const auto dev = h.device_step(0);
      const auto ref = h.cpu_step(0, cuda::Optimizer::sgd);
      EXPECT_NEAR(dev.loss[0], ref.loss[0], 1e-5 * ref.loss[0]) << "H " << hidden << " batch " << batch;
      EXPECT_LT(scaled_error(dev.grad, ref.grad), 2e-5) << "H " << hidden << " batch " << batch << " " << rule_name(rule);
    }
}

TEST(TrainStepAdam, LossesFollowTheCpuOverIterations) {
  RNNSWEEP_NEED_DEVICE();
  // Adam divides by sqrt(v): an entry whose gradient is ~0 can move by lr on one side and not
  // on the other, so weights are compared through the losses they produce, over 6 iterations.
  for (TaskKind kind : {TaskKind::romo, TaskKind::dms}) {
    TrainHarness h(
        kind,
        {spec(Rule::bptt, 1.0, 1, 1e-2), spec(Rule::eprop, 1.0, 1, 1e-2), spec(Rule::rflo, 0.8, 2, 3e-3)},
        false, cuda::Optimizer::adam);
    for (std::uint32_t it = 0; it < 6; ++it) {
      const auto dev = h.device_step(it);
      const auto ref = h.cpu_step(it, cuda::Optimizer::adam);
      for (int n = 0; n < h.K; ++n)
        EXPECT_NEAR(dev.loss[n], ref.loss[n], 1e-4 * std::fabs(ref.loss[n]))
            << task_name(kind) << " network " << n << " iteration " << it;
    }
  }
}

// Network 1 (lr = 1e12) diverges; it must be frozen from the iteration whose loss is not finite
// on (no update from that iteration either, and none after), and network 0 goes on unaffected.
void expect_divergence_freezes(Rule rule, int hidden, int batch,
                               cuda::Precision precision = cuda::Precision::fp32, bool layered = false) {
  TrainHarness h(TaskKind::romo, {spec(rule, 1.0, 1, 1e-2), spec(rule, 1.0, 2, 1e12)}, false, cuda::Optimizer::sgd,
                 hidden, batch, precision, layered);
  ASSERT_EQ(h.plan.mma, precision == cuda::Precision::tf32x3);
  int diverged = -1;
  const std::vector<double> start = h.device_params();
  std::vector<double> before(start.begin() + h.P, start.end());
  for (std::uint32_t it = 0; it < 6; ++it) {
    const auto dev = h.device_step(it);
    const auto ref = h.cpu_step(it, cuda::Optimizer::sgd);
    EXPECT_EQ(dev.diverged_at[0], -1);
    EXPECT_NEAR(dev.loss[0], ref.loss[0], 1e-5 * ref.loss[0]) << "the sane network is unaffected";
    const auto p = h.device_params();
    const std::vector<double> now(p.begin() + h.P, p.end());
    if (diverged < 0 && dev.diverged_at[1] >= 0) {
      diverged = dev.diverged_at[1];
      EXPECT_FALSE(std::isfinite(ref.loss[1])) << "the CPU sees the same iteration diverge";
    }
    if (diverged >= 0) {
      EXPECT_EQ(dev.diverged_at[1], diverged) << "stays frozen at the first bad iteration";
      for (size_t e = 0; e < now.size(); ++e)
        if (!std::isnan(before[e])) {
          ASSERT_EQ(now[e], before[e]) << "a frozen network's parameters do not change, iteration " << it;
        }
    }
    before = now;
  }
  EXPECT_GE(diverged, 1) << "lr = 1e12 must make the loss non-finite within a few iterations";
}

TEST(TrainStepDivergence, ANetworkWithANanLossIsFrozenAndTheOthersGoOn) {
  RNNSWEEP_NEED_DEVICE();
  expect_divergence_freezes(Rule::bptt, test::kHidden, test::kBatch);
}

TEST(TrainStepDivergence, TheRegisterKernelFreezesADivergedNetworkToo) {
  RNNSWEEP_NEED_DEVICE();
  for (Rule rule : {Rule::bptt, Rule::eprop}) expect_divergence_freezes(rule, 64, 32);
}

TEST(TrainStepDivergence, TheTensorCoreKernelAndTheLayeredPathFreezeADivergedNetworkToo) {
  RNNSWEEP_NEED_DEVICE();
  for (Rule rule : {Rule::bptt, Rule::eprop}) {
    expect_divergence_freezes(rule, 32, 16, cuda::Precision::tf32x3);
    if (cuda::layered_available()) expect_divergence_freezes(rule, test::kHidden, test::kBatch, cuda::Precision::fp32, true);
  }
}

// The layered path (kernels/train_layered.cu: cuBLAS GEMMs, or the emulator's twin of them, and
// small kernels) against the CPU: every task, rule and bias, at a size no block tiles evenly,
// two iterations of SGD.
class TrainStepLayered : public testing::TestWithParam<StepCase> {};

// (A GPU build without cuBLAS has no layered path: its tests skip there.)
#define RNNSWEEP_NEED_LAYERED() \
  if (!cuda::layered_available()) GTEST_SKIP() << "built without cuBLAS"

TEST_P(TrainStepLayered, LossGradientAndSgdUpdateMatchTheCpu) {
  RNNSWEEP_NEED_DEVICE();
  RNNSWEEP_NEED_LAYERED();
  const StepCase c = GetParam();
  TrainHarness h(c.task, {spec(c.rule, 0.5, 3, 2e-3), spec(c.rule, 0.95, 4, 1e-3)}, c.bias, cuda::Optimizer::sgd,
                 test::kEmulated ? 20 : 300, test::kEmulated ? 6 : 32, cuda::Precision::fp32, true);
  ASSERT_TRUE(h.plan.layered);
  for (std::uint32_t it = 0; it < 2; ++it) {
    expect_step_matches(h, h.device_step(it), h.cpu_step(it, cuda::Optimizer::sgd), it);
    const std::vector<double> want(h.params.begin(), h.params.end());
    EXPECT_LT(scaled_error(h.device_params(), want), 1e-5);
  }
}

INSTANTIATE_TEST_SUITE_P(AllTasksRulesAndBias, TrainStepLayered, testing::ValuesIn([] {
                           std::vector<StepCase> cases;
                           for (TaskKind t : {TaskKind::romo, TaskKind::two_af, TaskKind::dms})
                             for (Rule r : {Rule::bptt, Rule::eprop, Rule::rflo})
                               for (bool bias : {false, true}) cases.push_back({t, r, bias});
                           return cases;
                         }()),
                         case_name);

// Networks of all three rules in one layered launch, with Adam: each rule's arrays are zero for
// the others, so that the GEMMs they share add nothing to them; with and without a bptt network
// (a chunk without one skips the backward pass).
TEST(TrainStepLayeredMixed, RulesSharingALaunchKeepApartUnderAdam) {
  RNNSWEEP_NEED_DEVICE();
  RNNSWEEP_NEED_LAYERED();
  for (bool with_bptt : {true, false}) {
    std::vector<NetworkSpec> nets = {spec(Rule::eprop, 0.7, 3, 1e-3), spec(Rule::rflo, 1.2, 4, 2e-3)};
    if (with_bptt) nets.push_back(spec(Rule::bptt, 0.9, 5, 1e-3));
    TrainHarness h(TaskKind::dms, nets, true, cuda::Optimizer::adam, test::kEmulated ? 24 : 256,
                   test::kEmulated ? 5 : 32, cuda::Precision::fp32, true);
    for (std::uint32_t it = 0; it < 3; ++it)
      expect_step_matches(h, h.device_step(it), h.cpu_step(it, cuda::Optimizer::adam), it);
  }
}

// The fused kernels' products against cuBLAS's on the same inputs: the register instance (and
// on a GPU the general kernel at a size past the register instances) and the layered path
// train the same networks, and their gradients agree to float rounding.
TEST(TrainStepLayeredMixed, TheFusedKernelsAgreeWithTheCublasPath) {
  RNNSWEEP_NEED_DEVICE();
  RNNSWEEP_NEED_LAYERED();
  for (Rule rule : {Rule::bptt, Rule::eprop})
    for (int H : {32, test::kEmulated ? 24 : 192}) {
      SCOPED_TRACE(std::string(rule_name(rule)) + " H = " + std::to_string(H));
      const std::vector<NetworkSpec> nets = {spec(rule, 0.8, 3, 1e-3), spec(rule, 1.1, 4, 1e-3)};
      TrainHarness fused(TaskKind::romo, nets, false, cuda::Optimizer::sgd, H, 16);
      TrainHarness layered(TaskKind::romo, nets, false, cuda::Optimizer::sgd, H, 16, cuda::Precision::fp32, true);
      ASSERT_FALSE(fused.plan.layered);
      ASSERT_TRUE(layered.plan.layered);
      const auto a = fused.device_step(0), b = layered.device_step(0);
      for (int n = 0; n < fused.K; ++n) EXPECT_NEAR(a.loss[n], b.loss[n], 1e-5 * std::fabs(b.loss[n]));
      EXPECT_LT(scaled_error(a.grad, b.grad), 2e-5);
    }
}

TEST(TrainPlan, TheLaunchPlanFitsTheGpuOrNamesTheSupportedRange) {
  // H = 64, batch 32 (the paper's size) keeps everything in shared memory on an H100.
  const cuda::TrainLaunchPlan fast = cuda::plan_train_general(Shape{64, 3, 3, false}, 32, 227 * 1024);
  EXPECT_TRUE(fast.W_h_shared && fast.grad_shared);
  EXPECT_EQ(fast.threads, 256);
  const cuda::TrainLaunchPlan large = cuda::plan_train_general(Shape{256, 3, 3, false}, 32, 227 * 1024);
  EXPECT_FALSE(large.W_h_shared);
  // Past what one block's shared memory holds, the general kernel names the range, and the
  // heuristic takes the layered path instead (every hidden the config accepts runs).
  try {
    cuda::plan_train_general(Shape{4096, 3, 3, false}, 32, 227 * 1024);
    FAIL() << "H = 4096 cannot fit a block";
  } catch (const std::invalid_argument& e) {
    const int limit = cuda::max_hidden_for(32, 3, 3, 227 * 1024);
    EXPECT_GE(limit, 256);
    EXPECT_NE(std::string(e.what()).find("supports hidden <= " + std::to_string(limit)), std::string::npos)
        << e.what();
  }
  if (!cuda::layered_available()) {  // a GPU build without cuBLAS refuses, naming the range
    EXPECT_THROW(cuda::plan_train_step(Shape{4096, 3, 3, false}, 32, 56, 227 * 1024), std::invalid_argument);
    return;
  }
  const cuda::TrainLaunchPlan big = cuda::plan_train_step(Shape{4096, 3, 3, false}, 32, 56, 227 * 1024);
  EXPECT_TRUE(big.layered) << big.name();
  EXPECT_EQ(big.name(), "layered-cublas");
  const auto candidates = cuda::train_candidates(Shape{256, 3, 3, false}, 32, 56, 227 * 1024);
  EXPECT_TRUE(std::any_of(candidates.begin(), candidates.end(), [](const cuda::TrainLaunchPlan& p) { return p.layered; }))
      << "from H = 256 on the tuner times the layered path too";
}

// ---- spectra -------------------------------------------------------------------------------

struct SpectrumRun {
  std::vector<double> device, cpu;
};

// Which kernel computes the device's spectrum: the heuristic's choice, the general kernel
// (kernels/lyapunov.cu) or the register instance (kernels/spectrum_registers.cu, k = H = 32, 64).
enum class SpectrumKernel { heuristic, general, registers };

// The spectrum of one network (gain, seed) on the device and on the CPU, both averaged over
// the trajectories and sorted.
SpectrumRun spectra_of(TaskKind kind, int H, double gain, int k, long warmup, long steps, int J,
                       SpectrumKernel which = SpectrumKernel::heuristic) {
  Config config;
  config.hidden = H;
  config.le_k = k;
  config.le_warmup = warmup;
  config.le_steps = steps;
  config.le_batch = J;
  const TaskParams task = config.task(kind);
  const Shape shape{H, task.inputs(), task.outputs(), false};
  std::vector<float> params(ParamLayout(shape).size);
  const std::uint32_t seed = 5;
  init_params(shape, gain, seed, params.data());
  SpectrumRun r;
  r.cpu = cpu::network_spectrum(config, task, shape, params.data(), seed);

  DeviceBuffer<float> params_dev(params.size());
  params_dev.upload(params.data(), params.size());
  DeviceBuffer<std::uint32_t> seeds(1);
  seeds.upload(&seed, 1);
  DeviceBuffer<double> lambda(size_t(J) * k);
  cuda::SpectrumChunk c;
  c.K = 1;
  c.J = J;
  c.shape = shape;
  c.task = task;
  c.k = k;
  c.warmup = warmup;
  c.steps = steps;
  c.params = params_dev.get();
  c.seed = seeds.get();
  c.lambda = lambda.get();
  cuda::SpectrumLaunchPlan plan = cuda::plan_spectrum(shape, k, task, max_shared());
  if (which != SpectrumKernel::heuristic) {
    const auto candidates = cuda::spectrum_candidates(shape, k, task, max_shared());
    const auto found = std::find_if(candidates.begin(), candidates.end(), [&](const cuda::SpectrumLaunchPlan& p) {
      return p.registers == (which == SpectrumKernel::registers);
    });
    if (found == candidates.end()) throw std::invalid_argument("spectra_of: no such spectrum kernel for this shape");
    plan = *found;
  }
  DeviceBuffer<double> frames(plan.frames_shared ? 0 : size_t(J) * 2 * H * k);
  c.frames = frames.get();
  cuda::launch_spectrum(c, plan, nullptr);
  std::vector<double> per_trajectory(size_t(J) * k);
  lambda.download(per_trajectory.data(), per_trajectory.size());
  r.device.assign(k, 0.0);
  for (int j = 0; j < J; ++j)
    for (int i = 0; i < k; ++i) r.device[i] += per_trajectory[size_t(j) * k + i];
  for (double& x : r.device) x /= J;
  std::sort(r.device.begin(), r.device.end(), std::greater<double>());
  return r;
}

void expect_same_spectrum(const SpectrumRun& r, double tolerance, const std::string& what) {
  ASSERT_EQ(r.device.size(), r.cpu.size()) << what;
  for (size_t i = 0; i < r.cpu.size(); ++i) {
    if (std::isinf(r.cpu[i])) {
      EXPECT_EQ(r.device[i], r.cpu[i]) << what << " lambda_" << i + 1;
    } else {
      EXPECT_NEAR(r.device[i], r.cpu[i], tolerance) << what << " lambda_" << i + 1;
    }
  }
}

TEST(Spectrum, MatchesTheCpuOnEveryTask) {
  RNNSWEEP_NEED_DEVICE();
  // Both in double; QR by Gram-Schmidt here, Householder there: the same factors up to
  // rounding (1e-15 per step), summed over the steps.
  for (TaskKind kind : {TaskKind::romo, TaskKind::two_af, TaskKind::dms})
    for (double gain : {0.5, 1.5}) {
      const SpectrumRun r = spectra_of(kind, test::kHidden, gain, test::kHidden, 10, 80, 2);
      expect_same_spectrum(r, 1e-9, std::string(task_name(kind)) + " gain " + std::to_string(gain));
      ASSERT_TRUE(std::isfinite(r.cpu[0]));
    }
}

TEST(SpectrumPaperShape, FullSpectrumAtHidden64MatchesTheCpu) {
  RNNSWEEP_NEED_DEVICE();
  // All 64 exponents of H = 64 networks on a short trajectory (the emulator runs the full QR
  // of 64 columns every step): romo (a = 0.5) and 2af (a = 0, where the QR annihilates
  // directions and the trailing exponents are -inf).
  // Measured on the emulator: at most 8e-15 from the CPU (romo, all 64 finite) and 3e-15 (2af,
  // 26 finite). The GPU's FMA contraction and its log, within an ulp of glibc's, move each
  // step's numbers by ~1e-16 relative; 1e-9 leaves five orders of magnitude for their sums.
  // The annihilated directions must be -inf on both sides (exactly).
  // This is the general kernel's test at the paper's shape (the heuristic takes the register
  // instance there, tested below).
  for (const auto& [kind, gain] : {std::pair{TaskKind::romo, 1.5}, std::pair{TaskKind::two_af, 1.0}}) {
    const SpectrumRun r = spectra_of(kind, 64, gain, 64, 3, 12, 1, SpectrumKernel::general);
    expect_same_spectrum(r, 1e-9, std::string(task_name(kind)) + " H 64");
    ASSERT_TRUE(std::isfinite(r.cpu[0]));
  }
}

TEST(SpectrumRegisters, TheHeuristicTakesThemForFullSpectraAtTheirSizes) {
  for (TaskKind kind : {TaskKind::romo, TaskKind::two_af, TaskKind::dms})
    for (int H : {32, 64}) {
      const TaskParams task = Config::make_task(kind);
      const Shape shape{H, task.inputs(), task.outputs(), false};
      const cuda::SpectrumLaunchPlan plan = cuda::plan_spectrum(shape, H, task, 227 * 1024);
      EXPECT_TRUE(plan.registers) << plan.name();
      EXPECT_EQ(plan.threads, 4 * H);
      // an H100 / H200 multiprocessor: 228 KiB, 1 KiB of it reserved per block
      EXPECT_LE(plan.shared_bytes, 228 * 1024 / 4 - 1024)
          << "4 blocks' shared memory per multiprocessor at H = " << H << ", " << task_name(kind);
      EXPECT_FALSE(cuda::plan_spectrum(shape, H / 2, task, 227 * 1024).registers) << "k < H: the general kernel";
    }
}

// The register instances on every task, against the CPU: the frame in registers, the QR with
// look-ahead and reciprocals, the tiled Jacobian, and the state advanced by four lanes a unit.
// Measured on the emulator: within 1.2e-14 of the CPU (2af, H = 64, gain 0.5); 1e-9 as for the
// general kernel (the same argument: per step ~1e-16 relative, summed over the steps).
TEST(SpectrumRegisters, EveryTaskAndInstanceMatchesTheCpu) {
  RNNSWEEP_NEED_DEVICE();
  for (int H : {32, 64})
    for (TaskKind kind : {TaskKind::romo, TaskKind::two_af, TaskKind::dms})
      for (double gain : {0.5, 1.5}) {
        const long steps = H == 64 ? 8 : 30;
        const SpectrumRun r = spectra_of(kind, H, gain, H, 5, steps, 2, SpectrumKernel::registers);
        const std::string what = std::string(task_name(kind)) + " H " + std::to_string(H) + " gain " + std::to_string(gain);
        expect_same_spectrum(r, 1e-9, what);
        ASSERT_TRUE(std::isfinite(r.cpu[0])) << what;
      }
}

TEST(SpectrumRegisters, WithoutWarmupAndAcrossTrialsMatchesTheCpu) {
  RNNSWEEP_NEED_DEVICE();
  // le_warmup = 0 (the first Jacobian reads the zero state) and a trajectory over more than one
  // trial (the trial buffer is rewritten between steps)
  for (TaskKind kind : {TaskKind::romo, TaskKind::dms}) {
    const int T = Config::make_task(kind).T();
    const SpectrumRun r = spectra_of(kind, 32, 1.2, 32, 0, T + 5, 1, SpectrumKernel::registers);
    expect_same_spectrum(r, 1e-9, std::string(task_name(kind)) + " warmup 0");
  }
}

TEST(SpectrumRegisters, AnExpandingNetworkIsRenormalisedAsOnTheCpu) {
  RNNSWEEP_NEED_DEVICE();
  // At g = 3 the state grows like e^(0.27 t) and so passes the range of double (e^709) within
  // the 3000 warmup steps: it is renormalised (kRenormaliseAbove) about once a step from step
  // ~850 on, and a kernel that did not would give NaN.
  const SpectrumRun r = spectra_of(TaskKind::romo, 32, 3.0, 32, 3000, 10, 1, SpectrumKernel::registers);
  ASSERT_GT(r.cpu[0], 0.25) << "g = 3 must be expanding, or the test proves nothing";
  expect_same_spectrum(r, 1e-8, "g = 3 after 3000 steps");
}

TEST(Spectrum, WithoutWarmupMatchesTheCpu) {
  RNNSWEEP_NEED_DEVICE();
  // le_warmup = 0: the first Jacobian reads the state that start() has just zeroed, before any
  // step (the case that needs the barrier closing DrivenTrajectory::start).
  for (TaskKind kind : {TaskKind::romo, TaskKind::dms}) {
    const SpectrumRun r = spectra_of(kind, test::kHidden, 1.2, test::kHidden, 0, 30, 1);
    expect_same_spectrum(r, 1e-9, std::string(task_name(kind)) + " warmup 0");
  }
}

TEST(Spectrum, ZeroRecurrenceGivesLnAForEveryExponent) {
  RNNSWEEP_NEED_DEVICE();
  const SpectrumRun r = spectra_of(TaskKind::romo, test::kHidden, 0.0, 4, 5, 20, 1);
  for (double x : r.device) EXPECT_NEAR(x, std::log(0.5), 1e-12);
}

TEST(Spectrum, LongTrajectoriesOfAnExpandingNetworkDoNotOverflow) {
  RNNSWEEP_NEED_DEVICE();
  // At g = 2 the state grows like e^(lambda_1 t) and passes the range of double within the
  // 4000 steps: the device carries it renormalised, as the CPU does, and the max LE agrees with
  // a run short enough never to need it (measured on the CPU at H = 64: within 0.002).
  const int H = 16;
  const SpectrumRun long_run = spectra_of(TaskKind::romo, H, 2.0, 2, 100, 4000, 1);
  const SpectrumRun short_run = spectra_of(TaskKind::romo, H, 2.0, 2, 100, 1000, 1);
  ASSERT_GT(long_run.device[0], 0.05) << "g = 2 must be expanding, or the test proves nothing";
  EXPECT_NEAR(long_run.device[0], short_run.device[0], 0.05);
  expect_same_spectrum(long_run, 1e-8, "g = 2, 4000 steps");
}

// ---- flossing ------------------------------------------------------------------------------

// Flossing of two networks of three (0 and 2) in one launch on the device against the CPU:
// the loss and k_used of every iteration and the flossed weights.
// With `plan_index` >= 0, that candidate of floss_candidates instead of the heuristic's plan;
// the flossed parameters go to `flossed_params` if given.
// k_used of every iteration of both networks goes to `k_used_out` if given. `gains`: of the
// three networks (0 and 2 are flossed).
void expect_flossing_matches(TaskKind kind, int hidden, int k, int steps, int warmup, int iters,
                             int plan_index = -1, std::vector<float>* flossed_params = nullptr,
                             std::vector<int>* k_used_out = nullptr,
                             const std::vector<double>& gains = {0.6, 1.0, 1.8}) {
  {
    Config config;
    config.hidden = hidden;
    config.floss_k = k;
    config.floss_steps = steps;
    config.floss_warmup = warmup;
    config.floss_iters = iters;
    config.floss_lr = 1e-2;
    const TaskParams task = config.task(kind);
    const Shape shape{config.hidden, task.inputs(), task.outputs(), false};
    const int P = ParamLayout(shape).size, H = shape.H;
    // two networks, flossed in one launch from a parameter array of three
    const std::vector<std::uint32_t> seeds = {7, 8, 9};
    std::vector<float> params(size_t(3) * P);
    for (int n = 0; n < 3; ++n) init_params(shape, gains[n], seeds[n], params.data() + size_t(n) * P);
    std::vector<float> cpu_params = params;
    const std::vector<int> flossed = {0, 2};
    std::vector<std::vector<FlossPoint>> cpu_curves;
    for (int n : flossed)
      cpu_curves.push_back(
          cpu::floss_network(config, task, shape, cpu_params.data() + size_t(n) * P, seeds[n]));

    DeviceBuffer<float> params_dev(params.size()), m(2 * H * H), v(2 * H * H);
    params_dev.upload(params.data(), params.size());
    m.zero();
    v.zero();
    DeviceBuffer<std::uint32_t> seed_dev(3);
    seed_dev.upload(seeds.data(), 3);
    DeviceBuffer<int> network(2), steps(2), k_used(2 * config.floss_iters);
    network.upload(flossed.data(), 2);
    steps.zero();
    DeviceBuffer<double> scratch(2 * cuda::floss_scratch_doubles(H, config.floss_k, config.floss_steps));
    DeviceBuffer<double> loss(2 * config.floss_iters);
    cuda::FlossChunk f;
    f.K = 2;
    f.network = network.get();
    f.shape = shape;
    f.task = task;
    f.k = config.floss_k;
    f.warmup = config.floss_warmup;
    f.steps = config.floss_steps;
    f.iters = config.floss_iters;
    f.lr = config.floss_lr;
    f.params = params_dev.get();
    f.seed = seed_dev.get();
    f.adam_m = m.get();
    f.adam_v = v.get();
    f.adam_steps = steps.get();
    f.scratch = scratch.get();
    f.loss = loss.get();
    f.k_used = k_used.get();
    const cuda::FlossBiasCorrections bias_corrections(f);
    const cuda::FlossLaunchPlan plan = plan_index < 0 ? cuda::plan_floss(shape, f.k, task, max_shared())
                                                      : cuda::floss_candidates(shape, f.k, task, max_shared()).at(plan_index);
    for (long it = 0; it < config.floss_iters; ++it) cuda::launch_floss_iteration(f, plan, it, nullptr);
    std::vector<double> loss_host(loss.size());
    std::vector<int> k_host(k_used.size());
    loss.download(loss_host.data(), loss_host.size());
    k_used.download(k_host.data(), k_host.size());
    for (int slot = 0; slot < 2; ++slot)
      for (long it = 0; it < config.floss_iters; ++it) {
        const FlossPoint& want = cpu_curves[slot][it];
        ASSERT_EQ(k_host[slot * config.floss_iters + it], want.k_used)
            << task_name(kind) << " iteration " << it;
        // double on both sides; the weights between iterations are float and agree to ~1 ulp
        EXPECT_NEAR(loss_host[slot * config.floss_iters + it], want.loss, 1e-6 * want.loss + 1e-12)
            << task_name(kind) << " network " << flossed[slot] << " iteration " << it;
      }
    std::vector<float> got(params.size());
    params_dev.download(got.data(), got.size());
    ASSERT_GT(cpu_curves[0][0].loss, cpu_curves[0].back().loss * 1.0001) << "flossing must move the loss";
    const std::vector<double> got_d(got.begin(), got.end()), want_d(cpu_params.begin(), cpu_params.end());
    EXPECT_LT(scaled_error(got_d, want_d), 1e-5) << task_name(kind);
    // the network in between was not flossed: untouched
    for (int e = 0; e < P; ++e) ASSERT_EQ(got[P + e], params[P + e]);
    if (flossed_params) *flossed_params = got;
    if (k_used_out) *k_used_out = k_host;
  }
}

TEST(Floss, LossCurveAndFlossedWeightsMatchTheCpu) {
  RNNSWEEP_NEED_DEVICE();
  for (TaskKind kind : {TaskKind::romo, TaskKind::two_af}) expect_flossing_matches(kind, test::kHidden, 4, 12, 5, 4);
}

TEST(Floss, WithoutWarmupMatchesTheCpu) {
  RNNSWEEP_NEED_DEVICE();
  // floss_warmup = 0: the chain starts at the zero state start() writes.
  expect_flossing_matches(TaskKind::romo, test::kHidden, 4, 8, 0, 2);
}

TEST(FlossPaperShape, HiddenSixtyFourWithThirtyTwoExponentsMatchesTheCpu) {
  RNNSWEEP_NEED_DEVICE();
  // The study's flossing shape (H = 64, floss_k = 32) on a short chain, on the general kernel
  // (the heuristic takes the register instance here, FlossRegisters below): every thread of the
  // block owns several entries of each product, and the QR runs 32 columns on two warps.
  const TaskParams task = Config().task(TaskKind::romo);
  const auto candidates = cuda::floss_candidates(Shape{64, task.inputs(), task.outputs(), false}, 32, task, max_shared());
  const auto general = std::find_if(candidates.begin(), candidates.end(), [](const auto& p) { return !p.registers; });
  ASSERT_NE(general, candidates.end());
  expect_flossing_matches(TaskKind::romo, 64, 32, 6, 3, 2, int(general - candidates.begin()));
}

TEST(FlossRegisters, EveryTaskAndInstanceMatchesTheCpu) {
  RNNSWEEP_NEED_DEVICE();
  // The register instances (kernels/floss_registers.cu), which the heuristic takes at their
  // shapes, on every task: 2af and dms have no leak (a = 0), so a unit that is off takes a
  // direction with it and later columns are annihilated (k_used < k): the backward pass's masks.
  bool annihilated = false;
  for (const auto& [H, k] : {std::pair{64, 32}, std::pair{32, 32}})
    for (TaskKind kind : {TaskKind::romo, TaskKind::two_af, TaskKind::dms}) {
      const TaskParams task = Config().task(kind);
      const Shape shape{H, task.inputs(), task.outputs(), false};
      const cuda::FlossLaunchPlan plan = cuda::plan_floss(shape, k, task, max_shared());
      ASSERT_TRUE(plan.registers) << plan.name();
      SCOPED_TRACE("H = " + std::to_string(H) + ", k = " + std::to_string(k) + ", " + task_name(kind));
      std::vector<int> k_used;
      expect_flossing_matches(kind, H, k, 8, 3, 3, -1, nullptr, &k_used);
      for (int used : k_used) annihilated = annihilated || used < k;
    }
  EXPECT_TRUE(annihilated) << "some case must cut the chain, or the masks are untested";
}

TEST(FlossRegisters, AStateRenormalisedDuringTheWarmupMatchesTheCpu) {
  RNNSWEEP_NEED_DEVICE();
  // At gain 3 the driven state passes 1e100 within the warm-up (at step 400), where only the renormalisation's
  // own barrier orders the rescaled state before the next step reads it (in the chain, the QR's
  // barriers do too).
  expect_flossing_matches(TaskKind::two_af, 32, 32, 8, 480, 3, -1, nullptr, nullptr, {0.6, 1.0, 3.0});
}

TEST(FlossRegisters, ShortChainsTrialBoundariesAndARenormalisationInTheChainMatchTheCpu) {
  RNNSWEEP_NEED_DEVICE();
  {
    SCOPED_TRACE("a chain of one step (n = 1: the adjoint never updates Q_bar)");
    expect_flossing_matches(TaskKind::two_af, 64, 32, 1, 6, 3);
  }
  {
    SCOPED_TRACE("the warm-up ends at a trial boundary (2af's T = 22): the chain starts with a fresh trial");
    ASSERT_EQ(Config().task(TaskKind::two_af).T(), 22);
    expect_flossing_matches(TaskKind::two_af, 32, 32, 6, 22, 3);
  }
  {
    SCOPED_TRACE("gain 3 renormalises the state at step 400, inside the chain (warm-up 395)");
    expect_flossing_matches(TaskKind::two_af, 32, 32, 8, 395, 3, -1, nullptr, nullptr, {0.6, 1.0, 3.0});
  }
}

TEST(FlossPlacements, TheChainInSharedOrGlobalMemoryGivesTheSameBits) {
  RNNSWEEP_NEED_DEVICE();
  // Every placement of W_h and of the chain (and block size) computes the same sums in the same
  // order: the same bits, each also against the CPU.
  const Shape shape{24, 1, 2, false};
  const auto candidates = cuda::floss_candidates(shape, 6, Config().task(TaskKind::two_af), max_shared());
  std::set<std::string> placements;
  for (const auto& p : candidates) placements.insert(p.name().substr(p.name().find(' ')));
  ASSERT_EQ(placements.size(), 4u) << "W_h and the chain, each in shared or global memory";
  std::vector<float> first, got;
  expect_flossing_matches(TaskKind::two_af, 24, 6, 5, 2, 2, 0, &first);
  ASSERT_TRUE(candidates.front().chain_shared && candidates.front().W_h_shared) << "the heuristic's choice at this size";
  for (size_t i = 1; i < candidates.size(); ++i) {
    expect_flossing_matches(TaskKind::two_af, 24, 6, 5, 2, 2, int(i), &got);
    ASSERT_EQ(got.size(), first.size());
    EXPECT_EQ(std::memcmp(got.data(), first.data(), got.size() * sizeof(float)), 0) << candidates[i].name();
  }
}

}  // namespace
