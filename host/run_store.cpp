// The durable record of a run; see run_store.h for the folder's layout.
#include "host/run_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>

#include "host/writers.h"

namespace fs = std::filesystem;

namespace rnnsweep {
namespace {

[[noreturn]] void system_error(const std::string& what, const std::string& path) {
  throw std::runtime_error("cannot " + what + " '" + path + "': " + std::strerror(errno));
}

// Writes all of `bytes` to fd (write may stop short).
void write_all(int fd, const std::string& bytes, const std::string& path) {
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) system_error("write", path);
    done += size_t(n);
  }
}

void fsync_folder(const std::string& path) {
  const std::string folder = fs::path(path).parent_path().string();
  const int fd = ::open(folder.empty() ? "." : folder.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return;  // best effort: the file itself is already on disk
  ::fsync(fd);
  ::close(fd);
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) system_error("read", path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A double in the journal: a JSON number (nlohmann writes the shortest text that reads back to
// the same double), or, since JSON has none, the string "nan", "inf" or "-inf".
nlohmann::json number(double v) {
  if (std::isfinite(v)) return v;
  return format_number(v);
}
double number_of(const nlohmann::json& j) {
  if (j.is_number()) return j.get<double>();
  const std::string text = j.get<std::string>();
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (end == text.c_str() || *end != '\0') throw std::runtime_error("not a number: '" + text + "'");
  return v;
}

nlohmann::json numbers(const std::vector<double>& values) {
  nlohmann::json a = nlohmann::json::array();
  for (double v : values) a.push_back(number(v));
  return a;
}
std::vector<double> numbers_of(const nlohmann::json& j) {
  std::vector<double> v;
  for (const auto& x : j) v.push_back(number_of(x));
  return v;
}

// FNV-1a, 64 bits: enough to tell a damaged or truncated checkpoint from a good one.
std::uint64_t checksum(const char* data, size_t n) {
  std::uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; ++i) h = (h ^ std::uint8_t(data[i])) * 1099511628211ull;
  return h;
}

constexpr char kCheckpointMagic[8] = {'R', 'N', 'S', 'W', 'C', 'K', 'P', '1'};

class Writer {
 public:
  template <typename T>
  void put(const T& v) {
    out_.append(reinterpret_cast<const char*>(&v), sizeof v);
  }
  template <typename T>
  void put_vector(const std::vector<T>& v) {
    put(std::uint64_t(v.size()));
    out_.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
  }
  std::string& bytes() { return out_; }

 private:
  std::string out_;
};

class Reader {
 public:
  Reader(const std::string& bytes, size_t end, std::string name)
      : bytes_(bytes), end_(end), name_(std::move(name)) {}
  template <typename T>
  T get() {
    need(sizeof(T));
    T v;
    std::memcpy(&v, bytes_.data() + at_, sizeof v);
    at_ += sizeof v;
    return v;
  }
  template <typename T>
  std::vector<T> get_vector() {
    const auto n = get<std::uint64_t>();
    if (n > (end_ - at_) / sizeof(T)) fail("an array runs past the end of the file");
    std::vector<T> v(n);
    // data() of an empty vector may be null, and memcpy from or to null is undefined even for 0 bytes
    if (n > 0) std::memcpy(v.data(), bytes_.data() + at_, n * sizeof(T));
    at_ += n * sizeof(T);
    return v;
  }
  bool done() const { return at_ == end_; }
  [[noreturn]] void fail(const std::string& why) const {
    throw std::runtime_error("checkpoint '" + name_ + "' is damaged (" + why + ")");
  }

 private:
  void need(size_t n) {
    if (end_ - at_ < n) fail("it ends too early");
  }
  const std::string& bytes_;
  size_t end_, at_ = 0;
  std::string name_;
};

}  // namespace

void write_file_durably(const std::string& path, const std::string& bytes) {
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) system_error("write", tmp);
  try {
    write_all(fd, bytes, tmp);
    if (::fsync(fd) != 0) system_error("flush", tmp);
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int saved = errno;
    ::unlink(tmp.c_str());
    errno = saved;
    system_error("rename into", path);
  }
  fsync_folder(path);
}

nlohmann::json result_to_json(const NetworkResult& r) {
  nlohmann::json curve = nlohmann::json::array(), floss = nlohmann::json::array();
  for (const auto& p : r.curve) curve.push_back({p.iteration, number(p.loss), number(p.accuracy)});
  for (const auto& p : r.floss_curve) floss.push_back({p.iteration, number(p.loss), p.k_used, p.training_iteration});
  nlohmann::json tracked = nlohmann::json::array();
  for (const auto& p : r.tracked) tracked.push_back({p.iteration, numbers(p.lambda)});
  nlohmann::json probes = nlohmann::json::array();
  // [iteration, eval_loss, eval_accuracy, alignment], null where not measured
  for (const auto& p : r.probes)
    probes.push_back({p.iteration, p.evaluated ? number(p.eval_loss) : nlohmann::json(nullptr),
                      p.evaluated ? number(p.eval_accuracy) : nlohmann::json(nullptr),
                      p.aligned ? number(p.alignment) : nlohmann::json(nullptr)});
  // The grid coordinates make each line readable on its own (pandas.read_json(lines=True));
  // reading back takes them from the grid and checks that they agree.
  return {{"network", r.spec.id},
          {"task", task_label(r.spec)},
          {"init", init_name(r.spec.init)},
          {"hidden", r.spec.hidden},
          {"batch", r.spec.batch},
          {"rule", rule_name(r.spec.rule)},
          {"gain", number(r.spec.gain)},
          {"lr", number(r.spec.lr)},
          {"seed", r.spec.seed},
          {"data_seed", r.spec.data_seed},
          {"floss", r.spec.floss},
          {"trained", r.trained},
          {"diverged", r.diverged},
          {"diverged_at", r.diverged_at},
          {"iterations", r.iterations},
          {"final_loss", number(r.final_loss)},
          {"final_accuracy", number(r.final_accuracy)},
          {"tail_loss", number(r.tail_loss)},
          {"tail_accuracy", number(r.tail_accuracy)},
          {"best_loss", number(r.best_loss)},
          {"evaluated", r.evaluated},
          {"eval_final_loss", number(r.eval_final_loss)},
          {"eval_final_accuracy", number(r.eval_final_accuracy)},
          {"eval_tail_loss", number(r.eval_tail_loss)},
          {"eval_tail_accuracy", number(r.eval_tail_accuracy)},
          {"curve", curve},
          {"probes", probes},
          {"spectrum_init", numbers(r.spectrum_init)},
          {"spectrum_flossed", numbers(r.spectrum_flossed)},
          {"spectrum_trained", numbers(r.spectrum_trained)},
          {"floss_curve", floss},
          {"tracked_spectra", tracked},
          {"seconds", number(r.seconds)}};
}

NetworkResult result_from_json(const nlohmann::json& j, const NetworkSpec& spec) {
  NetworkResult r;
  r.spec = spec;
  if (j.at("network").get<long>() != spec.id) throw std::runtime_error("result of another network");
  if (j.at("task").get<std::string>() != task_label(spec) || j.at("init").get<std::string>() != init_name(spec.init) ||
      j.at("rule").get<std::string>() != rule_name(spec.rule) ||
      number_of(j.at("gain")) != spec.gain || number_of(j.at("lr")) != spec.lr ||
      j.at("seed").get<std::uint32_t>() != spec.seed || j.at("data_seed").get<std::uint32_t>() != spec.data_seed ||
      j.at("floss").get<bool>() != spec.floss || j.value("hidden", spec.hidden) != spec.hidden ||
      j.value("batch", spec.batch) != spec.batch)
    throw std::runtime_error("its grid coordinates are not those of network " + std::to_string(spec.id) +
                             " in this config");
  r.trained = j.at("trained").get<bool>();
  r.diverged = j.at("diverged").get<bool>();
  r.diverged_at = j.at("diverged_at").get<long>();
  r.iterations = j.at("iterations").get<long>();
  r.final_loss = number_of(j.at("final_loss"));
  r.final_accuracy = number_of(j.at("final_accuracy"));
  r.tail_loss = number_of(j.at("tail_loss"));
  r.tail_accuracy = number_of(j.at("tail_accuracy"));
  r.best_loss = number_of(j.at("best_loss"));
  if (j.contains("probes")) {  // absent in journals written before eval_every and alignment
    r.evaluated = j.at("evaluated").get<bool>();
    r.eval_final_loss = number_of(j.at("eval_final_loss"));
    r.eval_final_accuracy = number_of(j.at("eval_final_accuracy"));
    r.eval_tail_loss = number_of(j.at("eval_tail_loss"));
    r.eval_tail_accuracy = number_of(j.at("eval_tail_accuracy"));
    for (const auto& p : j.at("probes")) {
      ProbePoint q;
      q.iteration = p.at(0).get<long>();
      q.evaluated = !p.at(1).is_null();
      q.aligned = !p.at(3).is_null();
      if (q.evaluated) q.eval_loss = number_of(p.at(1)), q.eval_accuracy = number_of(p.at(2));
      if (q.aligned) q.alignment = number_of(p.at(3));
      r.probes.push_back(q);
    }
  }
  for (const auto& p : j.at("curve"))
    r.curve.push_back({p.at(0).get<long>(), number_of(p.at(1)), number_of(p.at(2))});
  r.spectrum_init = numbers_of(j.at("spectrum_init"));
  r.spectrum_flossed = numbers_of(j.at("spectrum_flossed"));
  r.spectrum_trained = numbers_of(j.at("spectrum_trained"));
  for (const auto& p : j.at("floss_curve"))
    r.floss_curve.push_back({p.at(0).get<long>(), number_of(p.at(1)), p.at(2).get<int>(),
                             p.size() > 3 ? p.at(3).get<long>() : 0L});  // (3 entries before floss_every)
  if (j.contains("tracked_spectra"))  // absent in journals written before le_every existed
    for (const auto& p : j.at("tracked_spectra")) r.tracked.push_back({p.at(0).get<long>(), numbers_of(p.at(1))});
  r.seconds = number_of(j.at("seconds"));
  return r;
}

std::string encode_checkpoint(const NetworkCheckpoint& c) {
  Writer w;
  w.bytes().append(kCheckpointMagic, sizeof kCheckpointMagic);
  w.put(std::int64_t(c.id));
  w.put(std::int64_t(c.iteration));
  w.put(std::int64_t(c.adam_step));
  w.put_vector(c.params);
  w.put_vector(c.adam_m);
  w.put_vector(c.adam_v);
  w.put_vector(c.losses);
  w.put_vector(c.accuracies);
  w.put_vector(c.spectrum_init);
  w.put_vector(c.spectrum_flossed);
  w.put(std::uint64_t(c.floss_curve.size()));
  for (const auto& p : c.floss_curve) {
    w.put(std::int64_t(p.iteration));
    w.put(p.loss);
    w.put(std::int32_t(p.k_used));
  }
  // (appended last: checkpoints written before le_every existed end above and still read)
  w.put(std::uint64_t(c.tracked.size()));
  for (const auto& p : c.tracked) {
    w.put(std::int64_t(p.iteration));
    w.put_vector(p.lambda);
  }
  // (appended after them: the training iteration each flossing iteration preceded, floss_every)
  w.put(std::uint64_t(c.floss_curve.size()));
  for (const auto& p : c.floss_curve) w.put(std::int64_t(p.training_iteration));
  // (and after those: the probes, eval_every and alignment)
  w.put(std::uint64_t(c.probes.size()));
  for (const auto& p : c.probes) {
    w.put(std::int64_t(p.iteration));
    w.put(std::int32_t(p.evaluated) | std::int32_t(p.aligned) << 1);
    w.put(p.eval_loss);
    w.put(p.eval_accuracy);
    w.put(p.alignment);
  }
  w.put(checksum(w.bytes().data(), w.bytes().size()));
  return w.bytes();
}

NetworkCheckpoint decode_checkpoint(const std::string& bytes, const std::string& name) {
  const size_t tail = sizeof(std::uint64_t);
  if (bytes.size() < sizeof kCheckpointMagic + tail || std::memcmp(bytes.data(), kCheckpointMagic, 8) != 0)
    throw std::runtime_error("checkpoint '" + name + "' is damaged (not an rnnsweep checkpoint)");
  std::uint64_t stored;
  std::memcpy(&stored, bytes.data() + bytes.size() - tail, tail);
  if (stored != checksum(bytes.data(), bytes.size() - tail))
    throw std::runtime_error("checkpoint '" + name + "' is damaged (checksum mismatch)");
  std::string body = bytes.substr(sizeof kCheckpointMagic, bytes.size() - tail - sizeof kCheckpointMagic);
  Reader r(body, body.size(), name);
  NetworkCheckpoint c;
  c.id = long(r.get<std::int64_t>());
  c.iteration = long(r.get<std::int64_t>());
  c.adam_step = long(r.get<std::int64_t>());
  c.params = r.get_vector<float>();
  c.adam_m = r.get_vector<float>();
  c.adam_v = r.get_vector<float>();
  c.losses = r.get_vector<double>();
  c.accuracies = r.get_vector<double>();
  c.spectrum_init = r.get_vector<double>();
  c.spectrum_flossed = r.get_vector<double>();
  const auto n = r.get<std::uint64_t>();
  if (n > body.size()) r.fail("an array runs past the end of the file");
  for (std::uint64_t i = 0; i < n; ++i) {
    const long it = long(r.get<std::int64_t>());
    const double loss = r.get<double>();
    const int k = int(r.get<std::int32_t>());
    c.floss_curve.push_back({it, loss, k});
  }
  if (!r.done()) {
    const auto m = r.get<std::uint64_t>();
    if (m > body.size()) r.fail("an array runs past the end of the file");
    for (std::uint64_t i = 0; i < m; ++i) {
      const long it = long(r.get<std::int64_t>());
      c.tracked.push_back({it, r.get_vector<double>()});
    }
  }
  if (!r.done()) {
    if (r.get<std::uint64_t>() != c.floss_curve.size()) r.fail("the flossing curve's iterations do not match it");
    for (auto& p : c.floss_curve) p.training_iteration = long(r.get<std::int64_t>());
  }
  if (!r.done()) {
    const auto m = r.get<std::uint64_t>();
    if (m > body.size()) r.fail("an array runs past the end of the file");
    for (std::uint64_t i = 0; i < m; ++i) {
      ProbePoint p;
      p.iteration = long(r.get<std::int64_t>());
      const auto measured = r.get<std::int32_t>();
      p.evaluated = measured & 1;
      p.aligned = measured & 2;
      p.eval_loss = r.get<double>();
      p.eval_accuracy = r.get<double>();
      p.alignment = r.get<double>();
      c.probes.push_back(p);
    }
  }
  if (!r.done()) r.fail("bytes left after the last field");
  return c;
}

RunStore::RunStore(std::string dir, Access access) : dir_(std::move(dir)) {
  // A crash can leave the last line of the journal incomplete: cut it off, so that the next
  // append starts on a line of its own.
  const std::string path = dir_ + "/results.jsonl";
  if (access == Access::read || !fs::exists(path)) return;
  const std::string text = read_bytes(path);
  const size_t keep = text.empty() ? 0 : text.rfind('\n') == std::string::npos ? 0 : text.rfind('\n') + 1;
  if (keep < text.size() && ::truncate(path.c_str(), off_t(keep)) != 0) system_error("repair", path);
}

void RunStore::append_result(const NetworkResult& r) {
  const std::string line = result_to_json(r).dump() + "\n";
  const std::string path = dir_ + "/results.jsonl";
  std::lock_guard<std::mutex> lock(mutex_);
  const bool created = !fs::exists(path);
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) system_error("append to", path);
  struct stat before {};
  if (::fstat(fd, &before) != 0) {
    ::close(fd);
    system_error("append to", path);  // without the size, a failed append could not be cut back
  }
  if (created) fsync_folder(path);  // the journal's own entry in the folder, once
  try {
    write_all(fd, line, path);
    if (::fsync(fd) != 0) system_error("flush", path);
  } catch (...) {
    // A full disk can take part of the line: cut it off, so the journal stays whole lines.
    if (::ftruncate(fd, before.st_size) == 0) ::fsync(fd);
    ::close(fd);
    throw;
  }
  ::close(fd);
  std::error_code ignored;
  fs::remove(checkpoint_path(r.spec.id), ignored);
}

std::vector<nlohmann::json> RunStore::read_journal() const {
  std::vector<nlohmann::json> lines;
  const std::string path = dir_ + "/results.jsonl";
  if (!fs::exists(path)) return lines;
  // Only whole lines: a run appending beside a reader may be half-way through its last one.
  std::string text = read_bytes(path);
  text.resize(text.rfind('\n') == std::string::npos ? 0 : text.rfind('\n') + 1);
  std::istringstream in(text);
  long number = 0;
  for (std::string line; std::getline(in, line);) {
    ++number;
    try {
      lines.push_back(nlohmann::json::parse(line));
    } catch (const nlohmann::json::exception& e) {
      throw std::runtime_error("'" + path + "' line " + std::to_string(number) + " is damaged: " + e.what());
    }
  }
  return lines;
}

std::set<long> RunStore::finished_ids() const {
  std::set<long> ids;
  for (const auto& j : read_journal()) ids.insert(j.at("network").get<long>());
  return ids;
}

std::vector<NetworkResult> RunStore::results_of(const std::vector<NetworkSpec>& networks) const {
  return recorded(networks, true);
}

std::vector<NetworkResult> RunStore::finished_results_of(const std::vector<NetworkSpec>& networks) const {
  return recorded(networks, false);
}

std::vector<NetworkResult> RunStore::recorded(const std::vector<NetworkSpec>& networks, bool all_required) const {
  std::map<long, nlohmann::json> by_id;
  for (auto& j : read_journal()) {
    const long id = j.at("network").get<long>();  // before j is moved from
    by_id[id] = std::move(j);
  }
  std::vector<NetworkResult> results;
  results.reserve(networks.size());
  for (const auto& spec : networks) {
    const auto it = by_id.find(spec.id);
    if (it == by_id.end() && !all_required) continue;
    if (it == by_id.end())
      throw std::runtime_error("'" + dir_ + "/results.jsonl' has no result for network " +
                               std::to_string(spec.id));
    try {
      results.push_back(result_from_json(it->second, spec));
    } catch (const std::exception& e) {
      throw std::runtime_error("'" + dir_ + "/results.jsonl': the result of network " +
                               std::to_string(spec.id) + " is damaged: " + e.what());
    }
  }
  return results;
}

std::string RunStore::checkpoint_path(long id) const {
  return dir_ + "/checkpoints/net" + std::to_string(id) + ".ckpt";
}

void RunStore::save_checkpoint(const NetworkCheckpoint& c) const {
  std::error_code ec;
  if (fs::create_directories(dir_ + "/checkpoints", ec)) fsync_folder(dir_ + "/checkpoints");
  if (ec) throw std::runtime_error("cannot create '" + dir_ + "/checkpoints': " + ec.message());
  write_file_durably(checkpoint_path(c.id), encode_checkpoint(c));
}

std::optional<NetworkCheckpoint> RunStore::load_checkpoint(long id) const {
  const std::string path = checkpoint_path(id);
  if (!fs::exists(path)) return std::nullopt;
  NetworkCheckpoint c = decode_checkpoint(read_bytes(path), path);
  if (c.id != id)
    throw std::runtime_error("checkpoint '" + path + "' is damaged (it holds network " +
                             std::to_string(c.id) + ")");
  return c;
}

std::vector<std::string> write_tables(const std::string& dir, const std::vector<NetworkResult>& results,
                                      bool trained) {
  write_networks_csv(dir + "/networks.csv", results);
  write_lyapunov_csv(dir + "/lyapunov.csv", results);
  write_timings_csv(dir + "/timings.csv", results);
  std::vector<std::string> files = {"networks.csv", "lyapunov.csv", "timings.csv"};
  if (trained) {
    write_curves_csv(dir + "/curves.csv", results);
    write_floss_curves_csv(dir + "/floss_curves.csv", results);
    write_summary_csv(dir + "/summary.csv", summarize(results));
    files.insert(files.end(), {"curves.csv", "floss_curves.csv", "summary.csv"});
    if (std::any_of(results.begin(), results.end(), [](const NetworkResult& r) { return !r.tracked.empty(); })) {
      write_lyapunov_curves_csv(dir + "/lyapunov_curves.csv", results);
      files.push_back("lyapunov_curves.csv");
    }
  }
  return files;
}

}  // namespace rnnsweep
