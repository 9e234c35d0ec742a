// CSV, .npy and JSON writers. Every file is written to a temporary name and renamed, so a
// crash never leaves a half-written table that looks complete.
#include "host/writers.h"

#include <sstream>

#include "host/run_store.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <stdexcept>
#include <iterator>
#include <tuple>

namespace rnnsweep {
namespace {

// Collects a file's text and writes it durably when done (host/run_store.h,
// write_file_durably): a crash or a full disk never leaves a half-written table that looks
// complete, and never destroys the previous version.
class AtomicFile {
 public:
  explicit AtomicFile(std::string path) : path_(std::move(path)) {}
  std::ostringstream& stream() { return out_; }
  void commit() { write_file_durably(path_, out_.str()); }

 private:
  std::string path_;
  std::ostringstream out_;
};

const char* bool_text(bool b) { return b ? "true" : "false"; }

}  // namespace

std::string format_number(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[32];
  for (int precision = 6; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof buf, "%.*g", precision, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  return buf;
}

void write_networks_csv(const std::string& path, const std::vector<NetworkResult>& results) {
  AtomicFile f(path);
  auto& o = f.stream();
  o << "network,task,init,hidden,batch,rule,gain,lr,seed,data_seed,floss,status,diverged_at,iterations,final_loss,"
       "final_accuracy,tail_loss,tail_accuracy,best_loss,max_le_init,max_le_flossed,max_le_trained,"
       "floss_loss_first,floss_loss_last,eval_final_loss,eval_final_accuracy,eval_tail_loss,eval_tail_accuracy\n";
  auto max_le = [](const std::vector<double>& s) {
    return s.empty() ? std::string() : format_number(s.front());
  };
  for (const auto& r : results) {
    const auto& s = r.spec;
    // An untrained network (`rnnsweep lyapunov`) has no training statistics: empty, not 0.
    auto stat = [&](double v) { return r.trained ? format_number(v) : std::string(); };
    o << s.id << ',' << task_label(s) << ',' << init_name(s.init) << ',' << s.hidden << ',' << s.batch << ','
      << rule_name(s.rule) << ',' << format_number(s.gain) << ',' << format_number(s.lr) << ',' << s.seed << ',' << s.data_seed << ',' << bool_text(s.floss) << ','
      << (!r.trained   ? "untrained"
          : r.diverged ? "diverged"
                       : "ok")
      << ',' << (r.diverged ? std::to_string(r.diverged_at) : "") << ',' << r.iterations << ','
      << stat(r.final_loss) << ',' << stat(r.final_accuracy) << ',' << stat(r.tail_loss) << ','
      << stat(r.tail_accuracy) << ',' << stat(r.best_loss) << ',' << max_le(r.spectrum_init) << ','
      << max_le(r.spectrum_flossed) << ',' << max_le(r.spectrum_trained) << ','
      << (r.floss_curve.empty() ? "" : format_number(r.floss_curve.front().loss)) << ','
      << (r.floss_curve.empty() ? "" : format_number(r.floss_curve.back().loss));
    auto eval = [&](double v) { return r.trained && r.evaluated ? format_number(v) : std::string(); };
    o << ',' << eval(r.eval_final_loss) << ',' << eval(r.eval_final_accuracy) << ',' << eval(r.eval_tail_loss) << ','
      << eval(r.eval_tail_accuracy) << '\n';
  }
  f.commit();
}

void write_curves_csv(const std::string& path, const std::vector<NetworkResult>& results) {
  AtomicFile f(path);
  auto& o = f.stream();
  o << "network,iteration,loss,accuracy,eval_loss,eval_accuracy,alignment\n";
  for (const auto& r : results) {
    // the probes fall on logged iterations, in the same order (empty cells where not measured)
    auto probe = r.probes.begin();
    for (const auto& p : r.curve) {
      o << r.spec.id << ',' << p.iteration << ',' << format_number(p.loss) << ',' << format_number(p.accuracy);
      while (probe != r.probes.end() && probe->iteration < p.iteration) ++probe;
      const bool here = probe != r.probes.end() && probe->iteration == p.iteration;
      const bool evaluated = here && probe->evaluated, aligned = here && probe->aligned;
      o << ',' << (evaluated ? format_number(probe->eval_loss) : "") << ','
        << (evaluated ? format_number(probe->eval_accuracy) : "") << ','
        << (aligned ? format_number(probe->alignment) : "") << '\n';
    }
  }
  f.commit();
}

void write_floss_curves_csv(const std::string& path, const std::vector<NetworkResult>& results) {
  AtomicFile f(path);
  auto& o = f.stream();
  o << "network,training_iteration,iteration,floss_loss,k_used\n";
  for (const auto& r : results)
    for (const auto& p : r.floss_curve)
      o << r.spec.id << ',' << p.training_iteration << ',' << p.iteration << ',' << format_number(p.loss) << ','
        << p.k_used << '\n';
  f.commit();
}

void write_lyapunov_curves_csv(const std::string& path, const std::vector<NetworkResult>& results) {
  AtomicFile f(path);
  auto& o = f.stream();
  o << "network,iteration,index,exponent,finite\n";
  for (const auto& r : results)
    for (const auto& p : r.tracked)
      for (size_t i = 0; i < p.lambda.size(); ++i)
        o << r.spec.id << ',' << p.iteration << ',' << i + 1 << ',' << format_number(p.lambda[i]) << ','
          << (std::isfinite(p.lambda[i]) ? "true" : "false") << '\n';
  f.commit();
}

void write_lyapunov_csv(const std::string& path, const std::vector<NetworkResult>& results) {
  AtomicFile f(path);
  auto& o = f.stream();
  // finite: false for an annihilated direction (-inf, docs/lyapunov.md), so that means and
  // describe() can leave those rows out (spectra[spectra.finite])
  o << "network,phase,index,lambda,finite\n";
  for (const auto& r : results) {
    const std::pair<const char*, const std::vector<double>*> phases[] = {
        {"init", &r.spectrum_init}, {"flossed", &r.spectrum_flossed}, {"trained", &r.spectrum_trained}};
    for (const auto& [phase, spectrum] : phases)
      for (size_t i = 0; i < spectrum->size(); ++i)
        o << r.spec.id << ',' << phase << ',' << i + 1 << ',' << format_number((*spectrum)[i]) << ','
          << (std::isfinite((*spectrum)[i]) ? "true" : "false") << '\n';
  }
  f.commit();
}

std::vector<SummaryRow> summarize(const std::vector<NetworkResult>& results) {
  // (task, init, hidden, batch, rule, gain, floss) -> lr -> networks; std::map keeps the output
  // order stable.
  using Key = std::tuple<int, int, int, int, int, double, bool>;
  std::map<Key, std::map<double, std::vector<const NetworkResult*>>> groups;
  for (const auto& r : results) {
    const NetworkSpec& s = r.spec;
    // the task: romo, 2af, dms, then the file tasks in the order of `tasks`
    const int task = s.file >= 0 ? int(TaskKind::file) + s.file : int(s.task);
    groups[{task, int(s.init), s.hidden, s.batch, int(s.rule), s.gain, s.floss}][s.lr].push_back(&r);
  }

  auto mean_std = [](const std::vector<double>& v) {
    double m = 0;
    for (double x : v) m += x;
    m /= v.size();
    double ss = 0;
    for (double x : v) ss += (x - m) * (x - m);
    // sample std (pandas' default, ddof = 1); undefined for one seed
    double sd = v.size() > 1 ? std::sqrt(ss / (v.size() - 1)) : std::nan("");
    return std::pair<double, double>{m, sd};
  };

  std::vector<SummaryRow> rows;
  for (const auto& [key, by_lr] : groups) {
    SummaryRow best{};
    bool have = false;
    for (const auto& [lr, nets] : by_lr) {
      std::vector<double> loss, acc;
      int diverged = 0;
      for (const auto* n : nets) {
        // A diverged seed makes this lr's mean loss infinite: an lr that diverges is never
        // "best" unless every lr diverges.
        loss.push_back(n->diverged ? std::numeric_limits<double>::infinity() : n->tail_loss);
        acc.push_back(n->diverged ? 0.0 : n->tail_accuracy);
        diverged += n->diverged;
      }
      auto [lm, ls] = mean_std(loss);
      auto [am, as] = mean_std(acc);
      if (!have || lm < best.tail_loss_mean) {
        best = {task_label(nets.front()->spec),
                init_name(InitKind(std::get<1>(key))),
                std::get<2>(key),
                std::get<3>(key),
                rule_name(Rule(std::get<4>(key))),
                std::get<5>(key),
                std::get<6>(key),
                lr,
                int(nets.size()),
                diverged,
                lm,
                ls,
                am,
                as};
        have = true;
      }
    }
    rows.push_back(best);
  }
  return rows;
}

void write_summary_csv(const std::string& path, const std::vector<SummaryRow>& rows) {
  AtomicFile f(path);
  auto& o = f.stream();
  o << "task,init,hidden,batch,rule,gain,floss,best_lr,n_seeds,n_diverged,tail_loss_mean,tail_loss_std,tail_accuracy_mean,"
       "tail_accuracy_std\n";
  for (const auto& r : rows)
    o << r.task << ',' << r.init << ',' << r.hidden << ',' << r.batch << ',' << r.rule << ',' << format_number(r.gain) << ',' << bool_text(r.floss) << ','
      << format_number(r.best_lr) << ',' << r.n_seeds << ',' << r.n_diverged << ','
      << format_number(r.tail_loss_mean) << ',' << format_number(r.tail_loss_std) << ','
      << format_number(r.tail_accuracy_mean) << ',' << format_number(r.tail_accuracy_std) << '\n';
  f.commit();
}

void write_timings_csv(const std::string& path, const std::vector<NetworkResult>& results) {
  AtomicFile f(path);
  auto& o = f.stream();
  o << "network,seconds\n";
  for (const auto& r : results) o << r.spec.id << ',' << format_number(r.seconds) << '\n';
  f.commit();
}

void write_npy_array(const std::string& path, const char* descr, const std::vector<long>& shape, const void* data,
                     size_t bytes) {
  // .npy format version 1.0: magic, header length, a Python dict literal padded so that the
  // data starts at a multiple of 64 bytes, then the raw little-endian data in C order.
  std::string dims;
  for (size_t k = 0; k < shape.size(); ++k) dims += (k ? ", " : "") + std::to_string(shape[k]);
  if (shape.size() == 1) dims += ',';
  std::string header = std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': (" + dims + "), }";
  const size_t preamble = 10;
  header.append(64 - (preamble + header.size() + 1) % 64, ' ');
  header += '\n';
  AtomicFile f(path);
  auto& o = f.stream();
  o.write("\x93NUMPY\x01\x00", 8);
  const unsigned short len = static_cast<unsigned short>(header.size());
  const char len_bytes[2] = {char(len & 0xff), char(len >> 8)};
  o.write(len_bytes, 2);
  o << header;
  o.write(static_cast<const char*>(data), std::streamsize(bytes));
  f.commit();
}

void write_npy(const std::string& path, const float* column_major, int rows, int cols) {
  std::vector<float> row_major(size_t(rows) * cols);
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c) row_major[size_t(r) * cols + c] = column_major[size_t(c) * rows + r];
  write_npy_array(path, "<f4", {rows, cols}, row_major.data(), row_major.size() * sizeof(float));
}

std::vector<float> read_npy_matrix(const std::string& path, int rows, int cols) {
  auto bad = [&](const std::string& why) { return UsageError("'" + path + "': " + why); };
  std::ifstream in(path, std::ios::binary);
  if (!in) throw bad("cannot read it");
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (bytes.size() < 10 || bytes.compare(0, 6, "\x93NUMPY") != 0) throw bad("not an .npy file");
  const size_t len = (unsigned char)bytes[8] + 256 * size_t((unsigned char)bytes[9]);
  if (bytes[6] != 1 || bytes.size() < 10 + len) throw bad("not an .npy file of version 1.0");
  const std::string header = bytes.substr(10, len);
  const std::string shape = "'shape': (" + std::to_string(rows) + ", " + std::to_string(cols) + ")";
  if (header.find("'descr': '<f4'") == std::string::npos || header.find("'fortran_order': False") == std::string::npos)
    throw bad("not a C-order float32 array");
  if (header.find(shape) == std::string::npos)
    throw bad("expected shape (" + std::to_string(rows) + ", " + std::to_string(cols) + ") for this network");
  if (bytes.size() != 10 + len + size_t(rows) * cols * sizeof(float)) throw bad("truncated");
  std::vector<float> column_major(size_t(rows) * cols);
  const char* data = bytes.data() + 10 + len;
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c)
      std::memcpy(&column_major[size_t(c) * rows + r], data + (size_t(r) * cols + c) * sizeof(float), sizeof(float));
  return column_major;
}

void write_weights(const std::string& dir, const Config& config, const std::vector<NetworkResult>& results) {
  std::filesystem::create_directories(dir);
  for (const auto& r : results) {
    const TaskParams& task = task_of(config, r.spec);
    const Shape s{config_of(config, r.spec).hidden, task.inputs(), task.outputs(), config.bias};
    const ParamLayout L(s);
    const std::pair<const char*, const std::vector<float>*> phases[] = {{"init", &r.params_init},
                                                                        {"final", &r.params_final}};
    for (const auto& [phase, p] : phases) {
      if (p->empty()) continue;
      const std::string stem = dir + "/net" + std::to_string(r.spec.id) + "_" + phase + "_";
      write_npy(stem + "W_h.npy", p->data() + L.W_h, s.H, s.H);
      write_npy(stem + "W_x.npy", p->data() + L.W_x, s.H, s.I);
      write_npy(stem + "w.npy", p->data() + L.w, s.O, s.H);
      if (s.bias) {
        write_npy(stem + "b.npy", p->data() + L.b, s.H, 1);
        write_npy(stem + "b_out.npy", p->data() + L.b_out, s.O, 1);
      }
    }
    // RFLO's fixed feedback, so that every result can be re-derived from the files.
    if (r.spec.rule == Rule::rflo && !r.params_init.empty()) {
      const std::vector<float> B = rflo_feedback(s, r.spec.seed);
      write_npy(dir + "/net" + std::to_string(r.spec.id) + "_B.npy", B.data(), s.H, s.O);
    }
  }
}

void write_json(const std::string& path, const nlohmann::json& j) {
  AtomicFile f(path);
  f.stream() << j.dump(2) << '\n';
  f.commit();
}

}  // namespace rnnsweep
