// The command line end to end: determinism of whole sweeps, divergence handling, outputs,
// and the exit code 2 with a one-line message for every kind of bad input.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "host/cpu/model.h"
#include "host/cpu/spectra.h"
#include "host/cpu/tasks.h"
#include "host/gpu_model.h"
#include "host/writers.h"
#include "rnnsweep/grid.h"
#include "tests/cli_support.h"
#include "rnnsweep/config.h"
#include "rnnsweep/model.h"

namespace fs = std::filesystem;
using namespace rnnsweep;
using namespace rnnsweep::test;

namespace {

const char* kTables[] = {"networks.csv", "curves.csv", "summary.csv", "lyapunov.csv", "floss_curves.csv"};

TEST(Sweep, SameConfigGivesByteIdenticalResultsWhateverTheThreads) {
  const std::string dir = scratch("determinism");
  const std::string config = small_config(dir);
  ASSERT_EQ(rnnsweep_cli("run " + config + " --quiet --threads 2 --out " + dir + "/a").code, 0);
  ASSERT_EQ(rnnsweep_cli("run " + config + " --quiet --threads 2 --out " + dir + "/b").code, 0);
  ASSERT_EQ(rnnsweep_cli("run " + config + " --quiet --threads 1 --out " + dir + "/c").code, 0);
  for (const char* table : kTables) {
    const std::string a = read_file(dir + "/a/" + table);
    ASSERT_FALSE(a.empty()) << table;
    EXPECT_EQ(a, read_file(dir + "/b/" + table)) << table << ": two runs differ (Nondeterminism!)";
    EXPECT_EQ(a, read_file(dir + "/c/" + table)) << table << ": 1 and 2 threads differ";
  }
  const std::string networks = read_file(dir + "/a/networks.csv");
  EXPECT_EQ(std::count(networks.begin(), networks.end(), '\n'), 1 + 48) << "header + one row per network";
  EXPECT_NE(read_file(dir + "/a/manifest.json").find("\"status\": \"complete\""), std::string::npos);
}

// Rows of networks.csv keyed by their grid coordinates (task .. floss), id dropped.
std::map<std::string, std::string> rows_by_point(const std::string& csv) {
  std::map<std::string, std::string> rows;
  std::stringstream ss(csv);
  std::string line;
  std::getline(ss, line);
  while (std::getline(ss, line)) {
    const std::string rest = line.substr(line.find(',') + 1);
    std::string key;
    std::stringstream fields(rest);
    for (int i = 0; i < 10; ++i) {  // task, init, hidden, batch, rule, gain, lr, seed, data_seed, floss
      std::string f;
      std::getline(fields, f, ',');
      key += f + "|";
    }
    rows[key] = rest;
  }
  return rows;
}

TEST(Sweep, ExplodingLearningRateIsMarkedDivergedAndLeavesOthersAlone) {
  const std::string dir = scratch("diverge");
  const std::string config = small_config(dir);
  ASSERT_EQ(rnnsweep_cli("run " + config + " --quiet --out " + dir + "/base").code, 0);
  ASSERT_EQ(rnnsweep_cli("run " + config + " --quiet --set lrs=[1e-3,1e9] --out " + dir + "/with").code, 0);
  const auto base = rows_by_point(read_file(dir + "/base/networks.csv"));
  const auto with = rows_by_point(read_file(dir + "/with/networks.csv"));
  ASSERT_EQ(with.size(), 2 * base.size());
  int diverged = 0;
  for (const auto& [key, row] : with) {
    if (key.find("|1e+09|") != std::string::npos) {
      EXPECT_NE(row.find(",diverged,"), std::string::npos) << row;
      diverged++;
    } else {
      ASSERT_TRUE(base.count(key)) << key;
      EXPECT_EQ(row, base.at(key)) << "a diverging neighbour changed this network";
    }
  }
  EXPECT_EQ(diverged, int(base.size()));
  // diverged_at is the first iteration whose loss was not finite: after at least one step.
  const std::string csv = read_file(dir + "/with/networks.csv");
  EXPECT_EQ(csv.find(",diverged,0,"), std::string::npos) << "iteration 0 runs the initial weights";
  EXPECT_EQ(csv.find(",diverged,,"), std::string::npos) << "a diverged row names its iteration";
  // ... and the learning curve of such a network stops before it: every logged loss is finite.
  const std::string curves = read_file(dir + "/with/curves.csv");
  EXPECT_EQ(curves.find("nan"), std::string::npos);
  EXPECT_EQ(curves.find("inf"), std::string::npos);
  // A diverging lr is never the best lr of the summary.
  const std::string summary = read_file(dir + "/with/summary.csv");
  EXPECT_EQ(summary.find(",1e+09,"), std::string::npos) << summary;
}

// le_every: the tracked spectra are taken on the network as training leaves it. With the full
// spectrum tracked, the first equals the init (or flossed) spectrum and the last the trained one
// value for value; between them training moves them; a diverged network's stop before it.
TEST(Sweep, TrackedSpectraFollowTrainingFromTheInitialToTheTrainedSpectrum) {
  const std::string dir = scratch("tracked");
  const std::string config = small_config(dir);  // hidden 16, iters 25, le_every 10
  ASSERT_EQ(rnnsweep_cli("run " + config + " --quiet --set le_track_k=16 --set lrs=[1e-3,1e9] --out " + dir + "/run").code, 0);
  // (network, phase or iteration) -> exponents as written
  std::map<std::string, std::vector<std::string>> spectra, tracked;
  auto fields = [](const std::string& line) {
    std::vector<std::string> f;
    std::stringstream in(line);
    for (std::string x; std::getline(in, x, ',');) f.push_back(x);
    return f;
  };
  std::stringstream lyapunov(read_file(dir + "/run/lyapunov.csv")), curves(read_file(dir + "/run/lyapunov_curves.csv"));
  std::string line;
  std::getline(lyapunov, line);
  ASSERT_EQ(line, "network,phase,index,lambda,finite");
  while (std::getline(lyapunov, line)) {
    const auto f = fields(line);
    spectra[f[0] + "/" + f[1]].push_back(f[3]);
  }
  std::getline(curves, line);
  ASSERT_EQ(line, "network,iteration,index,exponent,finite");
  while (std::getline(curves, line)) {
    const auto f = fields(line);
    EXPECT_NE(f[3], "nan") << line;
    tracked[f[0] + "/" + f[1]].push_back(f[3]);
  }
  std::stringstream networks(read_file(dir + "/run/networks.csv"));
  std::getline(networks, line);
  int ok = 0, diverged = 0, moved = 0;
  while (std::getline(networks, line)) {
    // network, task, init, hidden, batch, rule, gain, lr, seed, data_seed, floss, status, diverged_at
    const auto f = fields(line);
    const std::string id = f[0];
    if (f[11] == "diverged") {
      ++diverged;
      const long at = std::stol(f[12]);
      for (long i : {0L, 10L, 20L, 25L})
        EXPECT_EQ(tracked.count(id + "/" + std::to_string(i)), size_t(i < at)) << "network " << id << " at " << i;
      continue;
    }
    ++ok;
    const std::string start = f[10] == "true" ? "flossed" : "init";
    EXPECT_EQ(tracked[id + "/0"], spectra[id + "/" + start]) << "network " << id;
    EXPECT_EQ(tracked[id + "/25"], spectra[id + "/trained"]) << "network " << id;
    ASSERT_EQ(tracked[id + "/10"].size(), 16u) << "network " << id;
    moved += tracked[id + "/10"] != tracked[id + "/0"];
  }
  EXPECT_EQ(ok, 48);
  EXPECT_EQ(diverged, 48) << "lr = 1e9 diverges, or the test proves nothing about it";
  EXPECT_EQ(moved, 48) << "training moves every network's spectrum";
}

// hidden and batch as lists: each network trains as it would in a sweep of its shape alone
// (its row of networks.csv, but for the id, is the same), and the summary keeps shapes apart.
TEST(Sweep, NetworksOfSeveralShapesTrainAsInASweepOfTheirShapeAlone) {
  const std::string dir = scratch("shapes");
  const std::string config = small_config(dir);  // hidden 16, batch 8
  ASSERT_EQ(rnnsweep_cli("run " + config + " --quiet --set tasks=[romo,dms] --set hidden=[8,16] --set batch=[4,8] --out " +
                         dir + "/mixed").code,
            0);
  ASSERT_EQ(rnnsweep_cli("run " + config + " --quiet --set tasks=[romo,dms] --set hidden=8 --set batch=8 --out " + dir +
                         "/alone").code,
            0);
  const auto mixed = rows_by_point(read_file(dir + "/mixed/networks.csv"));
  const auto alone = rows_by_point(read_file(dir + "/alone/networks.csv"));
  ASSERT_EQ(mixed.size(), 4 * alone.size());
  for (const auto& [key, row] : alone) {
    ASSERT_NE(key.find("|8|8|"), std::string::npos) << key;
    ASSERT_TRUE(mixed.count(key)) << key;
    EXPECT_EQ(mixed.at(key), row) << "a network of hidden 8, batch 8 trained differently beside other shapes";
    // and its batch-4 twin trained on its own batch: other statistics (after the coordinates)
    std::string twin = key;
    twin.replace(twin.find("|8|8|"), 5, "|8|4|");
    auto statistics = [](const std::string& r) {
      size_t at = 0;
      for (int i = 0; i < 10; ++i) at = r.find(',', at) + 1;
      return r.substr(at);
    };
    ASSERT_TRUE(mixed.count(twin)) << twin;
    EXPECT_NE(statistics(mixed.at(twin)), statistics(row)) << twin;
  }
  // ids: hidden and batch inside init, so the first network of hidden 16 follows 2 batches x 16
  const std::string networks = read_file(dir + "/mixed/networks.csv");
  EXPECT_NE(networks.find("\n32,romo,gaussian,16,4,bptt,"), std::string::npos) << networks.substr(0, 400);
  // the summary has a row per shape
  const std::string summary = read_file(dir + "/mixed/summary.csv");
  EXPECT_EQ(summary.substr(0, summary.find('\n')),
            "task,init,hidden,batch,rule,gain,floss,best_lr,n_seeds,n_diverged,tail_loss_mean,tail_loss_std,"
            "tail_accuracy_mean,tail_accuracy_std");
  EXPECT_EQ(std::count(summary.begin(), summary.end(), '\n'), 1 + 2 * 4 * 2 * 2 * 2);
  // and the spectra are each network's own size: the full spectrum (le_k unset) of 8 or 16
  const std::string spectra = read_file(dir + "/mixed/lyapunov.csv");
  EXPECT_NE(spectra.find("\n0,init,8,"), std::string::npos);
  EXPECT_EQ(spectra.find("\n0,init,9,"), std::string::npos);
  EXPECT_NE(spectra.find("\n32,init,16,"), std::string::npos);
}

// eval_every, alignment and floss_every as the tables show them: curves.csv has the held-out
// loss and accuracy on the eval rows (every 10 iterations and the last) and the alignment on the
// local rules' rows, empty cells elsewhere; networks.csv's eval columns are the last eval row's
// (its tail is that row alone here); floss_curves.csv labels each episode with its iteration.
TEST(Sweep, EvalAlignmentAndFlossingEpisodesInTheTables) {
  const std::string dir = scratch("probes");
  const std::string config = small_config(dir);  // iters 25, log_every 5, rules bptt and rflo
  ASSERT_EQ(rnnsweep_cli("run " + config + " --quiet --set eval_every=10 --set eval_trials=16 --set alignment=true "
                         "--set floss_every=10 --set floss_iters_each=2 --out " + dir + "/run").code, 0);
  auto fields = [](const std::string& line) {
    std::vector<std::string> f;
    std::stringstream in(line);
    for (std::string x; std::getline(in, x, ',');) f.push_back(x);
    if (!line.empty() && line.back() == ',') f.push_back("");
    return f;
  };
  std::map<std::string, std::string> rule, last_eval;
  std::stringstream networks(read_file(dir + "/run/networks.csv"));
  std::string line;
  std::getline(networks, line);
  ASSERT_NE(line.find(",eval_final_loss,eval_final_accuracy,eval_tail_loss,eval_tail_accuracy"), std::string::npos);
  std::vector<std::vector<std::string>> network_rows;
  while (std::getline(networks, line)) {
    network_rows.push_back(fields(line));
    rule[network_rows.back()[0]] = network_rows.back()[5];
  }
  std::stringstream curves(read_file(dir + "/run/curves.csv"));
  std::getline(curves, line);
  ASSERT_EQ(line, "network,iteration,loss,accuracy,eval_loss,eval_accuracy,alignment");
  int rows = 0;
  while (std::getline(curves, line)) {
    const auto f = fields(line);
    ASSERT_EQ(f.size(), 7u) << line;
    const long it = std::stol(f[1]);
    const bool eval_row = it % 10 == 0 || it == 24;
    EXPECT_EQ(!f[4].empty(), eval_row) << line;
    EXPECT_EQ(!f[5].empty(), eval_row) << line;
    EXPECT_EQ(!f[6].empty(), rule[f[0]] == "rflo") << line;
    if (!f[6].empty()) {
      const double cosine = std::stod(f[6]);
      EXPECT_TRUE(cosine > -1 && cosine < 1) << line;
    }
    if (eval_row) last_eval[f[0]] = f[4];
    ++rows;
  }
  EXPECT_EQ(rows, 48 * 6);  // 48 networks, iterations 0, 5, ..., 20 and 24
  for (const auto& f : network_rows) {
    EXPECT_EQ(f[24], last_eval[f[0]]) << "eval_final_loss of network " << f[0];
    EXPECT_EQ(f[26], last_eval[f[0]]) << "eval_tail_loss of network " << f[0] << " (a tail of one eval row)";
  }
  std::stringstream floss(read_file(dir + "/run/floss_curves.csv"));
  std::getline(floss, line);
  ASSERT_EQ(line, "network,training_iteration,iteration,floss_loss,k_used");
  std::map<std::string, int> episodes;
  while (std::getline(floss, line)) ++episodes[fields(line)[1]];
  EXPECT_EQ(episodes["0"], 24 * 4);   // 24 flossed networks, 4 pretraining iterations each
  EXPECT_EQ(episodes["10"], 24 * 2);  // then 2 before iterations 10 and 20
  EXPECT_EQ(episodes["20"], 24 * 2);
  EXPECT_EQ(episodes.size(), 3u);
}

TEST(Sweep, SaveWeightsWritesNpyOfTheInitialNetwork) {
  const std::string dir = scratch("weights");
  const std::string config = small_config(dir);
  ASSERT_EQ(
      rnnsweep_cli("run " + config + " --quiet --save-weights --set tasks=romo --out " + dir + "/o").code, 0);
  const std::string npy = read_file(dir + "/o/weights/net0_init_W_h.npy");
  ASSERT_GT(npy.size(), 128u);
  EXPECT_EQ(npy.substr(0, 6), "\x93NUMPY");
  EXPECT_NE(npy.find("'shape': (16, 16)"), std::string::npos);
  const size_t header = 10 + (unsigned char)npy[8] + 256 * (unsigned char)npy[9];
  ASSERT_EQ(header % 64, 0u) << "numpy aligns the data to 64 bytes";
  ASSERT_EQ(npy.size(), header + 16 * 16 * 4);
  // Row-major W_h[r][c] must be the trainer's initial weight (network 0: gain 0.5, seed 0).
  const Shape s{16, 1, 2, false};
  std::vector<float> p(ParamLayout(s).size);
  init_params(s, 0.5, 0, p.data());
  for (int r = 0; r < 16; ++r)
    for (int c = 0; c < 16; ++c) {
      float v;
      std::memcpy(&v, npy.data() + header + 4 * (r * 16 + c), 4);
      ASSERT_EQ(v, p[c * 16 + r]) << r << "," << c;
    }
  EXPECT_TRUE(fs::exists(dir + "/o/weights/net0_final_w.npy"));
  EXPECT_NE(read_file(dir + "/o/weights/net0_final_W_x.npy").find("'shape': (16, 1)"), std::string::npos);
  // RFLO networks also get their fixed feedback B (H x O); network 8 is the first rflo one.
  EXPECT_FALSE(fs::exists(dir + "/o/weights/net0_B.npy")) << "bptt has no B";
  const std::string b = read_file(dir + "/o/weights/net8_B.npy");
  ASSERT_NE(b.find("'shape': (16, 2)"), std::string::npos);
  const std::vector<float> B = rflo_feedback(s, 0);
  const size_t b_header = 10 + (unsigned char)b[8] + 256 * (unsigned char)b[9];
  for (int r = 0; r < 16; ++r)
    for (int c = 0; c < 2; ++c) {
      float v;
      std::memcpy(&v, b.data() + b_header + 4 * (r * 2 + c), 4);
      ASSERT_EQ(v, B[c * 16 + r]) << r << "," << c;
    }
}

TEST(Sweep, TrialsCommandWritesTheTrainingTrials) {
  const std::string dir = scratch("trials");
  ASSERT_EQ(
      rnnsweep_cli("trials --task 2af --data-seed 3 --iteration 12 --batch 4 --out " + dir + "/t.csv").code,
      0);
  std::ifstream in(dir + "/t.csv");
  std::string header;
  std::getline(in, header);
  EXPECT_EQ(header, "trial,step,x0,x1,x2,label");
  const cpu::Trials want = cpu::training_trials(Config::make_task(TaskKind::two_af), 3, 12, 4);
  int rows = 0;
  for (std::string line; std::getline(in, line); ++rows) {
    int trial, step, label;
    float x0, x1, x2;
    ASSERT_EQ(std::sscanf(line.c_str(), "%d,%d,%f,%f,%f,%d", &trial, &step, &x0, &x1, &x2, &label), 6);
    const size_t k = size_t(step) * 4 + trial;
    EXPECT_EQ(x1, want.x[k * 3 + 1]);
    EXPECT_EQ(label, want.label[k]);
  }
  EXPECT_EQ(rows, 4 * 22);
  EXPECT_EQ(
      rnnsweep_cli("trials --task romo --data-seed 0 --iteration 0 --batch 1 --out " + dir + "/t.csv").code,
      2)
      << "never overwrites";
  ASSERT_EQ(
      rnnsweep_cli("trials --task romo --data-seed 0 --iteration 0 --batch 2 --out " + dir + "/r.csv").code,
      0);
  std::ifstream romo(dir + "/r.csv");
  std::getline(romo, header);
  EXPECT_EQ(header, "trial,step,x0,target0,target1,mask0,mask1");
}

// The spectrum and flossing streams as exported: the driven states of a spectrum trajectory,
// recomputed here from the exported inputs alone (the leaky ReLU map of docs/model.md), are the
// states the spectrum is computed on.
TEST(Sweep, TrialsCommandWritesTheSpectrumAndFlossingStreams) {
  const std::string dir = scratch("trials_streams");
  const std::string sets = " --set le_warmup=10 --set le_steps=60 --set floss_warmup=5 --set floss_steps=30 --set bias=true";
  ASSERT_EQ(rnnsweep_cli("trials --task 2af --stream spectrum --seed 3 --trajectory 1 --out " + dir + "/s.csv" + sets).code,
            0);
  Config config = default_config_with({"le_warmup=10", "le_steps=60", "bias=true"});
  const TaskParams& task = config.two_af;
  const Shape s{config.hidden, task.inputs(), task.outputs(), config.bias};
  const int T = int(task.T()), chain = (70 + T - 1) / T;
  // x[trial][step][input], as written
  std::vector<std::vector<std::vector<double>>> x(chain, std::vector<std::vector<double>>(T, std::vector<double>(s.I)));
  std::ifstream in(dir + "/s.csv");
  std::string line;
  std::getline(in, line);
  int rows = 0;
  for (; std::getline(in, line); ++rows) {
    std::istringstream cells(line);
    std::string cell;
    std::getline(cells, cell, ',');
    const int trial = std::stoi(cell);
    std::getline(cells, cell, ',');
    const int step = std::stoi(cell);
    for (int i = 0; i < s.I; ++i) {
      std::getline(cells, cell, ',');
      x.at(trial).at(step)[i] = std::stof(cell);  // the float the kernels read, exactly
    }
  }
  ASSERT_EQ(rows, chain * T) << "the trials one trajectory of 70 steps runs through";
  std::vector<float> params(ParamLayout(s).size);
  init_params(s, 1.5, 3, params.data());
  const cpu::ConstNet<float> net(s, params.data());
  const double a = task.leak();
  std::vector<double> h(s.H, 0.0), next(s.H);
  const cpu::Mat<double> want = cpu::driven_states(s, a, params.data(), task, Purpose::lyapunov_trials, 3, 1, 10, 60);
  double worst = 0;
  for (int step = 0; step < 70; ++step) {
    if (step >= 10)
      for (int r = 0; r < s.H; ++r)  // relative: at g = 1.5 the states grow to about 1e6
        worst = std::max(worst, std::abs(h[r] - want(r, step - 10)) / std::max(1.0, std::abs(want(r, step - 10))));
    for (int r = 0; r < s.H; ++r) {
      double v = net.b(r);
      for (int c = 0; c < s.H; ++c) v += double(net.W_h(r, c)) * std::max(h[c], 0.0);
      for (int i = 0; i < s.I; ++i) v += double(net.W_x(r, i)) * x[step / T][step % T][i];
      next[r] = a * h[r] + (1 - a) * v;
    }
    h = next;
  }
  EXPECT_LT(worst, 1e-9) << "(rounding, amplified by chaos) the exported inputs drive the spectrum's states";

  // flossing iteration 4 of seed 3: the trials of its 35-step trajectory
  ASSERT_EQ(rnnsweep_cli("trials --task romo --stream floss --seed 3 --iteration 4 --out " + dir + "/f.csv" + sets).code, 0);
  const std::string floss = read_file(dir + "/f.csv");
  const TaskParams& romo = config.romo;
  const int romo_chain = int((35 + romo.T() - 1) / romo.T());
  EXPECT_EQ(std::count(floss.begin(), floss.end(), '\n'), 1 + romo_chain * romo.T());
  cpu::Trials f;
  cpu::fill_trials(romo, Purpose::floss_trials, 3, 4, romo_chain, f);
  std::istringstream frows(floss);
  std::getline(frows, line);
  for (int k = 0; k < 4; ++k) std::getline(frows, line);  // trial 0, step 3
  EXPECT_EQ(line.substr(0, line.find(',', 4)), "0,3," + format_number(f.x[size_t(3) * f.Bt * f.I]));

  // each stream takes its own keys, and says which
  for (const auto& [args, says] : std::vector<std::pair<std::string, std::string>>{
           {"--stream spectrum --seed 3 --iteration 1", "takes no --iteration (use --trajectory"},
           {"--stream floss --data-seed 3 --iteration 1", "takes no --data-seed"},
           {"--stream spectrum --trajectory 1", "needs --seed"},
           {"--stream floss --seed 3 --iteration 1 --batch 4", "takes no --batch"},
           {"--data-seed 3 --iteration 1", "--batch 0: allowed"},
           {"--stream lyapunov --seed 3", "allowed: training | spectrum | floss"}}) {
    const Outcome o = rnnsweep_cli("trials --task 2af " + args + " --out " + dir + "/never.csv");
    EXPECT_EQ(o.code, 2) << args;
    EXPECT_NE(o.err.find(says), std::string::npos) << args << ": " << o.err;
    EXPECT_FALSE(fs::exists(dir + "/never.csv"));
  }
}

TEST(Sweep, LyapunovCommandWritesOnlyInitialSpectra) {
  const std::string dir = scratch("lyapunov");
  ASSERT_EQ(rnnsweep_cli("lyapunov " + small_config(dir) + " --quiet --set le_k=3 --out " + dir + "/o").code,
            0);
  const std::string spectra = read_file(dir + "/o/lyapunov.csv");
  EXPECT_EQ(spectra.find(",trained,"), std::string::npos);
  EXPECT_EQ(spectra.find(",flossed,"), std::string::npos);
  // 48 networks x 3 exponents + header
  EXPECT_EQ(std::count(spectra.begin(), spectra.end(), '\n'), 1 + 48 * 3);
  EXPECT_NE(spectra.find("0,init,3,"), std::string::npos);
  EXPECT_EQ(spectra.substr(0, spectra.find('\n')), "network,phase,index,lambda,finite");
  // every row says whether its exponent is finite, and says it right: the full spectra of 2af
  // (a = 0) have annihilated directions
  ASSERT_EQ(rnnsweep_cli("lyapunov " + small_config(dir) +
                         " --quiet --set tasks=2af --set seeds=[0] --set le_k=16 --out " + dir + "/full")
                .code,
            0);
  const std::string full = read_file(dir + "/full/lyapunov.csv");
  std::istringstream rows(full.substr(full.find('\n') + 1));
  int infinite = 0;
  for (std::string row; std::getline(rows, row);) {
    const bool minus_inf = row.find(",-inf,") != std::string::npos;
    infinite += minus_inf;
    EXPECT_EQ(row.substr(row.rfind(',') + 1), minus_inf ? "false" : "true") << row;
  }
  EXPECT_GT(infinite, 0) << "2af and dms (a = 0) annihilate directions: the test needs some -inf rows";
  EXPECT_FALSE(fs::exists(dir + "/o/curves.csv")) << "no training, no curves";
  // Each distinct initial network (task, gain, seed) once: 48 grid points, 12 spectra computed.
  // A grid of one rule, flossed, has none in common, so it computes every spectrum of its own,
  // and each must be the one recorded for every grid point of the same task, gain and seed.
  const Outcome alone = rnnsweep_cli("lyapunov " + small_config(dir) +
                                     " --set le_k=3 --set rules=[rflo] --set floss=[true] --out " + dir + "/alone");
  ASSERT_EQ(alone.code, 0) << alone.err;
  const Outcome shared = rnnsweep_cli("lyapunov " + small_config(dir) + " --set le_k=3 --out " + dir + "/shared");
  ASSERT_EQ(shared.code, 0) << shared.err;
  EXPECT_NE(shared.err.find("48 networks share 12 distinct initial networks"), std::string::npos) << shared.err;
  EXPECT_NE(alone.err.find("12 networks share 12 distinct"), std::string::npos) << alone.err;
  auto spectra_by_point = [&](const std::string& out, const std::vector<std::string>& overrides) {
    const Config c = load_config(dir + "/small.toml", overrides);
    std::map<long, std::string> point;  // network id -> "task gain seed"
    for (const auto& n : expand_grid(c))
      point[n.id] = std::string(task_name(n.task)) + " " + format_number(n.gain) + " " + std::to_string(n.seed);
    std::map<std::string, std::set<std::string>> spectra;  // point -> its rows "index,lambda"
    std::istringstream rows(read_file(out + "/lyapunov.csv"));
    std::string row;
    std::getline(rows, row);
    while (std::getline(rows, row)) {
      const size_t comma = row.find(',');
      const long id = std::stol(row.substr(0, comma));
      spectra[point.at(id)].insert(std::to_string(id) + ":" + row.substr(row.find(",init,") + 6));
    }
    return spectra;
  };
  const auto a = spectra_by_point(dir + "/alone", {"le_k=3", "rules=[rflo]", "floss=[true]"});
  const auto b = spectra_by_point(dir + "/shared", {"le_k=3"});
  ASSERT_EQ(a.size(), 12u);
  ASSERT_EQ(b.size(), 12u);
  for (const auto& [p, rows_a] : a) {
    std::set<std::string> values_a, values_b;  // the spectra without the network ids
    for (const auto& r : rows_a) values_a.insert(r.substr(r.find(':') + 1));
    for (const auto& r : b.at(p)) values_b.insert(r.substr(r.find(':') + 1));
    EXPECT_EQ(values_a, values_b) << p;
    EXPECT_EQ(b.at(p).size(), 4u * 3) << p << ": 4 grid points (2 rules x 2 floss) x 3 exponents";
  }
  // No invented training statistics: status untrained, loss columns empty.
  const std::string networks = read_file(dir + "/o/networks.csv");
  EXPECT_NE(networks.find("\n0,romo,gaussian,16,8,bptt,0.5,0.001,0,0,false,untrained,,0,,,,,,-"), std::string::npos)
      << networks;
  EXPECT_NE(read_file(dir + "/o/manifest.json").find("\"mode\": \"lyapunov\""), std::string::npos);
}

// Whether this machine has no GPU (nvidia-smi finds none). On a GPU machine the cuda backend
// cases below instead check the refusal of a hidden size no thread block can hold.
bool no_gpu_here() { return std::system("nvidia-smi -L > /dev/null 2>&1") != 0; }

TEST(Sweep, BadInputExitsWithTwoAndOneLineBeforeAnyWork) {
  const std::string dir = scratch("bad");
  const std::string config = small_config(dir);
  struct Bad {
    std::string args, says;
  };
  const Bad cases[] = {
      {"run " + config + " --thread 2", "did you mean '--threads'"},
      {"run " + config + " --set gains=[-1]", "config key 'gains'"},
      {"run " + config + " --set hidden=0", "config key 'hidden'"},
      {"lyapunov " + config + " --set le_k=17", "config key 'le_k'"},
      {"run " + config + " --set floss_k=17", "config key 'floss_k'"},
      {"run " + config + " --set 'tasks=[\"romo\",\"xor\"]'", "invalid value \"xor\""},
      {"run " + config + " --set lr=0.1", "did you mean 'lrs'"},
      {"run " + config + " --set 2af.fixation_cue=off", "config key '2af.fixation_cue'"},
      {"run " + config + " --backend gpu", "allowed: auto, cpu"},
      // without a GPU (or a build without CUDA) the cuda backend is refused (with one, every
      // hidden size runs: the layered path takes what no thread block holds, so nothing is
      // refused there and the case checks a bad key instead)
      no_gpu_here() ? Bad{"run " + config + " --backend cuda --set hidden=4096", "--backend cuda: "}
                    : Bad{"run " + config + " --backend cuda --set hidden=-1", "config key 'hidden'"},
      {"run " + dir + "/missing.toml", "cannot read config"},
      {"trials --task xor --data-seed 0 --iteration 0 --batch 1", "romo, 2af, dms"},
      {"trials --task romo --data-seed 0 --iteration 0 --batch 0", "--batch"},
  };
  for (const auto& c : cases) {
    const Outcome o = rnnsweep_cli(c.args + " --out " + dir + "/never");
    EXPECT_EQ(o.code, 2) << c.args << "\n" << o.err;
    EXPECT_NE(o.err.find(c.says), std::string::npos) << c.args << "\n" << o.err;
    EXPECT_EQ(std::count(o.err.begin(), o.err.end(), '\n'), 1) << "one line: " << o.err;
    EXPECT_FALSE(fs::exists(dir + "/never")) << "nothing may be written before the input is checked";
  }
}

TEST(Sweep, ExistingResultsAreNeverOverwrittenWithoutForce) {
  const std::string dir = scratch("force");
  const std::string config = small_config(dir);
  const std::string args = "run " + config + " --quiet --set tasks=romo --set rules=bptt --out " + dir + "/o";
  ASSERT_EQ(rnnsweep_cli(args).code, 0);
  const std::string before = read_file(dir + "/o/networks.csv");
  const Outcome again = rnnsweep_cli(args + " --set iters=3");
  EXPECT_EQ(again.code, 2);
  EXPECT_NE(again.err.find("--force"), std::string::npos) << again.err;
  EXPECT_EQ(read_file(dir + "/o/networks.csv"), before);
  // figures drawn from the old results go with them under --force
  fs::create_directories(dir + "/o/plots");
  std::ofstream(dir + "/o/plots/learning_curves.png") << "old";
  EXPECT_EQ(rnnsweep_cli(args + " --set iters=3 --force").code, 0);
  EXPECT_NE(read_file(dir + "/o/networks.csv"), before);
  EXPECT_FALSE(fs::exists(dir + "/o/plots")) << "the old results' plots were kept";
}

// ---- the H200 model behind `plan --backend cuda` without a GPU (host/gpu_model.cpp) ----------

TEST(GpuModel, ThePapersGridIsModeledUnderAMinuteAndScalesAsItShould) {
  const Config paper = load_config(std::string(RNNSWEEP_SOURCE_DIR) + "/configs/paper.toml", {});
  const RunOptions options;
  const GpuModelEstimate m = model_gpu_time(paper, expand_grid(paper), options);
  EXPECT_LT(m.total(), 60.0) << "the spectrum issue's target for configs/paper.toml";
  EXPECT_GT(m.train_s, 1.0);
  EXPECT_GT(m.spectra_s, 0.5);
  EXPECT_GT(m.floss_s, 0.5);
  // twice the iterations, twice the training; spectra unchanged
  Config longer = paper;
  longer.iters *= 2;
  const GpuModelEstimate l = model_gpu_time(longer, expand_grid(longer), options);
  EXPECT_NEAR(l.train_s, 2 * m.train_s, 1e-9 * m.train_s);
  EXPECT_EQ(l.spectra_s, m.spectra_s);
  // a launch fills the GPU in waves of 528 blocks (132 SMs x 4 blocks of romo's two-row e-prop
  // instance): one network costs a whole wave
  Config one = default_config_with({"tasks=romo", "rules=eprop", "gains=[1.0]", "lrs=[1e-3]", "seeds=[0]",
                                    "floss=[false]"});
  RunOptions train_only;
  train_only.spectra = false;
  auto train_s = [&](int seeds) {
    Config c = one;
    c.seeds.clear();
    for (int s = 0; s < seeds; ++s) c.seeds.push_back(s);
    return model_gpu_time(c, expand_grid(c), train_only).train_s;
  };
  EXPECT_DOUBLE_EQ(train_s(1), train_s(528));
  EXPECT_DOUBLE_EQ(train_s(529), 2 * train_s(528));
  // tf32x3 models faster than fp32 at the study's shape
  Config tf32 = paper;
  tf32.precision = "tf32x3";
  EXPECT_LT(model_gpu_time(tf32, expand_grid(tf32), options).train_s, m.train_s);
}

}  // namespace
