// Task trials on the device. CPU twin: host/cpu/tasks.cpp.
//
// One thread owns one trial: it draws the trial's conditions and noise from Philox counters
// (iteration, trial, k) and writes all T steps of that trial. Shapes: T steps, Bt trials,
// I inputs, O outputs; x is T x Bt x I (step-major), target/mask T x Bt x O, label T x Bt.
#include <stdexcept>
#include <string>

#include "kernels/cuda_utils.cuh"
#include "kernels/tasks.cuh"

namespace rnnsweep::cuda {

RNNSWEEP_KERNEL void generate_trials_kernel(TaskParams task, Philox rng, std::uint32_t iteration,
                                            TrialView out) {
  const int b = blockIdx.x * blockDim.x + threadIdx.x;
  if (b < out.Bt) generate_trial(task, rng, iteration, b, out);
}

RNNSWEEP_KERNEL void generate_chunk_trials_kernel(TaskParams task, Purpose purpose, int K,
                                                  const std::uint32_t* seeds, std::uint32_t iteration,
                                                  TrialView first, const int* skip) {
  const long e = long(blockIdx.x) * blockDim.x + threadIdx.x;
  const int n = int(e / first.Bt), b = int(e % first.Bt);
  if (n >= K || (skip && skip[n] >= 0)) return;
  const size_t x_size = size_t(first.T) * first.Bt * first.I, out_size = size_t(first.T) * first.Bt * first.O;
  const TrialView mine{first.T,
                       first.Bt,
                       first.I,
                       first.O,
                       first.x + n * x_size,
                       first.target ? first.target + n * out_size : nullptr,
                       first.mask ? first.mask + n * out_size : nullptr,
                       first.label ? first.label + size_t(n) * first.T * first.Bt : nullptr};
  generate_trial(task, Philox(purpose, seeds[n]), iteration, b, mine);
}

void launch_generate_chunk_trials(const TaskParams& task, Purpose purpose, int K, const std::uint32_t* seeds,
                                  std::uint32_t iteration, const TrialView& first, const int* skip,
                                  cudaStream_t stream) {
  if (first.T != task.T() || first.I != task.inputs() || first.O != task.outputs() || first.Bt < 1 || K < 1)
    throw std::invalid_argument("launch_generate_chunk_trials: the view's shape does not match the task");
  if (!first.x || (task.classification() ? !first.label : (!first.target || !first.mask)))
    throw std::invalid_argument("launch_generate_chunk_trials: missing output buffer for this task");
  const long total = long(K) * first.Bt;
  const int threads = 128;
  RNNSWEEP_LAUNCH(generate_chunk_trials_kernel, unsigned((total + threads - 1) / threads), threads, 0, stream)
  (task, purpose, K, seeds, iteration, first, skip);
  CUDA_CHECK(cudaGetLastError());
}

void launch_generate_trials(const TaskParams& task, Purpose purpose, std::uint32_t seed,
                            std::uint32_t iteration, const TrialView& out, cudaStream_t stream) {
  if (out.T != task.T() || out.I != task.inputs() || out.O != task.outputs() || out.Bt < 1)
    throw std::invalid_argument("launch_generate_trials: the view's shape (T=" + std::to_string(out.T) +
                                ", I=" + std::to_string(out.I) + ", O=" + std::to_string(out.O) +
                                ", Bt=" + std::to_string(out.Bt) + ") does not match the task");
  if (!out.x || (task.classification() ? !out.label : (!out.target || !out.mask)))
    throw std::invalid_argument("launch_generate_trials: missing output buffer for this task");
  const int threads = 128, blocks = (out.Bt + threads - 1) / threads;
  RNNSWEEP_LAUNCH(generate_trials_kernel, blocks, threads, 0, stream)
  (task, Philox(purpose, seed), iteration, out);
  CUDA_CHECK(cudaGetLastError());
}

cpu::Trials device_trials(const TaskParams& task, Purpose purpose, std::uint32_t seed,
                          std::uint32_t iteration, int batch) {
  cpu::Trials t;
  cpu::shape_trials(task, batch, t);
  DeviceBuffer<float> x(t.x.size()), target(t.target.size()), mask(t.mask.size());
  DeviceBuffer<int> label(t.label.size());
  launch_generate_trials(task, purpose, seed, iteration,
                         TrialView{t.T, batch, t.I, t.O, x.get(), target.get(), mask.get(), label.get()},
                         nullptr);
  CUDA_CHECK(cudaDeviceSynchronize());
  auto copy = [](auto& host, const auto& dev) {
    if (dev.size())
      CUDA_CHECK(cudaMemcpy(host.data(), dev.get(), dev.size() * sizeof(host[0]), cudaMemcpyDeviceToHost));
  };
  copy(t.x, x);
  copy(t.target, target);
  copy(t.mask, mask);
  copy(t.label, label);
  return t;
}

}  // namespace rnnsweep::cuda
