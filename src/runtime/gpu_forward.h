// The engine's forward pass on a GPU (CUDA or HIP build): the same steps as
// Engine::step on the CPU (runtime/engine.cpp), each through kernels/gpu, with
// the weights on the device in their stored encodings (int8, int4 group-wise,
// fp8 E4M3 with their scales and zero points; f32 otherwise) and the paged KV
// cache in the device's memory in the CPU pool's block layout. The Engine keeps
// the sequences and block tables on the host and calls step() with the rows
// of a batch; only tokens, positions and tables go up, only logits come down.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/ops/transformer.h"
#include "kernels/cpu/kv_paged.h"
#include "model/model.h"

namespace condense {

struct GpuStepRows {
  std::vector<int32_t> tokens, pos, table_off;  // per row
  std::vector<int32_t> tables;                  // block tables of the step's sequences, concatenated
  std::vector<int32_t> logit_rows;              // rows whose logits come back, in order
};

class GpuForward {
 public:
  virtual ~GpuForward() = default;
  // logits: [logit_rows.size(), vocab] on the host.
  virtual void step(const GpuStepRows& rows, float* logits) = 0;
  // Copies every layer's blocks from[i] -> to[i] (a forked sequence).
  virtual void copy_blocks(const std::vector<int32_t>& from, const std::vector<int32_t>& to) = 0;
  virtual size_t weight_bytes() const = 0;
  virtual size_t decode_weight_bytes() const = 0;
  virtual size_t kv_bytes() const = 0;
  virtual std::string describe() const = 0;  // device and what the linears run
};

// Uploads the model. `device` must be the build's backend (CUDA or HIP) with a
// visible device; otherwise fails saying what is missing.
std::unique_ptr<GpuForward> make_gpu_forward(const Model& m, Device device, const ops::RopeTable& rope,
                                             kernels::KvCode kv_code, int64_t kv_blocks,
                                             const std::vector<float>& k_scales, const std::vector<float>& v_scales);

}  // namespace condense
