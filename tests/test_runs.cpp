// Runs that survive: interrupted by SIGTERM, killed between checkpoints, split into shards,
// stopped by a full disk or a damaged checkpoint; each then finishes with the same tables as an
// uninterrupted run, or fails with one clear line and loses nothing already written.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "host/run_store.h"
#include "rnnsweep/grid.h"
#include "tests/cli_support.h"

namespace fs = std::filesystem;
using namespace rnnsweep::test;

namespace {

const char* kTables[] = {"networks.csv", "curves.csv",  "floss_curves.csv",
                         "lyapunov.csv", "summary.csv", "lyapunov_curves.csv"};

void expect_same_tables(const std::string& got, const std::string& want) {
  for (const char* table : kTables) {
    const std::string w = read_file(want + "/" + table);
    ASSERT_FALSE(w.empty()) << want << "/" << table;
    EXPECT_EQ(read_file(got + "/" + table), w) << table << " of " << got << " differs from " << want;
  }
}

// A sweep long enough (about a second on two cores, several under the sanitizers) to be
// interrupted mid-training, with a checkpoint every 50 iterations of each network.
std::string long_config(const std::string& dir) {
  const std::string path = dir + "/long.toml";
  std::ofstream(path) << "tasks = ['romo', '2af']\nrules = ['bptt', 'eprop']\ngains = [0.5, 1.5]\nlrs = [1e-3]\n"
                         "seeds = [0, 1]\nfloss = [false, true]\nhidden = 16\nbatch = 8\niters = 600\n"
                         "log_every = 50\nle_steps = 60\nle_warmup = 10\nle_batch = 2\nfloss_iters = 4\n"
                         "floss_k = 4\nfloss_steps = 20\nfloss_warmup = 5\ncheckpoint_every = 50\nle_every = 70\n"
                         "floss_every = 250\nfloss_iters_each = 2\neval_every = 100\neval_trials = 16\nalignment = true\n";
  return path;
}

// rnnsweep started in the background; stderr to `err_file`.
pid_t spawn(const std::string& args, const std::string& err_file) {
  const std::string cmd = "exec " + std::string(RNNSWEEP_BINARY) + " " + args + " > /dev/null 2> " + err_file;
  const pid_t pid = fork();
  if (pid == 0) {
    execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  return pid;
}

// Waits until `done()` holds or 60 s pass; false on timeout.
template <typename Condition>
bool wait_until(Condition done) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

bool has_checkpoint(const std::string& dir) {
  if (!fs::exists(dir + "/checkpoints")) return false;
  for (const auto& e : fs::directory_iterator(dir + "/checkpoints"))
    if (e.path().extension() == ".ckpt") return true;
  return false;
}

// The signal tests run on the CPU backend, whatever the machine: at this size a GPU trains a
// whole chunk in well under the time the test takes to see a checkpoint, so the signal would
// race the end of the run. They test the run store (journal, checkpoints, resume), which both
// backends share; the CUDA backend's own stop and resume at a checkpoint are tested in process
// (test_cuda_backend.cpp, AStoppedChunkResumesFromItsCheckpointsExactly).
const char* const kSignalBackend = " --backend cpu";

// Starts a run of `config` into `dir`, waits until at least one network has finished and one
// has written a checkpoint, sends `signal`, and returns the wait status.
int interrupt_run(const std::string& config, const std::string& dir, int signal) {
  // progress lines (plain: stderr is a file) so that the last one can be checked
  const pid_t pid =
      spawn("run " + config + kSignalBackend + " --progress-every 0.2 --threads 2 --out " + dir, dir + ".err");
  const bool progressed = wait_until([&] { return fs::exists(dir + "/results.jsonl") && has_checkpoint(dir); });
  kill(pid, signal);
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_TRUE(progressed) << "the run never reached a checkpoint: " << read_file(dir + ".err");
  return status;
}

// The uninterrupted reference run of `config`, in dir/reference, on `backend` ("" for auto, as
// the runs it is compared with).
std::string reference_run(const std::string& config, const std::string& dir, const std::string& backend = "") {
  const std::string out = dir + "/reference";
  EXPECT_EQ(rnnsweep_cli("run " + config + backend + " --quiet --threads 2 --out " + out).code, 0);
  return out;
}

TEST(Runs, SigtermMidTrainingThenResumeGivesTheUninterruptedTables) {
  const std::string dir = scratch("sigterm");
  const std::string config = long_config(dir);
  const std::string run = dir + "/run";
  const int status = interrupt_run(config, run, SIGTERM);
  ASSERT_TRUE(WIFEXITED(status)) << "SIGTERM is handled, not fatal";
  ASSERT_EQ(WEXITSTATUS(status), 3) << "exit code 3: interrupted, resumable. " << read_file(run + ".err");
  EXPECT_NE(read_file(run + "/manifest.json").find("\"status\": \"interrupted\""), std::string::npos);
  EXPECT_NE(read_file(run + ".err").find("rnnsweep run --resume"), std::string::npos);
  EXPECT_FALSE(fs::exists(run + "/networks.csv")) << "no tables until every network is done";
  // but the finished networks' tables, as a snapshot marked partial
  const std::string journal = read_file(run + "/results.jsonl");
  const long finished = std::count(journal.begin(), journal.end(), '\n');
  const nlohmann::json snapshot = nlohmann::json::parse(read_file(run + "/partial/manifest.json"));
  EXPECT_EQ(snapshot.at("status"), "partial");
  EXPECT_EQ(snapshot.at("partial").at("networks_in_tables"), finished);
  EXPECT_EQ(snapshot.at("partial").at("run_status"), "interrupted");
  const std::string rows = read_file(run + "/partial/networks.csv");
  EXPECT_EQ(std::count(rows.begin(), rows.end(), '\n'), 1 + finished);
  EXPECT_NE(read_file(run + ".err").find(run + "/partial"), std::string::npos) << "the message says where";
  // the last progress line says the run stopped and what was left, not an ETA of 0:00
  const std::string err = read_file(run + ".err");
  EXPECT_EQ(err.find('\r'), std::string::npos) << "stderr is a file: plain lines";
  const size_t last = err.rfind("% (");
  ASSERT_NE(last, std::string::npos) << err;
  EXPECT_NE(err.find(" to go\n", last), std::string::npos) << err;
  EXPECT_EQ(err.find("stopped with", last), err.find("stopped with")) << "one final line: " << err;

  const Outcome resumed = rnnsweep_cli("run --resume " + run + " --quiet");
  ASSERT_EQ(resumed.code, 0) << resumed.err;
  EXPECT_NE(resumed.err.find("resuming"), std::string::npos) << resumed.err;
  EXPECT_NE(read_file(run + "/manifest.json").find("\"status\": \"complete\""), std::string::npos);
  expect_same_tables(run, reference_run(config, dir, kSignalBackend));
  EXPECT_FALSE(fs::exists(run + "/checkpoints")) << "a complete run keeps no checkpoints";
  EXPECT_FALSE(fs::exists(run + "/partial")) << "the whole tables supersede the snapshot";
  // and once complete, a resume has nothing to do
  EXPECT_EQ(rnnsweep_cli("run --resume " + run + " --quiet").code, 0);
}

TEST(Runs, SigkillBetweenCheckpointsThenResumeGivesTheUninterruptedTables) {
  const std::string dir = scratch("sigkill");
  const std::string config = long_config(dir);
  const std::string run = dir + "/run";
  const int status = interrupt_run(config, run, SIGKILL);
  ASSERT_TRUE(WIFSIGNALED(status)) << "killed outright";
  // the manifest still says running: nothing had the chance to update it
  EXPECT_NE(read_file(run + "/manifest.json").find("\"status\": \"running\""), std::string::npos);
  const Outcome resumed = rnnsweep_cli("run --resume " + run + " --quiet --threads 1");
  ASSERT_EQ(resumed.code, 0) << resumed.err;
  expect_same_tables(run, reference_run(config, dir, kSignalBackend));
}

TEST(Runs, ADamagedCheckpointIsAClearErrorAndNothingElseIsLost) {
  // A network's checkpoint goes when it finishes, so on a loaded machine the networks that had
  // one when the signal was sent may all have finished by the time the run stops: then the
  // interruption is tried again, in a fresh folder.
  std::string dir, config, run, damaged;
  for (int attempt = 0; attempt < 3 && damaged.empty(); ++attempt) {
    dir = scratch("damaged" + std::to_string(attempt));
    config = long_config(dir);
    run = dir + "/run";
    ASSERT_EQ(WEXITSTATUS(interrupt_run(config, run, SIGTERM)), 3);
    for (const auto& e : fs::directory_iterator(run + "/checkpoints"))
      if (e.path().extension() == ".ckpt") damaged = e.path().string();
  }
  ASSERT_FALSE(damaged.empty()) << "three interruptions left no checkpoint to damage";
  {
    std::fstream f(damaged, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(100);
    f.put('\x5a');
  }
  const std::string journal = read_file(run + "/results.jsonl");
  const Outcome bad = rnnsweep_cli("run --resume " + run + " --quiet");
  EXPECT_EQ(bad.code, 1) << bad.err;
  EXPECT_NE(bad.err.find(damaged), std::string::npos) << "names the file: " << bad.err;
  EXPECT_NE(bad.err.find("damaged"), std::string::npos) << bad.err;
  EXPECT_EQ(std::count(bad.err.begin(), bad.err.end(), '\n'), 3) << "header lines and one error line: " << bad.err;
  EXPECT_EQ(read_file(run + "/results.jsonl").substr(0, journal.size()), journal) << "finished results survive";
  // Without the damaged checkpoint its network starts over, and the run still ends the same.
  fs::remove(damaged);
  ASSERT_EQ(rnnsweep_cli("run --resume " + run + " --quiet").code, 0);
  expect_same_tables(run, reference_run(config, dir, kSignalBackend));
}

TEST(Runs, AFullDiskFailsClearlyAndTheRunResumesAfterwards) {
  const std::string dir = scratch("fulldisk");
  const std::string config = small_config(dir);
  const std::string run = dir + "/run";
  // A file-size limit of 24 KiB stands in for a full disk: the journal outgrows it after a few
  // networks, and every write past it fails (EFBIG) as writes to a full disk do (ENOSPC).
  const std::string cmd = "ulimit -f 24; exec " + std::string(RNNSWEEP_BINARY) + " run " + config +
                          " --quiet --threads 1 --out " + run + " > /dev/null 2> " + dir + "/err";
  const int status = std::system(("/bin/sh -c '" + cmd + "'").c_str());
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1);
  const std::string err = read_file(dir + "/err");
  EXPECT_NE(err.find("results.jsonl"), std::string::npos) << "names the file: " << err;
  EXPECT_NE(err.find("--resume"), std::string::npos) << "says how to continue: " << err;
  const std::string journal = read_file(run + "/results.jsonl");
  ASSERT_FALSE(journal.empty()) << "the networks finished before the disk filled are kept";
  EXPECT_EQ(journal.back(), '\n') << "no torn line";
  EXPECT_NE(read_file(run + "/manifest.json").find("\"status\": \"failed\""), std::string::npos);
  const Outcome resumed = rnnsweep_cli("run --resume " + run + " --quiet");
  ASSERT_EQ(resumed.code, 0) << resumed.err;
  expect_same_tables(run, reference_run(config, dir));
}

TEST(Runs, ShardsMergedInAnyOrderEqualTheUnshardedRun) {
  const std::string dir = scratch("shards");
  const std::string config = small_config(dir);
  size_t networks = 0;
  for (int i = 0; i < 3; ++i) {
    const std::string shard = dir + "/shard" + std::to_string(i);
    ASSERT_EQ(rnnsweep_cli("run " + config + " --quiet --shard " + std::to_string(i) + "/3 --out " + shard).code, 0);
    const std::string journal = read_file(shard + "/results.jsonl");
    const size_t lines = size_t(std::count(journal.begin(), journal.end(), '\n'));
    EXPECT_GE(lines, 15u) << "cost-balanced: 48 equal-cost networks split 16/16/16";
    networks += lines;
  }
  EXPECT_EQ(networks, 48u);
  const Outcome merged = rnnsweep_cli("merge " + dir + "/shard2 " + dir + "/shard0 " + dir + "/shard1 --out " + dir +
                                      "/merged");
  ASSERT_EQ(merged.code, 0) << merged.err;
  expect_same_tables(dir + "/merged", reference_run(config, dir));
}

TEST(Runs, MergeRefusesMismatchedMissingDuplicatedOrUnfinishedShards) {
  const std::string dir = scratch("merge_refusals");
  const std::string config = small_config(dir);
  const std::string narrow = "--set tasks=romo --set rules=bptt";
  for (int i = 0; i < 2; ++i)
    ASSERT_EQ(rnnsweep_cli("run " + config + " " + narrow + " --quiet --shard " + std::to_string(i) + "/2 --out " +
                           dir + "/s" + std::to_string(i))
                  .code,
              0);
  ASSERT_EQ(rnnsweep_cli("run " + config + " " + narrow + " --set iters=3 --quiet --shard 1/2 --out " + dir + "/other")
                .code,
            0);
  ASSERT_EQ(rnnsweep_cli("run " + config + " " + narrow + " --quiet --shard 1/3 --out " + dir + "/three").code, 0);
  // an unfinished shard: its manifest says interrupted
  fs::copy(dir + "/s1", dir + "/unfinished", fs::copy_options::recursive);
  {
    std::string m = read_file(dir + "/unfinished/manifest.json");
    m.replace(m.find("\"complete\""), 10, "\"interrupted\"");
    std::ofstream(dir + "/unfinished/manifest.json") << m;
  }
  struct Refusal {
    std::string shards, says;
  };
  const Refusal cases[] = {
      {dir + "/s0 " + dir + "/other", "different config"},
      {dir + "/s0", "shard 1/2 is missing"},
      {dir + "/s0 " + dir + "/s1 " + dir + "/s1", "appears twice"},
      {dir + "/s0 " + dir + "/unfinished", "unfinished"},
      {dir + "/s0 " + dir + "/three", "one of 3 shards"},
      {dir + "/s0 " + dir + "/nothing", "not an rnnsweep results folder"},
  };
  for (const auto& c : cases) {
    const Outcome o = rnnsweep_cli("merge " + c.shards + " --out " + dir + "/never");
    EXPECT_EQ(o.code, 2) << c.shards << "\n" << o.err;
    EXPECT_NE(o.err.find(c.says), std::string::npos) << o.err;
    EXPECT_EQ(std::count(o.err.begin(), o.err.end(), '\n'), 1) << "one line: " << o.err;
    EXPECT_FALSE(fs::exists(dir + "/never")) << "nothing written on a refusal";
  }
  ASSERT_EQ(rnnsweep_cli("merge " + dir + "/s1 " + dir + "/s0 --out " + dir + "/merged").code, 0);
}

TEST(Runs, InsideASlurmArrayTaskTheShardComesFromItsVariables) {
  const std::string dir = scratch("slurm_env");
  const std::string config = small_config(dir);
  const Outcome o = rnnsweep_cli("run " + config + " --set tasks=romo --quiet --out " + dir + "/o",
                                 "SLURM_ARRAY_TASK_ID=5 SLURM_ARRAY_TASK_MIN=4 SLURM_ARRAY_TASK_COUNT=3");
  ASSERT_EQ(o.code, 0) << o.err;
  EXPECT_NE(o.err.find("shard 1/3"), std::string::npos) << o.err;
  const std::string manifest = read_file(dir + "/o/manifest.json");
  EXPECT_NE(manifest.find("\"count\": 3"), std::string::npos) << manifest;
  EXPECT_NE(manifest.find("\"index\": 1"), std::string::npos) << manifest;
}

TEST(Runs, ResumeAndShardRefuseBadInputBeforeAnyWork) {
  const std::string dir = scratch("resume_refusals");
  const std::string config = small_config(dir);
  struct Bad {
    std::string args, says;
  };
  const Bad cases[] = {
      {"run --resume " + dir + "/nothing", "not an rnnsweep results folder"},
      {"run " + config + " --resume " + dir + "/nothing", "drop the config file"},
      {"run " + config + " --shard 3/3 --out " + dir + "/never", "--shard '3/3'"},
      {"run " + config + " --shard two --out " + dir + "/never", "allowed: I/N"},
      {"plan " + config + " --shard 0/0", "--shard '0/0'"},
      // two overrides after one --set: each needs its own
      {"plan " + config + " --set iters=10 lrs=1e-3", "give each key=value its own --set"},
      // a folder that cannot be made (its parent is a file): refused before any work
      {"run " + config + " --out /dev/null/never", "cannot create the folder"},
  };
  for (const auto& c : cases) {
    const Outcome o = rnnsweep_cli(c.args);
    EXPECT_EQ(o.code, 2) << c.args << "\n" << o.err;
    EXPECT_NE(o.err.find(c.says), std::string::npos) << c.args << "\n" << o.err;
    EXPECT_FALSE(fs::exists(dir + "/never"));
  }
}

TEST(Runs, EachJournalLineCarriesItsGridCoordinatesAndReadsBackBitForBit) {
  using rnnsweep::NetworkResult;
  using rnnsweep::NetworkSpec;
  NetworkSpec spec{7, rnnsweep::TaskKind::dms, rnnsweep::Rule::eprop, 1.25, 3e-4, 2, 5, true,
                   rnnsweep::InitKind::dale};
  NetworkResult r;
  r.spec = spec;
  r.trained = true;
  r.iterations = 3;
  r.final_loss = 0.1;
  r.final_accuracy = 1.0 / 3;
  r.tail_loss = std::numeric_limits<double>::quiet_NaN();
  r.tail_accuracy = -0.0;
  r.best_loss = std::numeric_limits<double>::denorm_min();
  r.curve = {{0, 1e308, 0.5}, {2, std::numeric_limits<double>::infinity(), 0}};
  r.spectrum_init = {0.0123456789012345678, -std::numeric_limits<double>::infinity(), -1e-300};
  r.floss_curve = {{0, 2.5e-7, 4}};
  r.seconds = 12.75;
  const nlohmann::json line = nlohmann::json::parse(rnnsweep::result_to_json(r).dump());
  // readable alone: coordinates as in networks.csv, finite numbers as JSON numbers
  EXPECT_EQ(line.at("task"), "dms");
  EXPECT_EQ(line.at("init"), "dale");
  EXPECT_EQ(line.at("rule"), "eprop");
  EXPECT_EQ(line.at("gain").get<double>(), 1.25);
  EXPECT_EQ(line.at("lr").get<double>(), 3e-4);
  EXPECT_EQ(line.at("seed"), 2);
  EXPECT_EQ(line.at("data_seed"), 5);
  EXPECT_EQ(line.at("floss"), true);
  EXPECT_TRUE(line.at("final_loss").is_number_float());
  EXPECT_TRUE(line.at("spectrum_init").at(0).is_number_float());
  EXPECT_EQ(line.at("tail_loss"), "nan") << "JSON has no NaN: non-finite values are strings";
  EXPECT_EQ(line.at("spectrum_init").at(1), "-inf");
  // and back, every double to the bit
  const NetworkResult back = rnnsweep::result_from_json(line, spec);
  auto same = [](double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; };
  EXPECT_TRUE(same(back.final_loss, r.final_loss));
  EXPECT_TRUE(same(back.final_accuracy, r.final_accuracy));
  EXPECT_TRUE(std::isnan(back.tail_loss));
  EXPECT_TRUE(same(back.tail_accuracy, -0.0)) << "the sign of zero survives";
  EXPECT_TRUE(same(back.best_loss, r.best_loss));
  EXPECT_TRUE(same(back.curve[0].loss, 1e308));
  EXPECT_TRUE(same(back.curve[1].loss, r.curve[1].loss));
  for (size_t i = 0; i < r.spectrum_init.size(); ++i)
    EXPECT_TRUE(same(back.spectrum_init[i], r.spectrum_init[i])) << i;
  EXPECT_TRUE(same(back.floss_curve[0].loss, 2.5e-7));
  EXPECT_TRUE(same(back.seconds, 12.75));
  // a line whose coordinates are not the grid's (a journal of another config) is refused
  NetworkSpec other = spec;
  other.lr = 1e-3;
  EXPECT_THROW(rnnsweep::result_from_json(line, other), std::runtime_error);
  other = spec;
  other.rule = rnnsweep::Rule::rflo;
  EXPECT_THROW(rnnsweep::result_from_json(line, other), std::runtime_error);
  other = spec;
  other.init = rnnsweep::InitKind::sparse;
  EXPECT_THROW(rnnsweep::result_from_json(line, other), std::runtime_error);
}

TEST(Runs, PlanPrintsTheGridTheMemoryAndAnEstimate) {
  const std::string dir = scratch("plan");
  const std::string config = small_config(dir);
  const Outcome o = rnnsweep_cli("plan " + config + " --shard 1/4 --threads 1", "", dir + "/plan.txt");
  ASSERT_EQ(o.code, 0) << o.err;
  const std::string text = read_file(dir + "/plan.txt");
  for (const char* says : {"grid: 48 networks", "shard 1/4: 12 networks", "parameters per network",
                           "network-iterations", "estimated time:", "over 3 calibration repeats",
                           "samples of every rule of every task"})
    EXPECT_NE(text.find(says), std::string::npos) << says << " in:\n" << text;
}

TEST(Runs, PlanForTheGpuWithoutOneEstimatesFromTheKernelModel) {
  // A login node: --backend cuda has no GPU, so plan estimates from the kernels' static model
  // (host/gpu_model.cpp) and says so, instead of refusing.
  const std::string dir = scratch("plan_model");
  const Outcome o = rnnsweep_cli("plan " + std::string(RNNSWEEP_SOURCE_DIR) + "/configs/paper.toml --backend cuda",
                                 "", dir + "/plan.txt");
  ASSERT_EQ(o.code, 0) << o.err;
  const std::string text = read_file(dir + "/plan.txt");
  if (text.find("backend: cuda on ") != std::string::npos) GTEST_SKIP() << "a GPU is here: plan calibrates on it";
  for (const char* says : {"grid: 2520 networks", "static model of an H200", "estimated time on an H200:",
                           "not measured", "flossing 0:"})
    EXPECT_NE(text.find(says), std::string::npos) << says << " in:\n" << text;
  // the study's flossing (hidden 64, floss_k 32) has its register instance, which is modeled
  EXPECT_EQ(text.find("not modeled"), std::string::npos) << text;
  // other flossing shapes run on the general kernel, which is not: the estimate says so
  const Outcome other = rnnsweep_cli("plan " + std::string(RNNSWEEP_SOURCE_DIR) +
                                         "/configs/paper.toml --backend cuda --set floss_k=16",
                                     "", dir + "/plan16.txt");
  ASSERT_EQ(other.code, 0) << other.err;
  const std::string text16 = read_file(dir + "/plan16.txt");
  EXPECT_NE(text16.find("flossing: the general kernel (hidden 64, floss_k 16), not modeled"), std::string::npos)
      << text16;
}

}  // namespace
