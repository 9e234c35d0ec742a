// Config keys: one table row per key (name, allowed values, how to set it, how to read it
// back). Unknown keys, wrong types and out-of-range values are UsageErrors that name the key
// and its allowed values; cross-key checks run once everything is set.
#include "rnnsweep/config.h"

#include <toml++/toml.h>

#include "host/task_file.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <iomanip>
#include <sstream>

namespace rnnsweep {
namespace {

using json = nlohmann::json;

struct KeyDef {
  std::string name;
  std::string allowed;
  std::function<void(Config&, const toml::node&)> set;  // throws std::invalid_argument
  std::function<json(const Config&)> get;
};

// The value as the user wrote it, near enough. Containers are printed here, not by toml++'s
// formatter, which breaks long arrays over lines and (3.3) converts a negative log10 to size_t
// when weighing an array that holds a float in (-1, 1).
void describe(std::ostream& os, const toml::node& n) {
  if (auto arr = n.as_array()) {
    os << '[';
    for (size_t i = 0; i < arr->size(); ++i) describe(os << (i ? ", " : ""), *arr->get(i));
    os << ']';
  } else if (auto table = n.as_table()) {
    os << '{';
    bool first = true;
    for (const auto& [key, value] : *table) {
      describe(os << (first ? "" : ", ") << key.str() << " = ", value);
      first = false;
    }
    os << '}';
  } else {
    n.visit([&](const auto& v) {
      if constexpr (toml::is_string<decltype(v)>)
        os << '"' << v.get() << '"';
      else if constexpr (!toml::is_container<decltype(v)>)
        os << v;
    });
  }
}

[[noreturn]] void bad_value(const toml::node& n) {
  std::ostringstream os;
  describe(os, n);
  throw std::invalid_argument(os.str());
}

double as_double(const toml::node& n) {
  if (auto v = n.as_floating_point()) return v->get();
  if (auto v = n.as_integer()) return double(v->get());
  bad_value(n);
}

long as_long(const toml::node& n) {
  if (auto v = n.as_integer()) return long(v->get());
  // a whole float outside [-2^63, 2^63) (or infinite) has no long: converting it is undefined
  if (auto v = n.as_floating_point())
    if (std::floor(v->get()) == v->get() && v->get() >= -0x1p63 && v->get() < 0x1p63) return long(v->get());
  bad_value(n);
}

bool as_bool(const toml::node& n) {
  if (auto v = n.as_boolean()) return v->get();
  bad_value(n);
}

std::string as_string(const toml::node& n) {
  if (auto v = n.as_string()) return v->get();
  bad_value(n);
}

// A list key takes a TOML array or a single value.
template <typename T, typename Conv>
std::vector<T> as_list(const toml::node& n, Conv conv) {
  std::vector<T> out;
  if (auto arr = n.as_array()) {
    for (const auto& e : *arr) out.push_back(conv(e));
  } else {
    out.push_back(conv(n));
  }
  if (out.empty()) throw std::invalid_argument("[]");
  return out;
}

// `ref` returns a reference to the field; getters reuse it on a const Config (read only).
template <typename Get>
KeyDef number_key(std::string name, Get ref, double lo, double hi, std::string allowed) {
  return {name, allowed,
          [ref, lo, hi](Config& c, const toml::node& n) {
            double v = as_double(n);
            if (!(v >= lo && v <= hi)) bad_value(n);
            ref(c) = v;
          },
          [ref](const Config& c) { return json(ref(const_cast<Config&>(c))); }};
}

template <typename Get>
KeyDef int_key(std::string name, Get ref, long lo, long hi, std::string allowed) {
  return {name, allowed,
          [ref, lo, hi](Config& c, const toml::node& n) {
            long v = as_long(n);
            if (v < lo || v > hi) bad_value(n);
            ref(c) = static_cast<std::remove_reference_t<decltype(ref(c))>>(v);
          },
          [ref](const Config& c) { return json(ref(const_cast<Config&>(c))); }};
}

template <typename Get>
KeyDef choice_key(std::string name, Get ref, std::vector<std::string> choices) {
  std::string allowed = "one of";
  for (auto& s : choices) allowed += " " + s;
  return {name, allowed,
          [ref, choices](Config& c, const toml::node& n) {
            std::string v = as_string(n);
            if (std::find(choices.begin(), choices.end(), v) == choices.end()) bad_value(n);
            ref(c) = v;
          },
          [ref](const Config& c) { return json(ref(const_cast<Config&>(c))); }};
}

template <typename Get>
KeyDef choice_list_key(std::string name, Get ref, std::vector<std::string> choices) {
  std::string allowed = "a list of";
  for (auto& s : choices) allowed += " " + s;
  return {name, allowed,
          [ref, choices](Config& c, const toml::node& n) {
            ref(c) = as_list<std::string>(n, [&](const toml::node& e) {
              std::string v = as_string(e);
              if (std::find(choices.begin(), choices.end(), v) == choices.end()) bad_value(e);
              return v;
            });
          },
          [ref](const Config& c) { return json(ref(const_cast<Config&>(c))); }};
}

// Task keys live in a table per task: [romo], [2af], [dms].
#define TASK_NUMBER(table, field, key, lo, hi, allowed) \
  number_key(                                           \
      #table "." key, [](Config& c) -> double& { return c.field; }, lo, hi, allowed)
#define TASK_INT(table, field, key, lo, hi, allowed) \
  int_key(                                           \
      #table "." key, [](Config& c) -> int& { return c.field; }, lo, hi, allowed)

// NAME of a file task: it names output files (evaluate), so no path characters
bool valid_file_name(const std::string& name) {
  if (name.empty() || name.size() > 64) return false;
  for (unsigned char ch : name)
    if (!std::isalnum(ch) && ch != '_' && ch != '-') return false;
  return true;
}

const double kInf = std::numeric_limits<double>::infinity();
const long kMaxLong = std::numeric_limits<long>::max();
const long kMaxCounter = 4294967295L;  // the largest 32-bit Philox counter word
const long kMaxSteps = 10000000L;      // trajectory lengths: beyond this, memory, not science

std::vector<KeyDef> make_keys() {
  std::vector<KeyDef> k;
  // built-in tasks, and file:NAME for a task read from a file (a table [file.NAME] says which)
  k.push_back({"tasks", "a list of romo 2af dms and file:NAME (NAME: letters, digits, _ and -)",
               [](Config& c, const toml::node& n) {
                 c.tasks = as_list<std::string>(n, [&](const toml::node& e) {
                   std::string v = as_string(e);
                   const bool builtin = v == "romo" || v == "2af" || v == "dms";
                   if (!builtin && !(v.rfind("file:", 0) == 0 && valid_file_name(v.substr(5)))) bad_value(e);
                   return v;
                 });
               },
               [](const Config& c) { return json(c.tasks); }});
  k.push_back(choice_list_key("init", [](Config & c) -> auto& { return c.inits; },
                              {"gaussian", "orthogonal", "lowrank", "sparse", "dale"}));
  k.push_back(
      choice_list_key("rules", [](Config & c) -> auto& { return c.rules; }, {"bptt", "eprop", "rflo"}));
  k.push_back({"gains", "a list of numbers >= 0",
               [](Config& c, const toml::node& n) {
                 c.gains = as_list<double>(n, [](const toml::node& e) {
                   double v = as_double(e);
                   if (!(v >= 0 && v < kInf)) bad_value(e);
                   return v;
                 });
               },
               [](const Config& c) { return json(c.gains); }});
  k.push_back({"lrs", "a list of numbers > 0",
               [](Config& c, const toml::node& n) {
                 c.lrs = as_list<double>(n, [](const toml::node& e) {
                   double v = as_double(e);
                   if (!(v > 0 && v < kInf)) bad_value(e);
                   return v;
                 });
               },
               [](const Config& c) { return json(c.lrs); }});
  k.push_back({"seeds", "a list of integers in [0, 2^32)",
               [](Config& c, const toml::node& n) {
                 c.seeds = as_list<long>(n, [](const toml::node& e) {
                   long v = as_long(e);
                   if (v < 0 || v > 4294967295L) bad_value(e);
                   return v;
                 });
               },
               [](const Config& c) { return json(c.seeds); }});
  k.push_back({"floss", "a list of true / false",
               [](Config& c, const toml::node& n) { c.floss = as_list<bool>(n, as_bool); },
               [](const Config& c) { return json(c.floss); }});

  // hidden and batch: one value, or a list of distinct ones (a grid axis each)
  auto shape_key = [](std::string name, long hi, int Config::*value, std::vector<int> Config::*list) {
    const std::string allowed = "an integer in [1, " + std::to_string(hi) + "], or a list of them";
    return KeyDef{name, allowed,
                  [=](Config& c, const toml::node& n) {
                    std::vector<int> v = as_list<int>(n, [&](const toml::node& e) {
                      const long x = as_long(e);
                      if (x < 1 || x > hi) bad_value(e);
                      return int(x);
                    });
                    c.*value = v.front();
                    c.*list = v.size() > 1 ? v : std::vector<int>{};
                  },
                  [=](const Config& c) { return (c.*list).empty() ? json(c.*value) : json(c.*list); }};
  };
  k.push_back(shape_key("hidden", 4096, &Config::hidden, &Config::hidden_list));
  k.push_back(shape_key("batch", 65536, &Config::batch, &Config::batch_list));
  // iterations index the Philox counter (32 bits): past 2^32 the trial stream would repeat
  k.push_back(int_key(
      "iters", [](Config& c) -> long& { return c.iters; }, 1, kMaxCounter, "an integer in [1, 2^32)"));
  k.push_back(int_key(
      "log_every", [](Config& c) -> long& { return c.log_every; }, 1, kMaxLong, "an integer >= 1"));
  k.push_back(int_key(
      "checkpoint_every", [](Config& c) -> long& { return c.checkpoint_every; }, 0, kMaxLong,
      "0 (only on SIGTERM/SIGINT/SIGUSR1) or an integer >= 1 (training iterations)"));
  k.push_back(int_key(
      "eval_every", [](Config& c) -> long& { return c.eval_every; }, 0, kMaxCounter,
      "0 (no held-out evaluation) or a multiple of log_every"));
  k.push_back(int_key(
      "eval_trials", [](Config& c) -> long& { return c.eval_trials; }, 1, 1L << 24,
      "a multiple of batch in [1, 2^24]"));
  k.push_back({"alignment", "true or false", [](Config& c, const toml::node& n) { c.alignment = as_bool(n); },
               [](const Config& c) { return json(c.alignment); }});
  k.push_back(choice_key("optimizer", [](Config & c) -> auto& { return c.optimizer; }, {"adam", "sgd"}));
  k.push_back(choice_key("precision", [](Config & c) -> auto& { return c.precision; }, {"fp32", "tf32x3"}));
  k.push_back({"bias", "true or false", [](Config& c, const toml::node& n) { c.bias = as_bool(n); },
               [](const Config& c) { return json(c.bias); }});
  k.push_back(int_key(
      "data_seed", [](Config& c) -> long& { return c.data_seed; }, -1, 4294967295L,
      "-1 (each network's own seed) or an integer in [0, 2^32)"));
  k.push_back(number_key(
      "adam_beta1", [](Config& c) -> double& { return c.adam_beta1; }, 0, 0.999999, "a number in [0, 1)"));
  k.push_back(number_key(
      "adam_beta2", [](Config& c) -> double& { return c.adam_beta2; }, 0, 0.999999, "a number in [0, 1)"));
  k.push_back(number_key(
      "adam_eps", [](Config& c) -> double& { return c.adam_eps; }, 1e-300, 1, "a number in (0, 1]"));

  k.push_back(int_key(
      "le_k", [](Config& c) -> int& { return c.le_k; }, 0, 4096,
      "an integer in [1, hidden], or 0 for the full spectrum (the default: k = hidden)"));
  k.push_back(int_key(
      "le_steps", [](Config& c) -> long& { return c.le_steps; }, 1, kMaxSteps, "an integer in [1, 10^7]"));
  k.push_back(int_key(
      "le_warmup", [](Config& c) -> long& { return c.le_warmup; }, 0, kMaxSteps, "an integer in [0, 10^7]"));
  k.push_back(int_key(
      "le_batch", [](Config& c) -> int& { return c.le_batch; }, 1, 65536, "an integer in [1, 65536]"));
  k.push_back(int_key(
      "le_every", [](Config& c) -> long& { return c.le_every; }, 0, kMaxCounter,
      "an integer in [0, 2^32) (0: no spectra during training)"));
  k.push_back(int_key(
      "le_track_k", [](Config& c) -> int& { return c.le_track_k; }, 1, 4096, "an integer in [1, hidden]"));
  k.push_back(int_key(
      "floss_iters", [](Config& c) -> long& { return c.floss_iters; }, 0, kMaxCounter,
      "an integer in [0, 2^32) (0: no flossing before training, with floss_every > 0)"));
  k.push_back(int_key(
      "floss_every", [](Config& c) -> long& { return c.floss_every; }, 0, kMaxCounter,
      "an integer in [0, 2^32) (0: no flossing during training)"));
  k.push_back(int_key(
      "floss_iters_each", [](Config& c) -> long& { return c.floss_iters_each; }, 1, kMaxCounter,
      "an integer in [1, 2^32)"));
  k.push_back(number_key(
      "floss_lr", [](Config& c) -> double& { return c.floss_lr; }, 1e-300, kInf, "a number > 0"));
  k.push_back(int_key(
      "floss_k", [](Config& c) -> int& { return c.floss_k; }, 1, 4096, "an integer in [1, hidden]"));
  // flossing keeps every frame of its steps for the backward pass (H k doubles each)
  k.push_back(int_key(
      "floss_steps", [](Config& c) -> long& { return c.floss_steps; }, 1, 100000, "an integer in [1, 10^5]"));
  k.push_back(int_key(
      "floss_warmup", [](Config& c) -> long& { return c.floss_warmup; }, 0, kMaxSteps,
      "an integer in [0, 10^7]"));

  // the structured inits (rnnsweep/init.h)
  k.push_back(int_key(
      "lowrank.rank", [](Config& c) -> int& { return c.init_options.lowrank_rank; }, 1, 4096,
      "an integer in [1, hidden]"));
  k.push_back(number_key(
      "lowrank.strength", [](Config& c) -> double& { return c.init_options.lowrank_strength; }, -kInf, kInf,
      "a number (the low-rank part is strength m n^T / H)"));
  k.push_back(number_key(
      "sparse.density", [](Config& c) -> double& { return c.init_options.sparse_density; }, 1e-9, 1,
      "a number in (0, 1]"));
  k.push_back(number_key(
      "dale.excitatory", [](Config& c) -> double& { return c.init_options.dale_excitatory; }, 1e-9, 0.999999999,
      "a number in (0, 1): the fraction of excitatory units"));

  const char* pos = "a number > 0";
  k.push_back(TASK_NUMBER(romo, romo.romo_dt_over_tau, "dt_over_tau", 1e-9, 1, "a number in (0, 1]"));
  k.push_back(TASK_INT(romo, romo.romo_T, "T", 1, 100000, "an integer in [1, 10^5]"));
  k.push_back(TASK_NUMBER(romo, romo.romo_f_min, "f_min", -kInf, kInf, "a number"));
  k.push_back(TASK_NUMBER(romo, romo.romo_f_max, "f_max", -kInf, kInf, "a number > f_min"));
  k.push_back(
      TASK_NUMBER(romo, romo.romo_min_diff, "min_diff", 0, kInf, "a number >= 0 and < f_max - f_min"));
  k.push_back(TASK_NUMBER(romo, romo.romo_delay_min, "delay_min", 0, kInf, "a number >= 0 (units of tau)"));
  k.push_back(
      TASK_NUMBER(romo, romo.romo_delay_max, "delay_max", 0, kInf, "a number > delay_min (units of tau)"));
  k.push_back(TASK_INT(romo, romo.romo_f1_onset, "f1_onset", 0, 1 << 20, "an integer >= 0 (steps)"));
  k.push_back(TASK_INT(romo, romo.romo_pulse, "pulse", 1, 1 << 20, "an integer >= 1 (steps)"));
  k.push_back(TASK_INT(romo, romo.romo_response_gap, "response_gap", 0, 1 << 20, "an integer >= 0 (steps)"));
  k.push_back(TASK_INT(romo, romo.romo_response_len, "response_len", 1, 1 << 20, "an integer >= 1 (steps)"));
  k.push_back(TASK_NUMBER(romo, romo.romo_target, "target", 1e-9, kInf, pos));

  k.push_back(TASK_NUMBER(2af, two_af.dt, "dt", 1e-9, kInf, "a number > 0 (ms)"));
  k.push_back(TASK_NUMBER(2af, two_af.tau, "tau", 1e-9, kInf, "a number >= dt (ms)"));
  k.push_back(TASK_NUMBER(2af, two_af.sigma, "sigma", 0, kInf, "a number >= 0"));
  k.push_back(
      TASK_INT(2af, two_af.fixation_ms, "fixation", 0, 10000000, "an integer >= 0, a multiple of dt (ms)"));
  k.push_back(
      TASK_INT(2af, two_af.stimulus_ms, "stimulus", 1, 10000000, "an integer > 0, a multiple of dt (ms)"));
  k.push_back(TASK_INT(2af, two_af.delay_ms, "delay", 0, 10000000, "an integer >= 0, a multiple of dt (ms)"));
  k.push_back(
      TASK_INT(2af, two_af.decision_ms, "decision", 1, 10000000, "an integer > 0, a multiple of dt (ms)"));
  // TaskParams is shared with the device, so the choice is stored as a flag, not a string
  k.push_back({"2af.fixation_cue", "one of classic neurogym",
               [](Config& c, const toml::node& n) {
                 const std::string v = as_string(n);
                 if (v != "classic" && v != "neurogym") bad_value(n);
                 c.two_af.fixation_off_after_fixation = v == "neurogym";
               },
               [](const Config& c) { return json(c.two_af.fixation_off_after_fixation ? "neurogym" : "classic"); }});
  k.push_back({"2af.coherences", "a list of 1 to 8 numbers >= 0",
               [](Config& c, const toml::node& n) {
                 auto v = as_list<double>(n, as_double);
                 if (v.size() > size_t(kMaxCoherences)) bad_value(n);
                 for (size_t i = 0; i < v.size(); ++i) {
                   if (!(v[i] >= 0)) bad_value(n);
                   c.two_af.coherences[i] = v[i];
                 }
                 c.two_af.n_coherences = int(v.size());
               },
               [](const Config& c) {
                 return json(
                     std::vector<double>(c.two_af.coherences, c.two_af.coherences + c.two_af.n_coherences));
               }});

  k.push_back(TASK_NUMBER(dms, dms.dt, "dt", 1e-9, kInf, "a number > 0 (ms)"));
  k.push_back(TASK_NUMBER(dms, dms.tau, "tau", 1e-9, kInf, "a number >= dt (ms)"));
  k.push_back(TASK_NUMBER(dms, dms.sigma, "sigma", 0, kInf, "a number >= 0"));
  k.push_back(
      TASK_INT(dms, dms.dms_fixation_ms, "fixation", 0, 10000000, "an integer >= 0, a multiple of dt (ms)"));
  k.push_back(
      TASK_INT(dms, dms.dms_sample_ms, "sample", 1, 10000000, "an integer > 0, a multiple of dt (ms)"));
  k.push_back(
      TASK_INT(dms, dms.dms_delay_ms, "delay", 0, 10000000, "an integer >= 0, a multiple of dt (ms)"));
  k.push_back(TASK_INT(dms, dms.dms_test_ms, "test", 1, 10000000, "an integer > 0, a multiple of dt (ms)"));
  k.push_back(
      TASK_INT(dms, dms.dms_decision_ms, "decision", 1, 10000000, "an integer > 0, a multiple of dt (ms)"));
  return k;
}

const std::vector<KeyDef>& keys() {
  static const std::vector<KeyDef> k = make_keys();
  return k;
}

// Messages quote the input (keys, values, --set text), which may hold newlines or other control
// characters (TOML escapes, a quoted key): escaped, a rejection stays one line on the terminal.
UsageError usage_error(const std::string& msg) {
  std::string out;
  for (unsigned char ch : msg) {
    if (ch == '\n')
      out += "\\n";
    else if (ch == '\t')
      out += "\\t";
    else if (ch == '\r')
      out += "\\r";
    else if (ch < 0x20 || ch == 0x7f) {
      const char* hex = "0123456789abcdef";
      out += std::string("\\x") + hex[ch >> 4] + hex[ch & 15];
    } else
      out += char(ch);
  }
  return UsageError(out);
}

[[noreturn]] void fail(const std::string& key, const std::string& what) {
  throw usage_error("config key '" + key + "': " + what);
}

const char* const kFileKeys = "path, dt_over_tau, dt, tau, accuracy, hash, size";

// file.NAME.KEY: the table of a file task (made on first use)
void set_file_key(Config& c, const std::string& name, const toml::node& value, const std::string& where) {
  const size_t dot = name.find('.', 5);
  const std::string task = name.substr(5, dot == std::string::npos ? std::string::npos : dot - 5);
  const std::string key = dot == std::string::npos ? "" : name.substr(dot + 1);
  if (!valid_file_name(task))
    fail(name, "'" + task + "' is not a file task name" + where + "; allowed: [file.NAME] with NAME of letters, digits, _ and -");
  auto it = std::find_if(c.files.begin(), c.files.end(), [&](const FileTask& f) { return f.name == task; });
  if (it == c.files.end()) {
    c.files.push_back(FileTask{});
    c.files.back().name = task;
    it = c.files.end() - 1;
  }
  FileTask& f = *it;
  auto invalid = [&](const std::string& allowed) {
    std::ostringstream os;
    describe(os, value);
    fail(name, "invalid value " + os.str() + where + "; allowed: " + allowed);
  };
  try {
    if (key == "path") {
      f.path = as_string(value);
      if (f.path.empty()) invalid("the path of an .npz file");
    } else if (key == "dt_over_tau" || key == "dt" || key == "tau") {
      const double v = as_double(value);
      if (!(v > 0 && v < kInf)) invalid(key == "dt_over_tau" ? "a number in (0, 1]" : "a number > 0 (ms)");
      if (key == "dt_over_tau" && v > 1) invalid("a number in (0, 1]");
      (key == "dt_over_tau" ? f.dt_over_tau : key == "dt" ? f.dt : f.tau) = v;
    } else if (key == "accuracy") {
      f.accuracy = as_string(value);
      if (f.accuracy != "none" && f.accuracy != "response") invalid("one of none response");
    } else if (key == "hash") {
      f.hash = as_string(value);
      if (f.hash.size() != 16 || f.hash.find_first_not_of("0123456789abcdef") != std::string::npos)
        invalid("16 hex digits (the FNV-1a 64 of the file, as the manifest records it)");
    } else if (key == "size") {
      f.size = as_long(value);
      if (f.size < 0) invalid("an integer >= 0 (bytes)");
    } else {
      throw usage_error("unknown config key '" + name + "'" + where + "; allowed in [file." + task + "]: " + kFileKeys);
    }
  } catch (const std::invalid_argument&) {
    invalid(key == "path" || key == "accuracy" || key == "hash" ? "a string" : "a number");
  }
}

void set_key(Config& c, const std::string& name, const toml::node& value, const std::string& where) {
  if (name.rfind("file.", 0) == 0) return set_file_key(c, name, value, where);
  for (const auto& k : keys()) {
    if (k.name != name) continue;
    try {
      k.set(c, value);
    } catch (const std::invalid_argument& e) {
      fail(name, std::string("invalid value ") + e.what() + where + "; allowed: " + k.allowed);
    }
    return;
  }
  std::string msg = "unknown config key '" + name + "'" + where;
  std::string near = nearest(name, config_key_names());
  if (!near.empty()) msg += "; did you mean '" + near + "'?";
  msg += " (the README lists every key)";
  throw usage_error(msg);
}

void apply_table(Config& c, const toml::table& t, const std::string& prefix, const std::string& where) {
  for (const auto& [key, node] : t) {
    std::string name = prefix + std::string(key.str());
    if (auto sub = node.as_table())
      apply_table(c, *sub, name + ".", where);
    else
      set_key(c, name, node, where);
  }
}

std::string trimmed(const std::string& text) {
  const auto first = text.find_first_not_of(" \t");
  if (first == std::string::npos) return "";
  return text.substr(first, text.find_last_not_of(" \t") - first + 1);
}

void apply_override(Config& c, const std::string& assignment) {
  auto eq = assignment.find('=');
  // spaces around the key and the value are the shell's, not the config's: `gains = [0.5, 1]`
  const std::string key = eq == std::string::npos ? "" : trimmed(assignment.substr(0, eq));
  if (eq == std::string::npos || key.empty())
    throw usage_error("--set '" + assignment + "': expected key=value, e.g. --set iters=200");
  const std::string text = trimmed(assignment.substr(eq + 1));
  if (text.empty())
    throw usage_error("--set '" + assignment + "': the value of '" + key + "' is empty, e.g. --set " + key +
                      "=VALUE");
  toml::table parsed;
  try {
    parsed = toml::parse("v = " + text);
  } catch (const toml::parse_error&) {
    // Not a TOML value: a bare word (romo) or a comma-separated list of them, bracketed or not
    // (romo,dms or [romo, dms] or 0.5,1), each item a TOML value or a bare word.
    const bool bracketed = text.size() >= 2 && text.front() == '[' && text.back() == ']';
    const std::string items = bracketed ? text.substr(1, text.size() - 2) : text;
    toml::array list;
    std::stringstream ss(items);
    for (std::string item; std::getline(ss, item, ',');) {
      item = trimmed(item);
      try {
        auto one = toml::parse("v = " + item);
        list.push_back(*one["v"].node());
      } catch (const toml::parse_error&) {
        list.push_back(item);
      }
    }
    if (list.size() == 1 && !bracketed)
      parsed.insert_or_assign("v", text);
    else
      parsed.insert_or_assign("v", std::move(list));
  }
  set_key(c, key, *parsed["v"].node(), " (from --set)");
}

// 100, 0.5, 12.25: a number as short as it reads back exactly (std::to_string gives 100.000000).
std::string shortest(double x) {
  for (int digits = 1; digits <= 17; ++digits) {
    std::ostringstream os;
    os << std::setprecision(digits) << x;
    if (std::stod(os.str()) == x) return os.str();
  }
  return std::to_string(x);
}

bool multiple_of(int ms, double dt) {
  double steps = ms / dt;
  return std::fabs(steps - std::round(steps)) < 1e-9;
}

// Two equal values on an axis would train the same network twice under two ids.
template <typename T>
void check_unique(const std::string& key, const std::vector<T>& values) {
  for (size_t i = 0; i < values.size(); ++i)
    for (size_t j = 0; j < i; ++j)
      if (values[i] == values[j]) {
        std::ostringstream os;
        os << values[i];
        fail(key, "the value " + os.str() + " appears twice; allowed: a list of distinct values");
      }
}

// The file tasks that `tasks` lists, read and checked (host/task_file.h), in the order of `tasks`;
// tables that `tasks` does not list are dropped. Relative paths are relative to the working folder
// (a config file's own were made relative to its folder when it was read).
void resolve_file_tasks(Config& c) {
  std::vector<FileTask> used;
  for (const auto& t : c.tasks) {
    if (t.rfind("file:", 0) != 0) continue;
    const std::string name = t.substr(5), table = "file." + name;
    auto it = std::find_if(c.files.begin(), c.files.end(), [&](const FileTask& f) { return f.name == name; });
    if (it == c.files.end())
      fail("tasks", "'" + t + "' has no table [" + table + "]; allowed: file:NAME with [" + table + "] path = \"FILE.npz\"");
    FileTask f = *it;
    if (f.path.empty()) fail(table + ".path", "missing; allowed: the path of an .npz file (host/task_file.h says what it holds)");
    std::error_code ec;
    const auto absolute = std::filesystem::absolute(f.path, ec);
    if (!ec) f.path = absolute.lexically_normal().string();
    if (!f.data) f.data = read_task_file(name, f.path);
    const TaskData& d = *f.data;
    if (!f.hash.empty() && f.hash != d.hash)
      fail(table + ".hash", "'" + f.path + "' now has hash " + d.hash + ", not " + f.hash +
                                ": the file changed since the run recorded it; allowed: the file as it was");
    if (f.size >= 0 && std::uintmax_t(f.size) != d.size)
      fail(table + ".size", "'" + f.path + "' now has " + std::to_string(d.size) + " bytes, not " +
                                std::to_string(f.size) + ": the file changed since the run recorded it; allowed: the file as it was");
    // the leak: dt_over_tau, or dt and tau, from the table, else from the file
    if (f.dt_over_tau > 0 && (f.dt > 0 || f.tau > 0))
      fail(table + ".dt_over_tau", "is set with " + table + (f.dt > 0 ? ".dt" : ".tau") + "; allowed: dt_over_tau, or dt and tau");
    if ((f.dt > 0) != (f.tau > 0))
      fail(table + (f.dt > 0 ? ".tau" : ".dt"), "missing: dt and tau go together; allowed: a number > 0 (ms)");
    if (f.dt > 0 && f.tau < f.dt) fail(table + ".tau", "must be >= " + table + ".dt (the leak a = 1 - dt/tau is in [0, 1))");
    if (f.dt > 0) f.dt_over_tau = f.dt / f.tau, f.dt = f.tau = 0;
    if (f.dt_over_tau <= 0) f.dt_over_tau = d.dt_over_tau;
    if (f.dt_over_tau <= 0)
      fail(table + ".dt_over_tau", "missing: neither [" + table + "] nor the file sets the leak; allowed: dt_over_tau in (0, 1], or dt and tau");
    if (f.accuracy == "response" && d.classification)
      fail(table + ".accuracy", "\"response\" is for regression files (target and mask); a file with labels has its accuracy over the decision steps; allowed: none");
    f.hash = d.hash;
    f.size = long(d.size);
    f.params = file_task_params(d, f.dt_over_tau);
    used.push_back(f);
  }
  c.files = std::move(used);
}

void validate(const Config& c) {
  check_unique("tasks", c.tasks);
  check_unique("init", c.inits);
  check_unique("rules", c.rules);
  check_unique("gains", c.gains);
  check_unique("lrs", c.lrs);
  check_unique("seeds", c.seeds);
  check_unique("floss", c.floss);
  check_unique("hidden", c.hidden_list);
  check_unique("batch", c.batch_list);
  // every k and rank must fit the smallest network of the grid
  const auto hs = c.hiddens();
  const int H = *std::min_element(hs.begin(), hs.end());
  const std::string smallest = "hidden = " + std::to_string(H) + (hs.size() > 1 ? " (the smallest)" : "");
  auto too_large = [&](const char* key, int v) {
    fail(key, std::to_string(v) + " is larger than " + smallest + "; allowed: an integer in [1, hidden]");
  };
  if (c.le_k > H) too_large("le_k", c.le_k);
  if (c.le_track_k > H) too_large("le_track_k", c.le_track_k);
  const bool lowrank = std::find(c.inits.begin(), c.inits.end(), "lowrank") != c.inits.end();
  if (lowrank && c.init_options.lowrank_rank > H) too_large("lowrank.rank", c.init_options.lowrank_rank);
  if (std::find(c.inits.begin(), c.inits.end(), "dale") != c.inits.end() && H < 2)
    fail("init", "dale needs hidden >= 2 (an excitatory and an inhibitory unit)");
  const bool any_floss = std::find(c.floss.begin(), c.floss.end(), true) != c.floss.end();
  if (c.floss_k > H && any_floss) too_large("floss_k", c.floss_k);
  if (c.floss_every > 0 && !any_floss)
    fail("floss_every", "flosses the floss = true networks during training, and the grid has none; allowed: 0, "
                        "or floss = [false, true] (or [true])");
  if (c.floss_iters == 0 && c.floss_every == 0 && any_floss)
    fail("floss_iters", "0 flosses nothing unless floss_every > 0; allowed: an integer in [1, 2^32)");
  // every flossing iteration draws its own batch of the flossing stream (a 32-bit counter)
  if (c.floss_every > 0 &&
      double(c.floss_iters) + double((c.iters - 1) / c.floss_every) * double(c.floss_iters_each) >= 4294967296.0)
    fail("floss_iters_each", "floss_iters + floss_iters_each * (iters - 1) / floss_every must stay below 2^32");
  if (c.eval_every > 0 && c.eval_every % c.log_every != 0)
    fail("eval_every", std::to_string(c.eval_every) + " is not a multiple of log_every = " +
                           std::to_string(c.log_every) + "; allowed: 0 or a multiple of log_every");
  if (c.eval_every > 0)
    for (int Bt : c.batches())
      if (c.eval_trials % Bt != 0)
        fail("eval_trials", std::to_string(c.eval_trials) + " is not a multiple of batch = " + std::to_string(Bt) +
                                "; allowed: a multiple of batch in [1, 2^24]");
  const TaskParams& r = c.romo;
  if (!(r.romo_f_max > r.romo_f_min)) fail("romo.f_max", "must be larger than romo.f_min");
  if (!(r.romo_min_diff < r.romo_f_max - r.romo_f_min))
    fail("romo.min_diff",
         "must be smaller than romo.f_max - romo.f_min, or no pair of frequencies qualifies");
  if (!(r.romo_delay_max > r.romo_delay_min)) fail("romo.delay_max", "must be larger than romo.delay_min");
  // Checked before romo_max_delay_steps() converts it to int (undefined past INT_MAX): no delay
  // longer than the longest trial (romo.T <= 10^5) can fit anyway.
  if (!(r.romo_delay_max / r.romo_dt_over_tau <= 100000))
    fail("romo.delay_max",
         "romo.delay_max / romo.dt_over_tau is more than 10^5 steps, longer than any "
         "trial; allowed: a number <= 10^5 * romo.dt_over_tau");
  const int romo_needs = r.romo_f1_onset + 2 * r.romo_pulse + r.romo_max_delay_steps() + r.romo_response_gap +
                         r.romo_response_len;
  if (r.romo_T < romo_needs)
    fail("romo.T", std::to_string(r.romo_T) + " is too short: the longest delay needs " +
                       std::to_string(romo_needs) +
                       " steps; allowed: an integer >= " + std::to_string(romo_needs));
  struct Timing {
    const char* table;
    const TaskParams& p;
    std::vector<std::pair<const char*, int>> ms;
  };
  const Timing timings[] = {{"2af",
                             c.two_af,
                             {{"fixation", c.two_af.fixation_ms},
                              {"stimulus", c.two_af.stimulus_ms},
                              {"delay", c.two_af.delay_ms},
                              {"decision", c.two_af.decision_ms}}},
                            {"dms",
                             c.dms,
                             {{"fixation", c.dms.dms_fixation_ms},
                              {"sample", c.dms.dms_sample_ms},
                              {"delay", c.dms.dms_delay_ms},
                              {"test", c.dms.dms_test_ms},
                              {"decision", c.dms.dms_decision_ms}}}};
  for (const auto& t : timings) {
    // TaskParams::T() counts the steps in int; beyond kMaxSteps a trial is memory, not science.
    double steps = 0;
    for (const auto& [name, ms] : t.ms) steps += ms / t.p.dt;
    if (!(steps <= kMaxSteps))
      fail(std::string(t.table) + ".dt", "the trial would be longer than 10^7 steps of " +
                                             shortest(t.p.dt) + " ms; allowed: a larger dt");
    if (t.p.tau < t.p.dt)
      fail(std::string(t.table) + ".tau",
           "must be >= " + std::string(t.table) + ".dt (the leak a = 1 - dt/tau is in [0, 1))");
    for (const auto& [name, ms] : t.ms)
      if (!multiple_of(ms, t.p.dt))
        fail(std::string(t.table) + "." + name,
             std::to_string(ms) + " ms is not a multiple of dt = " + shortest(t.p.dt) + " ms");
  }
}

}  // namespace

std::vector<std::string> config_key_names() {
  std::vector<std::string> names;
  for (const auto& k : keys()) names.push_back(k.name);
  return names;
}

std::string nearest(const std::string& word, const std::vector<std::string>& candidates) {
  auto distance = [](const std::string& a, const std::string& b) {
    std::vector<size_t> row(b.size() + 1);
    for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
    for (size_t i = 1; i <= a.size(); ++i) {
      size_t diag = row[0];
      row[0] = i;
      for (size_t j = 1; j <= b.size(); ++j) {
        size_t up = row[j];
        row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] != b[j - 1])});
        diag = up;
      }
    }
    return row[b.size()];
  };
  std::string best;
  size_t best_d = std::max<size_t>(3, word.size() / 2) + 1;  // farther than this is no suggestion
  for (const auto& c : candidates) {
    size_t d = distance(word, c);
    if (d < best_d) best_d = d, best = c;
  }
  return best;
}

Config default_config_with(const std::vector<std::string>& overrides) {
  Config c;
  for (const auto& o : overrides) apply_override(c, o);
  resolve_file_tasks(c);
  validate(c);
  return c;
}

Config load_config_text(const std::string& text, const std::vector<std::string>& overrides,
                        const std::string& source_name) {
  Config c;
  toml::table file;
  try {
    file = toml::parse(text, source_name);
  } catch (const toml::parse_error& e) {
    std::ostringstream os;
    os << "cannot read config '" << source_name << "': " << e.description();
    if (e.source().begin.line > 0) os << " (line " << e.source().begin.line << ")";
    throw usage_error(os.str());
  }
  apply_table(c, file, "", " in " + source_name);
  // a config file's task files are relative to its folder (so that it runs from anywhere)
  const std::filesystem::path folder = std::filesystem::path(source_name).parent_path();
  for (FileTask& f : c.files)
    if (!f.path.empty() && std::filesystem::path(f.path).is_relative()) f.path = (folder / f.path).string();
  for (const auto& o : overrides) apply_override(c, o);
  resolve_file_tasks(c);
  validate(c);
  return c;
}

Config load_config(const std::string& path, const std::vector<std::string>& overrides) {
  // A folder opens as a file and reads as nothing: it would run the defaults, the paper grid.
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    throw usage_error("cannot read config '" + path + "': it is a folder, not a file");
  std::ifstream in(path, std::ios::binary);
  // the words of toml::parse_file, which this replaced
  if (!in) throw usage_error("cannot read config '" + path + "': File could not be opened for reading");
  std::ostringstream text;
  text << in.rdbuf();  // sets failbit on `text` for an empty file, which is a valid config
  if (in.bad()) throw usage_error("cannot read config '" + path + "': File could not be read");
  return load_config_text(text.str(), overrides, path);
}

json config_to_json(const Config& c) {
  json j = json::object();
  for (const auto& k : keys()) j[k.name] = k.get(c);
  // resolved: unset stands for hidden; over several hidden sizes it stays 0 (each network's own)
  j["le_k"] = c.hidden_list.empty() ? c.spectrum_k() : c.le_k;
  // the file tasks as resolved: an absolute path, the leak, and what the file was (a resumed or
  // merged run refuses a file that changed)
  for (const FileTask& f : c.files) {
    const std::string t = "file." + f.name + ".";
    j[t + "path"] = f.path;
    j[t + "dt_over_tau"] = f.dt_over_tau;
    j[t + "accuracy"] = f.accuracy;
    j[t + "hash"] = f.hash;
    j[t + "size"] = f.size;
  }
  return j;
}

const TaskParams& Config::task_named(const std::string& label) const {
  if (label.rfind("file:", 0) != 0) return task(parse_task(label));
  for (const FileTask& f : files)
    if (f.label() == label) return f.params;
  throw UsageError("task '" + label + "' is not a task of the config; allowed: a file task that `tasks` lists, with its [file." +
                   label.substr(5) + "] table (--config FILE)");
}

std::string Config::task_label(TaskKind k, int file) const {
  return k == TaskKind::file ? files.at(size_t(file)).label() : task_name(k);
}

TaskKind parse_task(const std::string& name) {
  if (name == "romo") return TaskKind::romo;
  if (name == "2af") return TaskKind::two_af;
  if (name == "dms") return TaskKind::dms;
  throw UsageError("unknown task '" + name + "'; allowed: romo, 2af, dms, or file:NAME");
}

const char* task_name(TaskKind k) {
  return k == TaskKind::romo ? "romo" : k == TaskKind::two_af ? "2af" : k == TaskKind::dms ? "dms" : "file";
}

Rule parse_rule(const std::string& name) {
  if (name == "bptt") return Rule::bptt;
  if (name == "eprop") return Rule::eprop;
  if (name == "rflo") return Rule::rflo;
  throw UsageError("unknown rule '" + name + "'; allowed: bptt, eprop, rflo");
}

const char* rule_name(Rule r) { return r == Rule::bptt ? "bptt" : r == Rule::eprop ? "eprop" : "rflo"; }

}  // namespace rnnsweep
