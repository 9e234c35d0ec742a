// Seeded random matrices for the Lyapunov and flossing tests. They come from std::mt19937_64,
// not Eigen's Random() nor the project's Philox streams, so the tests' inputs share nothing
// with the code under test.
#pragma once

#include <Eigen/Dense>
#include <random>

namespace rnnsweep::test {

inline Eigen::MatrixXd gaussian_matrix(Eigen::Index rows, Eigen::Index cols, double stddev,
                                       std::mt19937_64& rng) {
  std::normal_distribution<double> normal(0.0, stddev);
  Eigen::MatrixXd M(rows, cols);
  for (Eigen::Index j = 0; j < cols; ++j)
    for (Eigen::Index i = 0; i < rows; ++i) M(i, j) = normal(rng);
  return M;
}

// The first k columns of the Q of a Gaussian matrix, from Eigen directly (not qr_positive).
inline Eigen::MatrixXd random_orthonormal_frame(Eigen::Index H, Eigen::Index k, std::mt19937_64& rng) {
  const Eigen::HouseholderQR<Eigen::MatrixXd> householder(gaussian_matrix(H, H, 1.0, rng));
  return householder.householderQ() * Eigen::MatrixXd::Identity(H, k);
}

}  // namespace rnnsweep::test
