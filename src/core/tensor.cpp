#include "core/tensor.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "core/error.h"

namespace condense {

std::string shape_str(const Shape& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) {
    // Shapes come from files: a product past 63 bits is refused, not wrapped.
    if (d < 0 || __builtin_mul_overflow(n, d, &n)) fail("shape " + shape_str(s), "has an element count that overflows 63 bits or a negative dimension");
  }
  return n;
}

Tensor Tensor::empty(DType dtype, Shape shape, Device device) {
  for (int64_t d : shape) {
    if (d < 0) fail("Tensor::empty", "negative dimension in shape " + shape_str(shape));
  }
  if (device != Device::CPU) {
    fail("Tensor::empty", std::string("device '") + device_name(device) + "' is not available in this build",
         "Rebuild with -DCONDENSE_CUDA=ON (or HIP) on a machine with that GPU, or use the CPU");
  }
  Tensor t;
  t.dtype_ = dtype;
  t.device_ = device;
  t.shape_ = std::move(shape);
  // Large tensors (weights streamed at every decode step) get 2 MiB alignment and
  // transparent huge pages, so streaming hundreds of MB per token does not walk
  // page tables every 4 KiB.
  const size_t huge = size_t(2) << 20;
  const bool use_huge = t.nbytes() >= 2 * huge;
  const size_t align = use_huge ? huge : 64;
  const size_t bytes = (std::max<size_t>(t.nbytes(), 1) + align - 1) / align * align;
  void* p = std::aligned_alloc(align, bytes);
  if (p && use_huge) ::madvise(p, bytes, MADV_HUGEPAGE);  // advisory: ignore failure
  if (!p) fail("Tensor::empty", "out of memory allocating " + std::to_string(bytes) + " bytes for " + shape_str(t.shape_));
  t.storage_ = std::shared_ptr<uint8_t>(static_cast<uint8_t*>(p), [](uint8_t* q) { std::free(q); });
  return t;
}

Tensor Tensor::zeros(DType dtype, Shape shape) {
  Tensor t = empty(dtype, std::move(shape));
  std::memset(t.data(), 0, t.nbytes());
  return t;
}

Tensor Tensor::from_f32(const std::vector<float>& values, Shape shape) {
  if (shape_numel(shape) != int64_t(values.size())) {
    fail("Tensor::from_f32", std::to_string(values.size()) + " values do not fill shape " + shape_str(shape));
  }
  Tensor t = empty(DType::F32, std::move(shape));
  std::memcpy(t.data(), values.data(), values.size() * 4);
  return t;
}

float* Tensor::f32() { return const_cast<float*>(static_cast<const Tensor*>(this)->f32()); }

const float* Tensor::f32() const {
  if (dtype_ != DType::F32 || device_ != Device::CPU) {
    fail("Tensor::f32", std::string("tensor is ") + name(dtype_) + " on " + device_name(device_) + ", not f32 on cpu");
  }
  return reinterpret_cast<const float*>(storage_.get());
}

Tensor Tensor::slice_bytes(const Tensor& base, size_t offset, int64_t n) {
  if (n < 0 || offset % 64 != 0 || offset + size_t(n) > base.nbytes()) {
    fail("Tensor::slice_bytes", std::to_string(n) + " bytes at offset " + std::to_string(offset) + " do not fit a " +
                                    std::to_string(base.nbytes()) + "-byte tensor at 64-byte alignment");
  }
  Tensor t;
  t.dtype_ = DType::I8;
  t.device_ = base.device_;
  t.shape_ = {n};
  t.storage_ = std::shared_ptr<uint8_t>(base.storage_, base.storage_.get() + offset);
  return t;
}

Tensor Tensor::clone() const {
  Tensor t = empty(dtype_, shape_, device_);
  std::memcpy(t.data(), data(), nbytes());
  return t;
}

Tensor Tensor::to(DType dtype) const {
  if (dtype == dtype_) return clone();
  Tensor t = empty(dtype, shape_);
  if (dtype == DType::F32) {
    convert_to_f32(dtype_, data(), t.f32(), numel());
  } else if (dtype_ == DType::F32) {
    convert_from_f32(f32(), dtype, t.data(), numel());
  } else {
    return to(DType::F32).to(dtype);
  }
  return t;
}

}  // namespace condense
