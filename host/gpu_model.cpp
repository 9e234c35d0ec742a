// The H200 model of `rnnsweep plan --backend cuda` without a GPU (host/gpu_model.h).
//
// The rates below are the modeled ceilings that scripts/kernel_report.py --model prints for the
// sm_90 build (network-steps per second with the GPU full); `kernel_report.py --check --model`
// fails when one of them is more than 10% from what the report computes for this commit, so
// they cannot silently go stale. How a grid's time follows from them:
// - the backend runs the grid task by task; per task, training launches one kernel per rule
//   family (BPTT, then e-prop and RFLO together) every iteration, and each spectrum pass (before
//   flossing, after it, after training) and each flossing iteration is one launch;
// - a launch of B blocks runs in ceil(B / slots) waves, slots = 132 SMs x resident blocks; a
//   wave takes slots x (its blocks' steps) / rate: a small grid does not fill the GPU and gets no
//   faster than one wave;
// - shapes without a fast instance use the general kernels, whose rate is scaled from the
//   study's shape by the step's FLOPs (noted in the output).
#include "host/gpu_model.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <stdexcept>

namespace rnnsweep {
namespace {

constexpr double kSms = 132;

struct Modeled {
  const char* kernel;            // the report's name
  double network_steps_per_s;    // its modeled ceiling
  int blocks_per_sm;
};

// kernel_report.py --model, sm_90 build (bench/MODEL.md)
constexpr Modeled kModeled[] = {
    {"train_registers<H=64,Bt=32,Q=4,R=2,eprop/rflo,Regression>", 8.66e7, 4},
    {"train_registers<H=64,Bt=32,Q=4,R=2,eprop/rflo,Choice>", 8.01e7, 4},
    {"train_registers<H=64,Bt=32,Q=4,R=1,bptt,Regression>", 5.09e7, 2},
    {"train_registers<H=64,Bt=32,Q=4,R=1,bptt,Choice>", 4.75e7, 2},
    {"train_mma<H=64,Bt=32,eprop/rflo,Regression>", 1.27e8, 2},
    {"train_mma<H=64,Bt=32,eprop/rflo,Choice>", 1.1e8, 2},
    {"train_mma<H=64,Bt=32,bptt,Regression>", 7.03e7, 2},
    {"train_mma<H=64,Bt=32,bptt,Choice>", 6.31e7, 2},
    {"spectrum_registers<H=64,k=64>", 8.9e6, 2},
    {"spectrum_registers<H=32,k=32>", 4.63e7, 4},
    // flossing: chain steps (a forward step with its QR and an adjoint step) per second
    {"floss_registers<H=64,k=32>", 1.14e7, 2},
    {"floss_registers<H=32,k=32>", 2.6e7, 3},
};
// The general spectrum kernel at H = k = 64 (the spectrum issue's model of it: 2 blocks per SM).
constexpr double kGeneralSpectrum = 1.7e6;

const Modeled& modeled(const std::string& kernel) {
  for (const Modeled& m : kModeled)
    if (kernel == m.kernel) return m;
  throw std::logic_error("gpu_model: no modeled rate for " + kernel);
}

// Seconds for a launch of `blocks` blocks of `steps` network-steps each, `launches` times.
double launches_s(double blocks, double steps, double launches, double rate, int blocks_per_sm) {
  if (blocks <= 0 || launches <= 0) return 0;
  const double slots = kSms * blocks_per_sm;
  return launches * std::ceil(blocks / slots) * slots * steps / rate;
}

}  // namespace

namespace {

// The networks of one shape (config.hidden, config.batch).
GpuModelEstimate model_one_shape(const Config& config, const std::vector<NetworkSpec>& networks,
                                 const RunOptions& options) {
  GpuModelEstimate out;
  const int H = config.hidden, Bt = config.batch, k = config.spectrum_k();
  const bool tf32 = config.precision == "tf32x3";
  // training: the H = 64, batch 32 instances, scaled by the step's FLOPs (H^2 Bt) elsewhere and
  // never faster than at the study's shape
  const double train_scale = std::min(1.0, (64.0 * 64 * 32) / (double(H) * H * Bt));
  if (H != 64 || Bt != 32)
    out.notes.push_back("training: hidden " + std::to_string(H) + ", batch " + std::to_string(Bt) +
                        " scaled from the hidden 64, batch 32 instances by the step's FLOPs");
  // spectra: the register instance for k = H = 32, 64, else the general kernel scaled by
  // H^2 k + H k^2 (the Jacobian and the QR)
  const bool spectrum_registers = k == H && (H == 32 || H == 64);
  const double cost = double(H) * H * k + double(H) * k * k, cost64 = 2.0 * 64 * 64 * 64;
  const double spectrum_rate = spectrum_registers
                                   ? modeled("spectrum_registers<H=" + std::to_string(H) + ",k=" +
                                             std::to_string(H) + ">")
                                         .network_steps_per_s
                                   : kGeneralSpectrum * cost64 / cost;
  const int spectrum_blocks = spectrum_registers ? modeled("spectrum_registers<H=" + std::to_string(H) + ",k=" +
                                                           std::to_string(H) + ">")
                                                       .blocks_per_sm
                                                 : 2;
  if (!spectrum_registers)
    out.notes.push_back("spectra: the general kernel, scaled from its modeled 1.7M network-steps/s at k = 64");
  // flossing: the register instance for (H, floss_k) = (64, 32), (32, 32), in chain steps/s (the
  // warm-up steps only advance the state and are left out); elsewhere the general kernel, not
  // modeled: three times its forward chain (the chain, and an adjoint about twice its cost) at
  // the general spectrum kernel's rate for k = floss_k
  const bool floss_registers = config.floss_k == 32 && (H == 32 || H == 64);
  const double floss_cost = double(H) * H * config.floss_k + double(H) * config.floss_k * config.floss_k;
  const std::string floss_name = "floss_registers<H=" + std::to_string(H) + ",k=32>";
  const double floss_rate =
      floss_registers ? modeled(floss_name).network_steps_per_s : kGeneralSpectrum * cost64 / floss_cost / 3;
  const int floss_blocks = floss_registers ? modeled(floss_name).blocks_per_sm : 2;
  const double floss_steps = floss_registers ? double(config.floss_steps)
                                             : double(config.floss_warmup + config.floss_steps);
  bool any_floss = false;

  std::map<std::pair<TaskKind, int>, std::vector<const NetworkSpec*>> by_task;  // (task, file)
  for (const NetworkSpec& n : networks) by_task[{n.task, n.file}].push_back(&n);
  for (const auto& [key, specs] : by_task) {
    const TaskParams& task = config.task(key.first, key.second);
    const std::string family = task.classification() ? "Choice" : "Regression";
    double bptt = 0, local = 0, flossed = 0;
    for (const NetworkSpec* n : specs) {
      (n->rule == Rule::bptt ? bptt : local) += 1;
      flossed += n->floss ? 1 : 0;
    }
    if (options.train) {
      // fp32: e-prop / RFLO take two rows a thread, BPTT one (kernels/train_registers.cu)
      const std::string prefix = tf32 ? "train_mma<H=64,Bt=32," : "train_registers<H=64,Bt=32,Q=4,";
      const std::string rows = tf32 ? "" : "R=1,", local_rows = tf32 ? "" : "R=2,";
      const Modeled& b = modeled(prefix + rows + "bptt," + family + ">");
      const Modeled& e = modeled(prefix + local_rows + "eprop/rflo," + family + ">");
      out.train_s += launches_s(bptt, task.T(), double(config.iters), b.network_steps_per_s * train_scale,
                                b.blocks_per_sm) +
                     launches_s(local, task.T(), double(config.iters), e.network_steps_per_s * train_scale,
                                e.blocks_per_sm);
      out.floss_s += launches_s(flossed, floss_steps, double(config.flossing_iterations()), floss_rate, floss_blocks);
      any_floss = any_floss || flossed > 0;
    }
    if (options.spectra) {
      const double steps = double(config.le_warmup + config.le_steps);
      const double passes_blocks = double(specs.size()) * config.le_batch;
      // before training; after flossing (the flossed networks); after training
      out.spectra_s += launches_s(passes_blocks, steps, 1, spectrum_rate, spectrum_blocks);
      if (options.train) {
        out.spectra_s += launches_s(flossed * config.le_batch, steps, 1, spectrum_rate, spectrum_blocks);
        out.spectra_s += launches_s(passes_blocks, steps, 1, spectrum_rate, spectrum_blocks);
      }
    }
    if (options.train && config.le_every > 0) {
      // the tracked spectra: the general kernel at k = le_track_k, scaled as above
      const double kt = config.le_track_k, cost_t = double(H) * H * kt + double(H) * kt * kt;
      out.spectra_s += launches_s(double(specs.size()) * config.le_batch, double(config.le_warmup + config.le_steps),
                                  double(tracked_spectra_from(config, 0)), kGeneralSpectrum * cost64 / cost_t, 2);
    }
  }
  if (any_floss && !floss_registers)
    out.notes.push_back("flossing: the general kernel (hidden " + std::to_string(H) + ", floss_k " +
                        std::to_string(config.floss_k) +
                        "), not modeled; taken as three times its forward chain at the general spectrum kernel's rate");
  if (options.train && config.le_every > 0)
    out.notes.push_back("tracked spectra (le_every): the general spectrum kernel at k = le_track_k");
  return out;
}

}  // namespace

GpuModelEstimate model_gpu_time(const Config& config, const std::vector<NetworkSpec>& networks,
                                const RunOptions& options) {
  // each shape of the grid on its own (the backend trains them in chunks of their own)
  std::map<std::pair<int, int>, std::vector<NetworkSpec>> by_shape;
  for (const NetworkSpec& n : networks) {
    const Config c = config_of(config, n);
    by_shape[{c.hidden, c.batch}].push_back(n);
  }
  GpuModelEstimate out;
  for (const auto& [shape, specs] : by_shape) {
    const GpuModelEstimate e = model_one_shape(config.for_shape(shape.first, shape.second), specs, options);
    out.train_s += e.train_s;
    out.spectra_s += e.spectra_s;
    out.floss_s += e.floss_s;
    for (const std::string& note : e.notes)
      if (std::find(out.notes.begin(), out.notes.end(), note) == out.notes.end()) out.notes.push_back(note);
  }
  return out;
}

}  // namespace rnnsweep
