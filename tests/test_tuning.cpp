// The tuning table (host/tuning.h): the committed table parses, tables round-trip through JSON,
// merging replaces what a new measurement covers, bad files are named, and the choice between
// the table's instance and the heuristic says which decided and why.
#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "host/tuning.h"
#include "tests/cli_support.h"

using namespace rnnsweep;

namespace {

TuningEntry entry(const std::string& kernel, const std::string& shape, const std::string& instance,
                  const std::string& heuristic, double instance_ms, double heuristic_ms) {
  TuningEntry e{kernel, shape, instance, heuristic, {{instance, instance_ms}}};
  e.timings_ms[heuristic] = heuristic_ms;
  return e;
}

TuningTable table_with(const std::string& gpu, std::vector<TuningEntry> entries) {
  TuningTable t;
  t.origin = "test";
  t.merge(gpu, GpuTuning{"2026-12-01T00:00:00Z", "0.1.0", std::move(entries)});
  return t;
}

TEST(Tuning, TheCommittedTableParses) {
  const TuningTable t = TuningTable::builtin();
  EXPECT_EQ(t.origin, "built in (bench/tuning.json)");
  const TuningTable file = TuningTable::load(std::string(RNNSWEEP_SOURCE_DIR) + "/bench/tuning.json");
  EXPECT_EQ(file.dump(), t.dump()) << "the compiled-in table is the committed file";
}

TEST(Tuning, TablesRoundTripAndMergeReplacesWhatIsRemeasured) {
  TuningTable t = table_with("NVIDIA H200", {entry("train_step", "H=64 Bt=32 I=3 O=2 bias=0", "threads=512 W_h=shared grad=shared",
                                                   "threads=256 W_h=shared grad=shared", 1.0, 1.5),
                                             entry("spectrum", "H=64 k=64 I=3 O=2 T=56", "threads=128 W_h=shared frames=shared",
                                                   "threads=128 W_h=shared frames=shared", 2.0, 2.0)});
  const TuningTable back = TuningTable::parse(t.dump(), "round trip");
  EXPECT_EQ(back.dump(), t.dump());
  ASSERT_NE(back.find("NVIDIA H200", "train_step", "H=64 Bt=32 I=3 O=2 bias=0"), nullptr);
  EXPECT_EQ(back.find("NVIDIA H200", "train_step", "H=64 Bt=32 I=3 O=2 bias=0")->timings_ms.at(
                "threads=256 W_h=shared grad=shared"),
            1.5);
  EXPECT_EQ(back.find("NVIDIA H100", "train_step", "H=64 Bt=32 I=3 O=2 bias=0"), nullptr) << "another GPU";
  EXPECT_EQ(back.find("NVIDIA H200", "train_step", "H=32 Bt=32 I=3 O=2 bias=0"), nullptr) << "another shape";
  // a new measurement of one shape replaces that entry, keeps the others, adds new GPUs
  t.merge("NVIDIA H200", GpuTuning{"later", "0.1.0",
                                   {entry("train_step", "H=64 Bt=32 I=3 O=2 bias=0", "threads=128 W_h=shared grad=shared",
                                          "threads=256 W_h=shared grad=shared", 0.9, 1.5)}});
  t.merge("NVIDIA H100", GpuTuning{"later", "0.1.0", {}});
  EXPECT_EQ(t.gpus.at("NVIDIA H200").entries.size(), 2u);
  EXPECT_EQ(t.find("NVIDIA H200", "train_step", "H=64 Bt=32 I=3 O=2 bias=0")->instance,
            "threads=128 W_h=shared grad=shared");
  EXPECT_EQ(t.gpus.count("NVIDIA H100"), 1u);
}

TEST(Tuning, TheChoiceSaysWhichDecidedAndWhy) {
  const std::string shape = "H=64 Bt=32 I=3 O=2 bias=0", heuristic = "threads=256 W_h=shared grad=shared",
                    faster = "threads=512 W_h=shared grad=shared";
  const TuningTable t = table_with("NVIDIA H200", {entry("train_step", shape, faster, heuristic, 1.0, 1.5)});
  const std::vector<std::string> available = {heuristic, faster};
  TuningChoice c = choose_instance(t, "NVIDIA H200", "train_step", shape, available, heuristic);
  EXPECT_TRUE(c.from_table);
  EXPECT_EQ(c.instance, faster);
  EXPECT_NE(c.why.find("1.50x faster than the heuristic's " + heuristic), std::string::npos) << c.why;
  // no entry for this GPU or shape: the heuristic, saying so
  c = choose_instance(t, "NVIDIA A100", "train_step", shape, available, heuristic);
  EXPECT_FALSE(c.from_table);
  EXPECT_EQ(c.instance, heuristic);
  EXPECT_NE(c.why.find("has no train_step entry for " + shape + " on NVIDIA A100"), std::string::npos) << c.why;
  // an entry naming an instance this build does not have: the heuristic
  c = choose_instance(t, "NVIDIA H200", "train_step", shape, {heuristic}, heuristic);
  EXPECT_FALSE(c.from_table);
  EXPECT_NE(c.why.find("is not available here"), std::string::npos) << c.why;
}

TEST(Tuning, BadTablesAreNamedWithTheirProblem) {
  const struct {
    std::string text, says;
  } cases[] = {
      {"{", "not valid JSON"},
      {"{\"format\": \"something else\", \"gpus\": {}}", "is not a \"rnnsweep tuning table 1\""},
      {"{\"format\": \"rnnsweep tuning table 1\"}", "has no object 'gpus'"},
      {"{\"format\": \"rnnsweep tuning table 1\", \"gpus\": {\"X\": {}}}", "GPU 'X' has no array 'entries'"},
      {"{\"format\": \"rnnsweep tuning table 1\", \"gpus\": {\"X\": {\"entries\": [{\"kernel\": \"floss\"}]}}}",
       "has no string 'shape'"},
  };
  for (const auto& c : cases) {
    try {
      TuningTable::parse(c.text, "t.json");
      ADD_FAILURE() << "accepted " << c.text;
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find("tuning table t.json: "), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(c.says), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW(TuningTable::load("/nonexistent/tuning.json"), std::runtime_error);
}

TEST(Tuning, TuneRefusesBadArgumentsBeforeAnyWork) {
  using test::rnnsweep_cli;
  const std::string dir = test::scratch("tune");
  {
    std::ofstream(dir + "/broken.json") << "{";
  }
  const struct {
    std::string args, says;
  } cases[] = {
      {"tune", "--out is required"},
      {"tune --out " + dir + "/t.json --shapes romo:64", "--shapes 'romo:64'"},
      {"tune --out " + dir + "/t.json --shapes fast:64:32", "--shapes 'fast:64:32'"},
      {"tune --out " + dir + "/t.json --networks 0", "--networks 0"},
      {"tune --out " + dir + "/nowhere/t.json", "its folder does not exist"},
      {"tune --out " + dir + "/broken.json", "never overwritten"},
  };
  for (const auto& c : cases) {
    const test::Outcome o = rnnsweep_cli(c.args);
    EXPECT_EQ(o.code, 2) << c.args << "\n" << o.err;
    EXPECT_NE(o.err.find(c.says), std::string::npos) << c.args << "\n" << o.err;
    EXPECT_EQ(std::count(o.err.begin(), o.err.end(), '\n'), 1) << "one line: " << o.err;
  }
  EXPECT_EQ(test::read_file(dir + "/broken.json"), "{") << "a bad table is left as it was";
  EXPECT_FALSE(std::ifstream(dir + "/t.json").good());
}

}  // namespace
