// Lists the kernel instances with their block size and dynamic shared memory at their shape,
// one JSON object a line, for scripts/kernel_report.py (which reads their registers, stack and
// instruction mix from the compiled cubins). Host code only: runs without a GPU.
#include <cstdio>
#include <string>
#include <utility>

#include "kernels/floss.cuh"
#include "kernels/lyapunov.cuh"
#include "kernels/train_mma.cuh"
#include "kernels/train_registers.cuh"
#include "kernels/train_step.cuh"
#include "rnnsweep/config.h"

using namespace rnnsweep;

namespace {

constexpr size_t kMaxShared = 227 * 1024;  // H100 / H200

void line(const std::string& fields, int threads, size_t shared, const std::string& shape) {
  std::printf("{%s\"threads\": %d, \"shared\": %zu, \"shape\": \"%s\"}\n", fields.c_str(), threads, shared,
              shape.c_str());
}

}  // namespace

int main() {
  // the register instances: romo for the regression, dms (the longer choice task) for the others
  for (TaskKind kind : {TaskKind::romo, TaskKind::dms})
    for (int H : {32, 64, 128})
      for (int Bt : {16, 32, 64}) {
        const TaskParams task = Config::make_task(kind);
        const Shape shape{H, task.inputs(), task.outputs(), false};
        if (!cuda::registers_instance_exists(shape, Bt)) continue;
        for (bool bptt : {false, true})
          line("\"kernel\": \"train_registers\", \"H\": " + std::to_string(H) + ", \"Bt\": " + std::to_string(Bt) +
                   ", \"family\": \"" + (bptt ? "bptt" : "eprop/rflo") + "\", \"task\": \"" +
                   (task.classification() ? "Choice" : "Regression") + "\", ",
               cuda::registers_threads(shape, Bt, bptt), cuda::registers_shared_bytes(shape, Bt, task.T(), bptt),
               "H=" + std::to_string(H) + " Bt=" + std::to_string(Bt) + " " + task_name(kind) + " T=" +
                   std::to_string(task.T()));
      }
  // the tensor-core instances (precision tf32x3)
  for (TaskKind kind : {TaskKind::romo, TaskKind::dms})
    for (int H : {32, 64})
      for (int Bt : {16, 32, 64}) {
        const TaskParams task = Config::make_task(kind);
        const Shape shape{H, task.inputs(), task.outputs(), false};
        if (!cuda::mma_instance_exists(shape, Bt)) continue;
        for (bool bptt : {false, true})
          line("\"kernel\": \"train_mma\", \"H\": " + std::to_string(H) + ", \"Bt\": " + std::to_string(Bt) +
                   ", \"family\": \"" + (bptt ? "bptt" : "eprop/rflo") + "\", \"task\": \"" +
                   (task.classification() ? "Choice" : "Regression") + "\", ",
               cuda::mma_threads(shape, Bt), cuda::mma_shared_bytes(shape, Bt, task.T(), bptt),
               "H=" + std::to_string(H) + " Bt=" + std::to_string(Bt) + " " + task_name(kind) + " T=" +
                   std::to_string(task.T()));
      }
  // the general kernels at the study's shape
  const TaskParams romo = Config::make_task(TaskKind::romo);
  const Shape shape{64, romo.inputs(), romo.outputs(), false};
  const cuda::TrainLaunchPlan train = cuda::plan_train_general(shape, 32, kMaxShared);
  line("\"kernel\": \"train_step_kernel\", ", train.threads, train.shared_bytes, "H=64 Bt=32 romo");
  // the register spectrum instances (full spectra), at dms's T (the longest trial of the three,
  // so the most shared memory)
  const TaskParams dms = Config::make_task(TaskKind::dms);
  for (int H : {32, 64}) {
    const Shape full{H, dms.inputs(), dms.outputs(), false};
    const cuda::SpectrumLaunchPlan spectrum = cuda::plan_spectrum(full, H, dms, kMaxShared);
    if (!spectrum.registers) continue;
    line("\"kernel\": \"spectrum_registers\", \"H\": " + std::to_string(H) + ", ", spectrum.threads,
         spectrum.shared_bytes, "H=k=" + std::to_string(H) + " dms T=" + std::to_string(dms.T()));
  }
  cuda::SpectrumLaunchPlan general;
  for (const auto& p : cuda::spectrum_candidates(shape, 64, romo, kMaxShared))
    if (!p.registers) {
      general = p;
      break;
    }
  line("\"kernel\": \"spectrum_kernel\", ", general.threads, general.shared_bytes, "H=64 k=64 romo");
  // flossing: the register instances at dms's T, and the general kernel at the study's shape
  for (const auto& [H, k] : {std::pair{64, 32}, std::pair{32, 32}}) {
    const Shape at{H, dms.inputs(), dms.outputs(), false};
    const cuda::FlossLaunchPlan floss = cuda::plan_floss(at, k, dms, kMaxShared);
    if (!floss.registers) continue;
    line("\"kernel\": \"floss_registers\", \"H\": " + std::to_string(H) + ", \"Bt\": " + std::to_string(k) + ", ",
         floss.threads, floss.shared_bytes, "H=" + std::to_string(H) + " k=" + std::to_string(k) + " dms T=" + std::to_string(dms.T()));
  }
  for (const auto& p : cuda::floss_candidates(shape, 32, romo, kMaxShared))
    if (!p.registers) {
      line("\"kernel\": \"floss_kernel\", ", p.threads, p.shared_bytes, "H=64 k=32 romo");
      break;
    }
  return 0;
}
