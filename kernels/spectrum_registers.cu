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
#include "kernels/register_qr.cuh"
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
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const ParamLayout layout(c.shape);
  const RegistersSpectrumShared L = registers_spectrum_layout<G>(I, O, T, c.task.classification());
  const float* params = c.params + size_t(n) * layout.size;
  double* frame = shared + L.frame;
  float* W = reinterpret_cast<float*>(shared + L.W_h);  // W(i, l) = W[l kLdw + i]
  float* W_x = reinterpret_cast<float*>(shared + L.W_x);
  float* b = reinterpret_cast<float*>(shared + L.b);
  double partial = 0;
  for (int e = tid; e < H * H; e += G::kThreads) {
    const float w = params[layout.W_h + e];
    W[(e / H) * G::kLdw + e % H] = w;
    partial += double(w) * double(w);
  }
  for (int e = tid; e < H * I; e += G::kThreads) W_x[e] = params[layout.W_x + e];
  for (int i = tid; i < H; i += G::kThreads) b[i] = c.shape.bias ? params[layout.b + i] : 0.0f;
  const double a = c.task.leak();
  // 1e-10 (a + (1 - a) ||W_h||_F), as annihilation_floor (kernels/lyapunov.cuh); the block sum's
  // barriers also publish W_h, W_x and b
  const double floor = 1e-10 * (a + (1 - a) * sqrt(block_sum(partial, shared + L.reduce)));

  // QR ownership: column `col`, rows p, p + 4, ...; the advance: unit `col`, terms l = 4 n + p
  const int col = tid / 4, p = tid % 4;
  double m[G::kRows], norm = 0;
  {
    // the random starting frame: the QR of the Gaussian matrix of (lyapunov_frame, seed), entry
    // (r, c) at index r k + c, as block_random_frame
    const Philox rng(Purpose::lyapunov_frame, c.seed[n]);
    RNNSWEEP_UNROLL
    for (int r = 0; r < G::kRows; ++r) m[r] = normal_at(rng, std::uint32_t((4 * r + p) * K + col));
    register_qr<G>(m, frame, shared + L.published, 0.0, norm);
  }

  // Jacobian tile ownership: rows rb kTileRows + r, columns 2 cb + 2 kColumnBlocks q + e (q < 4,
  // e < 2): in one 128-bit load of a frame row the 4 column blocks of a warp read 4 neighbouring
  // 16-byte pieces, and its 8 row blocks read neighbouring pieces of a W_h column.
  const int rb = (warp % 4) * 8 + lane % 8, cb = (warp / 4) * 4 + lane / 8;
  auto tile_col = [&](int q) { return 2 * cb + 2 * G::kColumnBlocks * q; };

  const Philox trials(c.purpose, c.seed[n]);
  const std::uint32_t iteration = c.iteration_offset + std::uint32_t(j);
  float* trial_x = reinterpret_cast<float*>(shared + L.trial_x);
  const TrialView one{T,
                      1,
                      I,
                      O,
                      trial_x,
                      reinterpret_cast<float*>(shared + L.trial_target),
                      reinterpret_cast<float*>(shared + L.trial_mask),
                      reinterpret_cast<int*>(shared + L.trial_label)};
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

      // The next state of unit `col`: four lanes sum a quarter of W_h relu(u) each
      double recurrent = 0;
      RNNSWEEP_UNROLL
      for (int k4 = 0; k4 < H / 4; ++k4) {
        const int l = 4 * k4 + p;
        const double on = u_now[l] > 0 ? u_now[l] : 0.0;
        recurrent += double(W[l * G::kLdw + col]) * on;
      }
      recurrent += __shfl_xor_sync(0xffffffffu, recurrent, 1);
      recurrent += __shfl_xor_sync(0xffffffffu, recurrent, 2);
      double drive = 0;
      // a few inputs (1 to 3): unrolled copies would never run
      RNNSWEEP_NO_UNROLL
      for (int k = 0; k < I; ++k) drive += double(W_x[col + k * H]) * double(trial_x[t * I + k]);
      drive += double(b[col]);
      const double next = a * u_now[col] + (1 - a) * (recurrent + drive_scale * drive);
      double largest = fabs(next);
      for (int offset = 16; offset > 0; offset /= 2)
        largest = fmax(largest, __shfl_xor_sync(0xffffffffu, largest, offset));
      if (lane == 0) maxima[warp] = largest;
      if (p == 0) u_next[col] = next;  // (read after the barriers below; u_now is the other parity)

      // J_t Q = a Q + (1 - a) W_h (diag(f'(h_t)) Q), h_t the state before this step's update:
      // the sums over the units l that are on (u_l > 0, the same for every thread)
      double tile[G::kTileRows][8];
      if (exponents) {
        RNNSWEEP_UNROLL
        for (int r = 0; r < G::kTileRows; ++r) RNNSWEEP_UNROLL
        for (int e = 0; e < 8; ++e) tile[r][e] = 0;
        RNNSWEEP_NO_UNROLL
        for (int l = 0; l < H; ++l) {
          if (!(u_now[l] > 0)) continue;
          double w[G::kTileRows];
          if constexpr (G::kTileRows == 2) {
            const float2 pair = *reinterpret_cast<const float2*>(W + l * G::kLdw + 2 * rb);
            w[0] = pair.x;
            w[1] = pair.y;
          } else {
            RNNSWEEP_UNROLL
            for (int r = 0; r < G::kTileRows; ++r) w[r] = W[l * G::kLdw + rb * G::kTileRows + r];
          }
          RNNSWEEP_UNROLL
          for (int q = 0; q < 4; ++q) {
            const double2 f = *reinterpret_cast<const double2*>(frame + l * G::kLdq + tile_col(q));
            RNNSWEEP_UNROLL
            for (int r = 0; r < G::kTileRows; ++r) {
              tile[r][2 * q] += w[r] * f.x;
              tile[r][2 * q + 1] += w[r] * f.y;
            }
          }
        }
        RNNSWEEP_UNROLL
        for (int r = 0; r < G::kTileRows; ++r) {
          const int i = rb * G::kTileRows + r;
          RNNSWEEP_UNROLL
          for (int q = 0; q < 4; ++q) {
            const double2 f = *reinterpret_cast<const double2*>(frame + i * G::kLdq + tile_col(q));
            tile[r][2 * q] = a * f.x + (1 - a) * tile[r][2 * q];
            tile[r][2 * q + 1] = a * f.y + (1 - a) * tile[r][2 * q + 1];
          }
        }
        __syncthreads();  // every thread has read the frame: the product may overwrite it
        RNNSWEEP_UNROLL
        for (int r = 0; r < G::kTileRows; ++r) {
          const int i = rb * G::kTileRows + r;
          RNNSWEEP_UNROLL
          for (int q = 0; q < 4; ++q)
            *reinterpret_cast<double2*>(frame + i * G::kLdq + tile_col(q)) =
                make_double2(tile[r][2 * q], tile[r][2 * q + 1]);
        }
      }
      __syncthreads();
      largest = 0;
      for (int w = 0; w < G::kWarps; ++w) largest = fmax(largest, maxima[w]);
      if (largest > kRenormaliseAbove && is_finite(largest)) {  // as the CPU; the same on every thread
        if (p == 0) u_next[col] = next / largest;
        log_scale += log(largest);
        drive_scale = exp(-log_scale);
        __syncthreads();
      }

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
