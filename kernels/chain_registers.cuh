// What the register spectrum kernel (kernels/spectrum_registers.cu) and the register flossing
// kernel (kernels/floss_registers.cu) share: a trajectory's chain of frames with the frame's
// columns in registers, four lanes per column. CPU twins: host/cpu/spectra.cpp (driven_states,
// random_frame) and host/cpu/lyapunov.cpp (apply_step_jacobian, qr_positive).
//
// A geometry G gives H, K (columns: 4 K threads, kThreads, in kWarps warps), kRows (rows of its
// column a lane holds, H / 4), kTileRows and kColumnBlocks (the Jacobian's tiles, kTileRows x 8
// a thread), kLdq (row stride of the shared frame, doubles), kPartStride and kPublished (the
// layout of a published column), kLdw (column stride of W_h as float) and kUnitLanes (the lanes
// that advance one unit of the state, kThreads / H).
#pragma once

#include <cstdint>

#include "kernels/block_ops.cuh"
#include "kernels/lyapunov.cuh"
#include "kernels/portability.cuh"
#include "rnnsweep/model.h"

namespace rnnsweep::cuda {

// One trial (T steps, batch 1) in the block's shared memory, at a layout's trial_x,
// trial_target, trial_mask and trial_label offsets (doubles from `shared`).
template <typename Layout>
RNNSWEEP_DEVICE TrialView shared_trial(double* shared, const Layout& L, int T, int I, int O) {
  return TrialView{T,
                   1,
                   I,
                   O,
                   reinterpret_cast<float*>(shared + L.trial_x),
                   reinterpret_cast<float*>(shared + L.trial_target),
                   reinterpret_cast<float*>(shared + L.trial_mask),
                   reinterpret_cast<int*>(shared + L.trial_label)};
}

// W_h (as float: exact, the parameters are float; W(i, l) = W[l kLdw + i]), W_x and b (zeros
// without a bias) of one network into shared memory. Returns the annihilation floor
// 1e-10 (a + (1 - a) ||W_h||_F), as annihilation_floor (kernels/lyapunov.cuh); the block sum's
// barriers also publish the three arrays.
template <typename G>
RNNSWEEP_DEVICE double load_chain_weights(const float* params, const ParamLayout& layout, const Shape& shape,
                                          double a, float* W, float* W_x, float* b, double* reduce) {
  const int tid = threadIdx.x;
  double partial = 0;
  for (int e = tid; e < G::H * G::H; e += G::kThreads) {
    const float w = params[layout.W_h + e];
    W[(e / G::H) * G::kLdw + e % G::H] = w;
    partial += double(w) * double(w);
  }
  for (int e = tid; e < G::H * shape.I; e += G::kThreads) W_x[e] = params[layout.W_x + e];
  for (int i = tid; i < G::H; i += G::kThreads) b[i] = shape.bias ? params[layout.b + i] : 0.0f;
  return 1e-10 * (a + (1 - a) * sqrt(block_sum(partial, reduce)));
}

// The next driven state of this thread's unit (tid / kUnitLanes; its kUnitLanes lanes each sum
// every kUnitLanes-th term of W_h relu(u), then shuffle), from u_now and the step's inputs x_t;
// every lane returns it. The warp's largest |next| goes to maxima[warp] (the renormalisation's
// test, after the step's barrier). As DrivenTrajectory::advance (kernels/lyapunov.cuh).
template <typename G>
RNNSWEEP_DEVICE double advance_state(const double* u_now, const float* W, const float* W_x, const float* b,
                                     const float* x_t, int I, double a, double drive_scale, double* maxima) {
  const int tid = threadIdx.x, unit = tid / G::kUnitLanes, part = tid % G::kUnitLanes;
  double recurrent = 0;
  RNNSWEEP_UNROLL
  for (int n = 0; n < G::H / G::kUnitLanes; ++n) {
    const int l = G::kUnitLanes * n + part;
    const double on = u_now[l] > 0 ? u_now[l] : 0.0;
    recurrent += double(W[l * G::kLdw + unit]) * on;
  }
  RNNSWEEP_UNROLL
  for (int offset = 1; offset < G::kUnitLanes; offset *= 2)
    recurrent += __shfl_xor_sync(0xffffffffu, recurrent, offset);
  double drive = 0;
  // a few inputs (1 to 3): unrolled copies would never run
  RNNSWEEP_NO_UNROLL
  for (int k = 0; k < I; ++k) drive += double(W_x[unit + k * G::H]) * double(x_t[k]);
  drive += double(b[unit]);
  const double next = a * u_now[unit] + (1 - a) * (recurrent + drive_scale * drive);
  double largest = fabs(next);
  for (int offset = 16; offset > 0; offset /= 2) largest = fmax(largest, __shfl_xor_sync(0xffffffffu, largest, offset));
  if (tid % 32 == 0) maxima[tid / 32] = largest;
  return next;
}

// After the step's barrier: where the largest |next| of the block passes kRenormaliseAbove, the
// unit's lanes store next / largest instead and log_scale, drive_scale take the factor (as the
// CPU; the same on every thread, so the barrier inside is reached by all or none).
template <typename G>
RNNSWEEP_DEVICE void renormalise_state(const double* maxima, double next, double* u_next, double& log_scale,
                                       double& drive_scale) {
  double largest = 0;
  for (int w = 0; w < G::kWarps; ++w) largest = fmax(largest, maxima[w]);
  if (largest > kRenormaliseAbove && is_finite(largest)) {
    if (threadIdx.x % G::kUnitLanes == 0) u_next[threadIdx.x / G::kUnitLanes] = next / largest;
    log_scale += log(largest);
    drive_scale = exp(-log_scale);
    __syncthreads();
  }
}

// The frame M = J_t Q = a Q + (1 - a) W_h (diag(f'(h_t)) Q) in place of Q in the shared frame
// (row-major, stride kLdq), h_t the state before this step's update, whose signs u_now has: the
// sums over the units l that are on. Register-tiled: thread (rb, cb) sums rows rb kTileRows + r
// and columns 2 cb + 2 kColumnBlocks q + e (q < 4, e < 2), so that in one 128-bit load of a
// frame row the 4 column blocks of a warp read 4 neighbouring 16-byte pieces, and its 8 row
// blocks read neighbouring pieces of a W_h column. Needs K >= 32 (4 warps). Contains the barrier
// after which the frame may be overwritten; the caller's next barrier publishes M.
template <typename G>
RNNSWEEP_DEVICE void jacobian_product(double* frame, const float* W, const double* u_now, double a) {
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int rb = (warp % 4) * 8 + lane % 8, cb = (warp / 4) * 4 + lane / 8;
  auto tile_col = [&](int q) { return 2 * cb + 2 * G::kColumnBlocks * q; };
  double tile[G::kTileRows][8];
  RNNSWEEP_UNROLL
  for (int r = 0; r < G::kTileRows; ++r) RNNSWEEP_UNROLL
  for (int e = 0; e < 8; ++e) tile[r][e] = 0;
  RNNSWEEP_NO_UNROLL
  for (int l = 0; l < G::H; ++l) {
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
      *reinterpret_cast<double2*>(frame + i * G::kLdq + tile_col(q)) = make_double2(tile[r][2 * q], tile[r][2 * q + 1]);
  }
}

// The modified Gram-Schmidt QR of the frame whose columns the threads hold in m (thread (c, p):
// rows p, p + 4, ... of column c): m becomes Q (annihilated columns 0), and the lanes of column
// c get R_cc in `norm`. Q is also written to the shared frame (row-major, stride kLdq) for the
// next step's Jacobian, and column j to published[j % 2] (kPublished doubles, lane p's rows
// contiguous: read as 128-bit loads, twice, instead of held in 16 more registers) for the
// projections of the later columns. With R (flossing's chain, whose adjoint needs the triangle),
// the triangle's upper part goes there too, row-major (R[i K + j], i <= j; the strictly lower
// part is not written). Every thread calls it; it ends with a barrier, after which the shared
// frame holds the whole Q.
template <typename G>
RNNSWEEP_DEVICE void register_qr(double (&m)[G::kRows], double* frame, double* published, double floor,
                                 double& norm, double* R = nullptr) {
  const int tid = threadIdx.x, warp = tid / 32, col = tid / 4, p = tid % 4;
  // Normalises column `j` (its lanes; the other lanes of its warp compute and drop a sum, so
  // that every lane reaches the shuffles) and publishes it.
  auto normalise = [&](int j) {
    // four partial sums: a dependent chain of kRows / 4 FMAs instead of kRows
    double part[4] = {0, 0, 0, 0};
    RNNSWEEP_UNROLL
    for (int r = 0; r < G::kRows; ++r) part[r % 4] += m[r] * m[r];
    double squares = (part[0] + part[1]) + (part[2] + part[3]);
    squares += __shfl_xor_sync(0xffffffffu, squares, 1);
    squares += __shfl_xor_sync(0xffffffffu, squares, 2);
    if (col == j) {
      norm = sqrt(squares);
      if (R && p == 0) R[j * G::K + j] = norm;
      // at or below the floor the direction is annihilated: 0, so that it carries nothing on
      const double scale = norm > floor ? 1.0 / norm : 0.0;
      double* out = published + (j % 2) * G::kPublished + p * G::kPartStride;
      RNNSWEEP_UNROLL
      for (int r = 0; r < G::kRows; r += 2) {
        m[r] *= scale;
        m[r + 1] *= scale;
        frame[(4 * r + p) * G::kLdq + j] = m[r];
        frame[(4 * r + 4 + p) * G::kLdq + j] = m[r + 1];
        *reinterpret_cast<double2*>(out + r) = make_double2(m[r], m[r + 1]);
      }
    }
  };
  if (warp == 0) normalise(0);
  __syncthreads();
  RNNSWEEP_NO_UNROLL
  for (int j = 0; j < G::K - 1; ++j) {
    // q_j is published. Warps whose columns are all done skip the step (a warp-uniform test).
    if (8 * warp + 7 > j) {
      const double* q = published + (j % 2) * G::kPublished + p * G::kPartStride;
      double part[4] = {0, 0, 0, 0};
      RNNSWEEP_UNROLL
      for (int r = 0; r < G::kRows; r += 2) {
        const double2 v = *reinterpret_cast<const double2*>(q + r);
        part[r % 4] += v.x * m[r];
        part[r % 4 + 1] += v.y * m[r + 1];
      }
      double dot = (part[0] + part[1]) + (part[2] + part[3]);
      dot += __shfl_xor_sync(0xffffffffu, dot, 1);
      dot += __shfl_xor_sync(0xffffffffu, dot, 2);
      if (col > j) {
        if (R && p == 0) R[j * G::K + col] = dot;
        RNNSWEEP_UNROLL
        for (int r = 0; r < G::kRows; r += 2) {
          const double2 v = *reinterpret_cast<const double2*>(q + r);
          m[r] -= dot * v.x;
          m[r + 1] -= dot * v.y;
        }
      }
      // look-ahead: column j + 1 is final now; its lanes normalise and publish it (in the other
      // buffer) while the other warps still project q_j out of theirs
      if (warp == (j + 1) / 8) normalise(j + 1);
    }
    __syncthreads();
  }
}

// The random starting frame, the QR of the Gaussian matrix of (lyapunov_frame, seed) (entry
// (r, c) at index r K + c, as block_random_frame), into m (this thread's column's rows) and the
// shared frame. Ends with the QR's barrier.
template <typename G>
RNNSWEEP_DEVICE void random_frame_qr(double (&m)[G::kRows], std::uint32_t seed, double* frame, double* published,
                                     double& norm) {
  const int col = threadIdx.x / 4, p = threadIdx.x % 4;
  const Philox rng(Purpose::lyapunov_frame, seed);
  RNNSWEEP_UNROLL
  for (int r = 0; r < G::kRows; ++r) m[r] = normal_at(rng, std::uint32_t((4 * r + p) * G::K + col));
  register_qr<G>(m, frame, published, 0.0, norm);
}

}  // namespace rnnsweep::cuda
