// GpuTrainer: a Trainer's step on the GPU (CUDA or HIP builds). It mirrors
// the Trainer's parameters (weights, QAT latents and step sizes, hidden-state
// projections), their gradients, AdamW moments and pruning masks in device
// memory and runs the whole step there: teacher and student forward
// (train/gpu_graph.h), the chunked head and token losses, hidden-state
// losses, the backward, masks, fake-quant backward, the global gradient norm,
// clipping, AdamW and the fake-quant forward. The host copies are brought up
// to date by to_host() (saving, validation on the host, the end of a run) and
// the device copies by from_host() (resume, new masks).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "core/device.h"
#include "train/adamw.h"
#include "train/fake_quant.h"
#include "train/objective.h"
#include "train/param_set.h"

namespace condense::dist {
class DeviceAllReduce;
}

namespace condense::train {

struct GpuTrainSetup {
  Device device = Device::CUDA;
  bool bf16 = false;            // bf16 GEMM inputs, f32 accumulation and master weights
  Model* student = nullptr;
  const Model* teacher = nullptr;
  const ObjectiveConfig* objective = nullptr;
  int batch = 1, seq = 1;
  ParamSet* params = nullptr;   // the Trainer's: value/grad pairs, in the optimizer's order
  AdamW* adam = nullptr;        // its moments, parallel to params
  FakeQuant* fake_quant = nullptr;  // QAT (null: none)
  bool learn_scales = false;
  std::vector<Tensor>* projections = nullptr;       // the Objective's (hidden-state losses)
  std::vector<Tensor>* projection_grads = nullptr;
  const std::vector<const std::vector<uint64_t>*>* masks = nullptr;  // parallel to params (null: dense)
  const Model* grads = nullptr; // the Trainer's gradient model (pairs weights with their gradients)
};

class GpuTrainer {
 public:
  virtual ~GpuTrainer() = default;
  virtual void zero_grads() = 0;
  // One micro-batch: adds scale * gradient (with grads) or only evaluates.
  virtual LossReport run(const int* inputs, const int* targets, float scale, bool grads) = 0;
  // After the micro-batches: masks the gradients, passes the weights'
  // gradients through fake quantization, returns the global gradient norm.
  virtual double finish_gradients() = 0;
  // Data parallel: sums the micro-batches' gradients (weights' and
  // projections', before masks and fake quantization) over the ranks on the
  // device. Returns the bytes summed.
  virtual size_t allreduce_gradients(dist::DeviceAllReduce& ar) = 0;
  virtual void scale_grads(float factor) = 0;
  // AdamW with these scalars, masks, then the fake-quant forward. Returns the
  // first parameter (by name) the update made non-finite, or "".
  virtual std::string update(const AdamWStep& step) = 0;
  virtual void to_host() = 0;
  // The parameters' gradients into the host's (tests compare them with the CPU's).
  virtual void grads_to_host() = 0;
  virtual void from_host() = 0;
  virtual size_t activation_bytes() const = 0;
};

// Fails with a clear message in builds without that backend or without a visible device.
std::unique_ptr<GpuTrainer> make_gpu_trainer(const GpuTrainSetup& setup);

}  // namespace condense::train
