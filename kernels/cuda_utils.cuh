// What every CUDA file of the backend shares: CUDA_CHECK, which throws with file:line and the
// failing call (library code never exits; main turns the exception into a message), and an
// RAII device buffer.
#pragma once

#include <stdexcept>
#include <string>

#include "kernels/portability.cuh"

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
  DeviceBuffer(DeviceBuffer&& other) noexcept : ptr_(other.ptr_), n_(other.n_) {
    other.ptr_ = nullptr;
    other.n_ = 0;
  }
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept {
    if (this != &other) {
      if (ptr_) cudaFree(ptr_);
      ptr_ = other.ptr_;
      n_ = other.n_;
      other.ptr_ = nullptr;
      other.n_ = 0;
    }
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  T* get() const { return ptr_; }
  size_t size() const { return n_; }

  void upload(const T* host, size_t count) {
    if (count > n_)
      throw std::out_of_range("DeviceBuffer::upload: " + std::to_string(count) + " > " + std::to_string(n_));
    if (count) CUDA_CHECK(cudaMemcpy(ptr_, host, count * sizeof(T), cudaMemcpyHostToDevice));
  }
  void download(T* host, size_t count) const {
    if (count > n_)
      throw std::out_of_range("DeviceBuffer::download: " + std::to_string(count) + " > " +
                              std::to_string(n_));
    if (count) CUDA_CHECK(cudaMemcpy(host, ptr_, count * sizeof(T), cudaMemcpyDeviceToHost));
  }
  void zero() {
    if (n_) CUDA_CHECK(cudaMemset(ptr_, 0, n_ * sizeof(T)));
  }

 private:
  T* ptr_ = nullptr;
  size_t n_;
};

}  // namespace rnnsweep::cuda
