// One gradient-flossing iteration per network with the chain's frame in registers
// (kernels/floss_registers.cuh). CPU twins: host/cpu/floss.cpp (floss_chain,
// qr_positive_backward) and host/cpu/spectra.cpp (floss_network); kernels/floss.cu is the general
// kernel, whose header comment writes out the backward pass.
//
// One thread block owns one network, as there; the work is laid out as the spectrum's register
// kernel lays out its chain (kernels/spectrum_registers.cu):
// - Forward, per step, the spectrum kernel's chain (kernels/chain_registers.cuh): the driven
//   state advanced by kUnitLanes lanes per unit; the Jacobian product M = a Q + (1 - a) W_h D Q
//   register-tiled ((H / 32) rows x 8 columns a thread) over W_h as float in shared memory
//   (exact) and the frame's rows read as 128-bit loads; the QR in registers (four lanes per
//   column, one barrier per column, look-ahead, a reciprocal per column), which here also writes
//   the triangle's upper part to the network's global scratch. Each frame goes to global scratch once (row-major H x k), for the
//   backward pass, which visits them in reverse. ln R_jj is summed in each column's registers.
// - Backward, per step, four barriers: C = R R_bar^T - Q_bar^T Q (its lower triangle, mirrored);
//   M_bar = Q_bar + Q C (tiled); M_bar R^{-T} (a row per thread, reciprocals of R's diagonal);
//   then dW_h += (1 - a) M_bar (D Q_prev)^T into a register tile (H^2 / threads entries a
//   thread, held for the whole backward pass and the Adam step), and Q_bar = a M_bar +
//   (1 - a) D W_h^T M_bar (tiled). The next step's frame and triangle are brought in while the
//   last two products run.
// - The chain runs all k columns; where a step annihilated a column, the backward pass masks
//   every column from the first annihilated one on (R_bar and the triangular solve are zero
//   there), which computes exactly what the CPU's rerun with fewer columns computes: QR is
//   nested, and the masked columns add exact zeros.
// Shared memory at H = 64, k = 32: four H x k frames (Q, the previous Q, Q_bar, M_bar), C, R and
// W_h as float, about 107 KiB: two blocks per multiprocessor. Everything is double except the
// parameters, as on the CPU; the results differ from the CPU's by the order of sums only
// (tests/test_kernels.cpp, FlossRegisters: the CPU's tolerances for flossing).
#include <limits>
#include <stdexcept>
#include <string>

#include "kernels/block_ops.cuh"
#include "kernels/cuda_utils.cuh"
#include "kernels/floss_registers.cuh"
#include "kernels/lyapunov.cuh"
#include "kernels/chain_registers.cuh"

namespace rnnsweep::cuda {
namespace {

template <int kH, int kK>
struct FlossGeometry {
  static constexpr int H = kH, K = kK;
  static constexpr int kThreads = 4 * K;  // four lanes per column of the frame
  static constexpr int kWarps = kThreads / 32;
  static constexpr int kRows = H / 4;       // QR: rows of its column a lane holds
  static constexpr int kTileRows = H / 32;  // H x k products: a thread's tile is kTileRows x 8
  static constexpr int kColumnBlocks = K / 8;
  static constexpr int kLdq = K + 2;                  // doubles: row stride of every H x k array and of C, R
  static constexpr int kPartStride = kRows + 2;       // doubles: a lane's rows of a published column
  static constexpr int kPublished = 4 * kPartStride;  // ... and the column
  static constexpr int kLdw = H + 4;                  // floats: column stride of W_h (W(i, l) = W[l kLdw + i])
  static constexpr int kUnitLanes = kThreads / H;     // the advance: lanes per unit
  static constexpr int kCTile = K / 16;               // C = Q_bar^T Q: a thread's tile is 4 x kCTile
  static constexpr int kGradColumnBlocks = H / 8;     // dW_h: thread (r, c) holds rows kGradRows r + ..,
  static constexpr int kGradRows = H * H / (kThreads * 8);  // columns c + kGradColumnBlocks e, e < 8
  // Two blocks per multiprocessor (shared memory holds two at H = 64, k = 32): up to 255
  // registers a thread at 128 threads, which the backward pass's dW_h tile needs.
  static constexpr int kMinBlocks = 2;
  static_assert(H % 32 == 0 && K % 32 == 0 && K <= H, "whole warps of columns and tiles");
  static_assert(kUnitLanes == 2 || kUnitLanes == 4, "two or four lanes per unit");
  static_assert(kCTile % 2 == 0 && (K / 4) * (K / kCTile) == kThreads, "C tiles cover k x k");
  static_assert(kGradRows >= 1 && kGradRows * 8 * kThreads / H == H, "dW_h tiles cover H x H");
};

// Offsets, in doubles, of the block's dynamic shared memory.
struct RegistersFlossShared {
  size_t reduce, frame, frame_prev, frame_bar, M_bar, published, C, R, inverse, log_sum, dead, u, W_h, W_x, b,
      trial_x, trial_target, trial_mask, trial_label, total;
};

template <typename G>
RNNSWEEP_HD RegistersFlossShared registers_floss_layout(int I, int O, int T, bool classification) {
  RegistersFlossShared L{};
  SharedCarver<double> carve;  // 16-byte aligned arrays
  L.reduce = carve.take(2 * G::kWarps > 32 ? 2 * G::kWarps : 32);  // maxima by parity, or a block sum
  const size_t frame = size_t(G::H) * G::kLdq, square = size_t(G::K) * G::kLdq;
  L.frame = carve.take(frame);  // row-major H x k, as every H x k array here
  L.frame_prev = carve.take(frame);
  L.frame_bar = carve.take(frame);
  L.M_bar = carve.take(frame);
  L.published = carve.take(2 * size_t(G::kPublished));
  L.C = carve.take(square);
  L.R = carve.take(square);
  L.inverse = carve.take(G::K);
  L.log_sum = carve.take(G::K);
  L.dead = carve.take(G::K);
  L.u = carve.take(2 * size_t(G::H));                    // the state, two parities
  L.W_h = carve.take((size_t(G::H) * G::kLdw + 1) / 2);  // floats
  L.W_x = carve.take((size_t(G::H) * I + 1) / 2);        // floats
  L.b = carve.take(G::H / 2);                            // floats
  L.trial_x = carve.take((size_t(T) * I + 1) / 2);
  L.trial_target = carve.take(classification ? 0 : (size_t(T) * O + 1) / 2);
  L.trial_mask = carve.take(classification ? 0 : (size_t(T) * O + 1) / 2);
  L.trial_label = carve.take(classification ? (size_t(T) + 1) / 2 : 0);
  L.total = carve.size();
  return L;
}

// The network's global scratch, in doubles: the chain's n + 1 frames (row-major H x k), n
// triangles (row-major k x k, upper part) and n slope patterns. Within floss_scratch_doubles.
struct RegistersFlossScratch {
  size_t frames, triangles, slopes, total;
};

RNNSWEEP_HD inline RegistersFlossScratch registers_floss_scratch(int H, int k, long n) {
  RegistersFlossScratch L{};
  SharedCarver<double> carve;
  L.frames = carve.take(size_t(n + 1) * H * k);
  L.triangles = carve.take(size_t(n) * k * k);
  L.slopes = carve.take(size_t(n) * H);
  L.total = carve.size();
  return L;
}

template <typename G>
RNNSWEEP_KERNEL void __launch_bounds__(G::kThreads, G::kMinBlocks)
    floss_registers_kernel(FlossChunk c, long iteration, size_t scratch_stride) {
  const int slot = blockIdx.x, n_net = c.network ? c.network[slot] : slot;
  RNNSWEEP_DYNAMIC_SHARED(double, shared);
  constexpr int H = G::H, K = G::K, kLdq = G::kLdq;
  const int I = c.shape.I, O = c.shape.O, T = c.task.T();
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const long n = c.steps;
  const ParamLayout layout(c.shape);
  const RegistersFlossShared L = registers_floss_layout<G>(I, O, T, c.task.classification());
  const RegistersFlossScratch S = registers_floss_scratch(H, K, n);
  float* params = c.params + size_t(n_net) * layout.size;
  double* scratch = c.scratch + size_t(slot) * scratch_stride;  // floss_scratch_doubles, from the host
  double* frames = scratch + S.frames;
  double* triangles = scratch + S.triangles;
  double* slopes = scratch + S.slopes;
  double* frame = shared + L.frame;
  float* W = reinterpret_cast<float*>(shared + L.W_h);
  float* W_x = reinterpret_cast<float*>(shared + L.W_x);
  float* b = reinterpret_cast<float*>(shared + L.b);
  const double a = c.task.leak();
  const double floor = load_chain_weights<G>(params, layout, c.shape, a, W, W_x, b, shared + L.reduce);

  // QR ownership: column `col`, rows p, p + 4, ...; the advance: unit `unit`, terms
  // l = kUnitLanes n + part
  const int col = tid / 4, p = tid % 4;
  const int unit = tid / G::kUnitLanes, part = tid % G::kUnitLanes;
  double m[G::kRows], norm = 0;
  random_frame_qr<G>(m, c.seed[n_net], frame, shared + L.published, norm);
  // Q_0 for the backward pass (the QR ended in a barrier)
  for (int e = tid; e < H * K; e += G::kThreads) frames[e] = frame[(e / K) * kLdq + e % K];

  const Philox trials(Purpose::floss_trials, c.seed[n_net]);
  const std::uint32_t batch = std::uint32_t(c.first_batch + iteration);
  const TrialView one = shared_trial(shared, L, T, I, O);
  const float* trial_x = one.x;
  double* u = shared + L.u;  // u[parity H + i]
  for (int i = tid; i < 2 * H; i += G::kThreads) u[i] = 0.0;  // (published by the first trial's barrier)
  double log_scale = 0, drive_scale = 1, log_sum = 0;
  bool dead = false;  // whether some step annihilated this thread's column

  const long total = c.warmup + n;
  for (long first = 0; first < total; first += T) {
    if (tid == 0) generate_trial(c.task, trials, batch, int(first / T), one, 0);
    __syncthreads();
    const int steps_here = int(total - first < T ? total - first : T);
    for (int t = 0; t < steps_here; ++t) {
      const long step = first + t, chain = step - c.warmup;
      const int parity = int(step % 2);
      const double* u_now = u + parity * H;
      double* u_next = u + (1 - parity) * H;
      double* maxima = shared + L.reduce + parity * G::kWarps;
      const bool in_chain = chain >= 0;
      const double next = advance_state<G>(u_now, W, W_x, b, trial_x + t * I, I, a, drive_scale, maxima);
      if (part == 0) {
        u_next[unit] = next;  // (read after the barriers below; u_now is the other parity)
        if (in_chain) slopes[size_t(chain) * H + unit] = u_now[unit] > 0 ? 1.0 : 0.0;
      }
      // M = a Q + (1 - a) W_h (D Q), D = diag(f'(h_t))
      if (in_chain) jacobian_product<G>(frame, W, u_now, a);
      __syncthreads();
      renormalise_state<G>(maxima, next, u_next, log_scale, drive_scale);
      if (in_chain) {
        RNNSWEEP_UNROLL
        for (int r = 0; r < G::kRows; ++r) m[r] = frame[(4 * r + p) * kLdq + col];
        register_qr<G>(m, frame, shared + L.published, floor, norm, triangles + size_t(chain) * K * K);
        const bool kept = norm > floor;
        log_sum += kept ? log(norm) : 0.0;
        dead = dead || !kept;
        // Q_{t+1} for the backward pass (the frame is next overwritten after the next step's
        // first barrier)
        double* out = frames + size_t(chain + 1) * H * K;
        for (int e = tid; e < H * K; e += G::kThreads) out[e] = frame[(e / K) * kLdq + e % K];
      }
    }
  }
  double* log_sums = shared + L.log_sum;
  double* deads = shared + L.dead;
  if (p == 0) {
    log_sums[col] = log_sum;
    deads[col] = dead ? 1.0 : 0.0;
  }
  __syncthreads();
  // k_used = the first column that any step annihilated (k if none); the loss on the columns
  // before it, in the general kernel's order
  int kk = K;
  for (int j = K - 1; j >= 0; --j)
    if (deads[j] != 0) kk = j;
  const double loss = floss_record_loss(c, slot, iteration, log_sums, kk);
  if (kk == 0 || !is_finite(loss)) return;  // no update, as on the CPU (the same on every thread)

  // ---- backward ----
  // tile ownership of the H x k products, as jacobian_product's (kernels/chain_registers.cuh):
  // rows rb kTileRows + r, columns 2 cb + 2 kColumnBlocks q + e (q < 4, e < 2)
  const int rb = (warp % 4) * 8 + lane % 8, cb = (warp / 4) * 4 + lane / 8;
  auto tile_col = [&](int q) { return 2 * cb + 2 * G::kColumnBlocks * q; };
  double* Q = frame;                         // Q_{t+1}, the frame step t made
  double* Q_prev = shared + L.frame_prev;    // Q_t, the frame step t started from
  double* Q_bar = shared + L.frame_bar;      // dL/dQ_{t+1}
  double* M_bar = shared + L.M_bar;          // dL/dM_{t+1}, then M_bar R^{-T} in place
  double* C = shared + L.C;                  // k x k, symmetric
  double* R = shared + L.R;                  // upper part
  double* inverse = shared + L.inverse;      // 1 / R_jj for j < kk, else 0
  // brings frame t and triangle t (its upper part, the only one written) into Q_prev and R
  auto stage = [&](long t, double* into) {
    const double* in = frames + size_t(t) * H * K;
    for (int e = tid; e < H * K; e += G::kThreads) into[(e / K) * kLdq + e % K] = in[e];
    const double* tri = triangles + size_t(t) * K * K;
    for (int e = tid; e < K * K; e += G::kThreads)
      if (e / K <= e % K) R[(e / K) * kLdq + e % K] = tri[e];
  };
  for (int e = tid; e < H * kLdq; e += G::kThreads) Q_bar[e] = 0.0;  // Q_bar_n = 0
  stage(n - 1, Q_prev);
  // dW_h, thread (gr, gc): rows i = gr kGradRows + r, columns j = gc + kGradColumnBlocks e
  const int gc = tid % G::kGradColumnBlocks, gr = tid / G::kGradColumnBlocks;
  double W_bar[G::kGradRows][8];
  RNNSWEEP_UNROLL
  for (int r = 0; r < G::kGradRows; ++r) RNNSWEEP_UNROLL
  for (int e = 0; e < 8; ++e) W_bar[r][e] = 0;
  const double r_bar_scale = 2.0 / double(n);  // dL/d ln R_jj = 2 lambda_j / n

  RNNSWEEP_NO_UNROLL
  for (long t = n - 1; t >= 0; --t) {
    __syncthreads();  // Q_prev and R staged; Q_bar of the step before written
    const double* slope = slopes + size_t(t) * H;
    // C = R R_bar^T - Q_bar^T Q, its lower triangle mirrored (R_bar = diag(2 lambda_j / (n R_jj))
    // and the strictly lower part of R is 0: only the diagonal gets the first term). Thread
    // (ci, cj) sums the 4 x kCTile block of Q_bar^T Q at rows 4 ci, columns kCTile cj of the whole
    // square (three 128-bit loads serve 8 sums); the lower triangle's entries are kept.
    {
      constexpr int TJ = G::kCTile;
      const int cj = tid % (K / TJ), ci = tid / (K / TJ);
      double dot[4][TJ];
      RNNSWEEP_UNROLL
      for (int r = 0; r < 4; ++r) RNNSWEEP_UNROLL
      for (int e = 0; e < TJ; ++e) dot[r][e] = 0;
      RNNSWEEP_NO_UNROLL
      for (int row = 0; row < H; ++row) {
        const double2 f01 = *reinterpret_cast<const double2*>(Q_bar + row * kLdq + 4 * ci);
        const double2 f23 = *reinterpret_cast<const double2*>(Q_bar + row * kLdq + 4 * ci + 2);
        const double f[4] = {f01.x, f01.y, f23.x, f23.y};
        RNNSWEEP_UNROLL
        for (int h = 0; h < TJ / 2; ++h) {
          const double2 q = *reinterpret_cast<const double2*>(Q + row * kLdq + TJ * cj + 2 * h);
          RNNSWEEP_UNROLL
          for (int r = 0; r < 4; ++r) {
            dot[r][2 * h] += f[r] * q.x;
            dot[r][2 * h + 1] += f[r] * q.y;
          }
        }
      }
      RNNSWEEP_UNROLL
      for (int r = 0; r < 4; ++r) RNNSWEEP_UNROLL
      for (int e = 0; e < TJ; ++e) {
        const int i = 4 * ci + r, j = TJ * cj + e;
        if (i < j) continue;
        const double R_jj = R[j * kLdq + j];
        const double r_bar = j < kk ? r_bar_scale * (log_sums[j] / double(n)) / R_jj : 0.0;
        const double value = (i == j ? R_jj * r_bar : 0.0) - dot[r][e];
        C[i * kLdq + j] = value;
        C[j * kLdq + i] = value;
        if (i == j) inverse[j] = j < kk ? 1.0 / R_jj : 0.0;
      }
    }
    __syncthreads();
    // M_bar = Q_bar + Q C
    {
      double tile[G::kTileRows][8];
      RNNSWEEP_UNROLL
      for (int r = 0; r < G::kTileRows; ++r) RNNSWEEP_UNROLL
      for (int e = 0; e < 8; ++e) tile[r][e] = 0;
      RNNSWEEP_NO_UNROLL
      for (int l = 0; l < K; ++l) {
        double q[G::kTileRows];
        RNNSWEEP_UNROLL
        for (int r = 0; r < G::kTileRows; ++r) q[r] = Q[(rb * G::kTileRows + r) * kLdq + l];
        RNNSWEEP_UNROLL
        for (int qq = 0; qq < 4; ++qq) {
          const double2 cv = *reinterpret_cast<const double2*>(C + l * kLdq + tile_col(qq));
          RNNSWEEP_UNROLL
          for (int r = 0; r < G::kTileRows; ++r) {
            tile[r][2 * qq] += q[r] * cv.x;
            tile[r][2 * qq + 1] += q[r] * cv.y;
          }
        }
      }
      RNNSWEEP_UNROLL
      for (int r = 0; r < G::kTileRows; ++r) {
        const int i = rb * G::kTileRows + r;
        RNNSWEEP_UNROLL
        for (int qq = 0; qq < 4; ++qq) {
          const double2 f = *reinterpret_cast<const double2*>(Q_bar + i * kLdq + tile_col(qq));
          *reinterpret_cast<double2*>(M_bar + i * kLdq + tile_col(qq)) =
              make_double2(f.x + tile[r][2 * qq], f.y + tile[r][2 * qq + 1]);
        }
      }
    }
    __syncthreads();
    // M_bar R^{-T}: row by row, R z = row^T by back substitution over the first kk columns (the
    // others are 0 and stay 0)
    if (tid < H) {
      double* row = M_bar + tid * kLdq;
      for (int i = kk - 1; i >= 0; --i) {
        double s0 = 0, s1 = 0;
        int l = i + 1;
        for (; l + 1 < kk; l += 2) {
          s0 += R[i * kLdq + l] * row[l];
          s1 += R[i * kLdq + l + 1] * row[l + 1];
        }
        if (l < kk) s0 += R[i * kLdq + l] * row[l];
        row[i] = (row[i] - (s0 + s1)) * inverse[i];
      }
    }
    __syncthreads();
    // dW_h += (1 - a) M_bar (D Q_prev)^T
    {
      double scaled[8];  // (1 - a) f'(h_j) for the thread's columns j
      RNNSWEEP_UNROLL
      for (int e = 0; e < 8; ++e) scaled[e] = slope[gc + G::kGradColumnBlocks * e] != 0 ? 1 - a : 0.0;
      RNNSWEEP_NO_UNROLL
      for (int l = 0; l < K; l += 2) {
        double2 mv[G::kGradRows];
        RNNSWEEP_UNROLL
        for (int r = 0; r < G::kGradRows; ++r)
          mv[r] = *reinterpret_cast<const double2*>(M_bar + (gr * G::kGradRows + r) * kLdq + l);
        RNNSWEEP_UNROLL
        for (int e = 0; e < 8; ++e) {
          const double2 qv = *reinterpret_cast<const double2*>(Q_prev + (gc + G::kGradColumnBlocks * e) * kLdq + l);
          const double x = scaled[e] * qv.x, y = scaled[e] * qv.y;
          RNNSWEEP_UNROLL
          for (int r = 0; r < G::kGradRows; ++r) W_bar[r][e] += mv[r].x * x + mv[r].y * y;
        }
      }
    }
    if (t > 0) {
      // Q_bar = a M_bar + (1 - a) D W_h^T M_bar (Q_bar was last read by the M_bar product)
      double tile[G::kTileRows][8];
      RNNSWEEP_UNROLL
      for (int r = 0; r < G::kTileRows; ++r) RNNSWEEP_UNROLL
      for (int e = 0; e < 8; ++e) tile[r][e] = 0;
      RNNSWEEP_NO_UNROLL
      for (int j = 0; j < H; ++j) {
        double w[G::kTileRows];  // W(j, i) for the tile's rows i
        RNNSWEEP_UNROLL
        for (int r = 0; r < G::kTileRows; ++r) w[r] = W[(rb * G::kTileRows + r) * G::kLdw + j];
        RNNSWEEP_UNROLL
        for (int qq = 0; qq < 4; ++qq) {
          const double2 mv = *reinterpret_cast<const double2*>(M_bar + j * kLdq + tile_col(qq));
          RNNSWEEP_UNROLL
          for (int r = 0; r < G::kTileRows; ++r) {
            tile[r][2 * qq] += w[r] * mv.x;
            tile[r][2 * qq + 1] += w[r] * mv.y;
          }
        }
      }
      RNNSWEEP_UNROLL
      for (int r = 0; r < G::kTileRows; ++r) {
        const int i = rb * G::kTileRows + r;
        const bool on = slope[i] != 0;
        RNNSWEEP_UNROLL
        for (int qq = 0; qq < 4; ++qq) {
          const double2 mv = *reinterpret_cast<const double2*>(M_bar + i * kLdq + tile_col(qq));
          *reinterpret_cast<double2*>(Q_bar + i * kLdq + tile_col(qq)) =
              make_double2(a * mv.x + (1 - a) * (on ? tile[r][2 * qq] : 0.0),
                           a * mv.y + (1 - a) * (on ? tile[r][2 * qq + 1] : 0.0));
        }
      }
      // Q_t is the next step's Q; Q_{t+1}'s buffer (last read by the M_bar product) takes Q_{t-1},
      // and R (last read by the back substitution) the triangle t - 1
      double* done = Q;
      Q = Q_prev;
      Q_prev = done;
      stage(t - 1, Q_prev);
    }
  }

  // The CPU skips the update when the gradient has a NaN or Inf. Every thread reads the step
  // count before block_sum's barriers, and thread 0 writes it after them.
  const int adam_step = c.adam_steps[slot] + 1;
  double bad = 0;
  RNNSWEEP_UNROLL
  for (int r = 0; r < G::kGradRows; ++r) RNNSWEEP_UNROLL
  for (int e = 0; e < 8; ++e) bad += is_finite(W_bar[r][e]) ? 0.0 : 1.0;
  if (block_sum(bad, shared + L.reduce) > 0) return;
  if (tid == 0) c.adam_steps[slot] = adam_step;
  // each thread's own entries of W_h(i, j), at i + j H
  const FlossAdam adam(c, slot, adam_step, params + layout.W_h);
  RNNSWEEP_UNROLL
  for (int r = 0; r < G::kGradRows; ++r) RNNSWEEP_UNROLL
  for (int e = 0; e < 8; ++e) adam.update((gc + G::kGradColumnBlocks * e) * H + gr * G::kGradRows + r, W_bar[r][e]);
}

template <typename G>
size_t instance_bytes(const Shape& shape, const TaskParams& task) {
  return registers_floss_layout<G>(shape.I, shape.O, task.T(), task.classification()).total * sizeof(double);
}

template <typename G>
void launch_instance(const FlossChunk& chunk, long iteration, cudaStream_t stream) {
  const size_t bytes = instance_bytes<G>(chunk.shape, chunk.task);
  CUDA_CHECK(cudaFuncSetAttribute(floss_registers_kernel<G>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
  RNNSWEEP_LAUNCH(floss_registers_kernel<G>, chunk.K, G::kThreads, bytes, stream)(
      chunk, iteration, floss_scratch_doubles(G::H, G::K, chunk.steps));
  CUDA_CHECK(cudaGetLastError());
}

// The compiled instances: (H, k) = (64, 32), the study's, and (32, 32).
#define RNNSWEEP_FLOSS_INSTANCES(X) X(64, 32) X(32, 32)

}  // namespace

bool floss_registers_exists(const Shape& shape, int k) {
#define RNNSWEEP_EXISTS(h, kk) \
  if (shape.H == h && k == kk) return true;
  RNNSWEEP_FLOSS_INSTANCES(RNNSWEEP_EXISTS)
#undef RNNSWEEP_EXISTS
  return false;
}

int floss_registers_threads(const Shape& shape, int k) {
#define RNNSWEEP_THREADS(h, kk) \
  if (shape.H == h && k == kk) return FlossGeometry<h, kk>::kThreads;
  RNNSWEEP_FLOSS_INSTANCES(RNNSWEEP_THREADS)
#undef RNNSWEEP_THREADS
  throw std::invalid_argument("floss_registers_threads: no instance for H = " + std::to_string(shape.H) +
                              ", k = " + std::to_string(k));
}

size_t floss_registers_shared_bytes(const Shape& shape, int k, const TaskParams& task) {
#define RNNSWEEP_BYTES(h, kk) \
  if (shape.H == h && k == kk) return instance_bytes<FlossGeometry<h, kk>>(shape, task);
  RNNSWEEP_FLOSS_INSTANCES(RNNSWEEP_BYTES)
#undef RNNSWEEP_BYTES
  throw std::invalid_argument("floss_registers_shared_bytes: no instance for H = " + std::to_string(shape.H) +
                              ", k = " + std::to_string(k));
}

void launch_floss_registers(const FlossChunk& chunk, long iteration, cudaStream_t stream) {
  if (registers_floss_scratch(chunk.shape.H, chunk.k, chunk.steps).total >
      floss_scratch_doubles(chunk.shape.H, chunk.k, chunk.steps))
    throw std::logic_error("launch_floss_registers: its scratch exceeds floss_scratch_doubles");
#define RNNSWEEP_LAUNCH_IF(h, kk)                                  \
  if (chunk.shape.H == h && chunk.k == kk) {                       \
    launch_instance<FlossGeometry<h, kk>>(chunk, iteration, stream); \
    return;                                                        \
  }
  RNNSWEEP_FLOSS_INSTANCES(RNNSWEEP_LAUNCH_IF)
#undef RNNSWEEP_LAUNCH_IF
  throw std::invalid_argument("launch_floss_registers: no instance for H = " + std::to_string(chunk.shape.H) +
                              ", k = " + std::to_string(chunk.k));
}

}  // namespace rnnsweep::cuda
