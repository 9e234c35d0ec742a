// Backend selection. Its own library (rnnsweep_backends), since it links the CUDA backend,
// which itself builds on the core library.
#include "rnnsweep/backend.h"

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "host/tuning.h"

#if RNNSWEEP_WITH_CUDA
#include "kernels/cuda_backend.cuh"
#include "kernels/tuning.cuh"
#endif

namespace rnnsweep {

std::unique_ptr<Backend> make_cpu_backend(int threads);

std::unique_ptr<Backend> make_backend(const std::string& which, int threads) {
  if (which == "cpu") return make_cpu_backend(threads);
#if RNNSWEEP_WITH_CUDA
  if (which == "cuda") return make_cuda_backend(0);
  if (which == "auto") return cuda_device_usable(nullptr) ? make_cuda_backend(0) : make_cpu_backend(threads);
#else
  if (which == "cuda")
    throw UsageError(
        "--backend cuda: this build has no CUDA backend (no CUDA compiler was found when it was "
        "configured); allowed here: auto, cpu");
  if (which == "auto") return make_cpu_backend(threads);
#endif
  throw UsageError("--backend '" + which + "': allowed: auto, cpu, cuda");
}

bool gpu_here(std::string* why) {
#if RNNSWEEP_WITH_CUDA
  return cuda_device_usable(why);
#else
  if (why) *why = "this build has no CUDA backend";
  return false;
#endif
}

void tune_kernels(const TuneArgs& args) {
  namespace fs = std::filesystem;
  // Every argument is checked first, in every build, so that bad input is refused the same way.
  if (args.networks < 1 || args.networks > 65535)
    throw UsageError("--networks " + std::to_string(args.networks) + ": allowed: 1 to 65535");
  if (args.launches < 1 || args.launches > 100)
    throw UsageError("--launches " + std::to_string(args.launches) + ": allowed: 1 to 100");
  struct Shape3 {
    TaskKind task;
    int H, Bt;
  };
  std::vector<Shape3> shapes;
  const TaskKind tasks[] = {TaskKind::romo, TaskKind::two_af, TaskKind::dms};
  if (args.shapes == "all") {
    for (TaskKind t : tasks)
      for (int H : {32, 64, 128, 256})
        for (int Bt : {16, 32, 64}) shapes.push_back({t, H, Bt});
  } else if (args.shapes == "paper") {
    for (TaskKind t : tasks) shapes.push_back({t, 64, 32});
  } else {
    size_t from = 0;
    for (;;) {
      const size_t comma = args.shapes.find(',', from);
      const std::string item = args.shapes.substr(from, comma == std::string::npos ? std::string::npos : comma - from);
      const size_t a = item.find(':'), b = a == std::string::npos ? a : item.find(':', a + 1);
      Shape3 t{TaskKind::romo, 0, 0};
      try {
        if (b == std::string::npos) throw std::invalid_argument("form");
        t.task = parse_task(item.substr(0, a));
        size_t used = 0;
        t.H = std::stoi(item.substr(a + 1, b - a - 1), &used);
        if (used != b - a - 1) throw std::invalid_argument("H");
        t.Bt = std::stoi(item.substr(b + 1), &used);
        if (used != item.size() - b - 1 || t.H < 1 || t.Bt < 1) throw std::invalid_argument("Bt");
      } catch (const UsageError&) {
        throw UsageError("--shapes '" + item + "': allowed: all, paper, or TASK:H:BATCH,... with TASK romo, 2af or dms");
      } catch (const std::exception&) {
        throw UsageError("--shapes '" + item + "': allowed: all, paper, or TASK:H:BATCH,... with positive H and BATCH");
      }
      shapes.push_back(t);
      if (comma == std::string::npos) break;
      from = comma + 1;
    }
  }
  if (args.out.empty()) throw UsageError("rnnsweep tune: --out FILE is required");
  const fs::path out(args.out);
  const fs::path parent = out.has_parent_path() ? out.parent_path() : fs::path(".");
  if (!fs::is_directory(parent)) throw UsageError("--out '" + args.out + "': its folder does not exist");
  TuningTable table;
  table.origin = args.out;
  if (fs::exists(out)) {
    try {
      table = TuningTable::load(args.out);  // merged into: other GPUs and shapes are kept
    } catch (const std::exception& e) {
      throw UsageError(std::string("--out: ") + e.what() + "; it is never overwritten");
    }
  }
#if !RNNSWEEP_WITH_CUDA
  (void)shapes;
  throw UsageError("rnnsweep tune: this build has no CUDA backend (no CUDA compiler was found when it was "
                   "configured); there are no kernels to tune");
#else
  std::string why;
  if (!cuda_device_usable(&why)) throw UsageError("rnnsweep tune: no usable GPU here (CUDA runtime: " + why + ")");
  std::vector<cuda::TuneShape> tune_shapes;
  for (const Shape3& t : shapes) tune_shapes.push_back({t.task, t.H, t.Bt});
  cuda::TuneOptions options;
  options.networks = args.networks;
  options.launches = args.launches;
  if (!args.quiet) options.log = [](const std::string& line) { std::fprintf(stderr, "tune: %s\n", line.c_str()); };
  const std::string gpu = cuda::current_gpu_name();
  const GpuTuning measured = cuda::autotune(tune_shapes, options);
  table.merge(gpu, measured);
  const std::string tmp = args.out + ".tmp";
  {
    std::ofstream o(tmp, std::ios::binary | std::ios::trunc);
    o << table.dump();
    if (!(o << std::flush)) throw std::runtime_error("cannot write " + tmp);
  }
  fs::rename(tmp, out);
  std::printf("kernel\tshape\tinstance\theuristic\tspeedup_over_heuristic\n");
  for (const TuningEntry& e : measured.entries) {
    const auto mine = e.timings_ms.find(e.instance), theirs = e.timings_ms.find(e.heuristic);
    const double speedup = mine != e.timings_ms.end() && theirs != e.timings_ms.end() && mine->second > 0
                               ? theirs->second / mine->second
                               : 1.0;
    std::printf("%s\t%s\t%s\t%s\t%.3f\n", e.kernel.c_str(), e.shape.c_str(), e.instance.c_str(),
                e.heuristic.c_str(), speedup);
  }
  std::fprintf(stderr, "rnnsweep tune: %zu entries for %s -> %s\n", measured.entries.size(), gpu.c_str(),
               args.out.c_str());
#endif
}

}  // namespace rnnsweep
