// What every CUDA file of the backend shares: CUDA_CHECK, which throws with file:line and the
// failing call (library code never exits; main turns the exception into a message), and an
// RAII device buffer.
#pragma once

#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

namespace rnnsweep::cuda {

inline void check(cudaError_t err, const char* call, const char* file, int line) {
  if (err != cudaSuccess)
    throw std::runtime_error(std::string(file) + ":" + std::to_string(line) + ": " + call + ": " +
                             cudaGetErrorString(err));
}

#define CUDA_CHECK(call) ::rnnsweep::cuda::check((call), #call, __FILE__, __LINE__)

// Whether a CUDA device can be used here (false on machines without a GPU or driver).
inline bool device_available() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
}

// n elements of T in device memory, freed with the buffer.
template <typename T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t n = 0) : n_(n) {
    if (n_) CUDA_CHECK(cudaMalloc(&ptr_, n_ * sizeof(T)));
  }
  ~DeviceBuffer() {
    if (ptr_) cudaFree(ptr_);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  T* get() const { return ptr_; }
  size_t size() const { return n_; }

 private:
  T* ptr_ = nullptr;
  size_t n_;
};

}  // namespace rnnsweep::cuda
