// The three tasks of the study (docs/model.md, section 3) and tasks read from a file (`file:NAME`,
// host/task_file.h, docs/model.md section 3.4): parameters, shapes, and the generator of one trial,
// written once for host and device.
//
// `generate_trial` is RNNSWEEP_HD so that the CPU backend (host/cpu/tasks.cpp) and the CUDA
// backend (kernels/tasks.cu) run the very same code on the very same Philox words: trial b of
// iteration i is a pure function of (task parameters, data_seed, i, b), whatever the batch
// size or the device. The trial layout (x, target, mask, label) is described at `TrialView`.
#pragma once

#include <cmath>
#include <cstdint>

#include "rnnsweep/rng.h"

namespace rnnsweep {

// file: a task whose trials are rows of arrays in an .npz file (host/task_file.h).
enum class TaskKind { romo, two_af, dms, file };

constexpr int kMaxCoherences = 8;

// Every timing, dt, tau, noise level and trial length of docs/model.md, section 3, as config keys.
// Timings of 2af and dms are in ms and must be multiples of dt; romo's are in steps except its
// delay, which is drawn in units of tau as in Schuessler et al. 2020.
struct TaskParams {
  TaskKind kind = TaskKind::romo;

  // romo
  double romo_dt_over_tau = 0.5;
  int romo_T = 56;
  double romo_f_min = 0.5, romo_f_max = 1.5, romo_min_diff = 0.2;
  double romo_delay_min = 2.0, romo_delay_max = 8.0;  // in units of tau
  int romo_f1_onset = 6;                              // step at which f1 starts
  int romo_pulse = 2;                                 // steps each stimulus lasts
  int romo_response_gap = 10;                         // steps from the end of f2 to the response
  int romo_response_len = 20;                         // steps of response
  double romo_target = 0.5;

  // 2af and dms (neurogym conventions: ms, a = 1 - dt / tau)
  double dt = 100.0, tau = 100.0;
  double sigma = 0.1;  // std of the input noise per step
  // 2af
  int fixation_ms = 100, stimulus_ms = 2000, delay_ms = 0, decision_ms = 100;
  int n_coherences = 5;
  // 2af.fixation_cue: "classic" (false) keeps the fixation cue on until the decision period, as
  // the study and neurogym before 2.0 did; "neurogym" (true) turns it off after the fixation
  // period, as neurogym 2.x's PerceptualDecisionMaking does.
  bool fixation_off_after_fixation = false;
  double coherences[kMaxCoherences] = {0.0, 6.4, 12.8, 25.6, 51.2};
  // dms
  int dms_fixation_ms = 300, dms_sample_ms = 500, dms_delay_ms = 1000, dms_test_ms = 500,
      dms_decision_ms = 900;

  // file tasks: the trials of the file, a pool of N rows in numpy's C order, in host memory (the
  // config holds them, host/task_file.h) or, on the CUDA backend, in device memory (one copy per
  // chunk). x is N x T x I; labels N x T (classification) or target and mask N x T x O
  // (regression). The eval pool (the file's x_eval, ...) serves the held-out trials (eval_every)
  // and `rnnsweep evaluate`; a file without one draws those from the training pool.
  struct FilePool {
    const float* x = nullptr;
    const int* labels = nullptr;
    const float* target = nullptr;
    const float* mask = nullptr;
    int trials = 0;
  };
  FilePool file_train, file_eval;
  int file_T = 0, file_I = 0, file_O = 0;
  bool file_classification = false;
  double file_leak = 0;  // a = 1 - dt / tau

  RNNSWEEP_HD int steps(int ms) const { return static_cast<int>(ms / dt + 0.5); }
  RNNSWEEP_HD double leak() const {
    return kind == TaskKind::romo ? 1.0 - romo_dt_over_tau : kind == TaskKind::file ? file_leak : 1.0 - dt / tau;
  }
  RNNSWEEP_HD int T() const {
    switch (kind) {
      case TaskKind::romo:
        return romo_T;
      case TaskKind::file:
        return file_T;
      case TaskKind::two_af:
        return steps(fixation_ms) + steps(stimulus_ms) + steps(delay_ms) + steps(decision_ms);
      default:
        return steps(dms_fixation_ms) + steps(dms_sample_ms) + steps(dms_delay_ms) + steps(dms_test_ms) +
               steps(dms_decision_ms);
    }
  }
  RNNSWEEP_HD int inputs() const { return kind == TaskKind::file ? file_I : kind == TaskKind::romo ? 1 : 3; }
  RNNSWEEP_HD int outputs() const { return kind == TaskKind::file ? file_O : kind == TaskKind::romo ? 2 : 3; }
  // romo is a regression (masked MSE); 2af and dms are classifications (cross-entropy); a file
  // task is what its arrays say (labels or target and mask).
  RNNSWEEP_HD bool classification() const {
    return kind == TaskKind::file ? file_classification : kind != TaskKind::romo;
  }
  // Largest delay romo can draw, in steps (the delay is int(U(min, max) / dt_over_tau)).
  RNNSWEEP_HD int romo_max_delay_steps() const {
    double d = romo_delay_max / romo_dt_over_tau;
    int steps = static_cast<int>(d);
    return steps == d ? steps - 1 : steps;  // U(min, max) excludes max
  }
};

// Where one trial's numbers go. Arrays hold a whole batch, step-major so that step t of the
// batch is one contiguous I x Bt (or O x Bt) column-major block:
//   x[(t * Bt + b) * I + i], target/mask[(t * Bt + b) * O + o], label[t * Bt + b]
// (indices computed in size_t).
// target and mask are used by regression tasks, label by classification tasks; the others
// may be null.
struct TrialView {
  int T, Bt, I, O;
  float* x;
  float* target;
  float* mask;
  int* label;
};

// What the generator drew for one trial, for analyses of trained networks (`rnnsweep evaluate`
// writes it beside the trials): the output that is correct at the decision (romo: the channel,
// 0 when f1 > f2; 2af and dms: the label, 1 or 2) and the task's own conditions. Fields of the
// other tasks stay at their defaults.
struct TrialConditions {
  int correct = 0;
  double f1 = 0, f2 = 0;  // romo: the two frequencies
  int delay = 0;          // romo: the delay in steps
  double coherence = 0;   // 2af: the coherence (correct 1: evidence on ring channel 1, 2: channel 2)
  int sample = 0;         // dms: the sample's direction, 0 (theta = 0) or 1 (theta = pi)
  bool match = false;     // dms: the test matches the sample (correct 1)
  int file_trial = -1;    // file tasks: the row of the file's pool (training or eval) the trial is
  bool file_eval = false; // ... and whether that pool is the eval pool
};

// Writes trial `trial` of the batch of iteration `iteration` drawn from `rng` into column `slot` of
// `out` (by default column `trial`; a device kernel that walks through trials one at a time passes a
// one-trial view and slot 0), and what it drew into `conditions` where given.
RNNSWEEP_HD inline void generate_trial(const TaskParams& p, const Philox& rng, std::uint32_t iteration,
                                       int trial, const TrialView& out, int slot = -1,
                                       TrialConditions* conditions = nullptr) {
  const int T = out.T, Bt = out.Bt, I = out.I, O = out.O;
  const int b = slot < 0 ? trial : slot;
  // size_t: T * Bt * I may exceed the range of int for long trials and large batches
  auto x = [&](int t, int i) -> float& { return out.x[(size_t(t) * Bt + b) * I + i]; };

  if (p.kind == TaskKind::file) {
    // Word 0 of counter (iteration, b, 0) picks a row of the pool, uniformly and with replacement:
    // trials are drawn independently, as the built-in tasks draw theirs. The held-out streams
    // (eval_trials, evaluate_trials) draw from the eval pool where the file has one.
    const bool held_out = rng.purpose == static_cast<std::uint32_t>(Purpose::eval_trials) ||
                          rng.purpose == static_cast<std::uint32_t>(Purpose::evaluate_trials);
    const TaskParams::FilePool& pool = held_out && p.file_eval.trials > 0 ? p.file_eval : p.file_train;
    const int n = to_index(rng.words(iteration, static_cast<std::uint32_t>(trial), 0)[0], pool.trials);
    if (conditions) conditions->file_trial = n, conditions->file_eval = &pool == &p.file_eval;
    for (int t = 0; t < T; ++t) {
      const size_t row = size_t(n) * T + t;
      for (int i = 0; i < I; ++i) x(t, i) = pool.x[row * I + i];
      if (p.file_classification) {
        out.label[size_t(t) * Bt + b] = pool.labels[row];
      } else {
        for (int o = 0; o < O; ++o) {
          const size_t k = (size_t(t) * Bt + b) * O + o;
          out.target[k] = pool.target[row * O + o];
          out.mask[k] = pool.mask[row * O + o];
        }
      }
    }
    return;
  }

  for (int t = 0; t < T; ++t)
    for (int i = 0; i < I; ++i) x(t, i) = 0.0f;

  if (p.kind == TaskKind::romo) {
    // Word 0 of counter (iteration, b, 0) draws the delay; counters (iteration, b, k >= 1)
    // draw (f1, f2) until they are far enough apart, as the reference generator redraws.
    auto w0 = rng.words(iteration, static_cast<std::uint32_t>(trial), 0);
    const double delay_tau = p.romo_delay_min + (p.romo_delay_max - p.romo_delay_min) * to_unit(w0[0]);
    const int d = static_cast<int>(delay_tau / p.romo_dt_over_tau);
    double f1 = 0, f2 = 0;
    for (std::uint32_t k = 1;; ++k) {
      auto w = rng.words(iteration, static_cast<std::uint32_t>(trial), k);
      f1 = p.romo_f_min + (p.romo_f_max - p.romo_f_min) * to_unit(w[0]);
      f2 = p.romo_f_min + (p.romo_f_max - p.romo_f_min) * to_unit(w[1]);
      if (fabs(f1 - f2) >= p.romo_min_diff) break;
    }
    const int f1_on = p.romo_f1_onset, f2_on = f1_on + p.romo_pulse + d;
    const int f2_off = f2_on + p.romo_pulse;
    const int resp_on = f2_off + p.romo_response_gap, resp_off = resp_on + p.romo_response_len;
    for (int t = f1_on; t < f1_on + p.romo_pulse; ++t) x(t, 0) = static_cast<float>(f1);
    for (int t = f2_on; t < f2_off; ++t) x(t, 0) = static_cast<float>(f2);
    const int correct = f1 > f2 ? 0 : 1;
    if (conditions) conditions->correct = correct, conditions->f1 = f1, conditions->f2 = f2, conditions->delay = d;
    for (int t = 0; t < T; ++t) {
      const bool response = t >= resp_on && t < resp_off;
      for (int o = 0; o < O; ++o) {
        const size_t k = (size_t(t) * Bt + b) * O + o;
        out.target[k] = (response && o == correct) ? static_cast<float>(p.romo_target) : 0.0f;
        out.mask[k] = (response || t < f2_off) ? 1.0f : 0.0f;
      }
    }
    return;
  }

  // 2af and dms: channel 0 is the fixation cue, channels 1 and 2 a ring of two directions
  // (theta = 0, pi). Counter (iteration, b, 0) draws the trial's conditions; counter
  // (iteration, b, 1 + t) draws the two noise values of step t.
  const double pi = 3.141592653589793;
  auto w0 = rng.words(iteration, static_cast<std::uint32_t>(trial), 0);
  int decision_on, label_on_decision;
  // stimulus value of ring channel k (1 or 2) at step t, or a negative number when off
  double amp_sample = 0, amp_test = 0, angle_sample = 0, angle_test = 0;
  int s_on = 0, s_off = 0, t_on = 0, t_off = 0;
  if (p.kind == TaskKind::two_af) {
    const int choice = to_index(w0[0], 2);
    const double coh = p.coherences[to_index(w0[1], p.n_coherences)];
    s_on = p.steps(p.fixation_ms);
    s_off = s_on + p.steps(p.stimulus_ms);
    decision_on = s_off + p.steps(p.delay_ms);
    label_on_decision = 1 + choice;
    angle_sample = choice * pi;
    amp_sample = coh / 200.0;  // 0.5 + cos(theta_k - theta_c) * coh / 200
    if (conditions) conditions->correct = label_on_decision, conditions->coherence = coh;
  } else {
    const bool match = to_index(w0[0], 2) == 0;
    const double sample = to_index(w0[1], 2) * pi;
    s_on = p.steps(p.dms_fixation_ms);
    s_off = s_on + p.steps(p.dms_sample_ms);
    t_on = s_off + p.steps(p.dms_delay_ms);
    t_off = t_on + p.steps(p.dms_test_ms);
    decision_on = t_off;
    label_on_decision = match ? 1 : 2;
    angle_sample = sample;
    angle_test = match ? sample : sample + pi;
    amp_sample = amp_test = 0.5;
    if (conditions)
      conditions->correct = label_on_decision, conditions->sample = to_index(w0[1], 2), conditions->match = match;
  }
  // the fixation cue: on until the decision, or (2af.fixation_cue = "neurogym") only before the stimulus
  const int fixation_off = p.kind == TaskKind::two_af && p.fixation_off_after_fixation ? s_on : decision_on;
  for (int t = 0; t < T; ++t) {
    const bool decision = t >= decision_on;
    x(t, 0) = t >= fixation_off ? 0.0f : 1.0f;
    const bool in_sample = t >= s_on && t < s_off;
    const bool in_test = p.kind == TaskKind::dms && t >= t_on && t < t_off;
    if (in_sample || in_test) {
      auto w = rng.words(iteration, static_cast<std::uint32_t>(trial), 1u + static_cast<std::uint32_t>(t));
      NormalPair noise = to_normals(w[0], w[1]);
      const double angle = in_sample ? angle_sample : angle_test;
      const double amp = in_sample ? amp_sample : amp_test;
      x(t, 1) = static_cast<float>(0.5 + amp * cos(0.0 - angle) + p.sigma * noise.first);
      x(t, 2) = static_cast<float>(0.5 + amp * cos(pi - angle) + p.sigma * noise.second);
    }
    out.label[size_t(t) * Bt + b] = decision ? label_on_decision : 0;
  }
}

}  // namespace rnnsweep
