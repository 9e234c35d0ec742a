// The CUDA backend's entry points (kernels/cuda_backend.cu), for backend selection
// (host/backend.cpp) and the tests.
#pragma once

#include <memory>
#include <string>

#include "host/tuning.h"
#include "rnnsweep/backend.h"

namespace rnnsweep {

// Whether a CUDA device can be used here; if not and `why` is given, says why.
bool cuda_device_usable(std::string* why);

// The CUDA backend; throws UsageError naming --backend when no GPU can be used. max_chunk > 0
// caps the networks trained together (tests use it to exercise chunking); 0 sizes chunks by
// the free device memory. `tuning` picks the kernel instances (null: TuningTable::active()).
std::unique_ptr<Backend> make_cuda_backend(long max_chunk = 0, std::shared_ptr<const TuningTable> tuning = nullptr);

}  // namespace rnnsweep
