// Fuzz target for the config parsers (host/config.cpp): the text of a config file and the
// `--set` overrides. Whatever the input, parsing either returns a Config whose derived numbers
// are computable, or throws a UsageError of one line that main prints before exiting with 2.
// Anything else (another exception, a crash, a sanitizer report, a hang) is a finding.
//
// Input: the config text, then one override per "\n--set " separator (an override may itself
// hold newlines, as a quoted shell argument can), e.g.
//   gains = [0.5]
//   --set iters=200
//   --set tasks=romo,dms
// Built with libFuzzer by scripts/fuzz.sh; tests/fuzz/replay_main.cpp replays tests/fuzz/corpus
// in ctest with any compiler.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "rnnsweep/config.h"

namespace {

using namespace rnnsweep;

[[noreturn]] void finding(const char* what, const std::string& detail) {
  std::fprintf(stderr, "fuzz_config: %s: %s\n", what, detail.c_str());
  std::abort();
}

bool starts_with(const std::string& s, const char* prefix) { return s.rfind(prefix, 0) == 0; }

// What main prints for a rejection: one line that names the key, the --set text or the file.
void check_message(const UsageError& e) {
  const std::string m = e.what();
  if (m.empty()) finding("empty UsageError message", m);
  if (m.find('\n') != std::string::npos || m.find('\r') != std::string::npos)
    finding("UsageError message of more than one line", m);
  if (!(starts_with(m, "config key '") || starts_with(m, "unknown config key '") ||
        starts_with(m, "--set '") || starts_with(m, "cannot read config '")))
    finding("UsageError message names no key, --set or config", m);
}

// A Config that passed validation: every number the backends derive from it must exist.
void check_config(const Config& c) {
  if (c.tasks.empty() || c.rules.empty() || c.gains.empty() || c.lrs.empty() || c.seeds.empty() ||
      c.floss.empty())
    finding("accepted an empty grid axis", config_to_json(c).dump());
  if (c.spectrum_k() < 1 || c.spectrum_k() > c.hidden) finding("accepted le_k outside [1, hidden]", "");
  for (TaskKind k : {TaskKind::romo, TaskKind::two_af, TaskKind::dms})
    if (c.task(k).T() < 1) finding("accepted a task with no steps", task_name(k));
  if (c.romo.romo_max_delay_steps() < 0) finding("accepted a negative romo delay", "");
  // the manifest: nlohmann throws on text that is not UTF-8
  (void)config_to_json(c).dump();
}

template <typename Parse>
void run(Parse parse) {
  try {
    check_config(parse());
  } catch (const UsageError& e) {
    check_message(e);
  } catch (const std::exception& e) {
    finding("exception other than UsageError", e.what());
  } catch (...) {
    finding("exception of an unknown type", "");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  const std::string sep = "\n--set ";
  std::vector<std::string> parts;
  for (std::size_t from = 0;;) {
    const std::size_t at = input.find(sep, from);
    parts.push_back(input.substr(from, at == std::string::npos ? std::string::npos : at - from));
    if (at == std::string::npos) break;
    from = at + sep.size();
  }
  const std::string text = parts[0];
  const std::vector<std::string> overrides(parts.begin() + 1, parts.end());
  run([&] { return load_config_text(text, overrides, "fuzz.toml"); });
  run([&] { return default_config_with(overrides); });
  return 0;
}
