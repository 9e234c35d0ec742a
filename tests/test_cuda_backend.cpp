// The CUDA backend as a whole against the CPU backend: the same grid gives the same results
// table by table (within float tolerance), chunking and repetition change nothing, and bad
// shapes are refused before any work. Runs on the block emulator everywhere and on the GPU
// where there is one (see tests/kernel_test_support.h).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <optional>
#include <fstream>
#include <sstream>
#include <string>

#include "host/writers.h"
#include "kernels/cuda_backend.cuh"
#include "kernels/floss.cuh"
#include "kernels/lyapunov.cuh"
#include "kernels/train_layered.cuh"
#include "kernels/train_step.cuh"
#include "kernels/tuning.cuh"
#include "rnnsweep/backend.h"
#include "rnnsweep/config.h"
#include "rnnsweep/grid.h"
#include "tests/kernel_test_support.h"
#include "tests/npz_support.h"

namespace rnnsweep {
std::unique_ptr<Backend> make_cpu_backend(int threads);  // host/cpu/cpu_backend.cpp
}

using namespace rnnsweep;
#if RNNSWEEP_EMULATED
namespace emu = rnnsweep::emu;
#endif

namespace {

class CudaBackend : public testing::Test {
#if RNNSWEEP_EMULATED
  // Whole grids launch thousands of kernels: under the emulator they run under two schedules
  // (quick_schedules) rather than all six of the kernel tests, unless RNNSWEEP_EMU_SCHEDULES
  // says which.
  emu::ScopedSchedules schedules_{std::getenv("RNNSWEEP_EMU_SCHEDULES") ? emu::schedules()
                                                                         : emu::quick_schedules()};
#endif
};

// Every task and rule, two gains, flossing off and on, with divergence in the mix: small
// enough for the emulator, long enough that training moves the loss.
Config small_grid() {
  Config c = default_config_with({"tasks=romo,2af,dms", "rules=bptt,eprop,rflo", "gains=[0.5,1.5]",
                                  "lrs=[3e-3]", "seeds=[1]", "floss=[false,true]", "iters=6", "log_every=2",
                                  "le_steps=40", "le_warmup=10", "le_batch=2", "floss_iters=3", "floss_k=3",
                                  "floss_steps=8", "floss_warmup=4"});
  c.hidden = test::kHidden;
  c.batch = test::kBatch;
  c.le_k = 0;
  return c;
}

std::vector<NetworkResult> run(Backend& backend, const Config& config, RunOptions options = {}) {
  Progress progress;
  const auto networks = expand_grid(config);
  auto results = backend.train(config, networks, options, progress);
  EXPECT_EQ(progress.done.load(), progress.total.load()) << "every announced unit of work is done";
  return results;
}

// Equal where both are NaN, or both the same infinity, or within `tolerance` (absolute plus
// relative to the CPU's value).
void expect_close(double got, double want, double tolerance, const std::string& what) {
  if (std::isnan(want))
    EXPECT_TRUE(std::isnan(got)) << what;
  else if (std::isinf(want))
    EXPECT_EQ(got, want) << what;
  else
    EXPECT_NEAR(got, want, tolerance * (1 + std::fabs(want))) << what;
}

void expect_same_spectrum(const std::vector<double>& got, const std::vector<double>& want, double tolerance,
                          const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < want.size(); ++i)
    expect_close(got[i], want[i], tolerance, what + " index " + std::to_string(i));
}

TEST_F(CudaBackend, MatchesTheCpuBackendNetworkByNetwork) {
  RNNSWEEP_NEED_DEVICE();
  const Config config = small_grid();
  auto cuda = make_cuda_backend();
  auto cpu = make_cpu_backend(1);
  const auto got = run(*cuda, config), want = run(*cpu, config);
  ASSERT_EQ(got.size(), want.size());
  for (size_t n = 0; n < want.size(); ++n) {
    const NetworkResult &g = got[n], &w = want[n];
    const std::string what = "network " + std::to_string(w.spec.id) + " (" + task_name(w.spec.task) + ", " +
                             rule_name(w.spec.rule) + ", gain " + std::to_string(w.spec.gain) +
                             (w.spec.floss ? ", flossed" : "") + ")";
    ASSERT_EQ(g.spec.id, w.spec.id);
    EXPECT_EQ(g.diverged, w.diverged) << what;
    EXPECT_EQ(g.iterations, w.iterations) << what;
    // A few Adam steps in float from the same start: the losses agree to ~1e-6; 1e-4 leaves
    // room for Adam's sign-sensitivity on near-zero gradient entries.
    expect_close(g.final_loss, w.final_loss, 1e-4, what + " final_loss");
    expect_close(g.tail_loss, w.tail_loss, 1e-4, what + " tail_loss");
    expect_close(g.best_loss, w.best_loss, 1e-4, what + " best_loss");
    ASSERT_EQ(g.curve.size(), w.curve.size()) << what;
    for (size_t i = 0; i < w.curve.size(); ++i) {
      EXPECT_EQ(g.curve[i].iteration, w.curve[i].iteration) << what;
      expect_close(g.curve[i].loss, w.curve[i].loss, 1e-4, what + " curve");
    }
    // Spectra of the initial networks: identical float weights, double arithmetic.
    expect_same_spectrum(g.spectrum_init, w.spectrum_init, 1e-9, what + " init spectrum");
    // Flossing moves weights in float (Adam), so the flossed and trained spectra are taken at
    // weights that agree to float rounding, not exactly.
    expect_same_spectrum(g.spectrum_flossed, w.spectrum_flossed, 1e-3, what + " flossed spectrum");
    expect_same_spectrum(g.spectrum_trained, w.spectrum_trained, 1e-3, what + " trained spectrum");
    ASSERT_EQ(g.floss_curve.size(), w.floss_curve.size()) << what;
    for (size_t i = 0; i < w.floss_curve.size(); ++i) {
      EXPECT_EQ(g.floss_curve[i].k_used, w.floss_curve[i].k_used) << what;
      expect_close(g.floss_curve[i].loss, w.floss_curve[i].loss, 1e-5, what + " floss curve");
    }
  }
}

// Every init starts both backends from the same network (host/init.cpp serves both): the
// initial spectra agree to double rounding, and a few training steps to float rounding. The
// inits give different networks (their spectra differ), so a backend that ignored `init` fails.
TEST_F(CudaBackend, EveryInitMatchesTheCpuBackend) {
  RNNSWEEP_NEED_DEVICE();
  Config config = small_grid();
  config.tasks = {"romo"};
  config.rules = {"eprop"};
  config.gains = {1.5};
  config.floss = {false};
  config.inits = {"gaussian", "orthogonal", "lowrank", "sparse", "dale"};
  config.init_options.sparse_density = 0.5;
  config.init_options.lowrank_rank = 2;
  auto cuda = make_cuda_backend();
  auto cpu = make_cpu_backend(1);
  const auto got = run(*cuda, config), want = run(*cpu, config);
  ASSERT_EQ(got.size(), 5u);
  ASSERT_EQ(want.size(), 5u);
  for (size_t n = 0; n < want.size(); ++n) {
    const std::string what = std::string("init ") + init_name(want[n].spec.init);
    EXPECT_EQ(got[n].spec.init, InitKind(n)) << what;
    expect_same_spectrum(got[n].spectrum_init, want[n].spectrum_init, 1e-9, what + " init spectrum");
    expect_close(got[n].final_loss, want[n].final_loss, 1e-4, what + " final_loss");
    expect_same_spectrum(got[n].spectrum_trained, want[n].spectrum_trained, 1e-3, what + " trained spectrum");
    if (n > 0) {
      EXPECT_GT(std::fabs(want[n].spectrum_init[0] - want[0].spectrum_init[0]), 1e-6) << what << " vs gaussian";
    }
  }
}

// hidden and batch as lists: each shape trains in chunks of its own (its own kernel instances),
// and every network matches the CPU's, which trains it with its shape's config.
TEST_F(CudaBackend, SeveralShapesMatchTheCpuBackend) {
  RNNSWEEP_NEED_DEVICE();
  Config config = small_grid();
  config.tasks = {"romo", "2af"};
  config.rules = {"bptt", "eprop"};
  config.gains = {1.5};
  config.floss = {false, true};
  config.hidden = 8;
  config.hidden_list = {8, test::kHidden};
  config.batch = 2;
  config.batch_list = {2, test::kBatch};
  auto cuda = make_cuda_backend();
  auto cpu = make_cpu_backend(1);
  const std::string plan = cuda->plan(config, expand_grid(config), RunOptions{});
  EXPECT_NE(plan.find("romo (hidden 8, batch 2)"), std::string::npos) << plan;
  const auto got = run(*cuda, config), want = run(*cpu, config);
  ASSERT_EQ(want.size(), 2u * 4 * 2 * 2);
  for (size_t n = 0; n < want.size(); ++n) {
    const std::string what = "network " + std::to_string(n) + " (hidden " + std::to_string(want[n].spec.hidden) +
                             ", batch " + std::to_string(want[n].spec.batch) + ")";
    EXPECT_EQ(got[n].spec.hidden, want[n].spec.hidden) << what;
    ASSERT_EQ(want[n].spectrum_init.size(), size_t(want[n].spec.hidden)) << what << ": its own full spectrum";
    expect_same_spectrum(got[n].spectrum_init, want[n].spectrum_init, 1e-9, what + " init spectrum");
    expect_close(got[n].final_loss, want[n].final_loss, 1e-4, what + " final_loss");
    expect_same_spectrum(got[n].spectrum_trained, want[n].spectrum_trained, 1e-3, what + " trained spectrum");
  }
}

TEST_F(CudaBackend, ChunksAndRepeatsGiveIdenticalResults) {
  RNNSWEEP_NEED_DEVICE();
  Config config = small_grid();
  config.tasks = {"romo"};
  config.rules = {"bptt", "rflo"};
  RunOptions options;
  options.keep_weights = true;
  auto whole = make_cuda_backend();
  auto pieces = make_cuda_backend(2);  // chunks of two networks
  const auto a = run(*whole, config, options), b = run(*pieces, config, options),
             c = run(*whole, config, options);
  ASSERT_EQ(a.size(), b.size());
  for (size_t n = 0; n < a.size(); ++n) {
    // Each network is one thread block whatever else is in the launch: bit for bit.
    EXPECT_EQ(a[n].params_final, b[n].params_final) << "network " << n;
    EXPECT_EQ(a[n].params_final, c[n].params_final) << "network " << n;
    EXPECT_EQ(a[n].spectrum_trained, b[n].spectrum_trained) << "network " << n;
    ASSERT_EQ(a[n].curve.size(), c[n].curve.size());
    for (size_t i = 0; i < a[n].curve.size(); ++i) EXPECT_EQ(a[n].curve[i].loss, c[n].curve[i].loss);
  }
}

TEST_F(CudaBackend, DivergedNetworksAreMarkedAsOnTheCpu) {
  RNNSWEEP_NEED_DEVICE();
  Config config = small_grid();
  config.tasks = {"2af"};
  config.rules = {"bptt"};
  config.floss = {false};
  config.lrs = {1e-3, 1e9};
  auto cuda = make_cuda_backend();
  auto cpu = make_cpu_backend(1);
  const auto got = run(*cuda, config), want = run(*cpu, config);
  bool any = false;
  for (size_t n = 0; n < want.size(); ++n) {
    EXPECT_EQ(got[n].diverged, want[n].diverged) << "network " << n;
    EXPECT_EQ(got[n].diverged_at, want[n].diverged_at) << "network " << n;
    EXPECT_EQ(got[n].spectrum_trained.empty(), want[n].spectrum_trained.empty());
    any |= want[n].diverged;
  }
  EXPECT_TRUE(any) << "lr = 1e9 must diverge, or the test proves nothing";
}

// le_every: the tracked spectra during training, as the CPU takes them, also where a network
// diverges (the CUDA backend takes a spectrum before it knows that iteration's loss and drops it
// when the loss is NaN/Inf) and with flossing (iteration 0 is the flossed network).
TEST_F(CudaBackend, TrackedSpectraMatchTheCpuAlsoWhereANetworkDiverges) {
  RNNSWEEP_NEED_DEVICE();
  Config config = small_grid();
  config.tasks = {"romo", "2af"};
  config.rules = {"bptt", "eprop"};
  config.gains = {1.5};
  config.lrs = {3e-3, 1e9};
  config.le_every = 1;
  config.le_track_k = 2;
  auto cuda = make_cuda_backend();
  auto cpu = make_cpu_backend(1);
  const auto got = run(*cuda, config), want = run(*cpu, config);
  bool any_diverged = false;
  for (size_t n = 0; n < want.size(); ++n) {
    const std::string what = "network " + std::to_string(n);
    ASSERT_EQ(got[n].tracked.size(), want[n].tracked.size()) << what << " (diverged_at " << want[n].diverged_at << ")";
    for (size_t i = 0; i < want[n].tracked.size(); ++i) {
      EXPECT_EQ(got[n].tracked[i].iteration, want[n].tracked[i].iteration) << what;
      // iteration 0 is the initial (or flossed) network: float weights equal, or equal to Adam's rounding
      expect_same_spectrum(got[n].tracked[i].lambda, want[n].tracked[i].lambda, i == 0 && !want[n].spec.floss ? 1e-9 : 1e-3,
                           what + " tracked at " + std::to_string(want[n].tracked[i].iteration));
    }
    if (want[n].diverged) {
      any_diverged = true;
      if (!want[n].tracked.empty()) {
        EXPECT_LT(want[n].tracked.back().iteration, want[n].diverged_at) << what;
      }
    } else {
      ASSERT_EQ(want[n].tracked.size(), size_t(config.iters) + 1) << what;
    }
  }
  EXPECT_TRUE(any_diverged) << "lr = 1e9 must diverge, or the test proves nothing";
}

TEST_F(CudaBackend, PlanTakesTheLayeredPathPastWhatABlockHolds) {
  RNNSWEEP_NEED_DEVICE();
  Config config = small_grid();
  auto cuda = make_cuda_backend();
  const std::string plan = cuda->plan(config, expand_grid(config), RunOptions{});
  EXPECT_NE(plan.find("romo 12 networks in chunks of"), std::string::npos) << plan;
  EXPECT_EQ(plan.find("layered-cublas"), std::string::npos) << plan;
  // past the fused kernels' range (5 hidden x batch floats in a block: hidden 338 at batch 32 on
  // an H100, about 2900 at this grid's batch 4) the layered path runs the
  // networks, rather than a refusal
  config.hidden = 3000;  // (the spectra still fit one block up to about 3200: the spectrum issue)
  if (!cuda::layered_available()) {  // a GPU build without cuBLAS refuses before any work
    EXPECT_THROW(cuda->plan(config, expand_grid(config), RunOptions{}), UsageError);
    return;
  }
  const std::string big = cuda->plan(config, expand_grid(config), RunOptions{});
  EXPECT_NE(big.find("train_step layered-cublas"), std::string::npos) << big;
}

TEST_F(CudaBackend, AutotuningValidatesAndTimesEveryInstance) {
  RNNSWEEP_NEED_DEVICE();
  cuda::TuneOptions options;
  options.networks = 3;
  options.launches = 1;
  options.spectrum_steps = 4;
  options.floss_steps = 4;
  std::vector<std::string> log;
  options.log = [&](const std::string& line) { log.push_back(line); };
  const GpuTuning measured = cuda::autotune({{TaskKind::romo, test::kHidden, test::kBatch}}, options);
  ASSERT_EQ(measured.entries.size(), 3u) << "train_step, spectrum and floss";
  for (const TuningEntry& e : measured.entries) {
    EXPECT_EQ(e.timings_ms.count(e.heuristic), 1u) << e.kernel << ": the heuristic's instance is timed";
    EXPECT_EQ(e.timings_ms.count(e.instance), 1u) << e.kernel << ": the winner is one of those timed";
    EXPECT_GE(e.timings_ms.size(), 3u) << e.kernel << ": several instances to choose from";
    for (const auto& [name, ms] : e.timings_ms) {
      EXPECT_GT(ms, 0.0) << e.kernel << " " << name;
      EXPECT_LE(e.timings_ms.at(e.instance), ms) << e.kernel << ": the winner is the fastest";
    }
  }
  for (const std::string& line : log) EXPECT_EQ(line.find("disagrees"), std::string::npos) << line;
}

TEST_F(CudaBackend, ATuningTableChoosesTheInstancesAndResultsStayTheSame) {
  RNNSWEEP_NEED_DEVICE();
  Config config = small_grid();
  config.tasks = {"romo"};
  config.rules = {"bptt", "eprop"};
  const TaskParams task = config.task(TaskKind::romo);
  const Shape shape{config.hidden, task.inputs(), task.outputs(), config.bias};
  cudaDeviceProp prop;
  CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  const size_t max_shared = prop.sharedMemPerBlockOptin;
  // Winners that are not the heuristic's: the last candidate of each kernel of at most 256
  // threads (every GPU launches those) with the arrays in global memory, so that the table's
  // choice runs another code path.
  auto last = [](const auto& candidates) {
    std::string name;
    for (const auto& c : candidates)
      if (c.threads <= 256) name = c.name();
    return name;
  };
  auto entry = [](const char* kernel, const std::string& key, const std::string& instance, const std::string& heuristic) {
    return TuningEntry{kernel, key, instance, heuristic, {{instance, 1.0}, {heuristic, 2.0}}};
  };
  const auto train = cuda::train_candidates(shape, config.batch, task.T(), max_shared);
  const auto spectrum = cuda::spectrum_candidates(shape, config.spectrum_k(), task, max_shared);
  const auto floss = cuda::floss_candidates(shape, config.floss_k, task, max_shared);
  ASSERT_NE(last(train), train.front().name());
  auto table = std::make_shared<TuningTable>();
  table->origin = "test table";
  table->merge(cuda::current_gpu_name(),
               GpuTuning{"now", "test",
                         {entry("train_step", cuda::train_shape_key(shape, config.batch), last(train), train.front().name()),
                          entry("spectrum", cuda::spectrum_shape_key(shape, config.spectrum_k(), task), last(spectrum),
                                spectrum.front().name()),
                          entry("floss", cuda::floss_shape_key(shape, config.floss_k, task), last(floss),
                                floss.front().name())}});
  auto empty = std::make_shared<TuningTable>();
  empty->origin = "empty table";
  auto tuned = make_cuda_backend(0, table), plain = make_cuda_backend(0, empty);
  RunOptions options;
  options.keep_weights = true;
  const std::string plan = tuned->plan(config, expand_grid(config), options);
  for (const std::string& says : {"romo train_step " + last(train) + " (tuning table (test table, ",
                                  "romo spectrum " + last(spectrum) + " (tuning table", "romo floss " + last(floss),
                                  std::string("2.00x faster than the heuristic's ")})
    EXPECT_NE(plan.find(says), std::string::npos) << says << " in:\n" << plan;
  const std::string plain_plan = plain->plan(config, expand_grid(config), options);
  EXPECT_NE(plain_plan.find("romo train_step " + train.front().name() + " (heuristic: the tuning table (empty table)"),
            std::string::npos)
      << plain_plan;
  // Instances of one kernel compute the same bits, so the results are identical; where the table
  // swaps the register kernel for the general one (the study's shape, on a GPU) they agree to
  // float rounding instead: the losses, as in MatchesTheCpuBackendNetworkByNetwork.
  const bool same_kernel = train.front().registers == train.back().registers;
  const auto a = run(*tuned, config, options), b = run(*plain, config, options);
  ASSERT_EQ(a.size(), b.size());
  for (size_t n = 0; n < a.size(); ++n) {
    if (same_kernel) {
      EXPECT_EQ(a[n].params_final, b[n].params_final) << "network " << n;
    } else {
      ASSERT_EQ(a[n].curve.size(), b[n].curve.size());
      for (size_t i = 0; i < a[n].curve.size(); ++i)
        EXPECT_NEAR(a[n].curve[i].loss, b[n].curve[i].loss, 1e-4 * std::fabs(b[n].curve[i].loss)) << "network " << n;
    }
    EXPECT_EQ(a[n].spectrum_init, b[n].spectrum_init) << "network " << n;
    if (same_kernel) {
      EXPECT_EQ(a[n].spectrum_trained, b[n].spectrum_trained) << "network " << n;
    }
    ASSERT_EQ(a[n].floss_curve.size(), b[n].floss_curve.size());
    for (size_t i = 0; i < a[n].floss_curve.size(); ++i) EXPECT_EQ(a[n].floss_curve[i].loss, b[n].floss_curve[i].loss);
  }
}

// floss_every: flossing episodes during training, before the iterations the CPU flosses at, on
// the network as training left it; with a network that diverges (it stops flossing) and one that
// is resumed further on than the rest of its chunk is not needed here (the resume test has both).
TEST_F(CudaBackend, FlossingDuringTrainingMatchesTheCpu) {
  RNNSWEEP_NEED_DEVICE();
  Config config = small_grid();
  config.tasks = {"romo", "2af"};
  config.rules = {"bptt", "eprop"};
  config.gains = {1.5};
  config.lrs = {3e-3, 1e9};
  config.iters = 7;
  config.floss_every = 3;
  config.floss_iters_each = 2;
  auto cuda = make_cuda_backend();
  auto cpu = make_cpu_backend(1);
  const auto got = run(*cuda, config), want = run(*cpu, config);
  bool any_episode = false, any_diverged = false;
  for (size_t n = 0; n < want.size(); ++n) {
    const std::string what = "network " + std::to_string(n) + (want[n].spec.floss ? " (flossed)" : "");
    EXPECT_EQ(got[n].diverged_at, want[n].diverged_at) << what;
    any_diverged |= want[n].diverged && want[n].spec.floss;
    ASSERT_EQ(got[n].floss_curve.size(), want[n].floss_curve.size()) << what;
    for (size_t i = 0; i < want[n].floss_curve.size(); ++i) {
      const FlossPoint &g = got[n].floss_curve[i], &w = want[n].floss_curve[i];
      EXPECT_EQ(g.training_iteration, w.training_iteration) << what;
      EXPECT_EQ(g.iteration, w.iteration) << what;
      EXPECT_EQ(g.k_used, w.k_used) << what;
      if (std::isfinite(w.loss)) expect_close(g.loss, w.loss, 1e-4, what + " floss curve");
      any_episode |= w.training_iteration > 0;
    }
    ASSERT_EQ(got[n].curve.size(), want[n].curve.size()) << what;
    for (size_t i = 0; i < want[n].curve.size(); ++i)
      expect_close(got[n].curve[i].loss, want[n].curve[i].loss, 1e-4, what + " curve");
    expect_same_spectrum(got[n].spectrum_trained, want[n].spectrum_trained, 1e-3, what + " trained spectrum");
  }
  EXPECT_TRUE(any_episode) << "some network must floss during training, or the test proves nothing";
  EXPECT_TRUE(any_diverged) << "a flossed network must diverge, or the test proves nothing";
}

// eval_every and alignment: the held-out loss and accuracy (the training kernel's loss on the eval
// stream) and the cosine of the local rules' W_h gradient with BPTT's (a launch of the training
// kernel as bptt), as the CPU computes them, also where a network diverges (it has none from its
// diverged_at on) and in a chunk that mixes the rules.
TEST_F(CudaBackend, HeldOutEvaluationAndAlignmentMatchTheCpu) {
  RNNSWEEP_NEED_DEVICE();
  Config config = small_grid();
  config.rules = {"bptt", "eprop", "rflo"};
  config.tasks = {"romo", "dms"};
  config.floss = {false};
  config.gains = {1.5};
  config.lrs = {3e-3, 1e9};
  config.eval_every = 2;
  config.eval_trials = 2 * config.batch;
  config.alignment = true;
  auto cuda = make_cuda_backend();
  auto cpu = make_cpu_backend(1);
  const auto got = run(*cuda, config), want = run(*cpu, config);
  bool any_aligned = false, any_diverged = false;
  for (size_t n = 0; n < want.size(); ++n) {
    const std::string what = "network " + std::to_string(n) + " (" + rule_name(want[n].spec.rule) + ")";
    EXPECT_EQ(got[n].diverged_at, want[n].diverged_at) << what;
    any_diverged |= want[n].diverged;
    ASSERT_EQ(got[n].probes.size(), want[n].probes.size()) << what;
    for (size_t i = 0; i < want[n].probes.size(); ++i) {
      const ProbePoint &g = got[n].probes[i], &w = want[n].probes[i];
      const std::string at = what + " at " + std::to_string(w.iteration);
      EXPECT_EQ(g.iteration, w.iteration) << at;
      EXPECT_EQ(g.evaluated, w.evaluated) << at;
      EXPECT_EQ(g.aligned, w.aligned) << at;
      if (w.evaluated) {
        expect_close(g.eval_loss, w.eval_loss, 1e-4, at + " eval_loss");
        expect_close(g.eval_accuracy, w.eval_accuracy, 1e-6, at + " eval_accuracy");
      }
      if (w.aligned) {
        EXPECT_NEAR(g.alignment, w.alignment, 1e-4) << at;
        any_aligned = true;
      }
    }
    EXPECT_EQ(got[n].evaluated, want[n].evaluated) << what;
    expect_close(got[n].eval_final_loss, want[n].eval_final_loss, 1e-4, what + " eval_final_loss");
    expect_close(got[n].eval_tail_loss, want[n].eval_tail_loss, 1e-4, what + " eval_tail_loss");
  }
  EXPECT_TRUE(any_aligned && any_diverged) << "the grid must have local rules and a diverged network";
}

// File tasks (host/task_file.h) on the device: the pools are copied per chunk and the shared
// generator draws the same rows, so a file task's networks train as on the CPU. Two files: a
// classification of 3 inputs and 3 outputs (the fused instances' choice shape) with an eval
// pool, a regression of 2 inputs and 1 output (the general kernel), and a classification of 1
// input and 2 outputs (romo's shape, so not romo's instance); held-out loss on the eval pool,
// spectra driven by the file's inputs, chunked in two.
TEST_F(CudaBackend, FileTasksMatchTheCpu) {
  RNNSWEEP_NEED_DEVICE();
  const std::string dir = testing::TempDir() + "/rnnsweep_cuda_file_tasks";
  std::filesystem::create_directories(dir);
  const int N = 9, T = 12;
  auto values = [](size_t n, float scale, int seed) {
    std::vector<float> v(n);
    for (size_t i = 0; i < n; ++i) v[i] = scale * std::sin(0.37f * float(i) + float(seed));
    return v;
  };
  std::vector<std::int32_t> labels(size_t(N) * T), labels_eval(size_t(4) * T);
  for (size_t i = 0; i < labels.size(); ++i) labels[i] = i % T < 8 ? 0 : int(1 + (i / T) % 2);
  for (size_t i = 0; i < labels_eval.size(); ++i) labels_eval[i] = i % T < 8 ? 0 : int(2 - (i / T) % 2);
  test::write_npz(dir + "/choice.npz",
                  {test::npy("x", "<f4", {N, T, 3}, values(size_t(N) * T * 3, 1.0f, 0)),
                   test::npy("labels", "<i4", {N, T}, labels),
                   test::npy("x_eval", "<f4", {4, T, 3}, values(size_t(4) * T * 3, 1.0f, 5)),
                   test::npy("labels_eval", "<i4", {4, T}, labels_eval),
                   test::npy("outputs", "<i4", {}, std::vector<std::int32_t>{3}),
                   test::npy("dt_over_tau", "<f8", {}, std::vector<double>{0.2})});
  std::vector<float> mask(size_t(N) * T, 1.0f);
  for (size_t i = 0; i < mask.size(); ++i) mask[i] = i % T < 4 ? 0.0f : 1.0f;
  // a classification at the regression's shape (1 input, 2 outputs): the general kernel, not romo's
  std::vector<std::int32_t> two(size_t(N) * T);
  for (size_t i = 0; i < two.size(); ++i) two[i] = i % T < 6 ? 0 : 1;
  test::write_npz(dir + "/two.npz", {test::npy("x", "<f4", {N, T, 1}, values(size_t(N) * T, 1.0f, 3)),
                                     test::npy("labels", "<i4", {N, T}, two),
                                     test::npy("dt_over_tau", "<f8", {}, std::vector<double>{0.5})});
  test::write_npz(dir + "/regress.npz", {test::npy("x", "<f4", {N, T, 2}, values(size_t(N) * T * 2, 0.8f, 1)),
                                         test::npy("target", "<f4", {N, T, 1}, values(size_t(N) * T, 0.5f, 2)),
                                         test::npy("mask", "<f4", {N, T, 1}, mask)});
  Config config = default_config_with({"tasks=[\"file:choice\", \"file:regress\", \"file:two\"]",
                                       "file.two.path=\"" + dir + "/two.npz\"", "file.choice.path=\"" + dir + "/choice.npz\"",
                                       "file.regress.path=\"" + dir + "/regress.npz\"", "file.regress.dt=10",
                                       "file.regress.tau=50", "file.regress.accuracy=\"response\"", "rules=bptt,eprop,rflo",
                                       "gains=[0.8]", "lrs=[3e-3]", "seeds=[3]", "iters=6", "log_every=2",
                                       "eval_every=2", "le_steps=30", "le_warmup=5", "le_batch=2"});
  // H = 32, batch 16: a shape of the register instances, which file:choice (3 and 3, cross-entropy)
  // takes and file:two (1 and 2, cross-entropy) must not
  config.hidden = 32;
  config.batch = 16;
  config.eval_trials = 2 * config.batch;
  cudaDeviceProp prop;
  ASSERT_EQ(cudaGetDeviceProperties(&prop, 0), cudaSuccess);
  EXPECT_TRUE(cuda::plan_train_step(Shape{32, 3, 3, false}, 16, T, prop.sharedMemPerBlockOptin, cuda::Precision::fp32, true)
                  .registers);
  EXPECT_FALSE(cuda::plan_train_step(Shape{32, 1, 2, false}, 16, T, prop.sharedMemPerBlockOptin, cuda::Precision::fp32, true)
                   .registers);
  auto cuda = make_cuda_backend(2);
  auto cpu = make_cpu_backend(1);
  const auto got = run(*cuda, config), want = run(*cpu, config);
  ASSERT_EQ(got.size(), 9u);
  for (size_t n = 0; n < want.size(); ++n) {
    const NetworkResult &g = got[n], &w = want[n];
    const std::string what = "network " + std::to_string(n) + " (" + task_label(w.spec) + ", " + rule_name(w.spec.rule) + ")";
    ASSERT_EQ(g.spec.id, w.spec.id);
    ASSERT_EQ(g.curve.size(), w.curve.size()) << what;
    for (size_t i = 0; i < w.curve.size(); ++i) {
      expect_close(g.curve[i].loss, w.curve[i].loss, 1e-4, what + " curve loss");
      expect_close(g.curve[i].accuracy, w.curve[i].accuracy, 1e-6, what + " curve accuracy");
    }
    EXPECT_NE(w.curve.front().loss, w.curve.back().loss) << what << ": training moves the loss";
    ASSERT_EQ(g.probes.size(), w.probes.size()) << what;
    for (size_t i = 0; i < w.probes.size(); ++i)
      if (w.probes[i].evaluated) expect_close(g.probes[i].eval_loss, w.probes[i].eval_loss, 1e-4, what + " eval_loss");
    expect_same_spectrum(g.spectrum_init, w.spectrum_init, 1e-9, what + " init spectrum");
    expect_same_spectrum(g.spectrum_trained, w.spectrum_trained, 1e-3, what + " trained spectrum");
  }
}

TEST_F(CudaBackend, AStoppedChunkResumesFromItsCheckpointsExactly) {
  RNNSWEEP_NEED_DEVICE();
  Config config = small_grid();
  config.tasks = {"romo"};
  config.rules = {"bptt", "eprop"};
  config.iters = 40;
  config.log_every = 5;
  config.le_every = 15;  // tracked spectra at 0 before the stop, 15, 30 and 40 after it
  config.floss_every = 8;  // flossing episodes at 8 before the stop, 16, 24 and 32 after it
  config.floss_iters_each = 2;
  config.eval_every = 10;
  config.eval_trials = config.batch;
  config.alignment = true;
  RunOptions options;
  options.keep_weights = true;
  auto cuda = make_cuda_backend();
  const auto reference = run(*cuda, config, options);

  // The first checkpoint (iteration 10 of 40) raises the stop flag, which the backend sees at
  // the next window boundary (15, where a window ends before a tracked spectrum): it
  // checkpoints there and returns with the chunk in flight.
  std::atomic<bool> stop{false};
  std::map<long, NetworkCheckpoint> saved;
  RunControl control;
  control.stop = &stop;
  control.checkpoint_every = 10;
  control.checkpoint = [&](const NetworkCheckpoint& c) {
    saved[c.id] = c;
    stop = true;
  };
  options.control = &control;
  Progress progress;
  const auto stopped = cuda->train(config, expand_grid(config), options, progress);
  ASSERT_EQ(saved.size(), stopped.size());
  for (const auto& r : stopped) EXPECT_TRUE(r.interrupted);
  EXPECT_EQ(saved.begin()->second.iteration, 15);
  EXPECT_EQ(saved.begin()->second.tracked.size(), 1u) << "the tracked spectrum at 0 is in the checkpoint";
  for (const auto& [id, c] : saved)
    if (expand_grid(config).at(id).floss) {
      ASSERT_FALSE(c.floss_curve.empty());
      EXPECT_EQ(c.floss_curve.back().training_iteration, 8) << "the episode before iteration 8 is in the checkpoint";
    }

  RunControl resume;
  resume.resume = [&](long id) -> std::optional<NetworkCheckpoint> { return saved.at(id); };
  options.control = &resume;
  const auto resumed = run(*cuda, config, options);
  ASSERT_EQ(resumed.size(), reference.size());
  for (size_t n = 0; n < reference.size(); ++n) {
    // Same trials, same Adam steps (bias corrections from the same std::pow): bit for bit.
    EXPECT_EQ(resumed[n].params_final, reference[n].params_final) << "network " << n;
    ASSERT_EQ(resumed[n].curve.size(), reference[n].curve.size());
    for (size_t i = 0; i < reference[n].curve.size(); ++i)
      EXPECT_EQ(resumed[n].curve[i].loss, reference[n].curve[i].loss) << "network " << n;
    EXPECT_EQ(resumed[n].tail_loss, reference[n].tail_loss);
    EXPECT_EQ(resumed[n].spectrum_init, reference[n].spectrum_init);
    EXPECT_EQ(resumed[n].spectrum_trained, reference[n].spectrum_trained);
    ASSERT_EQ(resumed[n].floss_curve.size(), reference[n].floss_curve.size());
    ASSERT_EQ(resumed[n].probes.size(), reference[n].probes.size()) << "network " << n;
    for (size_t i = 0; i < reference[n].probes.size(); ++i) {
      EXPECT_EQ(resumed[n].probes[i].iteration, reference[n].probes[i].iteration);
      auto same = [](double a, double b) { return (std::isnan(a) && std::isnan(b)) || a == b; };  // NaN: not measured
      EXPECT_TRUE(same(resumed[n].probes[i].eval_loss, reference[n].probes[i].eval_loss)) << "network " << n;
      EXPECT_TRUE(same(resumed[n].probes[i].alignment, reference[n].probes[i].alignment)) << "network " << n;
    }
    EXPECT_EQ(resumed[n].eval_tail_loss, reference[n].eval_tail_loss);
    for (size_t i = 0; i < reference[n].floss_curve.size(); ++i) {
      EXPECT_EQ(resumed[n].floss_curve[i].training_iteration, reference[n].floss_curve[i].training_iteration);
      EXPECT_EQ(resumed[n].floss_curve[i].loss, reference[n].floss_curve[i].loss) << "network " << n;
    }
    ASSERT_EQ(resumed[n].tracked.size(), reference[n].tracked.size()) << "network " << n;
    for (size_t i = 0; i < reference[n].tracked.size(); ++i) {
      EXPECT_EQ(resumed[n].tracked[i].iteration, reference[n].tracked[i].iteration);
      EXPECT_EQ(resumed[n].tracked[i].lambda, reference[n].tracked[i].lambda) << "network " << n;
    }
  }
}

// The rows of a CSV file, each split at commas (no quoting in our tables).
std::vector<std::vector<std::string>> read_csv(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::vector<std::string>> rows;
  for (std::string line; std::getline(in, line);) {
    std::vector<std::string> cells;
    std::stringstream ss(line);
    for (std::string cell; std::getline(ss, cell, ',');) cells.push_back(cell);
    if (!line.empty() && line.back() == ',') cells.push_back("");
    rows.push_back(cells);
  }
  return rows;
}

std::string file_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST_F(CudaBackend, NetworksCsvOfTheQuickConfigAgreesColumnByColumn) {
  RNNSWEEP_NEED_DEVICE();
  // configs/quick.toml with fewer iterations and (on the emulator) smaller networks and grid.
  std::vector<std::string> overrides = {"iters=8",       "log_every=4",    "le_steps=40",    "le_warmup=10",
                                        "floss_iters=3", "floss_steps=10", "floss_warmup=5", "floss_k=4"};
  if (test::kEmulated)
    for (const char* o : {"gains=[0.2,2.0]", "lrs=[3e-3]", "seeds=[0]", "hidden=16", "batch=4"})
      overrides.push_back(o);
  const Config config = load_config(std::string(RNNSWEEP_SOURCE_DIR) + "/configs/quick.toml", overrides);
  const std::string dir = testing::TempDir() + "/rnnsweep_cuda_quick";
  std::filesystem::create_directories(dir);
  auto cuda = make_cuda_backend();
  auto cpu = make_cpu_backend(2);
  write_networks_csv(dir + "/cuda.csv", run(*cuda, config));
  write_networks_csv(dir + "/cpu.csv", run(*cpu, config));
  write_networks_csv(dir + "/cuda_again.csv", run(*cuda, config));
  EXPECT_EQ(file_text(dir + "/cuda.csv"), file_text(dir + "/cuda_again.csv"))
      << "same config twice: identical files";

  const auto got = read_csv(dir + "/cuda.csv"), want = read_csv(dir + "/cpu.csv");
  ASSERT_EQ(got.size(), want.size());
  ASSERT_EQ(got[0], want[0]) << "the same columns";
  const std::vector<std::string>& header = want[0];
  for (size_t row = 1; row < want.size(); ++row) {
    ASSERT_EQ(got[row].size(), header.size());
    for (size_t col = 0; col < header.size(); ++col) {
      const std::string& name = header[col];
      const std::string what = name + " of network " + want[row][0];
      const std::string &g = got[row][col], &w = want[row][col];
      if (g == w) continue;
      // Everything but the measured numbers must be the same text: ids, coordinates, status.
      const bool measured = name.find("loss") != std::string::npos ||
                            name.find("accuracy") != std::string::npos ||
                            name.find("max_le") != std::string::npos;
      ASSERT_TRUE(measured && !g.empty() && !w.empty()) << what << ": '" << g << "' vs '" << w << "'";
      const double gv = std::stod(g), wv = std::stod(w);
      // Losses after a few float Adam steps agree to ~1e-6 relative; accuracies may differ by a
      // trial where an output is a near-tie; max LE of trained or flossed weights to ~1e-4.
      const double tolerance = name.find("accuracy") != std::string::npos ? 1.0 / config.batch + 1e-12
                               : name.find("max_le") != std::string::npos ? 1e-3 * (1 + std::fabs(wv))
                                                                          : 1e-4 * (1 + std::fabs(wv));
      EXPECT_NEAR(gv, wv, tolerance) << what;
    }
  }
}

}  // namespace
