// Reading task files: the .npz container (a zip archive of .npy files, stored or deflated, with
// numpy's zip64 records), the .npy header, and the checks that make a bad file one clear line.
#include "host/task_file.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "rnnsweep/config.h"

#ifdef RNNSWEEP_WITH_ZLIB
#include <zlib.h>
#endif

namespace rnnsweep {
namespace {

// One array as read from its .npy: the raw little-endian bytes and what the header says.
struct NpyArray {
  char kind = 0;  // 'f' float, 'i' signed, 'u' unsigned, 'b' bool
  int item = 0;   // bytes per element
  bool fortran = false;
  std::vector<long> shape;
  std::string bytes;
  size_t count() const {
    size_t n = 1;
    for (long d : shape) n *= size_t(d);
    return n;
  }
  std::string shape_text() const {
    std::string s = "(";
    for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + (shape.size() == 1 ? ",)" : ")");
  }
  // element e in C order, as a double
  double at(size_t e) const {
    if (fortran && shape.size() > 1) {  // C index -> Fortran offset (ranks up to 3 reach here)
      size_t rest = e, idx[8] = {}, offset = 0, stride = 1;
      for (size_t d = shape.size(); d-- > 0;) idx[d] = rest % size_t(shape[d]), rest /= size_t(shape[d]);
      for (size_t d = 0; d < shape.size(); ++d) offset += idx[d] * stride, stride *= size_t(shape[d]);
      e = offset;
    }
    const char* p = bytes.data() + e * item;
    auto get = [p](auto v) {
      std::memcpy(&v, p, sizeof v);
      return double(v);
    };
    switch (kind) {
      case 'f':
        return item == 4 ? get(float()) : get(double());
      case 'b':
        return p[0] != 0 ? 1.0 : 0.0;
      case 'i':
        return item == 1 ? get(std::int8_t()) : item == 2 ? get(std::int16_t()) : item == 4 ? get(std::int32_t()) : get(std::int64_t());
      default:
        return item == 1 ? get(std::uint8_t()) : item == 2 ? get(std::uint16_t()) : item == 4 ? get(std::uint32_t()) : get(std::uint64_t());
    }
  }
};

class FileError {
 public:
  FileError(std::string name, std::string path) : prefix_("task 'file:" + name + "' (" + path + "): ") {}
  [[noreturn]] void operator()(const std::string& what) const { throw UsageError(prefix_ + what); }

 private:
  std::string prefix_;
};

std::uint32_t u16(const std::string& s, size_t at) {
  return std::uint32_t(std::uint8_t(s[at])) | std::uint32_t(std::uint8_t(s[at + 1])) << 8;
}
std::uint32_t u32(const std::string& s, size_t at) { return u16(s, at) | u16(s, at + 2) << 16; }
std::uint64_t u64(const std::string& s, size_t at) { return std::uint64_t(u32(s, at)) | std::uint64_t(u32(s, at + 4)) << 32; }

// The members of a zip archive (name -> uncompressed bytes), from its central directory.
std::map<std::string, std::string> unzip(const std::string& z, const FileError& fail) {
  const std::string not_npz = "not an .npz file (numpy.savez writes one)";
  if (z.size() < 22) fail(not_npz);
  size_t eocd = std::string::npos;
  for (size_t i = z.size() - 22 + 1; i-- > 0 && z.size() - i <= 22 + 65535;)
    if (u32(z, i) == 0x06054b50) {
      eocd = i;
      break;
    }
  if (eocd == std::string::npos) fail(not_npz);
  std::uint64_t entries = u16(z, eocd + 10), dir = u32(z, eocd + 16);
  if ((entries == 0xffff || dir == 0xffffffff) && eocd >= 20 && u32(z, eocd - 20) == 0x07064b50) {
    const std::uint64_t z64 = u64(z, eocd - 20 + 8);
    if (z64 + 56 > z.size() || u32(z, z64) != 0x06064b50) fail(not_npz + ": a damaged zip64 record");
    entries = u64(z, z64 + 32);
    dir = u64(z, z64 + 48);
  }
  std::map<std::string, std::string> out;
  size_t at = dir;
  for (std::uint64_t e = 0; e < entries; ++e) {
    if (at + 46 > z.size() || u32(z, at) != 0x02014b50) fail(not_npz + ": a damaged directory");
    const std::uint32_t method = u16(z, at + 10), name_len = u16(z, at + 28), extra_len = u16(z, at + 30),
                        comment_len = u16(z, at + 32);
    std::uint64_t csize = u32(z, at + 20), usize = u32(z, at + 24), offset = u32(z, at + 42);
    if (at + 46 + name_len + extra_len > z.size()) fail(not_npz + ": a damaged directory");
    const std::string name = z.substr(at + 46, name_len);
    // zip64: the fields that read 0xffffffff follow in the extra field 0x0001, in this order
    for (size_t x = at + 46 + name_len; x + 4 <= at + 46 + name_len + extra_len;) {
      const std::uint32_t id = u16(z, x), len = u16(z, x + 2);
      if (id == 1) {
        size_t f = x + 4;
        if (usize == 0xffffffff && f + 8 <= x + 4 + len) usize = u64(z, f), f += 8;
        if (csize == 0xffffffff && f + 8 <= x + 4 + len) csize = u64(z, f), f += 8;
        if (offset == 0xffffffff && f + 8 <= x + 4 + len) offset = u64(z, f);
      }
      x += 4 + len;
    }
    at += 46 + name_len + extra_len + comment_len;
    if (offset + 30 > z.size() || u32(z, offset) != 0x04034b50) fail(not_npz + ": a damaged entry " + name);
    const std::uint64_t data = offset + 30 + u16(z, offset + 26) + u16(z, offset + 28);
    if (data + csize > z.size()) fail("entry " + name + " is cut short (a truncated file?)");
    if (method == 0) {
      out[name] = z.substr(data, csize);
    } else if (method == 8) {
#ifdef RNNSWEEP_WITH_ZLIB
      std::string u(usize, '\0');
      z_stream s{};
      if (inflateInit2(&s, -MAX_WBITS) != Z_OK) fail("cannot inflate entry " + name);
      s.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(z.data() + data));
      s.avail_in = uInt(csize);
      s.next_out = reinterpret_cast<Bytef*>(u.data());
      s.avail_out = uInt(usize);
      const int rc = inflate(&s, Z_FINISH);
      inflateEnd(&s);
      if (rc != Z_STREAM_END || s.total_out != usize) fail("entry " + name + " does not inflate (a damaged file?)");
      out[name] = std::move(u);
#else
      fail("entry " + name + " is compressed and this build has no zlib; save with numpy.savez, not savez_compressed");
#endif
    } else {
      fail("entry " + name + " uses zip method " + std::to_string(method) + "; allowed: stored or deflated (numpy.savez, savez_compressed)");
    }
  }
  return out;
}

NpyArray parse_npy(const std::string& name, const std::string& b, const FileError& fail) {
  const std::string what = "array '" + name + "': ";
  if (b.size() < 10 || b.compare(0, 6, "\x93NUMPY") != 0) fail(what + "not a .npy member");
  const int major = std::uint8_t(b[6]);
  const size_t header_len = major == 1 ? u16(b, 8) : u32(b, 8);
  const size_t start = major == 1 ? 10 : 12;
  if (start + header_len > b.size()) fail(what + "a damaged .npy header");
  const std::string h = b.substr(start, header_len);
  auto field = [&](const std::string& key) {
    const size_t k = h.find("'" + key + "'");
    if (k == std::string::npos) fail(what + "a .npy header without '" + key + "'");
    size_t v = h.find(':', k);
    v = h.find_first_not_of(' ', v + 1);
    return v;
  };
  NpyArray a;
  size_t d = field("descr");
  const char quote = h[d];
  const std::string descr = h.substr(d + 1, h.find(quote, d + 1) - d - 1);
  const bool little = descr.size() == 3 && (descr[0] == '<' || descr[0] == '|');
  a.kind = descr.size() == 3 ? descr[1] : 0;
  a.item = descr.size() == 3 ? descr[2] - '0' : 0;
  const bool known = little && ((a.kind == 'f' && (a.item == 4 || a.item == 8)) || (a.kind == 'b' && a.item == 1) ||
                                ((a.kind == 'i' || a.kind == 'u') && (a.item == 1 || a.item == 2 || a.item == 4 || a.item == 8)));
  if (!known) a.kind = 0;  // reported by the caller, which knows what the array should be
  a.fortran = h.compare(field("fortran_order"), 4, "True") == 0;
  size_t s = field("shape");
  const size_t close = h.find(')', s);
  std::stringstream dims(h.substr(s + 1, close - s - 1));
  for (std::string item; std::getline(dims, item, ',');)
    if (item.find_first_not_of(' ') != std::string::npos) {
      try {
        a.shape.push_back(std::stol(item));
      } catch (const std::exception&) {
        fail(what + "a damaged .npy header (shape)");
      }
      if (a.shape.back() < 0) fail(what + "a damaged .npy header (shape)");
    }
  if (a.shape.size() > 8) fail(what + "has rank " + std::to_string(a.shape.size()) + "; allowed: at most 3");
  size_t total = 1;  // the element count, without overflowing on a damaged header
  for (long d : a.shape) {
    if (d > 0 && total > (size_t(1) << 48) / size_t(d)) fail(what + "has a shape " + a.shape_text() + " too large for the file");
    total *= size_t(d);
  }
  a.item = std::max(a.item, 1);
  if (b.size() - start - header_len < a.count() * size_t(a.item))
    fail(what + "holds fewer bytes than its shape " + a.shape_text() + " needs (a truncated file?)");
  a.bytes = b.substr(start + header_len, a.count() * size_t(a.item));
  return a;
}

// FNV-1a 64 of `bytes`, 16 hex digits: a content hash to notice a changed file (not a digest
// against tampering), fast and dependency-free.
std::string fnv1a64(const std::string& bytes) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char ch : bytes) h = (h ^ ch) * 0x100000001b3ull;
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
  return hex;
}

std::string read_whole(const std::string& path, bool& ok) {
  std::ifstream in(path, std::ios::binary);
  ok = bool(in);
  std::ostringstream text;
  if (ok) text << in.rdbuf();
  ok = ok && !in.bad();
  return text.str();
}

}  // namespace

std::string file_hash(const std::string& path, std::uintmax_t* size) {
  bool ok = false;
  const std::string bytes = read_whole(path, ok);
  if (!ok) throw UsageError("cannot read task file '" + path + "'");
  if (size) *size = bytes.size();
  return fnv1a64(bytes);
}

std::shared_ptr<const TaskData> read_task_file(const std::string& name, const std::string& path) {
  const FileError fail(name, path);
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) fail("it is a folder, not a file");
  bool ok = false;
  const std::string bytes = read_whole(path, ok);
  if (!ok) fail("cannot read the file");
  auto data = std::make_shared<TaskData>();
  data->hash = fnv1a64(bytes);
  data->size = bytes.size();

  std::map<std::string, NpyArray> arrays;
  for (auto& [member, content] : unzip(bytes, fail)) {
    const std::string key = member.size() > 4 && member.substr(member.size() - 4) == ".npy"
                                ? member.substr(0, member.size() - 4)
                                : member;
    data->arrays.push_back(key);
    arrays[key] = parse_npy(key, content, fail);
  }
  std::string held;
  for (const auto& k : data->arrays) held += (held.empty() ? "" : ", ") + k;
  auto has = [&](const std::string& k) { return arrays.count(k) > 0; };
  auto need = [&](const std::string& k, const std::string& why) -> const NpyArray& {
    if (!has(k)) fail("array '" + k + "' is missing (" + why + "; the file holds: " + held + ")");
    return arrays.at(k);
  };
  auto floats = [&](const std::string& k, const NpyArray& a, bool allow_bool) {
    if (a.kind != 'f' && !(allow_bool && a.kind == 'b'))
      fail("array '" + k + "' has the wrong dtype; allowed: float32 or float64" + (allow_bool ? " or bool" : ""));
  };
  auto scalar = [&](const std::string& k) {
    const NpyArray& a = arrays.at(k);
    if (a.count() != 1 || a.kind == 0 || a.kind == 'b') fail("array '" + k + "' must be a single number");
    return a.at(0);
  };

  // x: N x T x I, finite
  const NpyArray& x = need("x", "the inputs, N x T x I");
  if (x.shape.size() != 3) fail("array 'x' has rank " + std::to_string(x.shape.size()) + " (shape " + x.shape_text() + "); allowed: N x T x I");
  floats("x", x, false);
  for (long d : x.shape)
    if (d < 1) fail("array 'x' has shape " + x.shape_text() + "; allowed: N, T and I all >= 1");
  if (x.shape[1] > 10000000L) fail("array 'x' has trials of " + std::to_string(x.shape[1]) + " steps; allowed: at most 10^7");
  if (x.shape[0] > 2147483647L) fail("array 'x' holds more than 2^31 - 1 trials");
  data->T = int(x.shape[1]);
  data->I = int(x.shape[2]);
  const bool labels = has("labels"), target = has("target");
  if (labels && target) fail("the file holds both 'labels' and 'target'; allowed: one of them (classification or regression)");
  if (!labels && !target) fail("the file holds neither 'labels' (classification) nor 'target' and 'mask' (regression); it holds: " + held);
  data->classification = labels;
  if (labels) {
    int O = 0;
    if (has("outputs")) {
      const double o = scalar("outputs");
      if (!(o >= 2 && o <= 1 << 20 && o == std::floor(o))) fail("array 'outputs' is " + std::to_string(o) + "; allowed: an integer >= 2");
      O = int(o);
    } else {
      double mx = 0;
      for (const char* k : {"labels", "labels_eval"})
        if (has(k) && arrays.at(k).kind != 0 && arrays.at(k).kind != 'f')
          for (size_t e = 0; e < arrays.at(k).count(); ++e) mx = std::max(mx, arrays.at(k).at(e));
      O = std::max(2, int(std::min(mx, double(1 << 20))) + 1);
    }
    data->O = O;
  } else {
    const NpyArray& t = arrays.at("target");
    if (t.shape.size() != 3) fail("array 'target' has rank " + std::to_string(t.shape.size()) + " (shape " + t.shape_text() + "); allowed: N x T x O");
    if (t.shape[2] < 1) fail("array 'target' has shape " + t.shape_text() + "; allowed: O >= 1");
    data->O = int(t.shape[2]);
  }

  // one pool: x with labels or target and mask, named with `suffix`
  auto read_pool = [&](const std::string& suffix, TaskData::Pool& pool) {
    const std::string xk = "x" + suffix;
    const NpyArray& px = need(xk, "the inputs, N x T x I");
    if (px.shape.size() != 3 || px.shape[1] != data->T || px.shape[2] != data->I || px.shape[0] < 1)
      fail("array '" + xk + "' has shape " + px.shape_text() + "; allowed: (N, " + std::to_string(data->T) + ", " +
           std::to_string(data->I) + ") with N >= 1, the T and I of x");
    floats(xk, px, false);
    const size_t N = size_t(px.shape[0]), T = size_t(data->T), I = size_t(data->I), O = size_t(data->O);
    pool.trials = int(N);
    pool.x.resize(N * T * I);
    for (size_t e = 0; e < pool.x.size(); ++e) {
      const double v = px.at(e);
      if (!std::isfinite(v) || std::fabs(v) > 3.4e38)
        fail("array '" + xk + "' holds " + (std::isnan(v) ? "NaN" : "Inf") + " (trial " + std::to_string(e / (T * I)) +
             ", step " + std::to_string(e / I % T) + "); allowed: finite numbers");
      pool.x[e] = float(v);
    }
    const std::string shape_N_T = "(" + std::to_string(N) + ", " + std::to_string(T);
    if (data->classification) {
      const std::string lk = "labels" + suffix;
      const NpyArray& l = need(lk, "the labels of " + xk + ", N x T");
      if (l.shape != std::vector<long>{long(N), long(T)})
        fail("array '" + lk + "' has shape " + l.shape_text() + "; allowed: " + shape_N_T + "), as " + xk);
      if (l.kind != 'i' && l.kind != 'u') fail("array '" + lk + "' has the wrong dtype; allowed: integers");
      pool.labels.resize(N * T);
      for (size_t e = 0; e < pool.labels.size(); ++e) {
        const double v = l.at(e);
        if (!(v >= 0 && v < double(O)))
          fail("array '" + lk + "' holds " + std::to_string(static_cast<long long>(v)) + " (trial " + std::to_string(e / T) +
               ", step " + std::to_string(e % T) + "); allowed: integers in [0, " + std::to_string(O) + ")" +
               (has("outputs") ? " (outputs)" : ""));
        pool.labels[e] = int(v);
      }
    } else {
      const std::string tk = "target" + suffix, mk = "mask" + suffix;
      const NpyArray& t = need(tk, "the targets of " + xk + ", N x T x O");
      const NpyArray& m = need(mk, "regression: " + tk + " needs its mask, N x T x O");
      const std::string want = shape_N_T + ", " + std::to_string(O) + ")";
      for (const auto& [k, a] : {std::pair<std::string, const NpyArray*>{tk, &t}, {mk, &m}})
        if (a->shape != std::vector<long>{long(N), long(T), long(O)})
          fail("array '" + k + "' has shape " + a->shape_text() + "; allowed: " + want + ", as " + xk + " and target");
      floats(tk, t, false);
      floats(mk, m, true);
      pool.target.resize(N * T * O);
      pool.mask.resize(N * T * O);
      for (size_t e = 0; e < pool.target.size(); ++e) {
        const double tv = t.at(e), mv = m.at(e);
        const std::string where = " (trial " + std::to_string(e / (T * O)) + ", step " + std::to_string(e / O % T) + ")";
        if (!std::isfinite(tv) || std::fabs(tv) > 3.4e38) fail("array '" + tk + "' holds " + (std::isnan(tv) ? "NaN" : "Inf") + where + "; allowed: finite numbers");
        if (!std::isfinite(mv) || mv < 0 || mv > 3.4e38) fail("array '" + mk + "' holds " + std::to_string(mv) + where + "; allowed: finite numbers >= 0");
        pool.target[e] = float(tv);
        pool.mask[e] = float(mv);
      }
      // a trial whose mask is zero everywhere trains nothing, and a batch of such trials divides by zero
      for (size_t n = 0; n < N; ++n)
        if (std::all_of(pool.mask.begin() + n * T * O, pool.mask.begin() + (n + 1) * T * O, [](float v) { return v == 0; }))
          fail("array '" + mk + "' is zero at every step of trial " + std::to_string(n) +
               "; allowed: every trial with a step that counts (mask > 0)");
    }
  };
  read_pool("", data->train);
  if (has("x_eval"))
    read_pool("_eval", data->eval);
  else
    for (const char* k : {"labels_eval", "target_eval", "mask_eval"})
      if (has(k)) fail(std::string("array '") + k + "' has no 'x_eval' beside it; allowed: x_eval with it, or neither");

  // the leak from the file's scalars, if it has them
  if (has("dt_over_tau")) {
    data->dt_over_tau = scalar("dt_over_tau");
  } else if (has("dt") || has("tau")) {
    if (!has("dt") || !has("tau")) fail("the file holds one of 'dt' and 'tau'; allowed: both or neither");
    data->dt_over_tau = scalar("dt") / scalar("tau");
  }
  if (data->dt_over_tau != -1 && !(data->dt_over_tau > 0 && data->dt_over_tau <= 1))
    fail("its dt_over_tau (or dt / tau) is " + std::to_string(data->dt_over_tau) + "; allowed: a number in (0, 1]");
  return data;
}

TaskParams file_task_params(const TaskData& data, double dt_over_tau) {
  TaskParams p;
  p.kind = TaskKind::file;
  auto pool = [](const TaskData::Pool& d) {
    TaskParams::FilePool out;
    out.x = d.x.empty() ? nullptr : d.x.data();
    out.labels = d.labels.empty() ? nullptr : d.labels.data();
    out.target = d.target.empty() ? nullptr : d.target.data();
    out.mask = d.mask.empty() ? nullptr : d.mask.data();
    out.trials = d.trials;
    return out;
  };
  p.file_train = pool(data.train);
  p.file_eval = pool(data.eval);
  p.file_T = data.T;
  p.file_I = data.I;
  p.file_O = data.O;
  p.file_classification = data.classification;
  p.file_leak = 1.0 - dt_over_tau;
  return p;
}

}  // namespace rnnsweep
