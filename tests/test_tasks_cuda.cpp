// Device trials against host trials, value by value (on the emulator and on the GPU: see
// tests/kernel_test_support.h).
#include <gtest/gtest.h>

#include <cmath>

#include "kernels/tasks.cuh"
#include "rnnsweep/config.h"
#include "tests/kernel_test_support.h"

using namespace rnnsweep;

namespace {

TEST(CudaTasks, DeviceTrialsEqualHostTrials) {
  RNNSWEEP_NEED_DEVICE();
  for (int variant = 0; variant < 4; ++variant) {
    // the three tasks, and 2af with its neurogym fixation cue (2af.fixation_cue)
    const TaskKind kind = variant == 3 ? TaskKind::two_af : TaskKind(variant);
    TaskParams task = Config::make_task(kind);
    task.fixation_off_after_fixation = variant == 3;
    const cpu::Trials host = cpu::training_trials(task, 11, 42, 67);
    const cpu::Trials dev = cuda::device_trials(task, Purpose::trials, 11, 42, 67);
    ASSERT_EQ(dev.x.size(), host.x.size());
    // Same words, same double arithmetic; cos, log and sqrt may differ by an ulp of double
    // between glibc and CUDA, which can move the float result by at most one float ulp.
    for (size_t i = 0; i < host.x.size(); ++i)
      ASSERT_NEAR(dev.x[i], host.x[i], 2e-7f * (1 + std::fabs(host.x[i])))
          << task_name(kind) << " x[" << i << "]";
    EXPECT_EQ(dev.label, host.label) << task_name(kind);
    EXPECT_EQ(dev.target, host.target) << task_name(kind);
    EXPECT_EQ(dev.mask, host.mask) << task_name(kind);
  }
}

TEST(CudaTasks, LauncherRejectsAMismatchedView) {
  RNNSWEEP_NEED_DEVICE();
  const TaskParams task = Config::make_task(TaskKind::romo);
  cuda::DeviceBuffer<float> x(10);
  const TrialView wrong{task.T() + 1, 1, 1, 2, x.get(), x.get(), x.get(), nullptr};
  EXPECT_THROW(cuda::launch_generate_trials(task, Purpose::trials, 0, 0, wrong, nullptr),
               std::invalid_argument);
}

}  // namespace
