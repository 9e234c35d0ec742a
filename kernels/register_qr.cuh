// The register QR of kernels/spectrum_registers.cu and kernels/floss_registers.cu: modified
// Gram-Schmidt over a frame whose columns live in registers, four lanes per column. CPU twin:
// host/cpu/lyapunov.cpp (qr_positive). A geometry G gives kRows (rows a lane holds, H / 4), K
// (columns, 4 K threads), kLdq (row stride of the shared frame, doubles), kPartStride and
// kPublished (the layout of a published column).
#pragma once

#include "kernels/portability.cuh"

namespace rnnsweep::cuda {

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

}  // namespace rnnsweep::cuda
