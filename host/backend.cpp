// Backend selection. Its own library (rnnsweep_backends), since it links the CUDA backend,
// which itself builds on the core library.
#include "rnnsweep/backend.h"

#if RNNSWEEP_WITH_CUDA
#include "kernels/cuda_backend.cuh"
#endif

namespace rnnsweep {

std::unique_ptr<Backend> make_cpu_backend(int threads);

std::unique_ptr<Backend> make_backend(const std::string& which, int threads) {
  if (which == "cpu") return make_cpu_backend(threads);
#if RNNSWEEP_WITH_CUDA
  if (which == "cuda") return make_cuda_backend(0);
  if (which == "auto") return cuda_device_usable(nullptr) ? make_cuda_backend(0) : make_cpu_backend(threads);
#else
  if (which == "cuda")
    throw UsageError(
        "--backend cuda: this build has no CUDA backend (no CUDA compiler was found when it was "
        "configured); allowed here: auto, cpu");
  if (which == "auto") return make_cpu_backend(threads);
#endif
  throw UsageError("--backend '" + which + "': allowed: auto, cpu, cuda");
}

}  // namespace rnnsweep
