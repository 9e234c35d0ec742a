// The CPU reference's training loop (host/cpu/train.cpp) with what it can do besides train:
// flossing during training (floss_every), held-out evaluation (eval_every) and the alignment of
// the local rules with BPTT (alignment). Each test rebuilds the feature from the loop's own
// checkpoints and the pieces it is made of, so that a loop that calls them in another order,
// at other iterations or on other data fails.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <map>

#include "host/cpu/model.h"
#include "host/cpu/spectra.h"
#include "host/cpu/tasks.h"
#include "host/cpu/train.h"
#include "rnnsweep/grid.h"
#include "rnnsweep/init.h"

using namespace rnnsweep;

namespace {

Config tiny(std::vector<std::string> more) {
  std::vector<std::string> overrides = {"tasks=romo", "rules=eprop", "gains=[1.0]", "lrs=[3e-3]", "seeds=[3]",
                                        "hidden=16",  "batch=4",     "iters=9",     "log_every=1", "le_steps=10",
                                        "le_warmup=2", "le_batch=1",  "floss_k=2",   "floss_steps=30",
                                        "floss_warmup=10"};
  overrides.insert(overrides.end(), more.begin(), more.end());
  return default_config_with(overrides);
}

struct Trained {
  NetworkResult result;
  std::map<long, NetworkCheckpoint> saved;  // the state before each iteration 1 .. iters - 1
};

Trained train(const Config& config, int network = 0) {
  Trained t;
  RunControl control;
  control.checkpoint_every = 1;
  control.checkpoint = [&](const NetworkCheckpoint& c) { t.saved[c.iteration] = c; };
  RunOptions options;
  options.control = &control;
  const NetworkSpec spec = expand_grid(config).at(network);
  std::atomic<long long> progress{0};
  t.result = cpu::train_network(config, spec, options, progress);
  EXPECT_EQ(progress.load(), cpu::work_units(config, spec, options)) << "every announced unit is done";
  return t;
}

// The loss of `params` on the training batch of iteration `it`.
double loss_at(const Config& config, const NetworkSpec& spec, const std::vector<float>& params, long it) {
  const TaskParams& task = config.task(spec.task);
  const Shape shape{config.hidden, task.inputs(), task.outputs(), config.bias};
  const cpu::Trials trials = cpu::training_trials(task, spec.data_seed, std::uint32_t(it), config.batch);
  cpu::Forward<float> fwd;
  cpu::forward(shape, float(task.leak()), params.data(), trials, fwd);
  return cpu::task_loss(trials, fwd.y, static_cast<cpu::Mat<float>*>(nullptr)).loss;
}

}  // namespace

// floss = true, floss_every = 4: the pretraining (2 iterations), then 3 flossing iterations just
// before training iterations 4 and 8, each on the network as training left it, with its own
// Adam state and its own batches of the flossing stream; the loss of iteration 4 is that of the
// flossed network.
TEST(Training, FlossingDuringTrainingFlossesTheNetworkAsTrainingLeftIt) {
  const Config config = tiny({"floss=[true]", "floss_iters=2", "floss_every=4", "floss_iters_each=3"});
  const Trained t = train(config);
  const NetworkResult& r = t.result;
  ASSERT_FALSE(r.diverged);
  ASSERT_EQ(r.floss_curve.size(), 2u + 3u + 3u);
  const long at[] = {0, 0, 4, 4, 4, 8, 8, 8}, within[] = {0, 1, 0, 1, 2, 0, 1, 2};
  for (size_t i = 0; i < r.floss_curve.size(); ++i) {
    EXPECT_EQ(r.floss_curve[i].training_iteration, at[i]) << i;
    EXPECT_EQ(r.floss_curve[i].iteration, within[i]) << i;
  }
  EXPECT_EQ(floss_first_batch(config, 4), 2);
  EXPECT_EQ(floss_first_batch(config, 8), 5);
  const TaskParams& task = config.task(r.spec.task);
  const Shape shape{config.hidden, task.inputs(), task.outputs(), config.bias};
  for (long j : {4L, 8L}) {
    std::vector<float> params = t.saved.at(j).params;  // before iteration j: not yet flossed
    const double unflossed = loss_at(config, r.spec, params, j);
    const auto episode = cpu::floss_network(config, task, shape, params.data(), r.spec.seed, j);
    ASSERT_EQ(episode.size(), 3u);
    for (size_t i = 0; i < 3; ++i) EXPECT_EQ(episode[i].loss, r.floss_curve[j / 4 * 3 - 1 + i].loss) << j;
    const double flossed = loss_at(config, r.spec, params, j);
    EXPECT_NE(flossed, unflossed) << "flossing must move the network, or the test proves nothing";
    EXPECT_EQ(r.curve[j].loss, flossed) << "iteration " << j << " trains the flossed network";
  }
  // the episodes draw other batches than the pretraining: its first loss is not the episode's
  // first on the same network
  std::vector<float> params = t.saved.at(4).params;
  Config as_pretraining = config;
  as_pretraining.floss_iters = 3;
  const auto pretraining = cpu::floss_network(as_pretraining, task, shape, params.data(), r.spec.seed, 0);
  EXPECT_NE(pretraining.front().loss, r.floss_curve[2].loss);
}

// Without floss_every the same network trains identically up to the first episode, and not after.
TEST(Training, FlossingDuringTrainingChangesNothingBeforeItsFirstEpisode) {
  const Config with = tiny({"floss=[true]", "floss_iters=2", "floss_every=4", "floss_iters_each=3"});
  const Config without = tiny({"floss=[true]", "floss_iters=2"});
  const NetworkResult a = train(with).result, b = train(without).result;
  ASSERT_EQ(a.curve.size(), b.curve.size());
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ(a.curve[i].loss, b.curve[i].loss) << i;
  EXPECT_NE(a.curve[4].loss, b.curve[4].loss);
  EXPECT_EQ(b.floss_curve.size(), 2u);
}

// floss_iters = 0 with floss_every: flossing only during training, none before it.
TEST(Training, FlossingOnlyDuringTraining) {
  const Config config = tiny({"floss=[true]", "floss_iters=0", "floss_every=3", "floss_iters_each=2"});
  const NetworkResult r = train(config).result;
  ASSERT_EQ(r.floss_curve.size(), 4u);  // before iterations 3 and 6
  EXPECT_EQ(r.floss_curve.front().training_iteration, 3);
  EXPECT_EQ(r.floss_curve.back().training_iteration, 6);
  EXPECT_EQ(r.spectrum_flossed, r.spectrum_init) << "no pretraining: the flossed network is the initial one";
}

// eval_every = 2 over 20 iterations (log_every 1): at 0, 2, ..., 18 and 19 the loss and accuracy
// of the network before that iteration's update on the two held-out batches of its data seed
// (not its training batches), recomputed here from the loop's checkpoints; the eval twins of
// the tail columns are the means over the last 10% of the iterations (18 and 19).
TEST(Training, HeldOutEvaluationIsOfTheNetworkBeforeEachLoggedUpdateOnTheEvalStream) {
  const Config config = tiny({"iters=20", "eval_every=2", "eval_trials=8", "rules=rflo"});
  const Trained t = train(config);
  const NetworkResult& r = t.result;
  const TaskParams& task = config.task(r.spec.task);
  const Shape shape{config.hidden, task.inputs(), task.outputs(), config.bias};
  ASSERT_EQ(r.probes.size(), 11u);
  std::vector<cpu::Trials> eval(2);
  for (int e = 0; e < 2; ++e)
    cpu::fill_trials(task, Purpose::eval_trials, r.spec.data_seed, std::uint32_t(e), config.batch, eval[e]);
  for (const ProbePoint& p : r.probes) {
    EXPECT_TRUE(p.evaluated);
    EXPECT_FALSE(p.aligned);
    EXPECT_TRUE(p.iteration % 2 == 0 || p.iteration == 19) << p.iteration;
    std::vector<float> params(ParamLayout(shape).size);
    if (p.iteration == 0)
      init_network(shape, r.spec.init, config.init_options, r.spec.gain, r.spec.seed, params.data());
    else
      params = t.saved.at(p.iteration).params;
    double loss = 0, accuracy = 0;
    for (const auto& batch : eval) {
      cpu::Forward<float> fwd;
      cpu::forward(shape, float(task.leak()), params.data(), batch, fwd);
      const auto lv = cpu::task_loss(batch, fwd.y, static_cast<cpu::Mat<float>*>(nullptr));
      loss += lv.loss / 2;
      accuracy += lv.accuracy / 2;
    }
    EXPECT_EQ(p.eval_loss, loss) << "iteration " << p.iteration;
    EXPECT_EQ(p.eval_accuracy, accuracy) << "iteration " << p.iteration;
    EXPECT_NE(p.eval_loss, r.curve[p.iteration].loss) << "held out, not the training batch";
  }
  EXPECT_TRUE(r.evaluated);
  EXPECT_EQ(r.eval_final_loss, r.probes.back().eval_loss);
  EXPECT_DOUBLE_EQ(r.eval_tail_loss, (r.probes[9].eval_loss + r.probes[10].eval_loss) / 2);
  EXPECT_DOUBLE_EQ(r.eval_tail_accuracy, (r.probes[9].eval_accuracy + r.probes[10].eval_accuracy) / 2);
}

// alignment: at every logged iteration of an e-prop or RFLO network, the cosine between its
// rule's W_h gradient and BPTT's on the same weights and batch (recomputed here, W_h block only);
// a BPTT network has none.
TEST(Training, AlignmentIsTheCosineOfTheRulesAndBpttsWhGradients) {
  const Config config = tiny({"rules=bptt,eprop,rflo", "iters=7", "log_every=3", "alignment=true"});
  for (int network = 0; network < 3; ++network) {
    const Trained t = train(config, network);
    const NetworkResult& r = t.result;
    if (r.spec.rule == Rule::bptt) {
      EXPECT_TRUE(r.probes.empty());
      continue;
    }
    const TaskParams& task = config.task(r.spec.task);
    const Shape shape{config.hidden, task.inputs(), task.outputs(), config.bias};
    const ParamLayout layout(shape);
    ASSERT_EQ(r.probes.size(), 3u);  // 0, 3, 6
    for (const ProbePoint& p : r.probes) {
      EXPECT_TRUE(p.aligned);
      EXPECT_FALSE(p.evaluated);
      std::vector<float> params(layout.size);
      if (p.iteration == 0)
        init_network(shape, r.spec.init, config.init_options, r.spec.gain, r.spec.seed, params.data());
      else
        params = t.saved.at(p.iteration).params;
      const cpu::Trials trials = cpu::training_trials(task, r.spec.data_seed, std::uint32_t(p.iteration), config.batch);
      cpu::Forward<float> fwd;
      cpu::Mat<float> dL_dy;
      cpu::forward(shape, float(task.leak()), params.data(), trials, fwd);
      cpu::task_loss(trials, fwd.y, &dL_dy);
      std::vector<float> exact(layout.size), local(layout.size);
      cpu::bptt_gradient(shape, float(task.leak()), params.data(), fwd, dL_dy, exact.data());
      const cpu::Mat<float> feedback =
          r.spec.rule == Rule::rflo
              ? cpu::Mat<float>(Eigen::Map<const cpu::Mat<float>>(rflo_feedback(shape, r.spec.seed).data(), shape.H, shape.O))
              : cpu::Mat<float>(cpu::ConstNet<float>(shape, params.data()).w.transpose());
      cpu::eprop_gradient(shape, float(task.leak()), params.data(), fwd, dL_dy, feedback, local.data());
      double uv = 0, uu = 0, vv = 0;
      for (int e = layout.W_h; e < layout.W_h + shape.H * shape.H; ++e)
        uv += double(local[e]) * exact[e], uu += double(local[e]) * local[e], vv += double(exact[e]) * exact[e];
      EXPECT_DOUBLE_EQ(p.alignment, uv / std::sqrt(uu * vv)) << rule_name(r.spec.rule) << " at " << p.iteration;
      EXPECT_LT(p.alignment, 0.9999) << "a local rule is not BPTT";
    }
  }
}
