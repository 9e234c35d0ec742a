// Writing small .npz files from the tests (what numpy.savez writes: a zip of stored .npy members,
// with their CRC-32), so that the task-file tests need no Python. tests/test_task_files.py checks
// the files numpy itself writes (savez, savez_compressed, Fortran order).
#pragma once

#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

namespace rnnsweep::test {

struct NpyMember {
  std::string name;   // without .npy
  std::string descr;  // "<f4", "<i8", ...
  std::vector<long> shape;
  std::string bytes;  // little-endian data in C order
};

template <typename T>
NpyMember npy(const std::string& name, const std::string& descr, std::vector<long> shape, const std::vector<T>& v) {
  return {name, descr, std::move(shape), std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T))};
}

inline std::string npy_bytes(const NpyMember& m) {
  std::string shape = "(";
  for (size_t i = 0; i < m.shape.size(); ++i) shape += (i ? ", " : "") + std::to_string(m.shape[i]);
  shape += m.shape.size() == 1 ? ",)" : ")";
  std::string header = "{'descr': '" + m.descr + "', 'fortran_order': False, 'shape': " + shape + ", }";
  while ((10 + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::string out = "\x93NUMPY";
  out += char(1);
  out += char(0);
  out += char(header.size() & 0xff);
  out += char(header.size() >> 8);
  return out + header + m.bytes;
}

inline std::uint32_t crc32(const std::string& s) {
  std::uint32_t c = 0xffffffffu;
  for (unsigned char ch : s) {
    c ^= ch;
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
  }
  return ~c;
}

inline void write_npz(const std::string& path, const std::vector<NpyMember>& members) {
  std::string zip, dir;
  auto le = [](std::string& s, std::uint64_t v, int bytes) {
    for (int i = 0; i < bytes; ++i) s += char((v >> (8 * i)) & 0xff);
  };
  for (const auto& m : members) {
    const std::string data = npy_bytes(m), name = m.name + ".npy";
    const std::uint32_t crc = crc32(data), offset = std::uint32_t(zip.size());
    std::string local;
    le(local, 0x04034b50, 4), le(local, 20, 2), le(local, 0, 2), le(local, 0, 2), le(local, 0, 4);
    le(local, crc, 4), le(local, data.size(), 4), le(local, data.size(), 4), le(local, name.size(), 2), le(local, 0, 2);
    zip += local + name + data;
    le(dir, 0x02014b50, 4), le(dir, 20, 2), le(dir, 20, 2), le(dir, 0, 2), le(dir, 0, 2), le(dir, 0, 4);
    le(dir, crc, 4), le(dir, data.size(), 4), le(dir, data.size(), 4), le(dir, name.size(), 2), le(dir, 0, 2);
    le(dir, 0, 2), le(dir, 0, 2), le(dir, 0, 2), le(dir, 0, 4), le(dir, offset, 4);
    dir += name;
  }
  std::string end;
  le(end, 0x06054b50, 4), le(end, 0, 2), le(end, 0, 2), le(end, members.size(), 2), le(end, members.size(), 2);
  le(end, dir.size(), 4), le(end, zip.size(), 4), le(end, 0, 2);
  std::ofstream(path, std::ios::binary) << zip << dir << end;
}

}  // namespace rnnsweep::test
