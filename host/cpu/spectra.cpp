// Spectra and flossing of whole networks on the CPU. CUDA twin: kernels/lyapunov.cu.
#include "host/cpu/spectra.h"

#include <algorithm>
#include <cmath>
#include <functional>

#include "host/cpu/adam.h"
#include "host/cpu/floss.h"
#include "host/cpu/model.h"
#include "host/cpu/tasks.h"

namespace rnnsweep::cpu {

Mat<double> driven_states(const Shape& s, double a, const float* params, const TaskParams& task,
                          Purpose purpose, std::uint32_t seed, std::uint32_t iteration, long warmup,
                          long steps) {
  const ConstNet<float> net(s, params);
  const Mat<double> W_h = net.W_h.cast<double>(), W_x = net.W_x.cast<double>();
  const Vec<double> b = net.b.cast<double>();
  const long T = task.T(), total = warmup + steps;
  Trials trials;
  fill_trials(task, purpose, seed, iteration, static_cast<int>((total + T - 1) / T), trials);
  Mat<double> states(s.H, steps);
  // With a positive max LE |h_t| ~ e^(lambda1 t) overflows double within a few thousand steps and
  // silently wrecks the spectrum. The map is positively homogeneous, so we carry u = e^-log_scale h,
  // whose sign pattern (all J_t uses) is h's; below 1e100 nothing is rescaled: bit-identical states.
  constexpr double rescale_above = 1e100;
  double log_scale = 0;
  Vec<double> u = Vec<double>::Zero(s.H), x(s.I);
  for (long step = 0; step < total; ++step) {
    if (step >= warmup) states.col(step - warmup) = u;
    const long trial = step / T, t = step % T;
    // exp(-0) = 1 exactly; where it underflows to 0 the drive is far below u's rounding anyway
    const double drive = std::exp(-log_scale);
    for (int i = 0; i < s.I; ++i) x(i) = drive * trials.x[(size_t(t) * trials.Bt + trial) * s.I + i];
    Vec<double> v = W_h * u.cwiseMax(0.0) + W_x * x;
    if (s.bias) v += drive * b;
    u = a * u + (1 - a) * v;
    const double peak = u.cwiseAbs().maxCoeff();
    if (peak > rescale_above && std::isfinite(peak)) {
      u /= peak;
      log_scale += std::log(peak);
    }
  }
  return states;
}

Mat<double> random_frame(int H, int k, std::uint32_t seed) {
  const Philox rng(Purpose::lyapunov_frame, seed);
  Mat<double> gaussian(H, k);
  for (int r = 0; r < H; ++r)
    for (int c = 0; c < k; ++c) gaussian(r, c) = normal_at(rng, std::uint32_t(r * k + c));
  Mat<double> Q, R;
  qr_positive(gaussian, Q, R);
  return Q;
}

std::vector<double> network_spectrum(const Config& config, const TaskParams& task, const Shape& s,
                                     const float* params, std::uint32_t seed, int k) {
  if (k == 0) k = config.spectrum_k();
  const Mat<double> W_h = ConstNet<float>(s, params).W_h.cast<double>();
  const Mat<double> frame = random_frame(s.H, k, seed);
  Vec<double> sum = Vec<double>::Zero(k);
  for (int j = 0; j < config.le_batch; ++j) {
    const Mat<double> hs = driven_states(s, task.leak(), params, task, Purpose::lyapunov_trials, seed,
                                         std::uint32_t(j), config.le_warmup, config.le_steps);
    sum += lyapunov_spectrum<double>(W_h, task.leak(), hs, SpectrumOptions{k}, Activation::relu, &frame);
  }
  std::vector<double> lambda(k);
  for (int i = 0; i < k; ++i) lambda[i] = sum(i) / config.le_batch;
  // From a random frame the QR order is decreasing up to noise between close exponents;
  // sorting makes index 1 the max LE exactly.
  std::sort(lambda.begin(), lambda.end(), std::greater<double>());
  return lambda;
}

std::vector<FlossPoint> floss_network(const Config& config, const TaskParams& task, const Shape& s,
                                      float* params, std::uint32_t seed, long training_iteration) {
  const Mat<double> frame = random_frame(s.H, config.floss_k, seed);
  const AdamHyper hyper{config.adam_beta1, config.adam_beta2, config.adam_eps};
  AdamState<float> adam(size_t(s.H) * s.H);
  std::vector<FlossPoint> curve;
  std::vector<float> grad(size_t(s.H) * s.H);
  Net<float> net(s, params);
  const long iters = training_iteration == 0 ? config.floss_iters : config.floss_iters_each;
  const long first_batch = floss_first_batch(config, training_iteration);
  for (long it = 0; it < iters; ++it) {
    // a fresh trajectory every iteration: its own batch of the flossing stream
    const Mat<double> hs = driven_states(s, task.leak(), params, task, Purpose::floss_trials, seed,
                                         std::uint32_t(first_batch + it), config.floss_warmup, config.floss_steps);
    const Mat<double> W_h = net.W_h.cast<double>();
    const FlossResult<double> r =
        floss_loss_and_gradient<double>(W_h, task.leak(), hs, config.floss_k, Activation::relu, &frame);
    curve.push_back({it, r.loss, r.k_used, training_iteration});
    if (r.k_used == 0 || !std::isfinite(r.loss) || !r.dL_dW_h.allFinite()) continue;
    Eigen::Map<Mat<float>>(grad.data(), s.H, s.H) = r.dL_dW_h.cast<float>();
    adam_step(net.W_h.data(), grad.data(), grad.size(), config.floss_lr, hyper, adam);
  }
  return curve;
}

}  // namespace rnnsweep::cpu
