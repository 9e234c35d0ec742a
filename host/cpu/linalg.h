// The Eigen types the CPU backend computes with, templated on the scalar: float for training
// (as the CUDA backend), double for the reference checks and the spectra.
#pragma once

#include <Eigen/Dense>

namespace rnnsweep::cpu {

template <typename Real>
using Mat = Eigen::Matrix<Real, Eigen::Dynamic, Eigen::Dynamic>;
template <typename Real>
using Vec = Eigen::Matrix<Real, Eigen::Dynamic, 1>;

}  // namespace rnnsweep::cpu
