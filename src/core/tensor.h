// Tensor: a dense, contiguous, row-major array with a dtype, a shape and a
// device. Copies share storage (like a shared_ptr); clone() copies the bytes.
// Storage is 64-byte aligned so kernels may use aligned vector loads.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/dtype.h"

namespace condense {

using Shape = std::vector<int64_t>;
std::string shape_str(const Shape& s);
int64_t shape_numel(const Shape& s);

class Tensor {
 public:
  Tensor() = default;
  static Tensor empty(DType dtype, Shape shape, Device device = Device::CPU);
  static Tensor zeros(DType dtype, Shape shape);
  static Tensor from_f32(const std::vector<float>& values, Shape shape);
  // n bytes (an I8 tensor) at byte offset `offset` of base's storage, sharing it
  // (base's storage lives while the slice does). offset must be a multiple of 64.
  static Tensor slice_bytes(const Tensor& base, size_t offset, int64_t n);

  bool defined() const { return storage_ != nullptr; }
  DType dtype() const { return dtype_; }
  Device device() const { return device_; }
  const Shape& shape() const { return shape_; }
  int ndim() const { return int(shape_.size()); }
  int64_t dim(int i) const { return shape_.at(size_t(i < 0 ? i + ndim() : i)); }
  int64_t numel() const { return shape_numel(shape_); }
  size_t nbytes() const { return storage_bytes(dtype_, numel()); }

  void* data() { return storage_.get(); }
  const void* data() const { return storage_.get(); }
  // Typed f32 access; throws if the tensor is not f32 on the CPU.
  float* f32();
  const float* f32() const;

  Tensor clone() const;
  // Element-wise conversion on the CPU (round to nearest even).
  Tensor to(DType dtype) const;

 private:
  std::shared_ptr<uint8_t> storage_;
  DType dtype_ = DType::F32;
  Device device_ = Device::CPU;
  Shape shape_;
};

}  // namespace condense
