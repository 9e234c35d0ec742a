// rnnsweep._rnnsweep: the commands of host/cli.cpp in-process, for the Python package
// (python/rnnsweep/__init__.py). The package runs `command` on a thread of its own, with the GIL
// released, and polls `progress` for its tqdm bar and for Ctrl-C, which it turns into `stop`:
// the same checkpoint-and-return path as SIGINT in the command-line tool.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "host/cli.h"
#include "host/cpu/tasks.h"
#include "host/sweep.h"
#include "rnnsweep/config.h"

namespace nb = nanobind;
using namespace rnnsweep;

namespace {

// `rnnsweep ARGS...` (without the program name); returns the exit code (0, or 3: interrupted).
// Bad input raises ValueError with the command line's one-line message, before anything is written.
int command(std::vector<std::string> args) {
  args.insert(args.begin(), "rnnsweep");
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  nb::gil_scoped_release release;
  return run_cli(int(args.size()), argv.data(), /*embedded=*/true);
}

std::optional<std::pair<long long, long long>> progress() {
  long long done = 0, total = 0;
  if (!run_progress(done, total)) return std::nullopt;
  return std::make_pair(done, total);
}

// A float or int array of `shape` that owns its copy of `values` (numpy frees it).
template <typename T>
nb::ndarray<nb::numpy, T> array(std::vector<T> values, std::vector<size_t> shape) {
  auto* owned = new std::vector<T>(std::move(values));
  nb::capsule owner(owned, [](void* p) noexcept { delete static_cast<std::vector<T>*>(p); });
  return nb::ndarray<nb::numpy, T>(owned->data(), shape.size(), shape.data(), owner);
}

// Trial-major copies (trial, step, channel) of a batch held step-major (host/cpu/tasks.h).
template <typename T>
std::vector<T> by_trial(const std::vector<T>& step_major, int steps, int trials, int channels) {
  std::vector<T> out(step_major.size());
  for (int t = 0; t < steps; ++t)
    for (int b = 0; b < trials; ++b)
      for (int c = 0; c < channels; ++c)
        out[(size_t(b) * steps + t) * channels + c] = step_major[(size_t(t) * trials + b) * channels + c];
  return out;
}

// The training batch of `iteration` under `data_seed`: the trials a network with that data seed
// trains on there (the `rnnsweep trials` command's numbers), as numpy arrays (batch, T, ...).
nb::dict trials(const std::string& task, long data_seed, long iteration, int batch, const std::string& config_path,
                const std::vector<std::string>& overrides) {
  if (data_seed < 0 || data_seed > 4294967295L) throw UsageError("data_seed: allowed: an integer in [0, 2^32)");
  if (iteration < 0 || iteration > 4294967295L) throw UsageError("iteration: allowed: an integer in [0, 2^32)");
  if (batch < 1 || batch > (1 << 24)) throw UsageError("batch: allowed: an integer in [1, 2^24]");
  const Config config = config_path.empty() ? default_config_with(overrides) : load_config(config_path, overrides);
  const TaskParams& params = config.task_named(task);
  cpu::Trials t;
  cpu::fill_trials(params, Purpose::trials, std::uint32_t(data_seed), std::uint32_t(iteration), batch, t);
  const size_t B = size_t(batch), T = size_t(t.T);
  nb::dict out;
  out["x"] = array(by_trial(t.x, t.T, batch, t.I), {B, T, size_t(t.I)});
  if (params.classification()) {
    out["label"] = array(by_trial(t.label, t.T, batch, 1), {B, T});
  } else {
    out["target"] = array(by_trial(t.target, t.T, batch, t.O), {B, T, size_t(t.O)});
    out["mask"] = array(by_trial(t.mask, t.T, batch, t.O), {B, T, size_t(t.O)});
  }
  out["leak"] = params.leak();
  return out;
}

}  // namespace

NB_MODULE(_rnnsweep, m) {
  m.doc() = "rnnsweep's commands in-process (used by the rnnsweep package; see help(rnnsweep))";
  nb::register_exception_translator([](const std::exception_ptr& p, void*) {
    try {
      std::rethrow_exception(p);
    } catch (const UsageError& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    }
  });
  m.def("command", &command, nb::arg("args"), "Runs `rnnsweep ARGS...`; returns its exit code (3: interrupted).");
  m.def("progress", &progress, "(done, announced) work units of the run in progress, or None.");
  m.def("stop", [] { request_run_stop(true); }, "Stops the run in progress after checkpointing, as SIGINT.");
  m.def("reset", [] { request_run_stop(false); }, "Clears a stop request (before a run starts).");
  m.def("last_run_dir", &last_run_dir, "The results folder of the last run started.");
  m.def("trials", &trials, nb::arg("task"), nb::arg("data_seed"), nb::arg("iteration"), nb::arg("batch"),
        nb::arg("config_path") = "", nb::arg("overrides") = std::vector<std::string>{});
  m.attr("__version__") = RNNSWEEP_VERSION;
}
