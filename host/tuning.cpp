// The tuning table (host/tuning.h): JSON in and out, lookups, and the choice between the
// table's instance and the heuristic's.
#include "host/tuning.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

namespace rnnsweep {

extern const char* const kBuiltinTuningJson;  // generated from bench/tuning.json by CMake

namespace {

using json = nlohmann::json;
constexpr const char* kFormat = "rnnsweep tuning table 1";

[[noreturn]] void bad(const std::string& origin, const std::string& what) {
  throw std::runtime_error("tuning table " + origin + ": " + what);
}

std::string text_of(const json& j, const char* key, const std::string& origin, const std::string& where) {
  if (!j.contains(key) || !j[key].is_string()) bad(origin, where + " has no string '" + key + "'");
  return j[key].get<std::string>();
}

std::string fixed(double x, int decimals) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.*f", decimals, x);
  return buffer;
}

}  // namespace

TuningTable TuningTable::parse(const std::string& json_text, const std::string& origin) {
  json j;
  try {
    j = json::parse(json_text);
  } catch (const json::exception& e) {
    bad(origin, std::string("not valid JSON (") + e.what() + ")");
  }
  if (!j.is_object() || j.value("format", "") != kFormat)
    bad(origin, std::string("is not a \"") + kFormat + "\" (its \"format\" key)");
  TuningTable table;
  table.origin = origin;
  if (!j.contains("gpus") || !j["gpus"].is_object()) bad(origin, "has no object 'gpus'");
  for (const auto& [gpu, g] : j["gpus"].items()) {
    const std::string where = "GPU '" + gpu + "'";
    if (!g.is_object() || !g.contains("entries") || !g["entries"].is_array())
      bad(origin, where + " has no array 'entries'");
    GpuTuning t;
    t.measured = g.value("measured", "");
    t.version = g.value("rnnsweep", "");
    for (const auto& e : g["entries"]) {
      if (!e.is_object()) bad(origin, where + ": an entry is not an object");
      TuningEntry entry;
      entry.kernel = text_of(e, "kernel", origin, where + " entry");
      entry.shape = text_of(e, "shape", origin, where + " entry " + entry.kernel);
      entry.instance = text_of(e, "instance", origin, where + " entry " + entry.kernel + " " + entry.shape);
      entry.heuristic = e.value("heuristic", "");
      if (e.contains("timings_ms")) {
        if (!e["timings_ms"].is_object()) bad(origin, where + " entry " + entry.shape + ": 'timings_ms' is not an object");
        for (const auto& [name, ms] : e["timings_ms"].items()) {
          if (!ms.is_number()) bad(origin, where + " entry " + entry.shape + ": timing of '" + name + "' is not a number");
          entry.timings_ms[name] = ms.get<double>();
        }
      }
      t.entries.push_back(std::move(entry));
    }
    table.gpus[gpu] = std::move(t);
  }
  return table;
}

TuningTable TuningTable::load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("tuning table " + path + ": cannot be read");
  std::stringstream ss;
  ss << in.rdbuf();
  return parse(ss.str(), path);
}

TuningTable TuningTable::builtin() { return parse(kBuiltinTuningJson, "built in (bench/tuning.json)"); }

const TuningTable& TuningTable::active() {
  static const TuningTable table = [] {
    const char* path = std::getenv("RNNSWEEP_TUNING");
    return path && *path ? load(path) : builtin();
  }();
  return table;
}

const TuningEntry* TuningTable::find(const std::string& gpu, const std::string& kernel,
                                     const std::string& shape) const {
  const auto g = gpus.find(gpu);
  if (g == gpus.end()) return nullptr;
  for (const TuningEntry& e : g->second.entries)
    if (e.kernel == kernel && e.shape == shape) return &e;
  return nullptr;
}

void TuningTable::merge(const std::string& gpu, const GpuTuning& measured) {
  GpuTuning& t = gpus[gpu];
  t.measured = measured.measured;
  t.version = measured.version;
  for (const TuningEntry& e : measured.entries) {
    auto same = std::find_if(t.entries.begin(), t.entries.end(),
                             [&](const TuningEntry& o) { return o.kernel == e.kernel && o.shape == e.shape; });
    if (same != t.entries.end())
      *same = e;
    else
      t.entries.push_back(e);
  }
  std::sort(t.entries.begin(), t.entries.end(), [](const TuningEntry& a, const TuningEntry& b) {
    return a.kernel != b.kernel ? a.kernel < b.kernel : a.shape < b.shape;
  });
}

std::string TuningTable::dump() const {
  json j;
  j["format"] = kFormat;
  j["about"] =
      "The fastest kernel instance per GPU and shape, measured by `rnnsweep tune` (scripts/device-check.sh "
      "runs it); compiled into rnnsweep, read by the CUDA backend. Regenerate rather than edit.";
  j["gpus"] = json::object();
  for (const auto& [gpu, t] : gpus) {
    json g;
    g["measured"] = t.measured;
    g["rnnsweep"] = t.version;
    g["entries"] = json::array();
    for (const TuningEntry& e : t.entries) {
      json entry;
      entry["kernel"] = e.kernel;
      entry["shape"] = e.shape;
      entry["instance"] = e.instance;
      entry["heuristic"] = e.heuristic;
      entry["timings_ms"] = json::object();
      for (const auto& [name, ms] : e.timings_ms) entry["timings_ms"][name] = ms;
      g["entries"].push_back(entry);
    }
    j["gpus"][gpu] = g;
  }
  return j.dump(2) + "\n";
}

TuningChoice choose_instance(const TuningTable& table, const std::string& gpu, const std::string& kernel,
                             const std::string& shape, const std::vector<std::string>& available,
                             const std::string& heuristic) {
  const TuningEntry* e = table.find(gpu, kernel, shape);
  if (!e)
    return {heuristic, "heuristic: the tuning table (" + table.origin + ") has no " + kernel + " entry for " +
                           shape + " on " + gpu,
            false};
  if (std::find(available.begin(), available.end(), e->instance) == available.end())
    return {heuristic,
            "heuristic: the tuning table's " + e->instance + " (" + table.origin + ") is not available here", false};
  std::string why = "tuning table (" + table.origin + ", " + gpu + ")";
  const auto mine = e->timings_ms.find(e->instance), theirs = e->timings_ms.find(heuristic);
  if (e->instance == heuristic)
    why += ": the heuristic's choice measured fastest";
  else if (mine != e->timings_ms.end() && theirs != e->timings_ms.end() && mine->second > 0)
    why += ": " + fixed(theirs->second / mine->second, 2) + "x faster than the heuristic's " + heuristic;
  return {e->instance, why, true};
}

}  // namespace rnnsweep
