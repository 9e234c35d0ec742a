// What the command-line tests share: running the rnnsweep binary, scratch folders, files.
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace rnnsweep::test {

struct Outcome {
  int code;
  std::string err;
};

inline std::string scratch(const std::string& name) {
  const std::string dir = testing::TempDir() + "/rnnsweep_sweep_" + name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

// Runs the rnnsweep binary with `args` (and `env`, "NAME=value ..." before the command),
// stdout to `stdout_file`; returns the exit code (128 for a crash) and stderr.
inline Outcome rnnsweep_cli(const std::string& args, const std::string& env = "",
                            const std::string& stdout_file = "/dev/null") {
  // one file per test: ctest runs tests in parallel processes
  const std::string err_file = testing::TempDir() + "/rnnsweep_stderr_" +
                               testing::UnitTest::GetInstance()->current_test_info()->name() + ".txt";
  const std::string cmd =
      env + (env.empty() ? "" : " ") + std::string(RNNSWEEP_BINARY) + " " + args + " > " + stdout_file + " 2> " + err_file;
  const int status = std::system(cmd.c_str());
  std::ifstream in(err_file);
  std::stringstream ss;
  ss << in.rdbuf();
  // a crash (signal) must not read as success
  return {WIFEXITED(status) ? WEXITSTATUS(status) : 128, ss.str()};
}

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A real but small sweep: 3 tasks x 2 rules x 2 gains x 2 seeds x flossing off/on,
// 25 iterations, short spectra.
inline std::string small_config(const std::string& dir) {
  const std::string path = dir + "/small.toml";
  std::ofstream(path) << "tasks = ['romo', '2af', 'dms']\nrules = ['bptt', 'rflo']\ngains = [0.5, 1.5]\n"
                         "lrs = [1e-3]\nseeds = [0, 1]\nfloss = [false, true]\nhidden = 16\nbatch = 8\n"
                         "iters = 25\nlog_every = 5\nle_steps = 60\nle_warmup = 10\nle_batch = 2\n"
                         "floss_iters = 4\nfloss_k = 4\nfloss_steps = 20\nfloss_warmup = 5\nle_every = 10\n";
  return path;
}

}  // namespace rnnsweep::test
