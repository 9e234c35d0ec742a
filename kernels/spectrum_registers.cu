// Lyapunov spectra with the frame in registers (kernels/spectrum_registers.cuh). CPU twins:
// host/cpu/spectra.cpp (network_spectrum) and host/cpu/lyapunov.cpp (lyapunov_spectrum).
//
// One thread block owns one trajectory, as in kernels/lyapunov.cu; the same numbers in the same
// modified Gram-Schmidt order, with the work laid out for the hardware:
// - The QR keeps the frame in registers: the 4 k threads are four per column (a column's four
//   lanes are neighbours in one warp, so its dot products need two shuffle rounds), and thread
//   (column c, part p) holds rows p, p + 4, p + 8, ... of column c. Column j is normalised by its
//   own four lanes, which then publish q_j in the shared frame; one barrier per column. The
//   normalisation multiplies by one reciprocal (one division per column, not per entry), and the
//   owner of column j + 1 normalises it as soon as q_j is projected out of it, while the other
//   columns are still being projected: that is the look-ahead, and it needs no extra barrier.
// - ln R_jj is summed in a register of each column's lanes, after the QR (all k logs at once).
// - The Jacobian a Q + (1 - a) W_h D Q is register-tiled: each thread sums a tile of
//   (H / 32) rows x 8 columns, reading W_h as float (exact: the parameters are float) and the
//   frame's rows as 128-bit loads. The tile layout is not the QR's, so the product goes through
//   the shared frame once per step (two barriers).
// - The driven state is advanced by four lanes per unit (a quarter of the sum each, two
//   shuffle rounds), as DrivenTrajectory does in kernels/lyapunov.cuh, with the same overflow
//   guard (h = e^s u).
// Shared memory at H = 64 holds the frame (33 KiB), W_h as float (18 KiB) and the trial, under
// 56 KiB: 4 blocks per multiprocessor as far as shared memory goes (registers allow 2, see
// kMinBlocks). Everything is double except the parameters (float, converted exactly), as on the
// CPU.
// The results differ from the CPU's by the order of sums only (tests/test_kernels.cpp,
// Spectrum*: within 1e-9).
#include <limits>
#include <stdexcept>
#include <string>

#include "kernels/block_ops.cuh"
#include "kernels/cuda_utils.cuh"
#include "kernels/chain_registers.cuh"
#include "kernels/spectrum_registers.cuh"

namespace rnnsweep::cuda {
namespace {

template <int kH>
struct SpectrumGeometry {
  static constexpr int H = kH, K = kH;  // full spectra only: the lanes of a column are also a unit's
  static constexpr int kThreads = 4 * K;
  static constexpr int kWarps = kThreads / 32;
  static constexpr int kRows = H / 4;       // QR: rows of its column a thread holds
  static constexpr int kTileRows = H / 32;  // Jacobian: a thread's tile is kTileRows x 8
  static constexpr int kColumnBlocks = K / 8;
  static constexpr int kLdq = K + 2;                  // doubles: row stride of the frame (16-byte rows; the 4
                                                      // rows a QR load reads at once fall in distinct banks)
  static constexpr int kPartStride = kRows + 2;       // doubles: a lane's rows of a published column
  static constexpr int kPublished = 4 * kPartStride;  // ... and the column (the 4 parts, padded so
                                                      // that one 128-bit load hits 4 bank groups)
  static constexpr int kLdw = H + 8;  // floats: column stride of W_h (the advance's 4 lanes of a
                                      // unit read 4 columns at once, in distinct banks)
  static constexpr int kUnitLanes = 4;  // the advance: the lanes of a column are also a unit's
  // 16 warps per multiprocessor at 128 registers a thread. Shared memory would hold 3-4 blocks
  // of H = 64, but at 80 registers (3 blocks) the frame's 32 registers, the Jacobian's tile and
  // the advance's loads spill inside the step loop (ptxas -v), which costs more than it hides.
  static constexpr int kMinBlocks = 512 / kThreads;
  static_assert(H % 32 == 0 && K % 32 == 0, "whole warps of columns and tiles");
};

// Offsets, in doubles, of the block's dynamic shared memory.
struct RegistersSpectrumShared {
  size_t reduce, frame, published, u, W_x, b, W_h, trial_x, trial_target, trial_mask, trial_label, total;
};

template <typename G>
RNNSWEEP_HD RegistersSpectrumShared registers_spectrum_layout(int I, int O, int T, bool classification) {
  RegistersSpectrumShared L{};
  SharedCarver<double> carve;  // 16-byte aligned arrays
  L.reduce = carve.take(2 * G::kWarps);                  // a step's maxima by warp, two parities (or a block sum)
  L.frame = carve.take(size_t(G::H) * G::kLdq);          // H x k, row-major
  L.published = carve.take(2 * size_t(G::kPublished));   // the QR's column j, by parity of j
  L.u = carve.take(2 * size_t(G::H));                    // the state, two parities
  L.W_x = carve.take((size_t(G::H) * I + 1) / 2);        // floats, as W_h (exact: the parameters are float)
  L.b = carve.take(G::H / 2);                            // floats
  L.W_h = carve.take((size_t(G::H) * G::kLdw + 1) / 2);  // floats
  L.trial_x = carve.take((size_t(T) * I + 1) / 2);
  // what the task's generator writes besides x: targets and masks (romo) or labels (2af, dms)
  L.trial_target = carve.take(classification ? 0 : (size_t(T) * O + 1) / 2);
  L.trial_mask = carve.take(classification ? 0 : (size_t(T) * O + 1) / 2);
  L.trial_label = carve.take(classification ? (size_t(T) + 1) / 2 : 0);
  L.total = carve.size();
  return L;
}

template <typename G>
RNNSWEEP_KERNEL void __launch_bounds__(G::kThreads, G::kMinBlocks)
    spectrum_registers_kernel(SpectrumChunk c) {
  const int n = blockIdx.x / c.J, j = blockIdx.x % c.J;
  if (c.active && !c.active[n]) return;
  RNNSWEEP_DYNAMIC_SHARED(double, shared);
  constexpr int H = G::H, K = G::K;
  const int I = c.shape.I, O = c.shape.O, T = c.task.T();
  const int tid = threadIdx.x;
  const ParamLayout layout(c.shape);
  const RegistersSpectrumShared L = registers_spectrum_layout<G>(I, O, T, c.task.classification());
  const float* params = c.params + size_t(n) * layout.size;
  double* frame = shared + L.frame;
  float* W = reinterpret_cast<float*>(shared + L.W_h);  // W(i, l) = W[l kLdw + i]
  float* W_x = reinterpret_cast<float*>(shared + L.W_x);
  float* b = reinterpret_cast<float*>(shared + L.b);
  const double a = c.task.leak();
  const double floor = load_chain_weights<G>(params, layout, c.shape, a, W, W_x, b, shared + L.reduce);

  // QR ownership: column `col`, rows p, p + 4, ...; the advance: unit `col`, terms l = 4 n + p
  const int col = tid / 4, p = tid % 4;
  double m[G::kRows], norm = 0;
  random_frame_qr<G>(m, c.seed[n], frame, shared + L.published, norm);

  const Philox trials(c.purpose, c.seed[n]);
  const std::uint32_t iteration = c.iteration_offset + std::uint32_t(j);
  const TrialView one = shared_trial(shared, L, T, I, O);
  const float* trial_x = one.x;
  double* u = shared + L.u;  // u[parity H + i]
  // (no barrier here: the first trial's, below, also publishes the zero state)
  for (int i = tid; i < 2 * H; i += G::kThreads) u[i] = 0.0;
  double log_scale = 0, drive_scale = 1, log_sum = 0;

  const long total = c.warmup + c.steps;
  // Trial by trial, so that the trial's generation (one thread's work once every T steps) stays
  // out of the step loop, whose body is then exactly one step (what scripts/kernel_report.py
  // counts).
  for (long first = 0; first < total; first += T) {
    // the previous trial's inputs were last read before the previous step's barriers
    if (tid == 0) generate_trial(c.task, trials, iteration, int(first / T), one, 0);
    __syncthreads();
    const int steps_here = int(total - first < T ? total - first : T);
    for (int t = 0; t < steps_here; ++t) {
      const long step = first + t;
      const int parity = int(step % 2);
      const double* u_now = u + parity * H;
      double* u_next = u + (1 - parity) * H;
      double* maxima = shared + L.reduce + parity * G::kWarps;
      const bool exponents = step >= c.warmup;
      const double next = advance_state<G>(u_now, W, W_x, b, trial_x + t * I, I, a, drive_scale, maxima);
      if (p == 0) u_next[col] = next;  // (read after the barriers below; u_now is the other parity)
      if (exponents) jacobian_product<G>(frame, W, u_now, a);
      __syncthreads();
      renormalise_state<G>(maxima, next, u_next, log_scale, drive_scale);
      if (exponents) {
        RNNSWEEP_UNROLL
        for (int r = 0; r < G::kRows; ++r) m[r] = frame[(4 * r + p) * G::kLdq + col];
        register_qr<G>(m, frame, shared + L.published, floor, norm);
        log_sum += norm > floor ? log(norm) : -std::numeric_limits<double>::infinity();
      }
    }
  }
  if (p == 0) c.lambda[size_t(blockIdx.x) * K + col] = log_sum / double(c.steps);
}

template <typename G>
void launch_instance(const SpectrumChunk& chunk, cudaStream_t stream) {
  const size_t bytes =
      registers_spectrum_layout<G>(chunk.shape.I, chunk.shape.O, chunk.task.T(), chunk.task.classification())
          .total *
      sizeof(double);
  CUDA_CHECK(cudaFuncSetAttribute(spectrum_registers_kernel<G>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                  int(bytes)));
  RNNSWEEP_LAUNCH(spectrum_registers_kernel<G>, chunk.K * chunk.J, G::kThreads, bytes, stream)(chunk);
  CUDA_CHECK(cudaGetLastError());
}

// The compiled instances: full spectra at H = 32 and 64.
#define RNNSWEEP_SPECTRUM_INSTANCES(X) X(32) X(64)

}  // namespace

bool spectrum_registers_exists(const Shape& shape, int k) {
#define RNNSWEEP_EXISTS(h) \
  if (shape.H == h && k == h) return true;
  RNNSWEEP_SPECTRUM_INSTANCES(RNNSWEEP_EXISTS)
#undef RNNSWEEP_EXISTS
  return false;
}

int spectrum_registers_threads(const Shape& shape, int k) {
#define RNNSWEEP_THREADS(h) \
  if (shape.H == h && k == h) return SpectrumGeometry<h>::kThreads;
  RNNSWEEP_SPECTRUM_INSTANCES(RNNSWEEP_THREADS)
#undef RNNSWEEP_THREADS
  throw std::invalid_argument("spectrum_registers_threads: no instance for H = " + std::to_string(shape.H) +
                              ", k = " + std::to_string(k));
}

size_t spectrum_registers_shared_bytes(const Shape& shape, int k, const TaskParams& task) {
#define RNNSWEEP_BYTES(h)                                                                                    \
  if (shape.H == h && k == h)                                                                                \
    return registers_spectrum_layout<SpectrumGeometry<h>>(shape.I, shape.O, task.T(), task.classification()) \
               .total *                                                                                      \
           sizeof(double);
  RNNSWEEP_SPECTRUM_INSTANCES(RNNSWEEP_BYTES)
#undef RNNSWEEP_BYTES
  throw std::invalid_argument("spectrum_registers_shared_bytes: no instance for H = " +
                              std::to_string(shape.H) + ", k = " + std::to_string(k));
}

void launch_spectrum_registers(const SpectrumChunk& chunk, cudaStream_t stream) {
#define RNNSWEEP_LAUNCH_IF(h)                            \
  if (chunk.shape.H == h && chunk.k == h) {              \
    launch_instance<SpectrumGeometry<h>>(chunk, stream); \
    return;                                              \
  }
  RNNSWEEP_SPECTRUM_INSTANCES(RNNSWEEP_LAUNCH_IF)
#undef RNNSWEEP_LAUNCH_IF
  throw std::invalid_argument("launch_spectrum_registers: no instance for H = " +
                              std::to_string(chunk.shape.H) + ", k = " + std::to_string(chunk.k));
}

}  // namespace rnnsweep::cuda
