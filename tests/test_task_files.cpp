// Tasks from a file (host/task_file.h): the trials are the file's rows that the documented Philox
// draw picks, held-out streams draw from the eval pool, bad files and bad tables stop with one
// line naming the array or key, a sweep on a file task learns, and a run refuses a file that
// changed under it (--resume, merge). The CUDA backend against the CPU on a file task is in
// tests/test_cuda_backend.cpp; numpy's own files and neurogym's exports in tests/test_task_files.py.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "host/cpu/tasks.h"
#include "host/task_file.h"
#include "rnnsweep/config.h"
#include "rnnsweep/grid.h"
#include "tests/cli_support.h"
#include "tests/npz_support.h"

using namespace rnnsweep;
using namespace rnnsweep::test;
namespace fs = std::filesystem;

namespace {

// A classification file of N trials whose every number says where it came from: x[n, t, i] =
// sign * (n + t / 100 + i / 1000 + 1), sign -1 in the eval pool; label of (n, t): (n + t) % O.
struct Made {
  int N = 7, T = 5, I = 2, O = 3, N_eval = 4;
};
std::vector<NpyMember> classification_members(const Made& m, bool eval = true) {
  auto x_of = [&](int N, float sign) {
    std::vector<float> x;
    for (int n = 0; n < N; ++n)
      for (int t = 0; t < m.T; ++t)
        for (int i = 0; i < m.I; ++i) x.push_back(sign * float(n + t / 100.0 + i / 1000.0 + 1));
    return x;
  };
  auto labels_of = [&](int N) {
    std::vector<std::int64_t> l;
    for (int n = 0; n < N; ++n)
      for (int t = 0; t < m.T; ++t) l.push_back((n + t) % m.O);
    return l;
  };
  std::vector<NpyMember> out = {npy("x", "<f4", {m.N, m.T, m.I}, x_of(m.N, 1)),
                                npy("labels", "<i8", {m.N, m.T}, labels_of(m.N)),
                                npy("outputs", "<i8", {}, std::vector<std::int64_t>{m.O}),
                                npy("dt_over_tau", "<f8", {}, std::vector<double>{0.25})};
  if (eval) {
    out.push_back(npy("x_eval", "<f4", {m.N_eval, m.T, m.I}, x_of(m.N_eval, -1)));
    out.push_back(npy("labels_eval", "<i8", {m.N_eval, m.T}, labels_of(m.N_eval)));
  }
  return out;
}

Config config_with_file(const std::string& path, const std::vector<std::string>& more = {}) {
  std::vector<std::string> o = {"tasks=file:t", "file.t.path=\"" + path + "\""};
  o.insert(o.end(), more.begin(), more.end());
  return default_config_with(o);
}

TEST(TaskFiles, TrialsAreTheRowsThePhiloxDrawPicks) {
  const std::string dir = scratch("task_file_rows");
  const Made m;
  write_npz(dir + "/t.npz", classification_members(m));
  const Config c = config_with_file(dir + "/t.npz");
  const TaskParams& task = c.task(TaskKind::file, 0);
  EXPECT_EQ(task.T(), m.T);
  EXPECT_EQ(task.inputs(), m.I);
  EXPECT_EQ(task.outputs(), m.O);
  EXPECT_TRUE(task.classification());
  EXPECT_DOUBLE_EQ(task.leak(), 0.75);
  std::set<int> rows_seen;
  for (Purpose purpose : {Purpose::trials, Purpose::eval_trials, Purpose::evaluate_trials, Purpose::lyapunov_trials}) {
    const bool eval = purpose == Purpose::eval_trials || purpose == Purpose::evaluate_trials;
    const int N = eval ? m.N_eval : m.N;
    const float sign = eval ? -1.0f : 1.0f;
    for (std::uint32_t it : {0u, 3u}) {
      cpu::Trials t;
      cpu::fill_trials(task, purpose, 11, it, 16, t);
      const Philox rng(purpose, 11);
      for (int b = 0; b < 16; ++b) {
        // the documented draw: row floor(U * N) of word 0 of counter (iteration, b, 0)
        const int n = int(std::floor(rng.words(it, std::uint32_t(b), 0)[0] / 4294967296.0 * N));
        if (!eval) rows_seen.insert(n);
        for (int s = 0; s < m.T; ++s) {
          for (int i = 0; i < m.I; ++i)
            ASSERT_EQ(t.x[(size_t(s) * 16 + b) * m.I + i], sign * float(n + s / 100.0 + i / 1000.0 + 1))
                << "purpose " << int(purpose) << " trial " << b << " step " << s;
          ASSERT_EQ(t.label[size_t(s) * 16 + b], (n + s) % m.O);
        }
      }
    }
  }
  EXPECT_GT(rows_seen.size(), 3u) << "trials come from many rows";
  // without an eval pool the held-out streams draw from the training rows
  write_npz(dir + "/noeval.npz", classification_members(m, false));
  const Config plain = config_with_file(dir + "/noeval.npz");
  cpu::Trials t;
  cpu::fill_trials(plain.task(TaskKind::file, 0), Purpose::eval_trials, 11, 0, 4, t);
  EXPECT_GT(t.x[0], 0.0f);
}

TEST(TaskFiles, RegressionTrialsCarryTargetAndMask) {
  const std::string dir = scratch("task_file_regression");
  const int N = 3, T = 4, I = 1, O = 2;
  std::vector<double> x, target, mask;  // float64 arrays are read as float32
  for (int n = 0; n < N; ++n)
    for (int t = 0; t < T; ++t) {
      x.push_back(n + 0.5 * t);
      for (int o = 0; o < O; ++o) target.push_back(10 * n + t + 0.1 * o), mask.push_back((t + o) % 2);
    }
  std::vector<std::uint8_t> mask_bool(mask.begin(), mask.end());
  write_npz(dir + "/r.npz", {npy("x", "<f8", {N, T, I}, x), npy("target", "<f8", {N, T, O}, target),
                             npy("mask", "|b1", {N, T, O}, mask_bool)});
  const Config c = config_with_file(dir + "/r.npz", {"file.t.dt = 10", "file.t.tau = 100", "file.t.accuracy = \"response\""});
  const TaskParams& task = c.task(TaskKind::file, 0);
  EXPECT_FALSE(task.classification());
  EXPECT_DOUBLE_EQ(task.leak(), 1 - 10.0 / 100.0);
  EXPECT_TRUE(c.task_has_accuracy(TaskKind::file, 0));
  cpu::Trials t;
  cpu::fill_trials(task, Purpose::trials, 2, 5, 6, t);
  const Philox rng(Purpose::trials, 2);
  for (int b = 0; b < 6; ++b) {
    const int n = int(std::floor(rng.words(5, std::uint32_t(b), 0)[0] / 4294967296.0 * N));
    for (int s = 0; s < T; ++s) {
      EXPECT_EQ(t.x[size_t(s) * 6 + b], float(n + 0.5 * s));
      for (int o = 0; o < O; ++o) {
        EXPECT_EQ(t.target[(size_t(s) * 6 + b) * O + o], float(10 * n + s + 0.1 * o));
        EXPECT_EQ(t.mask[(size_t(s) * 6 + b) * O + o], float((s + o) % 2));
      }
    }
  }
  EXPECT_FALSE(config_with_file(dir + "/r.npz", {"file.t.dt_over_tau = 0.5"}).task_has_accuracy(TaskKind::file, 0))
      << "a regression file has no accuracy unless accuracy = \"response\"";
}

// One line, naming what is wrong, thrown by the config load (so before any work: main exits 2).
void expect_refused(const std::string& dir, const std::vector<NpyMember>& members, const std::string& says,
                    const std::vector<std::string>& more = {}) {
  static int k = 0;
  const std::string path = dir + "/bad" + std::to_string(k++) + ".npz";
  write_npz(path, members);
  try {
    config_with_file(path, more);
    ADD_FAILURE() << "accepted a file that should say: " << says;
  } catch (const UsageError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(says), std::string::npos) << what;
    EXPECT_EQ(what.find('\n'), std::string::npos) << what;
    EXPECT_TRUE(what.find("file:t") != std::string::npos || what.find("file.t.") != std::string::npos)
        << "names the task or its key: " << what;
  }
}

TEST(TaskFiles, BadFilesAreOneLineNamingTheArrayAndTheProblem) {
  const std::string dir = scratch("task_file_bad");
  const Made m;
  const auto good = classification_members(m);
  auto with = [&](const std::string& name, NpyMember replacement) {
    auto v = good;
    for (auto& e : v)
      if (e.name == name) e = replacement;
    return v;
  };
  auto without = [&](const std::string& name) {
    std::vector<NpyMember> v;
    for (const auto& e : good)
      if (e.name != name) v.push_back(e);
    return v;
  };
  const std::vector<float> x(size_t(m.N) * m.T * m.I, 1.0f);
  std::vector<float> x_nan = x;
  x_nan[m.T * m.I + 2 * m.I] = std::nanf("");
  std::vector<std::int64_t> labels(size_t(m.N) * m.T, 1);
  std::vector<std::int64_t> out_of_range = labels, negative = labels;
  out_of_range[4] = m.O;
  negative[0] = -1;

  expect_refused(dir, without("x"), "array 'x' is missing");
  expect_refused(dir, with("x", npy("x", "<f4", {m.N, m.T * m.I}, x)), "array 'x' has rank 2");
  expect_refused(dir, with("x", npy("x", "<i4", {m.N, m.T, m.I}, std::vector<std::int32_t>(x.size(), 1))),
                 "array 'x' has the wrong dtype");
  expect_refused(dir, with("x", npy("x", "<f4", {m.N, m.T, m.I}, x_nan)), "array 'x' holds NaN (trial 1, step 2)");
  expect_refused(dir, with("labels", npy("labels", "<i8", {m.N, m.T - 1}, std::vector<std::int64_t>(m.N * (m.T - 1), 1))),
                 "array 'labels' has shape (7, 4); allowed: (7, 5)");
  expect_refused(dir, with("labels", npy("labels", "<f4", {m.N, m.T}, std::vector<float>(labels.size(), 1))),
                 "array 'labels' has the wrong dtype");
  expect_refused(dir, with("labels", npy("labels", "<i8", {m.N, m.T}, out_of_range)),
                 "array 'labels' holds 3 (trial 0, step 4); allowed: integers in [0, 3)");
  expect_refused(dir, with("labels", npy("labels", "<i8", {m.N, m.T}, negative)), "array 'labels' holds -1");
  expect_refused(dir, without("labels"), "neither 'labels' (classification) nor 'target'");
  expect_refused(dir, without("labels_eval"), "array 'labels_eval' is missing");
  expect_refused(dir, with("x_eval", npy("x_eval", "<f4", {2, m.T, m.I + 1}, std::vector<float>(2 * m.T * (m.I + 1), 1))),
                 "array 'x_eval' has shape (2, 5, 3)");
  expect_refused(dir, without("dt_over_tau"), "file.t.dt_over_tau");
  // regression files
  const int O = 2;
  const std::vector<float> target(size_t(m.N) * m.T * O, 0.5f);
  std::vector<float> mask(target.size(), 1.0f), negative_mask = mask;
  for (int s = 0; s < m.T * O; ++s) mask[size_t(3) * m.T * O + s] = 0;  // trial 3 counts nowhere
  negative_mask[1] = -1;
  const NpyMember rx = npy("x", "<f4", {m.N, m.T, m.I}, x), rt = npy("target", "<f4", {m.N, m.T, O}, target),
                  leak = npy("dt_over_tau", "<f8", {}, std::vector<double>{0.5});
  expect_refused(dir, {rx, rt, leak}, "array 'mask' is missing");
  expect_refused(dir, {rx, rt, npy("mask", "<f4", {m.N, m.T, O}, mask), leak},
                 "array 'mask' is zero at every step of trial 3");
  expect_refused(dir, {rx, rt, npy("mask", "<f4", {m.N, m.T, O}, negative_mask), leak}, "array 'mask' holds -1");
  expect_refused(dir, {rx, rt, npy("mask", "<f4", {m.N, m.T, O + 1}, std::vector<float>(m.N * m.T * (O + 1), 1)), leak},
                 "array 'mask' has shape (7, 5, 3)");
  expect_refused(dir, {rx, rt, npy("labels", "<i8", {m.N, m.T}, labels), leak}, "both 'labels' and 'target'");
  expect_refused(dir, good, "file.t.accuracy", {"file.t.accuracy = \"response\""});
  {  // a member whose header promises more numbers than it holds
    NpyMember short_x = npy("x", "<f4", {m.N, m.T, m.I}, x);
    short_x.bytes.resize(short_x.bytes.size() - 4);
    expect_refused(dir, with("x", short_x), "array 'x': holds fewer bytes than its shape (7, 5, 2) needs");
  }
  // not an .npz at all, or cut short
  {
    std::ofstream(dir + "/text.npz") << "x = 1\n";
    EXPECT_THROW(config_with_file(dir + "/text.npz"), UsageError);
    write_npz(dir + "/whole.npz", good);
    const std::string bytes = read_file(dir + "/whole.npz");
    std::ofstream(dir + "/cut.npz", std::ios::binary) << bytes.substr(0, bytes.size() / 2);
    try {
      config_with_file(dir + "/cut.npz");
      ADD_FAILURE() << "accepted a truncated file";
    } catch (const UsageError& e) {
      EXPECT_NE(std::string(e.what()).find("not an .npz file"), std::string::npos) << e.what();
    }
    EXPECT_THROW(config_with_file(dir + "/missing.npz"), UsageError);
  }
}

TEST(TaskFiles, BadTablesNameTheKey) {
  const std::string dir = scratch("task_file_tables");
  write_npz(dir + "/t.npz", classification_members(Made{}));
  auto refused = [](const std::vector<std::string>& o, const std::string& says) {
    try {
      default_config_with(o);
      ADD_FAILURE() << "accepted: " << says;
    } catch (const UsageError& e) {
      EXPECT_NE(std::string(e.what()).find(says), std::string::npos) << e.what();
    }
  };
  const std::string path = "file.t.path=\"" + dir + "/t.npz\"";
  refused({"tasks=file:u", path}, "'file:u' has no table [file.u]");
  refused({"tasks=file:t", "file.t.dt_over_tau=0.5"}, "config key 'file.t.path': missing");
  refused({"tasks=file:t", path, "file.t.pth=\"x\""}, "unknown config key 'file.t.pth'");
  refused({"tasks=file:a/b"}, "config key 'tasks'");
  refused({"tasks=file:t", path, "file.t.dt_over_tau=1.5"}, "config key 'file.t.dt_over_tau'");
  refused({"tasks=file:t", path, "file.t.dt=10"}, "config key 'file.t.tau': missing");
  refused({"tasks=file:t", path, "file.t.hash=\"0123456789abcdef\""}, "the file changed since the run recorded it");
  refused({"tasks=file:t", path, "file.t.size=3"}, "config key 'file.t.size'");
  // a table that `tasks` does not list is not read (and not in the resolved config)
  const Config c = default_config_with({"tasks=romo", "file.u.path=\"/nonexistent.npz\""});
  EXPECT_TRUE(c.files.empty());
}

// A whole sweep on a file task and a built-in one: the file's networks learn (their loss falls),
// the tables name the task file:NAME, the manifest records the file; evaluate draws from it; a
// changed file stops --resume and merge with one line.
TEST(TaskFiles, ASweepLearnsAndRefusesAFileThatChanged) {
  const std::string dir = scratch("task_file_sweep");
  // the sign of a noisy input in the first half, answered in the last quarter
  const int N = 64, T = 16, I = 2;
  std::vector<float> x(size_t(N) * T * I);
  std::vector<std::int64_t> labels(size_t(N) * T, 0);
  std::uint32_t state = 1;
  auto noise = [&] { return ((state = state * 1664525u + 1013904223u) >> 8) / 16777216.0f - 0.5f; };
  for (int n = 0; n < N; ++n) {
    const float sign = n % 2 ? 1.0f : -1.0f;
    for (int t = 0; t < T; ++t) {
      x[(size_t(n) * T + t) * I] = t < T / 2 ? 0.5f * sign + 0.3f * noise() : 0.0f;
      x[(size_t(n) * T + t) * I + 1] = t < 3 * T / 4 ? 1.0f : 0.0f;
      if (t >= 3 * T / 4) labels[size_t(n) * T + t] = sign > 0 ? 1 : 2;
    }
  }
  write_npz(dir + "/sign.npz", {npy("x", "<f4", {N, T, I}, x), npy("labels", "<i8", {N, T}, labels),
                                npy("dt", "<f8", {}, std::vector<double>{20}), npy("tau", "<f8", {}, std::vector<double>{100})});
  const std::string config = dir + "/c.toml";
  std::ofstream(config) << "tasks = ['file:sign', 'romo']\nrules = ['bptt', 'eprop']\ngains = [0.5]\nlrs = [1e-2]\n"
                           "seeds = [0]\nhidden = 16\nbatch = 16\niters = 150\nlog_every = 10\nle_steps = 40\n"
                           "le_warmup = 5\nle_batch = 2\n[file.sign]\npath = 'sign.npz'\n";  // relative to the config
  const std::string run = dir + "/run";
  const Outcome o = rnnsweep_cli("run " + config + " --backend cpu --quiet --save-weights --out " + run);
  ASSERT_EQ(o.code, 0) << o.err;
  const auto manifest = nlohmann::json::parse(read_file(run + "/manifest.json"));
  const auto& cfg = manifest.at("config");
  EXPECT_EQ(cfg.at("file.sign.path").get<std::string>(), fs::absolute(dir + "/sign.npz").lexically_normal().string());
  EXPECT_EQ(cfg.at("file.sign.size").get<long>(), long(fs::file_size(dir + "/sign.npz")));
  EXPECT_EQ(cfg.at("file.sign.hash").get<std::string>(), file_hash(dir + "/sign.npz"));
  EXPECT_DOUBLE_EQ(cfg.at("file.sign.dt_over_tau").get<double>(), 0.2);
  // curves.csv: network,iteration,loss,accuracy,...; networks 0 and 1 are the file task's
  std::istringstream curves(read_file(run + "/curves.csv"));
  std::string line;
  std::getline(curves, line);
  std::map<int, std::vector<double>> loss, accuracy;
  while (std::getline(curves, line)) {
    std::istringstream f(line);
    std::string id, it, l, a;
    std::getline(f, id, ','), std::getline(f, it, ','), std::getline(f, l, ','), std::getline(f, a, ',');
    loss[std::stoi(id)].push_back(std::stod(l));
    accuracy[std::stoi(id)].push_back(std::stod(a));
  }
  for (int id : {0, 1}) {
    ASSERT_GE(loss[id].size(), 10u);
    EXPECT_LT(loss[id].back(), 0.2 * loss[id].front()) << "network " << id << " learns the file's task";
    EXPECT_GT(accuracy[id].back(), 0.9) << "network " << id;
  }
  EXPECT_NE(read_file(run + "/networks.csv").find("\n0,file:sign,"), std::string::npos);

  // evaluate: the file's rows (training pool: the file has no eval pool), the trials named
  ASSERT_EQ(rnnsweep_cli("evaluate " + run + " --trials 32 --no-states").code, 0);
  EXPECT_TRUE(fs::exists(run + "/evaluate/file_sign_x.npy"));
  {  // each trial names its row: the documented draw of batch 0 of Purpose::evaluate_trials, seed 0
    std::istringstream rows(read_file(run + "/evaluate/trials.csv"));
    std::string row;
    int checked = 0;
    const Philox rng(Purpose::evaluate_trials, 0);
    while (std::getline(rows, row))
      if (row.rfind("file:sign,", 0) == 0) {
        const int b = std::stoi(row.substr(10));
        const int n = int(std::floor(rng.words(0, std::uint32_t(b), 0)[0] / 4294967296.0 * N));
        EXPECT_EQ(row, "file:sign," + std::to_string(b) + ",,,,,,,," + std::to_string(n) + ",train");
        ++checked;
      }
    EXPECT_EQ(checked, 32);
  }

  // shards of the same file merge (before the change below)
  for (int i = 0; i < 2; ++i)
    ASSERT_EQ(rnnsweep_cli("run " + config + " --backend cpu --quiet --shard " + std::to_string(i) + "/2 --out " + dir +
                           "/s" + std::to_string(i))
                  .code,
              0);
  ASSERT_EQ(rnnsweep_cli("merge " + dir + "/s0 " + dir + "/s1 --out " + dir + "/merged").code, 0);

  // --resume of an unfinished run whose file changed: one line naming the key, nothing written
  fs::copy(run, dir + "/unfinished", fs::copy_options::recursive);
  {
    std::string m = read_file(dir + "/unfinished/manifest.json");
    m.replace(m.find("\"complete\""), 10, "\"interrupted\"");
    std::ofstream(dir + "/unfinished/manifest.json") << m;
  }
  const std::string before = read_file(dir + "/unfinished/networks.csv");
  labels[5 * T + T - 1] = 0;  // one label of one trial
  write_npz(dir + "/sign.npz", {npy("x", "<f4", {N, T, I}, x), npy("labels", "<i8", {N, T}, labels),
                                npy("dt", "<f8", {}, std::vector<double>{20}), npy("tau", "<f8", {}, std::vector<double>{100})});
  const Outcome resumed = rnnsweep_cli("run --resume " + dir + "/unfinished --quiet");
  EXPECT_EQ(resumed.code, 2) << resumed.err;
  EXPECT_NE(resumed.err.find("file.sign.hash"), std::string::npos) << resumed.err;
  EXPECT_NE(resumed.err.find("changed"), std::string::npos) << resumed.err;
  EXPECT_EQ(read_file(dir + "/unfinished/networks.csv"), before);

  // merge: shard 1 run again on the changed file does not merge with shard 0 of the old one
  ASSERT_EQ(rnnsweep_cli("run " + config + " --backend cpu --quiet --shard 1/2 --out " + dir + "/s1new").code, 0);
  const Outcome merged = rnnsweep_cli("merge " + dir + "/s0 " + dir + "/s1new --out " + dir + "/merged2");
  EXPECT_EQ(merged.code, 2) << merged.err;
  EXPECT_NE(merged.err.find("changed"), std::string::npos) << merged.err;
  EXPECT_FALSE(fs::exists(dir + "/merged2"));
}

// configs/any-task.toml reads its neurogym files from configs/data/ (relative to itself), with
// their eval pools and leaks, and `plan` prices its grid.
TEST(TaskFiles, TheExampleConfigReadsItsFiles) {
  const Config c = load_config(std::string(RNNSWEEP_SOURCE_DIR) + "/configs/any-task.toml", {});
  ASSERT_EQ(c.files.size(), 2u);
  const TaskParams& gonogo = c.task(TaskKind::file, 0);
  EXPECT_EQ(c.files[0].name, "gonogo");
  EXPECT_EQ(gonogo.T(), 15);
  EXPECT_EQ(gonogo.inputs(), 3);
  EXPECT_EQ(gonogo.outputs(), 2);
  EXPECT_EQ(gonogo.file_train.trials, 512);
  EXPECT_EQ(gonogo.file_eval.trials, 128);
  EXPECT_DOUBLE_EQ(gonogo.leak(), 0.0);
  EXPECT_EQ(c.task(TaskKind::file, 1).T(), 26);
  EXPECT_EQ(expand_grid(c).size(), 240u);
  const Outcome plan = rnnsweep_cli("plan " + std::string(RNNSWEEP_SOURCE_DIR) + "/configs/any-task.toml --backend cpu");
  EXPECT_EQ(plan.code, 0) << plan.err;
}

// `rnnsweep lyapunov` computes each distinct initial network once: two file tasks are two tasks
// (their inputs drive the spectra, and their input counts shape W_x), not one.
TEST(TaskFiles, LyapunovRunsKeepTwoFileTasksApart) {
  const std::string dir = scratch("task_file_lyapunov");
  Made a, b;
  b.I = 3;
  write_npz(dir + "/a.npz", classification_members(a));
  write_npz(dir + "/b.npz", classification_members(b));
  std::ofstream(dir + "/c.toml") << "tasks = ['file:a', 'file:b']\nrules = ['bptt']\ngains = [1.5]\nlrs = [1e-3]\n"
                                    "seeds = [0]\nhidden = 8\nle_steps = 30\nle_warmup = 5\nle_batch = 1\n"
                                    "[file.a]\npath = 'a.npz'\n[file.b]\npath = 'b.npz'\n";
  const Outcome o = rnnsweep_cli("lyapunov " + dir + "/c.toml --backend cpu --quiet --out " + dir + "/run");
  ASSERT_EQ(o.code, 0) << o.err;
  std::istringstream rows(read_file(dir + "/run/networks.csv"));
  std::string header, first, second;
  std::getline(rows, header), std::getline(rows, first), std::getline(rows, second);
  auto max_le = [&](const std::string& row) {  // the column max_le_init
    std::istringstream h(header), r(row);
    std::string name, value;
    while (std::getline(h, name, ',') && std::getline(r, value, ','))
      if (name == "max_le_init") return value;
    return std::string();
  };
  EXPECT_NE(first.find(",file:a,"), std::string::npos);
  EXPECT_NE(second.find(",file:b,"), std::string::npos);
  EXPECT_FALSE(max_le(first).empty());
  EXPECT_NE(max_le(first), max_le(second)) << "each file task's own initial spectrum";
}

}  // namespace
