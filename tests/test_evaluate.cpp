// `rnnsweep evaluate` end to end: a sweep's saved networks run on fresh trials. The files are
// checked against a forward pass written here in double from the .npy files alone (the
// trainer's code is not used), the tables against a choice rule and losses written here, and
// every bad input against exit 2 with one line and nothing written.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>

#include "host/cpu/tasks.h"
#include "rnnsweep/task.h"
#include "tests/cli_support.h"

namespace fs = std::filesystem;
using namespace rnnsweep;
using namespace rnnsweep::test;

namespace {

// An .npy file as numpy writes it: shape, type code, raw C-order data.
struct Npy {
  std::vector<long> shape;
  std::string descr, data;
  float f(size_t i) const {
    float v;
    std::memcpy(&v, data.data() + 4 * i, 4);
    return v;
  }
  int i32(size_t i) const {
    std::int32_t v;
    std::memcpy(&v, data.data() + 4 * i, 4);
    return v;
  }
  size_t size() const {
    size_t n = 1;
    for (long d : shape) n *= size_t(d);
    return n;
  }
};

Npy load_npy(const std::string& path) {
  const std::string bytes = read_file(path);
  Npy n;
  EXPECT_GE(bytes.size(), 10u) << path;
  if (bytes.size() < 10) return n;
  const size_t len = (unsigned char)bytes[8] + 256 * size_t((unsigned char)bytes[9]);
  const std::string header = bytes.substr(10, len);
  std::smatch m;
  EXPECT_TRUE(std::regex_search(header, m, std::regex("'descr': '([^']+)'"))) << header;
  n.descr = m[1];
  EXPECT_TRUE(std::regex_search(header, m, std::regex("'shape': \\(([^)]*)\\)"))) << header;
  std::stringstream dims(m[1].str());
  for (std::string d; std::getline(dims, d, ',');)
    if (d.find_first_not_of(' ') != std::string::npos) n.shape.push_back(std::stol(d));
  EXPECT_EQ((10 + len) % 64, 0u) << path;
  n.data = bytes.substr(10 + len);
  EXPECT_EQ(n.data.size(), 4 * n.size()) << path;
  return n;
}

std::vector<std::vector<std::string>> read_csv(const std::string& path) {
  std::vector<std::vector<std::string>> rows;
  std::stringstream in(read_file(path));
  for (std::string line; std::getline(in, line);) {
    std::vector<std::string> cells;
    std::stringstream l(line);
    for (std::string c; std::getline(l, c, ',');) cells.push_back(c);
    if (!line.empty() && line.back() == ',') cells.push_back("");
    rows.push_back(cells);
  }
  return rows;
}

// The sweep evaluated below: every task, BPTT, two gains, one seed, with biases (so that b and
// b_out travel through the weight files too).
std::string trained_run(const std::string& dir, const std::string& extra = "") {
  const std::string config = small_config(dir);
  const std::string out = dir + "/run";
  const Outcome o = rnnsweep_cli("run " + config + " --quiet --save-weights --set rules=bptt --set seeds=0 "
                                 "--set floss=false --set bias=true --set iters=40 " + extra + " --out " + out);
  EXPECT_EQ(o.code, 0) << o.err;
  return out;
}

TEST(Evaluate, StatesOutputsAndTablesMatchAForwardPassWrittenFromTheFiles) {
  const std::string dir = scratch("evaluate");
  const std::string run = trained_run(dir);
  const int N = 24;
  const Outcome o = rnnsweep_cli("evaluate " + run + " --trials 24 --data-seed 3 --stage both --out " + dir + "/ev");
  ASSERT_EQ(o.code, 0) << o.err;
  const std::string ev = dir + "/ev";
  const auto evaluation = read_csv(ev + "/evaluation.csv");
  const auto psych = read_csv(ev + "/psychometric.csv");
  const auto conditions = read_csv(ev + "/trials.csv");
  ASSERT_EQ(evaluation[0], (std::vector<std::string>{"network", "stage", "task", "trials", "loss", "accuracy"}));
  ASSERT_EQ(psych[0], (std::vector<std::string>{"network", "stage", "task", "condition", "level", "trials", "accuracy",
                                                "p_second"}));
  ASSERT_EQ(conditions[0], (std::vector<std::string>{"task", "trial", "correct", "f1", "f2", "delay_steps", "coherence",
                                                     "sample", "match", "file_row", "file_pool"}));
  ASSERT_EQ(evaluation.size(), 1u + 6 * 2) << "3 tasks x 2 gains, init and final";
  ASSERT_EQ(conditions.size(), 1u + 3 * N);

  std::map<std::string, double> loss_of;  // "id/stage" -> loss
  for (size_t r = 1; r < evaluation.size(); ++r) loss_of[evaluation[r][0] + "/" + evaluation[r][1]] = std::stod(evaluation[r][4]);
  const char* names[] = {"romo", "2af", "dms"};
  for (int k = 0; k < 3; ++k) {
    TaskParams task;
    task.kind = TaskKind(k);
    const int T = task.T(), I = task.inputs(), O = task.outputs(), H = 16;
    const Npy x = load_npy(ev + "/" + names[k] + "_x.npy");
    ASSERT_EQ(x.shape, (std::vector<long>{N, T, I}));
    // the documented stream: batch 0 of Purpose::evaluate_trials under --data-seed
    cpu::Trials want;
    cpu::fill_trials(task, Purpose::evaluate_trials, 3, 0, N, want);
    for (int n = 0; n < N; ++n)
      for (int t = 0; t < T; ++t)
        for (int i = 0; i < I; ++i)
          ASSERT_EQ(x.f((size_t(n) * T + t) * I + i), want.x[(size_t(t) * N + n) * I + i]) << names[k];
    Npy label, target, mask;
    if (task.classification()) {
      label = load_npy(ev + "/" + names[k] + "_label.npy");
      ASSERT_EQ(label.descr, "<i4");
      ASSERT_EQ(label.shape, (std::vector<long>{N, T}));
    } else {
      target = load_npy(ev + "/" + names[k] + "_target.npy");
      mask = load_npy(ev + "/" + names[k] + "_mask.npy");
      ASSERT_EQ(target.shape, (std::vector<long>{N, T, O}));
    }
    // what trials.csv says each trial is, checked against its inputs and labels
    std::vector<int> correct(N);
    std::map<std::string, std::vector<double>> level;  // condition -> each trial's level
    for (int n = 0; n < N; ++n) {
      const auto& c = conditions[1 + k * N + n];
      ASSERT_EQ(c[0], names[k]);
      ASSERT_EQ(std::stoi(c[1]), n);
      correct[n] = std::stoi(c[2]);
      const auto xs = [&](int t, int i) { return x.f((size_t(n) * T + t) * I + i); };
      if (k == 0) {
        const double f1 = std::stod(c[3]), f2 = std::stod(c[4]);
        const int f2_on = task.romo_f1_onset + task.romo_pulse + std::stoi(c[5]);
        EXPECT_EQ(xs(task.romo_f1_onset, 0), float(f1));
        EXPECT_EQ(xs(f2_on, 0), float(f2));
        EXPECT_EQ(correct[n], f1 > f2 ? 0 : 1);
        const int response = f2_on + task.romo_pulse + task.romo_response_gap;
        EXPECT_GT(target.f((size_t(n) * T + response) * O + correct[n]), 0.0f) << "the response is on the correct channel";
        const double d = std::fabs(f1 - f2);
        level["abs_f1_minus_f2"].push_back(d < 0.4 ? 0.3 : d < 0.6 ? 0.5 : d < 0.8 ? 0.7 : 0.9);  // bins of 0.2
        level["f1_minus_f2"].push_back(std::round((std::floor((f1 - f2) / 0.2) + 0.5) * 0.2 * 10) / 10);
      } else {
        EXPECT_EQ(label.i32(size_t(n) * T + T - 1), correct[n]) << "the label at the decision";
        if (k == 1) {
          const double coherence = std::stod(c[6]);
          level["coherence"].push_back(coherence);
          level["signed_coherence"].push_back(correct[n] == 2 ? coherence : -coherence);
          const float mean2 = (xs(5, 2) + xs(6, 2) + xs(7, 2) + xs(8, 2)) / 4, mean1 = (xs(5, 1) + xs(6, 1) + xs(7, 1) + xs(8, 1)) / 4;
          if (std::stod(c[6]) > 40) {
            EXPECT_EQ(correct[n] == 2, mean2 > mean1) << "evidence on the correct channel";
          }
        } else {
          EXPECT_EQ(c[8] == "true", correct[n] == 1);
          level["match"].push_back(c[8] == "true" ? 1 : 0);
        }
      }
    }

    for (int g = 0; g < 2; ++g) {
      const long id = k * 2 + g;
      for (const std::string stage : {"init", "final"}) {
        auto weight = [&](const std::string& name) { return load_npy(run + "/weights/net" + std::to_string(id) + "_" + stage + "_" + name + ".npy"); };
        const Npy W_h = weight("W_h"), W_x = weight("W_x"), w = weight("w"), b = weight("b"), b_out = weight("b_out");
        const std::string stem = ev + "/net" + std::to_string(id) + "_" + stage + "_";
        const Npy h = load_npy(stem + "h.npy"), y = load_npy(stem + "y.npy");
        ASSERT_EQ(h.shape, (std::vector<long>{N, T, H}));
        ASSERT_EQ(y.shape, (std::vector<long>{N, T, O}));
        // h_{t+1} = a h_t + (1 - a)(W_h relu(h_t) + W_x x_t + b), y_t = w relu(h_{t+1}) + b_out, in
        // double, one step at a time from the file's own h_t (so that float rounding, amplified by
        // a chaotic network over T steps, does not blur the check)
        const double a = task.leak();
        double loss = 0, mask_sum = 0;
        std::vector<int> choice(N);
        for (int n = 0; n < N; ++n) {
          std::vector<double> state(H, 0.0), next(H), sum(O, 0.0);
          for (int t = 0; t < T; ++t) {
            for (int r = 0; r < H; ++r) {
              double drive = b.f(r);
              for (int c = 0; c < H; ++c) drive += W_h.f(size_t(r) * H + c) * std::max(state[c], 0.0);
              for (int i = 0; i < I; ++i) drive += W_x.f(size_t(r) * I + i) * x.f((size_t(n) * T + t) * I + i);
              next[r] = a * state[r] + (1 - a) * drive;
            }
            for (int r = 0; r < H; ++r) {
              state[r] = h.f((size_t(n) * T + t) * H + r);
              ASSERT_NEAR(state[r], next[r], 2e-5 * (1 + std::fabs(next[r])))
                  << "net " << id << " " << stage << " trial " << n << " step " << t << " unit " << r;
            }
            std::vector<double> out(O);
            for (int o2 = 0; o2 < O; ++o2) {
              out[o2] = b_out.f(o2);
              for (int c = 0; c < H; ++c) out[o2] += w.f(size_t(o2) * H + c) * std::max(state[c], 0.0);
              ASSERT_NEAR(y.f((size_t(n) * T + t) * O + o2), out[o2], 2e-5 * (1 + std::fabs(out[o2])));
            }
            const size_t step = size_t(n) * T + t;
            if (task.classification()) {
              double mx = out[0], z = 0;
              for (double v : out) mx = std::max(mx, v);
              for (double v : out) z += std::exp(v - mx);
              loss += -(out[label.i32(step)] - mx - std::log(z));
              if (label.i32(step) != 0)
                for (int o2 = 0; o2 < O; ++o2) sum[o2] += out[o2];
            } else {
              bool response = false;
              for (int o2 = 0; o2 < O; ++o2) {
                const double m = mask.f(step * O + o2), e = out[o2] - target.f(step * O + o2);
                loss += 0.5 * m * e * e, mask_sum += m;
                response |= target.f(step * O + o2) > 0;
              }
              if (response)
                for (int o2 = 0; o2 < O; ++o2) sum[o2] += out[o2];
            }
          }
          // the choice: fixation (output 0 of 2af and dms) is not one
          const int first = task.classification() ? 1 : 0;
          choice[n] = int(std::max_element(sum.begin() + first, sum.end()) - sum.begin());
        }
        loss /= task.classification() ? double(N) * T : mask_sum;
        EXPECT_NEAR(loss_of.at(std::to_string(id) + "/" + stage), loss, 1e-4 * (1 + loss));
        // psychometric.csv: accuracy and share of second choices per level, for every condition
        const int second = task.classification() ? 2 : 1;
        for (const auto& [condition, levels] : level) {
          int rows = 0, covered = 0;
          for (const auto& r : psych) {
            if (r[0] != std::to_string(id) || r[1] != stage || r[3] != condition) continue;
            ++rows;
            int trials = 0, right = 0, seconds = 0;
            for (int n = 0; n < N; ++n)
              if (std::fabs(levels[n] - std::stod(r[4])) < 1e-9)
                ++trials, right += choice[n] == correct[n], seconds += choice[n] == second;
            ASSERT_GT(trials, 0) << condition << " " << r[4];
            covered += trials;
            EXPECT_EQ(std::stoi(r[5]), trials) << condition << " " << r[4];
            EXPECT_NEAR(std::stod(r[6]), double(right) / trials, 1e-12) << condition << " " << r[4];
            EXPECT_NEAR(std::stod(r[7]), double(seconds) / trials, 1e-12) << condition << " " << r[4];
          }
          EXPECT_EQ(covered, N) << "every trial in one level of " << condition;
          EXPECT_GE(rows, 2) << id << " " << stage << " " << condition;
        }
      }
    }
  }
  // training changed the networks: the final outputs are not the initial ones
  EXPECT_NE(read_file(ev + "/net0_init_y.npy"), read_file(ev + "/net0_final_y.npy"));
}

TEST(Evaluate, DefaultsToEveryNetworkWithWeightsAndItsOptionsDoWhatTheySay) {
  const std::string dir = scratch("evaluate_defaults");
  const std::string run = trained_run(dir, "--set tasks=2af");
  ASSERT_EQ(rnnsweep_cli("evaluate " + run + " --trials 8").code, 0);
  EXPECT_TRUE(fs::exists(run + "/evaluate/net0_final_h.npy"));
  EXPECT_TRUE(fs::exists(run + "/evaluate/net1_final_y.npy"));
  EXPECT_FALSE(fs::exists(run + "/evaluate/net0_init_y.npy")) << "the default stage is final";
  EXPECT_FALSE(fs::exists(run + "/evaluate.tmp"));
  const std::string x0 = read_file(run + "/evaluate/2af_x.npy");
  // another data seed, other trials; --no-states leaves h out; --force replaces the evaluation
  const Outcome again = rnnsweep_cli("evaluate " + run + " --trials 8 --data-seed 1 --networks 1 --no-states --force");
  ASSERT_EQ(again.code, 0) << again.err;
  EXPECT_NE(read_file(run + "/evaluate/2af_x.npy"), x0);
  EXPECT_FALSE(fs::exists(run + "/evaluate/net1_final_h.npy"));
  EXPECT_FALSE(fs::exists(run + "/evaluate/net0_final_y.npy")) << "the previous evaluation was not replaced whole";
  EXPECT_TRUE(fs::exists(run + "/evaluate/net1_final_y.npy"));
}

TEST(Evaluate, BadInputExitsWithTwoAndOneLineAndWritesNothing) {
  const std::string dir = scratch("evaluate_bad");
  const std::string run = trained_run(dir, "--set tasks=dms");
  const std::string config = small_config(dir);
  ASSERT_EQ(rnnsweep_cli("run " + config + " --quiet --set tasks=dms --set iters=3 --out " + dir + "/unsaved").code, 0);
  ASSERT_EQ(rnnsweep_cli("lyapunov " + config + " --quiet --set tasks=dms --out " + dir + "/lyap").code, 0);
  ASSERT_EQ(rnnsweep_cli("evaluate " + run + " --trials 4 --out " + dir + "/taken").code, 0);
  const std::string before = read_file(dir + "/taken/evaluation.csv");
  struct Bad {
    std::string args, says;
  };
  const Bad cases[] = {
      {"evaluate " + dir + "/nowhere", "no manifest.json"},
      {"evaluate " + dir + "/unsaved", "--save-weights"},
      {"evaluate " + dir + "/lyap", "is a lyapunov run"},
      {"evaluate " + run + " --networks 99", "has no network 99"},
      {"evaluate " + run + " --networks 1-0", "not an id or a range"},
      {"evaluate " + run + " --networks 0,x", "not an id or a range"},
      {"evaluate " + run + " --networks 0,0", "appears twice"},
      {"evaluate " + run + " --stage trained", "allowed: final | init | both"},
      {"evaluate " + run + " --trials 0", "--trials"},
      {"evaluate " + run + " --data-seed -1", "--data-seed"},
      {"evaluate " + run + " --trial 4", "did you mean '--trials'"},
  };
  for (const auto& c : cases) {
    const Outcome o = rnnsweep_cli(c.args + " --out " + dir + "/never");
    EXPECT_EQ(o.code, 2) << c.args << "\n" << o.err;
    EXPECT_NE(o.err.find(c.says), std::string::npos) << c.args << "\n" << o.err;
    EXPECT_EQ(std::count(o.err.begin(), o.err.end(), '\n'), 1) << "one line: " << o.err;
    EXPECT_FALSE(fs::exists(dir + "/never")) << c.args;
    EXPECT_FALSE(fs::exists(dir + "/never.tmp")) << c.args;
  }
  // an earlier evaluation is kept without --force; a run's own folder is never replaced
  const Outcome taken = rnnsweep_cli("evaluate " + run + " --trials 4 --out " + dir + "/taken");
  EXPECT_EQ(taken.code, 2);
  EXPECT_NE(taken.err.find("--force"), std::string::npos) << taken.err;
  EXPECT_EQ(read_file(dir + "/taken/evaluation.csv"), before);
  const Outcome onto_run = rnnsweep_cli("evaluate " + run + " --trials 4 --force --out " + dir + "/unsaved");
  EXPECT_EQ(onto_run.code, 2);
  EXPECT_NE(onto_run.err.find("not an rnnsweep evaluation"), std::string::npos) << onto_run.err;
  EXPECT_TRUE(fs::exists(dir + "/unsaved/networks.csv"));
  // a damaged weight file is named, before anything is written
  std::ofstream(run + "/weights/net0_final_W_h.npy") << "damaged";
  const Outcome damaged = rnnsweep_cli("evaluate " + run + " --out " + dir + "/never");
  EXPECT_EQ(damaged.code, 2);
  EXPECT_NE(damaged.err.find("net0_final_W_h.npy"), std::string::npos) << damaged.err;
  EXPECT_FALSE(fs::exists(dir + "/never"));
}

}  // namespace
