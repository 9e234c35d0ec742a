// Config keys: defaults, file + overrides, and the one-line errors for bad input.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "rnnsweep/config.h"
#include "rnnsweep/grid.h"

using namespace rnnsweep;

namespace {

std::string write_config(const std::string& text) {
  // named after the test and a counter: ctest runs tests as parallel processes
  static int n = 0;
  const std::string path = testing::TempDir() + "/rnnsweep_config_" +
                           testing::UnitTest::GetInstance()->current_test_info()->name() + "_" +
                           std::to_string(n++) + ".toml";
  std::ofstream(path) << text;
  return path;
}

// The message of the UsageError that loading `text` with `overrides` throws.
std::string error_of(const std::string& text, const std::vector<std::string>& overrides = {}) {
  try {
    load_config(write_config(text), overrides);
  } catch (const UsageError& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(Config, DefaultsAreThePaperGrid) {
  const Config c = load_config(write_config(""), {});
  EXPECT_EQ(c.gains, (std::vector<double>{0.2, 0.5, 0.8, 1.0, 1.2, 1.5, 2.0}));
  EXPECT_EQ(c.lrs, (std::vector<double>{1e-4, 3e-4, 1e-3, 3e-3}));
  EXPECT_EQ(c.seeds.size(), 5u);
  EXPECT_EQ(c.hidden, 64);
  EXPECT_EQ(c.batch, 32);
  EXPECT_EQ(c.spectrum_k(), 64);
  EXPECT_EQ(c.precision, "fp32");
  EXPECT_EQ(expand_grid(c).size(), size_t(3 * 3 * 7 * 4 * 5));
}

TEST(Config, FileThenOverrides) {
  const Config c =
      load_config(write_config("gains = [0.5]\niters = 7\n[2af]\nsigma = 0.3\n"),
                  {"iters=9", "tasks=romo,dms", "lrs=0.01", "2af.coherences=[0, 50]", "bias=true"});
  EXPECT_EQ(c.gains, std::vector<double>{0.5});
  EXPECT_EQ(c.iters, 9);
  EXPECT_EQ(c.tasks, (std::vector<std::string>{"romo", "dms"}));
  EXPECT_EQ(c.lrs, std::vector<double>{0.01});
  EXPECT_DOUBLE_EQ(c.two_af.sigma, 0.3);
  EXPECT_EQ(c.two_af.n_coherences, 2);
  EXPECT_TRUE(c.bias);
  const auto j = config_to_json(c);
  EXPECT_EQ(j["iters"], 9);
  EXPECT_EQ(j["2af.sigma"], 0.3);
}

TEST(Config, OverridesTakeTheShellsSpacesAndBracketedBareLists) {
  // what a new user typed: spaces around = and after commas, a bracketed list of bare words
  const Config c = default_config_with({"gains = [0.5, 1.0]", "tasks=romo, dms", " iters =  12 ", "rules=[bptt, rflo]",
                                        "seeds=[3]"});
  EXPECT_EQ(c.gains, (std::vector<double>{0.5, 1.0}));
  EXPECT_EQ(c.tasks, (std::vector<std::string>{"romo", "dms"}));
  EXPECT_EQ(c.iters, 12);
  EXPECT_EQ(c.rules, (std::vector<std::string>{"bptt", "rflo"}));
  EXPECT_EQ(c.seeds, std::vector<long>{3});
  EXPECT_EQ(default_config_with({"tasks=[dms]"}).tasks, std::vector<std::string>{"dms"});
  // an empty value says so, naming the key
  try {
    default_config_with({"romo.T="});
    FAIL() << "an empty value must be refused";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("the value of 'romo.T' is empty"), std::string::npos) << e.what();
  }
  // dt as written, not as std::to_string prints it
  try {
    default_config_with({"2af.dt=33"});
    FAIL() << "100 ms of fixation is not a multiple of 33 ms";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("not a multiple of dt = 33 ms"), std::string::npos) << e.what();
  }
}

TEST(Config, GridIdsFollowTheAxisOrder) {
  const Config c = load_config(
      write_config("tasks=['2af','romo']\nrules=['eprop']\ngains=[1,2]\nlrs=[0.1]\nseeds=[4,5]\n"), {});
  const auto g = expand_grid(c);
  ASSERT_EQ(g.size(), 8u);
  EXPECT_EQ(g[0].task, TaskKind::two_af);
  EXPECT_EQ(g[1].seed, 5u);
  EXPECT_EQ(g[2].gain, 2.0);
  EXPECT_EQ(g[4].task, TaskKind::romo);
  EXPECT_EQ(g[7].id, 7);
  EXPECT_EQ(g[3].data_seed, g[3].seed) << "data_seed = -1: each network's own seed";
}

TEST(Config, HiddenAndBatchListsAreGridAxesAfterTheInit) {
  const Config c = default_config_with({"tasks=[romo]", "init=[gaussian,orthogonal]", "hidden=[16,32]", "batch=[4,8,16]",
                                        "rules=[eprop]", "gains=[1]", "lrs=[1e-3]", "seeds=[0]"});
  EXPECT_EQ(c.hiddens(), (std::vector<int>{16, 32}));
  EXPECT_EQ(c.batches(), (std::vector<int>{4, 8, 16}));
  EXPECT_EQ(c.hidden, 16) << "the first value is the config's own shape";
  const auto g = expand_grid(c);
  ASSERT_EQ(g.size(), 12u);
  EXPECT_EQ(g[0].hidden, 16);
  EXPECT_EQ(g[0].batch, 4);
  EXPECT_EQ(g[1].batch, 8) << "batch inside hidden";
  EXPECT_EQ(g[3].hidden, 32);
  EXPECT_EQ(g[6].init, InitKind::orthogonal) << "hidden and batch inside init";
  EXPECT_EQ(config_of(c, g[5]).hidden, 32);
  EXPECT_EQ(config_of(c, g[5]).batch, 16);
  EXPECT_EQ(config_of(c, g[5]).spectrum_k(), 32) << "unset le_k is each network's full spectrum";
  // one value is today's scalar key, and the ids of a grid without these axes
  const Config one = default_config_with({"hidden=[24]", "batch=8"});
  EXPECT_TRUE(one.hidden_list.empty());
  EXPECT_EQ(one.hidden, 24);
  EXPECT_EQ(config_to_json(one).at("hidden"), 24);
  EXPECT_EQ(config_to_json(c).at("hidden"), (nlohmann::json{16, 32}));
  EXPECT_EQ(config_to_json(c).at("le_k"), 0) << "le_k stays unset (0) over several sizes";
}

TEST(Config, UnknownKeySuggestsTheNearest) {
  const std::string e = error_of("gain = [1.0]\n");
  EXPECT_NE(e.find("unknown config key 'gain'"), std::string::npos) << e;
  EXPECT_NE(e.find("did you mean 'gains'"), std::string::npos) << e;
  const std::string e2 = error_of("", {"2af.sigm=0.1"});
  EXPECT_NE(e2.find("did you mean '2af.sigma'"), std::string::npos) << e2;
}

TEST(Config, OutOfRangeValuesNameKeyAndAllowedValues) {
  struct Bad {
    std::string text, key, allowed;
  };
  const Bad cases[] = {
      {"gains = [0.5, -1.0]", "'gains'", "numbers >= 0"},
      {"lrs = [0.0]", "'lrs'", "numbers > 0"},
      {"lrs = [-1e-3]", "'lrs'", "numbers > 0"},
      {"hidden = 0", "'hidden'", "[1, 4096]"},
      {"batch = 0", "'batch'", "[1, 65536]"},
      {"tasks = ['romo', 'foo']", "'tasks'", "romo 2af dms"},
      {"rules = ['backprop']", "'rules'", "bptt eprop rflo"},
      {"optimizer = 'rmsprop'", "'optimizer'", "adam sgd"},
      {"precision = 'fp16'", "'precision'", "fp32 tf32x3"},
      {"iters = 1.5", "'iters'", "[1, 2^32)"},
      {"hidden = 8\nle_k = 9", "'le_k'", "[1, hidden]"},
      {"[2af]\nstimulus = 150", "'2af.stimulus'", "multiple of dt"},
      {"[romo]\nT = 40", "'romo.T'", ">= 55"},
      {"iters = 'many'", "'iters'", "[1, 2^32)"},
      {"gains = [1.0, 0.5, 1.0]", "'gains'", "distinct"},
      {"le_k = -1", "'le_k'", "[1, hidden]"},
      {"le_steps = 0", "'le_steps'", "[1, 10^7]"},
      {"le_batch = 0", "'le_batch'", "[1, 65536]"},
      {"hidden = 16\nfloss = [true]", "'floss_k'", "[1, hidden]"},
      {"floss_k = 0", "'floss_k'", "[1, hidden]"},
      {"floss_lr = -1", "'floss_lr'", "> 0"},
      {"floss = [true]\nfloss_iters = 0", "'floss_iters'", "[1, 2^32)"},
      {"floss_every = 10", "'floss_every'", "floss = [false, true]"},
      {"floss_every = -1", "'floss_every'", "[0, 2^32)"},
      {"floss = [true]\nfloss_every = 10\nfloss_iters_each = 0", "'floss_iters_each'", "[1, 2^32)"},
      {"iters = 5000000000", "'iters'", "[1, 2^32)"},
      {"le_steps = 100000000000", "'le_steps'", "[1, 10^7]"},
      {"batch = 100000", "'batch'", "[1, 65536]"},
      {"init = ['random']", "'init'", "gaussian orthogonal lowrank sparse dale"},
      {"init = ['dale', 'dale']", "'init'", "distinct"},
      {"hidden = 8\ninit = ['lowrank']\n[lowrank]\nrank = 9", "'lowrank.rank'", "[1, hidden]"},
      {"[lowrank]\nrank = 0", "'lowrank.rank'", "[1, hidden]"},
      {"[sparse]\ndensity = 0", "'sparse.density'", "(0, 1]"},
      {"[sparse]\ndensity = 1.5", "'sparse.density'", "(0, 1]"},
      {"[dale]\nexcitatory = 1", "'dale.excitatory'", "(0, 1)"},
      {"hidden = 1\nle_k = 1\ninit = ['dale']", "'init'", "hidden >= 2"},
      {"hidden = 8\nle_track_k = 9", "'le_track_k'", "[1, hidden]"},
      {"le_every = -1", "'le_every'", "[0, 2^32)"},
      {"eval_every = 15", "'eval_every'", "multiple of log_every"},
      {"eval_every = 10\neval_trials = 20", "'eval_trials'", "multiple of batch"},
      {"eval_every = 10\nbatch = [16, 32]\neval_trials = 48", "'eval_trials'", "batch = 32"},
      {"alignment = 1", "'alignment'", "true or false"},
      {"hidden = [16, 32, 16]", "'hidden'", "distinct"},
      {"hidden = [16, 0]", "'hidden'", "[1, 4096], or a list of them"},
      {"batch = [8, 100000]", "'batch'", "[1, 65536], or a list of them"},
      {"hidden = [32, 16]\nle_k = 20", "'le_k'", "hidden = 16 (the smallest)"},
  };
  for (const auto& c : cases) {
    const std::string e = error_of(c.text);
    EXPECT_NE(e.find(c.key), std::string::npos) << c.text << " -> " << e;
    EXPECT_NE(e.find(c.allowed), std::string::npos) << c.text << " -> " << e;
    EXPECT_EQ(e.find('\n'), std::string::npos) << "one line: " << e;
  }
}

TEST(Config, UnreadableFilesAreUsageErrors) {
  EXPECT_THROW(load_config("/nonexistent/config.toml", {}), UsageError);
  EXPECT_NE(error_of("gains = [0.5,\n").find("cannot read config"), std::string::npos);
  EXPECT_NE(error_of("", {"noequals"}).find("key=value"), std::string::npos);
}

// Found by fuzzing (tests/fuzz/): each was a crash, undefined behaviour or a message of several
// lines, or (a folder) a silent run of the default grid.
TEST(Config, FuzzFindingsAreOneLineUsageErrors) {
  struct Bad {
    std::string text;
    std::vector<std::string> overrides;
    std::string says;
  };
  const Bad cases[] = {
      {"optimizer = \"a\\nb\"", {}, "\"a\\nb\""},  // a TOML escape: the newline is shown escaped
      {"\"ga\\nins\" = 1", {}, "unknown config key 'ga\\nins'"},
      {"", {"tasks=romo\ndms"}, "config key 'tasks'"},
      {"gains = [[0.5, -0.25]]", {}, "invalid value [0.5, -0.25]"},
      {"iters = 1e300", {}, "config key 'iters'"},
      {"iters = inf", {}, "config key 'iters'"},
      {"[romo]\ndelay_max = 1e300", {}, "config key 'romo.delay_max'"},
      {"[2af]\ndt = 1e-9", {}, "config key '2af.dt'"},
  };
  for (const auto& c : cases) {
    const std::string e = error_of(c.text, c.overrides);
    EXPECT_NE(e.find(c.says), std::string::npos) << c.text << " -> " << e;
    EXPECT_EQ(e.find('\n'), std::string::npos) << "one line: " << e;
  }
  try {
    load_config(testing::TempDir(), {});
    ADD_FAILURE() << "a folder was read as a config";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("is a folder"), std::string::npos) << e.what();
  }
}

TEST(Config, TextAndFileAgree) {
  const std::string text = "gains = [0.5]\n[2af]\nsigma = 0.3\n";
  EXPECT_EQ(config_to_json(load_config_text(text, {"iters=9"}, "x.toml")),
            config_to_json(load_config(write_config(text), {"iters=9"})));
}

TEST(Config, NearestIgnoresFarWords) {
  EXPECT_EQ(nearest("threads", {"--threads", "threads"}), "threads");
  EXPECT_EQ(nearest("zzzzzzzzzz", {"gains", "lrs"}), "");
}

}  // namespace
