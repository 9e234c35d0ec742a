// Backend selection.
#include "rnnsweep/backend.h"

namespace rnnsweep {

std::unique_ptr<Backend> make_cpu_backend(int threads);

std::unique_ptr<Backend> make_backend(const std::string& which, int threads) {
  // The CUDA backend is the next piece of work (kernels/); until it lands, "auto" is the CPU.
  if (which == "auto" || which == "cpu") return make_cpu_backend(threads);
  throw UsageError("--backend '" + which + "': allowed: auto, cpu (this build has no CUDA backend yet)");
}

}  // namespace rnnsweep
