// `rnnsweep evaluate`: saved networks on fresh trials (host/evaluate.h). What it writes, and the
// choice rule of the psychometric table, are documented in docs/model.md, section 6.
#include "host/evaluate.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "host/cpu/model.h"
#include "host/cpu/tasks.h"
#include "host/progress.h"
#include "host/run_store.h"
#include "host/sweep.h"
#include "host/writers.h"
#include "rnnsweep/config.h"
#include "rnnsweep/grid.h"

// RNNSWEEP_VERSION comes from rnnsweep_core's compile definitions (CMakeLists.txt).
namespace fs = std::filesystem;

namespace rnnsweep {
namespace {

using json = nlohmann::json;

// "0,3,10-19": the ids in the order given; a repeated id, a reversed range or text that is
// not an id is refused.
std::vector<long> parse_ids(const std::string& list) {
  auto bad = [&](const std::string& part) {
    return UsageError("--networks '" + list + "': '" + part +
                      "' is not an id or a range; allowed: ids and ranges, e.g. 0,3,10-19");
  };
  auto number = [&](const std::string& text, const std::string& part) {
    if (text.empty() || text.find_first_not_of("0123456789") != std::string::npos || text.size() > 12) throw bad(part);
    return std::stol(text);
  };
  std::vector<long> ids;
  std::set<long> seen;
  std::stringstream in(list);
  for (std::string part; std::getline(in, part, ',');) {
    const size_t dash = part.find('-');
    const long first = number(part.substr(0, dash), part);
    const long last = dash == std::string::npos ? first : number(part.substr(dash + 1), part);
    if (last < first) throw bad(part);
    for (long id = first; id <= last; ++id) {
      if (!seen.insert(id).second) throw UsageError("--networks '" + list + "': network " + std::to_string(id) + " appears twice");
      ids.push_back(id);
    }
  }
  if (ids.empty()) throw bad(list);
  return ids;
}

// One network at one stage, its parameters read back from weights/.
struct Job {
  NetworkSpec spec;
  Shape shape;
  std::string stage;
  std::vector<float> params;
};

std::string weights_stem(const std::string& dir, long id, const std::string& stage) {
  return dir + "/weights/net" + std::to_string(id) + "_" + stage + "_";
}

std::vector<float> read_params(const std::string& dir, const NetworkSpec& n, const Shape& s, const std::string& stage) {
  const ParamLayout L(s);
  std::vector<float> p(L.size);
  const std::string stem = weights_stem(dir, n.id, stage);
  auto put = [&](const char* name, int offset, int rows, int cols) {
    const std::vector<float> m = read_npy_matrix(stem + name + ".npy", rows, cols);
    std::copy(m.begin(), m.end(), p.begin() + offset);
  };
  put("W_h", L.W_h, s.H, s.H);
  put("W_x", L.W_x, s.H, s.I);
  put("w", L.w, s.O, s.H);
  if (s.bias) {
    put("b", L.b, s.H, 1);
    put("b_out", L.b_out, s.O, 1);
  }
  return p;
}

// Step-major [t][b][c] (the trainer's layout) to trial-major [b][t][c] (the files' N x T x C).
template <typename V>
std::vector<V> by_trial(const V* step_major, int T, int Bt, int C) {
  std::vector<V> out(size_t(T) * Bt * C);
  for (int t = 0; t < T; ++t)
    for (int b = 0; b < Bt; ++b)
      for (int c = 0; c < C; ++c) out[(size_t(b) * T + t) * C + c] = step_major[(size_t(t) * Bt + b) * C + c];
  return out;
}

// The fresh trials of one task: batch 0 of Purpose::evaluate_trials under --data-seed.
struct TaskTrials {
  cpu::Trials trials;
  std::vector<TrialConditions> conditions;
};

TaskTrials draw_trials(const TaskParams& task, std::uint32_t data_seed, int n) {
  TaskTrials out;
  cpu::shape_trials(task, n, out.trials);
  out.conditions.resize(n);
  const TrialView view = cpu::view_of(out.trials);
  const Philox rng(Purpose::evaluate_trials, data_seed);
  for (int b = 0; b < n; ++b) generate_trial(task, rng, 0, b, view, -1, &out.conditions[b]);
  return out;
}

// Each trial's choice. romo: the output channel with the larger mean over the response period
// (the rule of its accuracy in training); 2af and dms: the decision output (fixation, output 0,
// excluded) with the larger mean over the decision steps (label != 0).
std::vector<int> choices(const cpu::Trials& tr, const cpu::Mat<float>& y) {
  const int T = tr.T, Bt = tr.Bt, O = tr.O;
  std::vector<double> sum(size_t(Bt) * O, 0.0);
  for (int t = 0; t < T; ++t)
    for (int b = 0; b < Bt; ++b) {
      const size_t col = size_t(t) * Bt + b;
      bool counts = false;
      if (tr.task.classification())
        counts = tr.label[col] != 0;
      else
        for (int o = 0; o < O; ++o) counts |= tr.target[col * O + o] > 0;
      if (counts)
        for (int o = 0; o < O; ++o) sum[size_t(b) * O + o] += double(y(o, Eigen::Index(col)));
    }
  std::vector<int> choice(Bt);
  const int first = tr.task.classification() ? 1 : 0;
  for (int b = 0; b < Bt; ++b) {
    int best = first;
    for (int o = first + 1; o < O; ++o)
      if (sum[size_t(b) * O + o] > sum[size_t(b) * O + best]) best = o;
    choice[b] = best;
  }
  return choice;
}

struct Tally {
  long trials = 0, correct = 0, second = 0;
};
struct PsychometricRow {
  std::string condition;
  double level;
  Tally tally;
};

// A level printed without binary noise (a bin centre of 0.30000000000000004 reads 0.3).
double tidy(double level) { return level == 0 ? 0.0 : std::round(level * 1e9) / 1e9; }

// The psychometric table of one network (docs/model.md, section 6). "second" is the choice of
// output 1 (romo: f2 > f1) or 2 (2af: evidence on ring channel 2; dms: non-match).
std::vector<PsychometricRow> psychometric(const TaskParams& task, const std::vector<TrialConditions>& conditions,
                                          const std::vector<int>& choice) {
  std::map<std::string, std::map<double, Tally>> by;
  const int second = task.classification() ? 2 : 1;
  // romo: 10 bins of f1 - f2 over +-(f_max - f_min), and 5 of |f1 - f2| over [0, f_max - f_min]
  const double range = task.romo_f_max - task.romo_f_min, width = range / 5;
  for (size_t b = 0; b < conditions.size(); ++b) {
    const TrialConditions& c = conditions[b];
    auto add = [&](const std::string& condition, double level) {
      Tally& t = by[condition][tidy(level)];
      ++t.trials;
      t.correct += choice[b] == c.correct;
      t.second += choice[b] == second;
    };
    switch (task.kind) {
      case TaskKind::romo: {
        const double d = c.f1 - c.f2;
        const int k = std::clamp(int(std::floor((d + range) / width)), 0, 9);
        const int a = std::clamp(int(std::floor(std::fabs(d) / width)), 0, 4);
        add("f1_minus_f2", -range + (k + 0.5) * width);
        add("abs_f1_minus_f2", (a + 0.5) * width);
        break;
      }
      case TaskKind::two_af:
        add("coherence", c.coherence);
        add("signed_coherence", c.correct == 2 ? c.coherence : -c.coherence);
        break;
      case TaskKind::dms:
        add("match", c.match ? 1 : 0);
        break;
      case TaskKind::file:  // a file's trials carry no conditions rnnsweep knows of
        break;
    }
  }
  std::vector<PsychometricRow> rows;
  for (const auto& [condition, levels] : by)
    for (const auto& [level, tally] : levels) rows.push_back({condition, level, tally});
  return rows;
}

struct Evaluated {
  cpu::LossValue value{};
  std::vector<PsychometricRow> rows;
};

// The output folder, written beside as OUT.tmp and renamed into place when complete: an
// interrupted evaluate leaves no folder that looks finished, and --force replaces a previous
// evaluation only once the new one is whole.
void check_out(const std::string& out, bool force) {
  if (!fs::exists(out)) return;
  if (!fs::is_directory(out)) throw UsageError("--out '" + out + "' exists and is not a folder");
  if (fs::is_empty(out)) return;
  bool ours = false;
  try {
    ours = read_manifest(out, "--out").contains("evaluated_from");
  } catch (const UsageError&) {
  }
  if (!ours)
    throw UsageError("--out '" + out + "' holds files that are not an rnnsweep evaluation; choose another folder");
  if (!force)
    throw UsageError("--out '" + out + "' already holds an evaluation; choose another folder or pass --force to replace it");
}

}  // namespace

int evaluate_networks(const EvaluateArgs& args, const std::string& command_line) {
  const std::string& dir = args.dir;
  const json manifest = read_manifest(dir, "evaluate:");
  refuse_snapshot(manifest, dir, "evaluate:");
  const Config config = config_from_manifest(manifest, dir);
  if (args.stage != "final" && args.stage != "init" && args.stage != "both")
    throw UsageError("--stage '" + args.stage + "': allowed: final | init | both");
  if (args.trials < 1 || args.trials > 1000000)
    throw UsageError("--trials " + std::to_string(args.trials) + ": allowed: an integer in [1, 1000000]");
  if (args.data_seed < 0 || args.data_seed > 4294967295L)
    throw UsageError("--data-seed " + std::to_string(args.data_seed) + ": allowed: an integer in [0, 2^32)");
  if (args.threads < 0) throw UsageError("--threads " + std::to_string(args.threads) + ": allowed: 0 (all cores) or more");
  if (manifest.value("mode", "run") == "lyapunov")
    throw UsageError("evaluate: '" + dir + "' is a lyapunov run: its networks were not trained and have no saved weights");
  if (!fs::is_directory(dir + "/weights"))
    throw UsageError("evaluate: '" + dir + "' has no weights/; run the sweep with --save-weights to evaluate its networks");
  std::vector<std::string> stages;
  if (args.stage != "final") stages.push_back("init");
  if (args.stage != "init") stages.push_back("final");

  // The networks: those named, or every network whose weights are there (an unfinished run's
  // finished ones).
  const std::vector<NetworkSpec> grid = networks_of_manifest(manifest, dir);
  std::map<long, NetworkSpec> by_id;
  for (const auto& n : grid) by_id.emplace(n.id, n);
  auto saved = [&](long id, const std::string& stage) { return fs::exists(weights_stem(dir, id, stage) + "W_h.npy"); };
  std::vector<NetworkSpec> chosen;
  if (args.networks.empty()) {
    for (const auto& n : grid)
      if (saved(n.id, stages.back())) chosen.push_back(n);
    if (chosen.empty()) throw UsageError("evaluate: '" + dir + "/weights' holds no network's weights yet");
  } else {
    for (long id : parse_ids(args.networks)) {
      const auto it = by_id.find(id);
      if (it == by_id.end())
        throw UsageError("--networks: '" + dir + "' has no network " + std::to_string(id) + " (its ids: " +
                         std::to_string(grid.empty() ? 0 : grid.front().id) + " .. " +
                         std::to_string(grid.empty() ? 0 : grid.back().id) +
                         (manifest.contains("shard") && manifest["shard"].value("count", 1) > 1 ? ", this shard's only" : "") + ")");
      for (const auto& stage : stages)
        if (!saved(id, stage))
          throw UsageError("--networks: network " + std::to_string(id) + " has no " + stage + " weights in '" + dir +
                           "/weights' (not finished yet)");
      chosen.push_back(it->second);
    }
  }
  const std::string out = args.out.empty() ? dir + "/evaluate" : args.out;
  check_out(out, args.force);

  // Every weight file is read before anything is written: a damaged one stops the command here.
  std::vector<Job> jobs;
  std::set<std::string> tasks;
  for (const auto& n : chosen) {
    const TaskParams& task = task_of(config, n);
    const Shape s{config_of(config, n).hidden, task.inputs(), task.outputs(), config.bias};
    tasks.insert(task_label(n));
    for (const auto& stage : stages) jobs.push_back({n, s, stage, read_params(dir, n, s, stage)});
  }

  const std::string tmp = out + ".tmp";
  std::error_code ec;
  fs::remove_all(tmp, ec);
  fs::create_directories(tmp, ec);
  if (ec) throw UsageError("--out '" + out + "': cannot create '" + tmp + "': " + ec.message());

  // The trials, the same for every network of a task: inputs, targets and conditions.
  const int N = int(args.trials);
  std::map<std::string, TaskTrials> trials;  // by task label
  std::vector<std::string> files;
  for (const std::string& name : config.tasks) {
    if (!tasks.count(name)) continue;
    const TaskParams& task = config.task_named(name);
    TaskTrials& tt = trials[name] = draw_trials(task, std::uint32_t(args.data_seed), N);
    const cpu::Trials& t = tt.trials;
    // file:NAME -> file_NAME_x.npy
    std::string stem = name + "_";
    std::replace(stem.begin(), stem.end(), ':', '_');
    const std::vector<float> x = by_trial(t.x.data(), t.T, N, t.I);
    write_npy_array(tmp + "/" + stem + "x.npy", "<f4", {N, t.T, t.I}, x.data(), x.size() * sizeof(float));
    files.push_back(stem + "x.npy");
    if (task.classification()) {
      const std::vector<std::int32_t> label(t.label.begin(), t.label.end());
      const std::vector<std::int32_t> l = by_trial(label.data(), t.T, N, 1);
      write_npy_array(tmp + "/" + stem + "label.npy", "<i4", {N, t.T}, l.data(), l.size() * sizeof(std::int32_t));
      files.push_back(stem + "label.npy");
    } else {
      for (const auto& [name, v] : {std::pair{"target", &t.target}, std::pair{"mask", &t.mask}}) {
        const std::vector<float> a = by_trial(v->data(), t.T, N, t.O);
        write_npy_array(tmp + "/" + stem + name + ".npy", "<f4", {N, t.T, t.O}, a.data(), a.size() * sizeof(float));
        files.push_back(stem + name + ".npy");
      }
    }
  }

  // The networks, in parallel: each job writes its own files and keeps its rows.
  std::vector<Evaluated> results(jobs.size());
  std::atomic<size_t> next{0};
  std::exception_ptr failure;
  std::mutex failure_mutex;
  auto work = [&] {
    for (size_t j; (j = next++) < jobs.size();) try {
        const Job& job = jobs[j];
        const TaskParams& task = task_of(config, job.spec);
        const TaskTrials& tt = trials.at(task_label(job.spec));
        const cpu::Trials& t = tt.trials;
        cpu::Forward<float> fwd;
        cpu::forward<float>(job.shape, float(task.leak()), job.params.data(), t, fwd);
        const std::string stem = tmp + "/net" + std::to_string(job.spec.id) + "_" + job.stage + "_";
        if (args.states) {
          // h[n, t] is the state after input step t: column (t + 1) Bt + n of fwd.h (h_0 = 0 is left out)
          const std::vector<float> h = by_trial(fwd.h.data() + size_t(N) * job.shape.H, t.T, N, job.shape.H);
          write_npy_array(stem + "h.npy", "<f4", {N, t.T, job.shape.H}, h.data(), h.size() * sizeof(float));
        }
        const std::vector<float> y = by_trial(fwd.y.data(), t.T, N, t.O);
        write_npy_array(stem + "y.npy", "<f4", {N, t.T, t.O}, y.data(), y.size() * sizeof(float));
        results[j].value = cpu::task_loss<float>(t, fwd.y, nullptr);
        if (!config.task_has_accuracy(job.spec.task, job.spec.file))
          results[j].value.accuracy = std::numeric_limits<double>::quiet_NaN();
        results[j].rows = psychometric(task, tt.conditions, choices(t, fwd.y));
      } catch (...) {
        std::lock_guard<std::mutex> lock(failure_mutex);
        if (!failure) failure = std::current_exception();
        next = jobs.size();
      }
  };
  const int threads = std::min<int>(int(jobs.size()), args.threads > 0 ? args.threads
                                                                        : int(std::max(1u, std::thread::hardware_concurrency())));
  std::vector<std::thread> pool;
  for (int i = 1; i < threads; ++i) pool.emplace_back(work);
  work();
  for (auto& th : pool) th.join();
  if (failure) std::rethrow_exception(failure);
  for (const auto& job : jobs) {
    const std::string stem = "net" + std::to_string(job.spec.id) + "_" + job.stage + "_";
    if (args.states) files.push_back(stem + "h.npy");
    files.push_back(stem + "y.npy");
  }

  // The tables: trials.csv (conditions), evaluation.csv (loss and accuracy as in training),
  // psychometric.csv.
  {
    std::ostringstream o;
    o << "task,trial,correct,f1,f2,delay_steps,coherence,sample,match,file_row,file_pool\n";
    for (const std::string& name : config.tasks) {  // in the order of `tasks`
      if (!trials.count(name)) continue;
      const TaskTrials& tt = trials.at(name);
      for (int b = 0; b < N; ++b) {
        const TrialConditions& c = tt.conditions[b];
        const TaskKind k = tt.trials.task.kind;
        o << name << ',' << b << ',';
        if (k == TaskKind::romo)
          o << c.correct << ',' << format_number(c.f1) << ',' << format_number(c.f2) << ',' << c.delay << ",,,,,\n";
        else if (k == TaskKind::two_af)
          o << c.correct << ",,,," << format_number(c.coherence) << ",,,,\n";
        else if (k == TaskKind::dms)
          o << c.correct << ",,,,," << c.sample << ',' << (c.match ? "true" : "false") << ",,\n";
        else  // a file task: which row of which of its pools
          o << ",,,,,,," << c.file_trial << ',' << (c.file_eval ? "eval" : "train") << '\n';
      }
    }
    write_file_durably(tmp + "/trials.csv", o.str());
  }
  {
    std::ostringstream e, p;
    e << "network,stage,task,trials,loss,accuracy\n";
    p << "network,stage,task,condition,level,trials,accuracy,p_second\n";
    for (size_t j = 0; j < jobs.size(); ++j) {
      const Job& job = jobs[j];
      const std::string task = task_label(job.spec);
      e << job.spec.id << ',' << job.stage << ',' << task << ',' << N << ',' << format_number(results[j].value.loss)
        << ',' << format_number(results[j].value.accuracy) << '\n';
      for (const auto& r : results[j].rows)
        p << job.spec.id << ',' << job.stage << ',' << task << ',' << r.condition << ',' << format_number(r.level) << ','
          << r.tally.trials << ',' << format_number(double(r.tally.correct) / r.tally.trials) << ','
          << format_number(double(r.tally.second) / r.tally.trials) << '\n';
    }
    write_file_durably(tmp + "/evaluation.csv", e.str());
    write_file_durably(tmp + "/psychometric.csv", p.str());
  }
  files.insert(files.begin(), {"trials.csv", "evaluation.csv", "psychometric.csv"});
  std::vector<long> ids;
  for (const auto& n : chosen) ids.push_back(n.id);
  write_json(tmp + "/manifest.json", {{"rnnsweep_version", RNNSWEEP_VERSION},
                                      {"command", command_line},
                                      {"evaluated_from", fs::absolute(dir).lexically_normal().string()},
                                      {"stages", stages},
                                      {"trials", N},
                                      {"data_seed", args.data_seed},
                                      {"states", args.states},
                                      {"networks", ids},
                                      {"files", files},
                                      {"written_at", utc_now()}});
  fs::remove_all(out, ec);
  fs::rename(tmp, out, ec);
  if (ec) throw std::runtime_error("cannot rename '" + tmp + "' to '" + out + "': " + ec.message());
  std::fprintf(stderr, "rnnsweep: evaluated %s on %d fresh trials (data seed %ld) -> %s\n",
               count_of(chosen.size(), "network").c_str(), N, args.data_seed, out.c_str());
  std::printf("%s\n", out.c_str());
  return 0;
}

}  // namespace rnnsweep
