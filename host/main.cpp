// rnnsweep: the command line. Only this file turns exceptions into messages and exit codes:
// 2 for bad input (always before any training starts), 3 for a run interrupted by a signal
// after checkpointing (resume it), 1 for anything else.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "host/cpu/tasks.h"
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
  std::string task, out, config_path;
  std::vector<std::string> overrides;
  long data_seed = 0, iteration = 0;
  int batch = 1;
};

int write_trials(const TrialsArgs& args) {
  const Config config = args.config_path.empty() ? default_config_with(args.overrides)
                                                 : load_config(args.config_path, args.overrides);
  const TaskParams& task = config.task(parse_task(args.task));
  if (args.data_seed < 0 || args.data_seed > 4294967295L)
    throw UsageError("--data-seed " + std::to_string(args.data_seed) + ": allowed: an integer in [0, 2^32)");
  if (args.iteration < 0 || args.iteration > 4294967295L)
    throw UsageError("--iteration " + std::to_string(args.iteration) + ": allowed: an integer in [0, 2^32)");
  if (args.batch < 1)
    throw UsageError("--batch " + std::to_string(args.batch) + ": allowed: an integer >= 1");
  if (fs::exists(args.out))
    throw UsageError("--out '" + args.out + "' already exists; it is never overwritten");
  const cpu::Trials t = cpu::training_trials(task, static_cast<std::uint32_t>(args.data_seed),
                                             static_cast<std::uint32_t>(args.iteration), args.batch);
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

int main(int argc, char** argv) {
  std::string command_line;
  for (int i = 0; i < argc; ++i) command_line += (i ? " " : "") + std::string(argv[i]);

  CLI::App app{"rnnsweep: train a grid of small recurrent networks at once"};
  app.set_version_flag("--version", RNNSWEEP_VERSION);
  app.require_subcommand(1);

  SweepArgs run_args, lyap_args, plan_args;
  lyap_args.spectra_only = true;
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

  TrialsArgs trials_args;
  CLI::App* trials = app.add_subcommand("trials", "write the trials a data seed trains on at one iteration");
  trials->add_option("--task", trials_args.task, "romo | 2af | dms")->required();
  trials->add_option("--data-seed", trials_args.data_seed, "data seed")->required();
  trials->add_option("--iteration", trials_args.iteration, "training iteration")->required();
  trials->add_option("--batch", trials_args.batch, "trials in the batch")->required();
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
    for (CLI::App* sub : {run, lyap, plan, merge, tables, trials, tune})
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
    if (tune->parsed()) {
      tune_kernels(tune_args);
      return 0;
    }
    return write_trials(trials_args);
  } catch (const CLI::Success& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "rnnsweep: error: %s (see rnnsweep --help)\n", e.what());
    return 2;
  } catch (const UsageError& e) {
    std::fprintf(stderr, "rnnsweep: error: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rnnsweep: failed: %s\n", e.what());
    return 1;
  }
}
