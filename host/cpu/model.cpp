// Forward pass and task losses of the leaky ReLU RNN. CUDA twin: kernels/train_step.cu.
#include "host/cpu/model.h"

#include <cmath>

namespace rnnsweep::cpu {

template <typename Real>
void forward(const Shape& s, Real a, const Real* params, const Trials& trials, Forward<Real>& fwd) {
  const ConstNet<Real> net(s, params);
  const int T = trials.T, Bt = trials.Bt;
  fwd.x = Eigen::Map<const Eigen::MatrixXf>(trials.x.data(), s.I, Eigen::Index(T) * Bt).cast<Real>();
  fwd.h.resize(s.H, Eigen::Index(T + 1) * Bt);
  fwd.f.resize(s.H, Eigen::Index(T + 1) * Bt);
  fwd.h.leftCols(Bt).setZero();
  fwd.f.leftCols(Bt).setZero();
  // The input drive of every step in one product, off the sequential path. Scratch buffers
  // are thread_local and reused: allocating ~1 MB per iteration made training page-fault
  // bound (mmap/munmap per call, serialised across threads in the kernel).
  thread_local Mat<Real> drive;
  drive.noalias() = net.W_x * fwd.x;
  if (s.bias) drive.colwise() += net.b;
  for (int t = 0; t < T; ++t) {
    auto h_next = fwd.h.middleCols(Eigen::Index(t + 1) * Bt, Bt);
    h_next.noalias() = net.W_h * fwd.f.middleCols(Eigen::Index(t) * Bt, Bt);
    h_next += drive.middleCols(Eigen::Index(t) * Bt, Bt);
    h_next = a * fwd.h.middleCols(Eigen::Index(t) * Bt, Bt) + (1 - a) * h_next;
    fwd.f.middleCols(Eigen::Index(t + 1) * Bt, Bt) = h_next.cwiseMax(Real(0));
  }
  fwd.y.noalias() = net.w * fwd.f.rightCols(Eigen::Index(T) * Bt);
  if (s.bias) fwd.y.colwise() += net.b_out;
}

template <typename Real>
LossValue task_loss(const Trials& tr, const Mat<Real>& y, Mat<Real>* dL_dy) {
  const int T = tr.T, Bt = tr.Bt, O = tr.O;
  if (dL_dy) dL_dy->resize(O, Eigen::Index(T) * Bt);
  if (!tr.task.classification()) {
    double mask_sum = 0;
    for (float m : tr.mask) mask_sum += m;
    double loss = 0;
    // Trial b is correct if its output averaged over the response period (target > 0 on a
    // channel) is larger on that channel.
    std::vector<double> resp(size_t(Bt) * O, 0.0);
    std::vector<int> correct(Bt, -1);
    for (Eigen::Index col = 0; col < Eigen::Index(T) * Bt; ++col) {
      const int b = int(col % Bt);
      for (int o = 0; o < O; ++o) {
        const size_t k = size_t(col) * O + o;
        const double err = double(y(o, col)) - tr.target[k];
        loss += 0.5 * tr.mask[k] * err * err;
        if (dL_dy) (*dL_dy)(o, col) = Real(tr.mask[k] * err / mask_sum);
        if (tr.target[k] > 0) correct[b] = o;
      }
      bool response = false;
      for (int o = 0; o < O; ++o) response |= tr.target[size_t(col) * O + o] > 0;
      if (response)
        for (int o = 0; o < O; ++o) resp[size_t(b) * O + o] += double(y(o, col));
    }
    int right = 0;
    for (int b = 0; b < Bt; ++b) {
      int best = 0;
      for (int o = 1; o < O; ++o)
        if (resp[size_t(b) * O + o] > resp[size_t(b) * O + best]) best = o;
      right += (best == correct[b]);
    }
    return {loss / mask_sum, double(right) / Bt};
  }
  const double n = double(T) * Bt;
  double loss = 0;
  int decisions = 0, right = 0;
  for (Eigen::Index col = 0; col < Eigen::Index(T) * Bt; ++col) {
    const int label = tr.label[col];
    // log-softmax with the max subtracted, in double whatever Real is
    double mx = double(y(0, col));
    int argmax = 0;
    for (int o = 1; o < O; ++o)
      if (double(y(o, col)) > mx) mx = double(y(o, col)), argmax = o;
    double z = 0;
    for (int o = 0; o < O; ++o) z += std::exp(double(y(o, col)) - mx);
    loss += -(double(y(label, col)) - mx - std::log(z));
    if (dL_dy)
      for (int o = 0; o < O; ++o)
        (*dL_dy)(o, col) = Real((std::exp(double(y(o, col)) - mx) / z - (o == label ? 1.0 : 0.0)) / n);
    if (label != 0) {
      ++decisions;
      right += (argmax == label);
    }
  }
  return {loss / n, decisions ? double(right) / decisions : 0.0};
}

template void forward<float>(const Shape&, float, const float*, const Trials&, Forward<float>&);
template void forward<double>(const Shape&, double, const double*, const Trials&, Forward<double>&);
template LossValue task_loss<float>(const Trials&, const Mat<float>&, Mat<float>*);
template LossValue task_loss<double>(const Trials&, const Mat<double>&, Mat<double>*);

}  // namespace rnnsweep::cpu
