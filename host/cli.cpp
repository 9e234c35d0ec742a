// rnnsweep: the command line, for the executable (host/main.cpp) and the Python package
// (python/_rnnsweep.cpp), which run the same commands in-process. Only this file turns
// exceptions into messages and exit codes: 2 for bad input (always before any training starts),
// 3 for a run interrupted by a signal after checkpointing (resume it), 1 for anything else.
#include "host/cli.h"

#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "host/cpu/tasks.h"
#include "host/evaluate.h"
#include "host/sweep.h"
#include "host/writers.h"
#include "rnnsweep/backend.h"
#include "rnnsweep/config.h"
#include "rnnsweep/grid.h"

#ifndef RNNSWEEP_VERSION
#define RNNSWEEP_VERSION "unknown"
#endif

namespace fs = std::filesystem;
using namespace rnnsweep;

namespace {

struct TrialsArgs {
  std::string task, out, config_path, stream = "training";
  std::vector<std::string> overrides;
  long data_seed = -1, seed = -1, iteration = -1, trajectory = -1;
  int batch = 0;
};

// `rnnsweep trials`: the inputs (and targets) of one of a network's three trial streams, so that
// every number of a run can be recomputed outside rnnsweep (docs/model.md, section 3):
//   training  batch `iteration` of (trials, data seed): the B trials trained on at that iteration
//   spectrum  trajectory `trajectory` of (lyapunov_trials, seed): the trials laid back to back
//             that drive it (the same for the initial, flossed and trained spectra)
//   floss     flossing iteration `iteration` of (floss_trials, seed): the trials of its trajectory
int write_trials(const TrialsArgs& args) {
  const Config config = args.config_path.empty() ? default_config_with(args.overrides)
                                                 : load_config(args.config_path, args.overrides);
  const TaskParams& task = config.task_named(args.task);
  auto counter = [](long v, const std::string& flag) {
    if (v < 0 || v > 4294967295L)
      throw UsageError(flag + " " + std::to_string(v) + ": allowed: an integer in [0, 2^32)");
    return static_cast<std::uint32_t>(v);
  };
  auto require = [&](long v, const std::string& flag) {
    if (v == -1) throw UsageError("trials --stream " + args.stream + " needs " + flag);
  };
  auto refuse = [&](bool given, const std::string& flag, const std::string& use) {
    if (given) throw UsageError("trials --stream " + args.stream + " takes no " + flag + " (" + use + ")");
  };
  Purpose purpose;
  std::uint32_t key = 0, index = 0;
  int batch = 0;
  // the trials a trajectory of warmup + steps steps runs through, T steps each
  auto chain = [&](long steps) { return int((steps + task.T() - 1) / task.T()); };
  if (args.stream == "training") {
    refuse(args.seed != -1, "--seed", "training trials are keyed by --data-seed");
    refuse(args.trajectory != -1, "--trajectory", "use --iteration");
    require(args.data_seed, "--data-seed");
    require(args.iteration, "--iteration");
    if (args.batch < 1) throw UsageError("--batch " + std::to_string(args.batch) + ": allowed: an integer >= 1");
    purpose = Purpose::trials, key = counter(args.data_seed, "--data-seed"), index = counter(args.iteration, "--iteration");
    batch = args.batch;
  } else if (args.stream == "spectrum" || args.stream == "floss") {
    const bool spectrum = args.stream == "spectrum";
    refuse(args.data_seed != -1, "--data-seed", "its trials are keyed by the network's --seed");
    refuse(spectrum ? args.iteration != -1 : args.trajectory != -1, spectrum ? "--iteration" : "--trajectory",
           spectrum ? "use --trajectory, 0 .. le_batch - 1" : "use --iteration, the flossing iteration");
    refuse(args.batch != 0, "--batch", "the trials of one trajectory, set by the config's steps");
    require(args.seed, "--seed");
    require(spectrum ? args.trajectory : args.iteration, spectrum ? "--trajectory" : "--iteration");
    purpose = spectrum ? Purpose::lyapunov_trials : Purpose::floss_trials;
    key = counter(args.seed, "--seed");
    index = counter(spectrum ? args.trajectory : args.iteration, spectrum ? "--trajectory" : "--iteration");
    batch = spectrum ? chain(config.le_warmup + config.le_steps) : chain(config.floss_warmup + config.floss_steps);
  } else {
    throw UsageError("--stream '" + args.stream + "': allowed: training | spectrum | floss");
  }
  if (fs::exists(args.out))
    throw UsageError("--out '" + args.out + "' already exists; it is never overwritten");
  cpu::Trials t;
  cpu::fill_trials(task, purpose, key, index, batch, t);
  std::ofstream o(args.out);
  if (!o) throw UsageError("--out '" + args.out + "': cannot write");
  o << "trial,step";
  for (int i = 0; i < t.I; ++i) o << ",x" << i;
  if (task.classification())
    o << ",label";
  else
    for (const char* col : {"target", "mask"})
      for (int k = 0; k < t.O; ++k) o << ',' << col << k;
  o << '\n';
  for (int b = 0; b < t.Bt; ++b)
    for (int s = 0; s < t.T; ++s) {
      const size_t row = size_t(s) * t.Bt + b;
      o << b << ',' << s;
      for (int i = 0; i < t.I; ++i) o << ',' << format_number(t.x[row * t.I + i]);
      if (task.classification())
        o << ',' << t.label[row];
      else {
        for (int k = 0; k < t.O; ++k) o << ',' << format_number(t.target[row * t.O + k]);
        for (int k = 0; k < t.O; ++k) o << ',' << format_number(t.mask[row * t.O + k]);
      }
      o << '\n';
    }
  return 0;
}

// CLI11 collects unexpected arguments when extras are allowed; we name the first unknown flag
// and the closest valid one ourselves.
void reject_extras(const CLI::App& sub) {
  const auto extras = sub.remaining();
  if (extras.empty()) return;
  std::vector<std::string> flags;
  for (const CLI::Option* opt : sub.get_options())
    for (const auto& n : opt->get_lnames()) flags.push_back("--" + n);
  const std::string& bad = extras.front();
  std::string msg = "unknown argument '" + bad + "' for 'rnnsweep " + sub.get_name() + "'";
  const std::string near = nearest(bad.substr(0, bad.find('=')), flags);
  if (bad.rfind("-", 0) != 0 && bad.find('=') != std::string::npos)
    // `--set iters=10 lrs=1e-3`: one key=value per --set, so that a CONFIG after --set stays
    // the positional
    msg += "; give each key=value its own --set: --set iters=10 --set lrs=1e-3";
  else if (!near.empty())
    msg += "; did you mean '" + near + "'?";
  msg += " (see rnnsweep " + sub.get_name() + " --help)";
  throw UsageError(msg);
}

}  // namespace

namespace rnnsweep {

int run_cli(int argc, char** argv, bool embedded) {
  std::string command_line;
  for (int i = 0; i < argc; ++i) command_line += (i ? " " : "") + std::string(argv[i]);

  CLI::App app{"rnnsweep: train a grid of small recurrent networks at once"};
  app.set_version_flag("--version", RNNSWEEP_VERSION);
  app.require_subcommand(1);

  SweepArgs run_args, lyap_args, plan_args;
  lyap_args.spectra_only = true;
  run_args.embedded = lyap_args.embedded = embedded;
  auto add_sweep_options = [](CLI::App* sub, SweepArgs& a, bool config_required) {
    auto* config = sub->add_option("config", a.config_path, "config file (TOML), e.g. configs/quick.toml");
    if (config_required) config->required();
    // one value per --set, so that `run --set iters=5 CONFIG` leaves CONFIG to the positional
    sub->add_option("--set", a.overrides, "override a config key, one per --set: --set iters=200 --set lrs=[1e-3]")
        ->type_name("KEY=VALUE")
        ->allow_extra_args(false);
    sub->add_option(
        "--backend", a.backend,
        "auto (CUDA where a GPU is usable, else CPU; the default) | cpu | cuda; with --resume the "
        "run's own by default");
    sub->add_option("--threads", a.threads, "CPU threads (0: all cores)");
    sub->add_option("--shard", a.shard,
                    "run slice I of N of the grid (I/N, 0 <= I < N); inside a Slurm array task it is taken "
                    "from SLURM_ARRAY_TASK_ID/_MIN/_COUNT by default");
    sub->allow_extras();
  };
  auto add_output_options = [](CLI::App* sub, SweepArgs& a) {
    sub->add_option("--out", a.out, "output folder (default: results/<config>-<time>[-shard<I>of<N>])");
    sub->add_flag("--force", a.force, "replace the results already in --out");
    sub->add_flag("--quiet", a.quiet, "no progress line");
    sub->add_option("--progress-every", a.progress_every,
                    "seconds between progress lines (default: 1 on a terminal, in place; 10 otherwise, one "
                    "plain line each, as in a batch job's log)");
  };
  CLI::App* run = app.add_subcommand("run", "train every network of a grid and write its results");
  add_sweep_options(run, run_args, false);
  add_output_options(run, run_args);
  run->add_flag("--save-weights", run_args.save_weights, "write initial and final W_h, W_x, w as .npy");
  run->add_option("--resume", run_args.resume_dir,
                  "continue the interrupted or killed run in this folder (its config, shard and options)");
  CLI::App* lyap = app.add_subcommand("lyapunov", "only the Lyapunov spectra of a grid's initial networks");
  add_sweep_options(lyap, lyap_args, true);
  add_output_options(lyap, lyap_args);
  CLI::App* plan = app.add_subcommand(
      "plan", "print the grid size, memory, chunking and a time estimate (from a short calibration run)");
  add_sweep_options(plan, plan_args, true);

  std::vector<std::string> merge_dirs;
  std::string merge_out;
  bool merge_force = false;
  CLI::App* merge = app.add_subcommand("merge", "join the shards of one config into one result");
  merge->add_option("shards", merge_dirs, "the shards' result folders (any order)")->required();
  merge->add_option("--out", merge_out, "output folder")->required();
  merge->add_flag("--force", merge_force, "replace the results already in --out");
  merge->allow_extras();

  std::string tables_dir, tables_out;
  CLI::App* tables = app.add_subcommand(
      "tables", "write the tables of an unfinished run's finished networks (into DIR/partial), while it runs");
  tables->add_option("dir", tables_dir, "the run's results folder")->required();
  tables->add_option("--out", tables_out, "write them here instead of DIR/partial (refreshed on each call)");
  tables->allow_extras();

  EvaluateArgs eval_args;
  bool no_states = false;
  CLI::App* evaluate = app.add_subcommand(
      "evaluate", "run a results folder's saved networks (run --save-weights) on fresh trials: inputs, hidden "
                  "states and outputs as .npy, loss, accuracy and a psychometric table per network");
  evaluate->add_option("dir", eval_args.dir, "the results folder")->required();
  evaluate->add_option("--networks", eval_args.networks,
                       "ids to evaluate, e.g. 0,3,10-19 (default: every network with saved weights)");
  evaluate->add_option("--trials", eval_args.trials, "fresh trials per task (default 256)");
  evaluate->add_option("--data-seed", eval_args.data_seed,
                       "seed of the fresh trials (default 0; the same trials for every network of a task)");
  evaluate->add_option("--stage", eval_args.stage, "final (default) | init | both: the trained or the initial networks");
  evaluate->add_flag("--no-states", no_states, "leave out the hidden states (the largest files)");
  evaluate->add_option("--out", eval_args.out, "output folder (default DIR/evaluate)");
  evaluate->add_flag("--force", eval_args.force, "replace an earlier evaluation in --out");
  evaluate->add_option("--threads", eval_args.threads, "CPU threads (0: all cores)");
  evaluate->allow_extras();

  TrialsArgs trials_args;
  CLI::App* trials = app.add_subcommand(
      "trials", "write the trials of one of a network's streams: training batches, spectrum or flossing trajectories");
  trials->add_option("--task", trials_args.task, "romo | 2af | dms | file:NAME (a file task of --config)")->required();
  trials->add_option("--stream", trials_args.stream,
                     "training (default: --data-seed, --iteration, --batch) | spectrum (--seed, --trajectory) | "
                     "floss (--seed, --iteration)");
  trials->add_option("--data-seed", trials_args.data_seed, "data seed (training)");
  trials->add_option("--seed", trials_args.seed, "the network's seed (spectrum, floss)");
  trials->add_option("--iteration", trials_args.iteration, "training or flossing iteration");
  trials->add_option("--trajectory", trials_args.trajectory, "spectrum trajectory, 0 .. le_batch - 1");
  trials->add_option("--batch", trials_args.batch, "trials in the batch (training)");
  trials->add_option("--out", trials_args.out, "CSV file to write (must not exist)")->required();
  trials->add_option("--config", trials_args.config_path, "take task parameters from this config");
  trials->add_option("--set", trials_args.overrides, "override a config key (task parameters), one per --set")
      ->type_name("KEY=VALUE")
      ->allow_extra_args(false);
  trials->allow_extras();

  TuneArgs tune_args;
  CLI::App* tune = app.add_subcommand(
      "tune", "time every kernel instance on this GPU and write the fastest into a tuning table (JSON)");
  tune->add_option("--out", tune_args.out, "tuning table to write (an existing one is merged into)")->required();
  tune->add_option("--shapes", tune_args.shapes, "all (default) | paper | TASK:H:BATCH,...");
  tune->add_option("--networks", tune_args.networks, "networks per launch (default 1024)");
  tune->add_option("--launches", tune_args.launches, "timed launches per instance (default 3)");
  tune->add_flag("--quiet", tune_args.quiet, "no line per instance timed");
  tune->allow_extras();

  try {
    app.parse(argc, argv);
    for (CLI::App* sub : {run, lyap, plan, merge, tables, trials, tune, evaluate})
      if (sub->parsed()) reject_extras(*sub);
    if (run->parsed()) {
      // --resume takes everything from the folder; a config or grid options would be ignored
      if (run_args.resume_dir.empty() == run_args.config_path.empty())
        throw UsageError(run_args.resume_dir.empty()
                             ? "run: name a config file (or --resume DIR to continue a run)"
                             : "run --resume takes its config, shard and options from the folder; drop the "
                               "config file and --set/--shard/--out/--save-weights");
      if (!run_args.resume_dir.empty() && (!run_args.overrides.empty() || !run_args.shard.empty() ||
                                           !run_args.out.empty() || run_args.save_weights || run_args.force))
        throw UsageError(
            "run --resume takes its config, shard and options from the folder; drop --set/--shard/--out/"
            "--save-weights/--force");
      return run_sweep(run_args, command_line);
    }
    if (lyap->parsed()) return run_sweep(lyap_args, command_line);
    if (plan->parsed()) return plan_sweep(plan_args);
    if (merge->parsed()) return merge_runs(merge_dirs, merge_out, merge_force, command_line);
    if (tables->parsed()) return write_tables_so_far(tables_dir, tables_out);
    if (evaluate->parsed()) {
      eval_args.states = !no_states;
      return evaluate_networks(eval_args, command_line);
    }
    if (tune->parsed()) {
      tune_kernels(tune_args);
      return 0;
    }
    return write_trials(trials_args);
  } catch (const CLI::Success& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    if (embedded) throw UsageError(std::string(e.what()) + " (see rnnsweep --help)");
    std::fprintf(stderr, "rnnsweep: error: %s (see rnnsweep --help)\n", e.what());
    return 2;
  } catch (const UsageError& e) {
    if (embedded) throw;
    std::fprintf(stderr, "rnnsweep: error: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    if (embedded) throw;
    std::fprintf(stderr, "rnnsweep: failed: %s\n", e.what());
    return 1;
  }
}

}  // namespace rnnsweep
