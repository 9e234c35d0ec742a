// Lyapunov spectra of a chunk of networks. CPU twins: host/cpu/spectra.cpp (network_spectrum)
// and host/cpu/lyapunov.cpp (lyapunov_spectrum).
//
// Ownership: one thread block owns one trajectory of one network (K J blocks): it runs the
// driven trajectory and the QR iteration in lockstep, so the states are never stored. Per
// step: M = a Q + (1 - a) W_h diag(f'(h_t)) Q (one thread per entry of the H x k frame), the
// in-place QR of M (kernels/lyapunov.cuh), ln R_jj accumulated by lane 0 of warp 0. W_h and
// the two frames sit in shared memory when they fit (H = 64, k = 64: about 85 KiB), else W_h is
// read from the float parameters and the frames from global scratch.
#include <algorithm>
#include <limits>
#include <stdexcept>
#include <string>

#include "kernels/block_ops.cuh"
#include "kernels/cuda_utils.cuh"
#include "kernels/lyapunov.cuh"
#include "kernels/spectrum_registers.cuh"

namespace rnnsweep::cuda {
namespace {

struct SpectrumShared {
  size_t reduce, W_h, W_x, b, u, scratch, diag, log_sum, frames, trial_x, trial_target, trial_mask,
      trial_label;
  size_t total;  // doubles
};

RNNSWEEP_HD inline SpectrumShared spectrum_shared_layout(const Shape& s, int k, int T, bool W_h_shared,
                                                         bool frames_shared) {
  SpectrumShared L{};
  SharedCarver<double> carve;  // 16-byte aligned arrays
  L.reduce = carve.take(32);
  L.W_h = carve.take(W_h_shared ? recurrent_weights_doubles(s.H) : 0);
  L.W_x = carve.take(size_t(s.H) * s.I);
  L.b = carve.take(s.H);
  L.u = carve.take(s.H);
  L.scratch = carve.take(2 * size_t(s.H));
  L.diag = carve.take(k);
  L.log_sum = carve.take(k);
  L.frames = carve.take(frames_shared ? 2 * size_t(s.H) * k : 0);
  // the current trial, in floats and ints (half a double each, rounded up)
  L.trial_x = carve.take((size_t(T) * s.I + 1) / 2);
  L.trial_target = carve.take((size_t(T) * s.O + 1) / 2);
  L.trial_mask = carve.take((size_t(T) * s.O + 1) / 2);
  L.trial_label = carve.take((size_t(T) + 1) / 2);
  L.total = carve.size();
  return L;
}

RNNSWEEP_KERNEL void spectrum_kernel(SpectrumChunk c, bool W_h_shared, bool frames_shared) {
  const int n = blockIdx.x / c.J, j = blockIdx.x % c.J;
  if (c.active && !c.active[n]) return;
  RNNSWEEP_DYNAMIC_SHARED(double, shared);
  const Shape s = c.shape;
  const int H = s.H, k = c.k, T = c.task.T();
  const ParamLayout layout(s);
  const SpectrumShared L = spectrum_shared_layout(s, k, T, W_h_shared, frames_shared);
  const float* params = c.params + size_t(n) * layout.size;
  double* reduce = shared + L.reduce;
  const RecurrentWeights W =
      load_recurrent_weights(params + layout.W_h, H, W_h_shared ? shared + L.W_h : nullptr);
  double* W_x = shared + L.W_x;
  double* b = shared + L.b;
  for (int e = threadIdx.x; e < H * s.I; e += blockDim.x) W_x[e] = params[layout.W_x + e];
  for (int i = threadIdx.x; i < H; i += blockDim.x) b[i] = s.bias ? params[layout.b + i] : 0.0;
  double* frame = frames_shared ? shared + L.frames : c.frames + size_t(blockIdx.x) * 2 * H * k;
  double* next = frame + size_t(H) * k;
  double* diag = shared + L.diag;
  double* log_sum = shared + L.log_sum;
  for (int i = threadIdx.x; i < k; i += blockDim.x) log_sum[i] = 0.0;
  // No barrier yet: the floor reads only the entries of W_h this thread loaded, and the other
  // arrays are first read after block_random_frame's barriers.

  const double a = c.task.leak();
  const double floor = annihilation_floor(W, a, reduce);
  block_random_frame(frame, H, k, c.seed[n], diag);

  DrivenTrajectory traj{c.task,
                        Philox(c.purpose, c.seed[n]),
                        c.iteration_offset + std::uint32_t(j),
                        H,
                        s.I,
                        s.O,
                        T,
                        a,
                        W,
                        W_x,
                        b,
                        shared + L.u,
                        shared + L.scratch,
                        reinterpret_cast<float*>(shared + L.trial_x),
                        reinterpret_cast<float*>(shared + L.trial_target),
                        reinterpret_cast<float*>(shared + L.trial_mask),
                        reinterpret_cast<int*>(shared + L.trial_label),
                        reduce};
  traj.start();
  const double* u = traj.u;
  const long total = c.warmup + c.steps;
  for (long step = 0; step < total; ++step) {
    if (step >= c.warmup) {
      // J_t Q = a Q + (1 - a) W_h (diag(f'(h_t)) Q), h_t the state before this step's update.
      // u and the frame are complete: start() and advance() end in a barrier, and so does the
      // QR that wrote the frame; `next` was last read before the QR's barriers.
      for (int e = threadIdx.x; e < H * k; e += blockDim.x) {
        const int i = e % H, col = e / H;
        const double* q = frame + size_t(col) * H;
        double sum = 0;
        for (int l = 0; l < H; ++l)
          if (u[l] > 0) sum += W(i, l) * q[l];
        next[e] = a * q[i] + (1 - a) * sum;
      }
      __syncthreads();
      block_qr_positive(next, H, k, floor, diag, nullptr);
      if (threadIdx.x == 0)
        for (int col = 0; col < k; ++col)
          log_sum[col] += diag[col] > floor ? log(diag[col]) : -std::numeric_limits<double>::infinity();
      double* done = frame;  // every thread swaps the same way
      frame = next;
      next = done;
    }
    traj.advance(step);  // its closing barrier also publishes thread 0's log_sum
  }
  for (int col = threadIdx.x; col < k; col += blockDim.x)
    c.lambda[size_t(blockIdx.x) * k + col] = log_sum[col] / double(c.steps);
}

}  // namespace

namespace {

// The register instance's plan, if one exists for the shape and fits.
bool registers_plan(const Shape& shape, int k, const TaskParams& task, size_t max_shared, SpectrumLaunchPlan& plan) {
  if (!spectrum_registers_exists(shape, k)) return false;
  plan = SpectrumLaunchPlan{};
  plan.registers = true;
  plan.threads = spectrum_registers_threads(shape, k);
  plan.shared_bytes = spectrum_registers_shared_bytes(shape, k, task);
  return plan.shared_bytes <= max_shared;
}

}  // namespace

SpectrumLaunchPlan plan_spectrum(const Shape& shape, int k, const TaskParams& task, size_t max_shared) {
  SpectrumLaunchPlan plan;
  if (registers_plan(shape, k, task, max_shared, plan)) return plan;
  plan = SpectrumLaunchPlan{};
  // One warp per column in the projection phase: up to k warps are useful; 4 warps keep a
  // small block's barriers cheap and leave room for several blocks per multiprocessor.
  plan.threads = std::min(256, std::max(32, (std::max(shape.H, k) + 31) / 32 * 32 * 2));
  const bool options[3][2] = {{true, true}, {false, true}, {false, false}};
  for (const auto& o : options) {
    const size_t bytes = spectrum_shared_layout(shape, k, task.T(), o[0], o[1]).total * sizeof(double);
    if (bytes <= max_shared) {
      plan.W_h_shared = o[0];
      plan.frames_shared = o[1];
      plan.shared_bytes = bytes;
      return plan;
    }
  }
  throw std::invalid_argument(
      "the cuda backend's spectra need " +
      std::to_string(spectrum_shared_layout(shape, k, task.T(), false, false).total * 8 / 1024) +
      " KiB of shared memory per trajectory for hidden = " + std::to_string(shape.H) +
      ", more than this GPU's " + std::to_string(max_shared / 1024) + " KiB; use --backend cpu");
}

std::string SpectrumLaunchPlan::name() const {
  if (registers) return "registers threads=" + std::to_string(threads);
  return "threads=" + std::to_string(threads) + " W_h=" + (W_h_shared ? "shared" : "global") +
         " frames=" + (frames_shared ? "shared" : "global");
}

std::vector<SpectrumLaunchPlan> spectrum_candidates(const Shape& shape, int k, const TaskParams& task,
                                                    size_t max_shared) {
  const SpectrumLaunchPlan heuristic = plan_spectrum(shape, k, task, max_shared);
  std::vector<SpectrumLaunchPlan> out = {heuristic};
  SpectrumLaunchPlan fast;
  if (registers_plan(shape, k, task, max_shared, fast) && fast.name() != heuristic.name()) out.push_back(fast);
  const bool placements[3][2] = {{true, true}, {false, true}, {false, false}};
  for (int threads : {64, 128, 256})
    for (const auto& p : placements) {
      SpectrumLaunchPlan plan;
      plan.threads = threads;
      plan.W_h_shared = p[0];
      plan.frames_shared = p[1];
      plan.shared_bytes = spectrum_shared_layout(shape, k, task.T(), p[0], p[1]).total * sizeof(double);
      if (plan.shared_bytes > max_shared || plan.name() == heuristic.name()) continue;
      out.push_back(plan);
    }
  return out;
}

std::string spectrum_shape_key(const Shape& shape, int k, const TaskParams& task) {
  return "H=" + std::to_string(shape.H) + " k=" + std::to_string(k) + " I=" + std::to_string(shape.I) +
         " O=" + std::to_string(shape.O) + " T=" + std::to_string(task.T());
}

void launch_spectrum(const SpectrumChunk& chunk, const SpectrumLaunchPlan& plan, cudaStream_t stream) {
  if (chunk.K < 1 || chunk.J < 1 || chunk.k < 1 || chunk.k > chunk.shape.H || chunk.steps < 1 ||
      chunk.warmup < 0)
    throw std::invalid_argument("launch_spectrum: need K, J >= 1, 1 <= k <= H, steps >= 1, warmup >= 0");
  if (!plan.frames_shared && !chunk.frames)
    throw std::invalid_argument(
        "launch_spectrum: the plan keeps frames in global memory but none were given");
  if (plan.registers) {
    launch_spectrum_registers(chunk, stream);
    return;
  }
  CUDA_CHECK(cudaFuncSetAttribute(spectrum_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                  int(plan.shared_bytes)));
  RNNSWEEP_LAUNCH(spectrum_kernel, chunk.K * chunk.J, plan.threads, plan.shared_bytes, stream)
  (chunk, plan.W_h_shared, plan.frames_shared);
  CUDA_CHECK(cudaGetLastError());
}

}  // namespace rnnsweep::cuda
