// Trainer: the optimisation loop of a `train` or `distill` stage. Each step
// accumulates `accum` micro-batches of `batch` windows, clips the global
// gradient norm, and takes one AdamW step on the scheduled learning rate.
// Deterministic for a seed and thread count: data windows are a function of
// (seed, step, micro-batch), and no reduction depends on thread timing.
// A step whose loss or gradient is not finite stops the run with an error
// before touching the weights; the last state written stays the good one.
// Pruning masks in the student's Model::compression stay applied: removed
// weights, their gradients and their AdamW moments are kept at exactly 0.
// Quantized weights are refused unless opt.qat, which trains them through
// FakeQuant: the optimizer updates latent copies (and LSQ scales).
#pragma once
#include <functional>
#include <memory>
#include <string>

#include "core/device.h"
#include "io/train_state.h"
#include "dist/comm.h"
#include "train/adamw.h"
#include "train/data_shard.h"
#include "train/fake_quant.h"
#include "train/gpu_trainer.h"
#include "train/objective.h"
#include "train/param_set.h"
#include "train/token_data.h"

namespace condense::dist {
class DeviceAllReduce;
}

namespace condense::train {

class GradientReducer;
struct ReduceStats;

struct TrainOptions {
  int64_t steps = 100;
  int batch = 8, seq = 256, accum = 1;
  Schedule schedule;
  AdamWConfig adam;
  double clip = 1.0;         // global gradient norm; <= 0 disables
  bool decay_all = false;    // decay norms, biases and embeddings too
  uint64_t seed = 1234;
  int64_t eval_every = 0;    // steps between validations (0: only at the end)
  int val_windows = 16;
  int64_t save_every = 0;    // steps between state saves (0: only at the end)
  std::string state_path;    // empty: no state written
  bool qat = false;          // fake-quantize the model's quantized weights (train/fake_quant.h) ...
  bool learn_scales = false; // ... with learned step sizes (LSQ)
  Device device = Device::CPU;  // where the steps run (train/gpu_trainer.h for CUDA/HIP)
  bool bf16 = false;         // GPU only: bf16 GEMM inputs, f32 accumulation and master weights
  // Data parallel (null: this process alone). The step's batch x accum is
  // global: the ranks split it (train/data_shard.h) and sum their gradients.
  dist::Communicator* comm = nullptr;
  size_t bucket_bytes = size_t(25) << 20;  // gradients per all-reduce
  int64_t check_every = 50;  // steps between cross-rank checks of the state's checksum (and at the end)
  // GPU ranks: sums gradients in device memory (null: NCCL, dist/device_allreduce.h)
  dist::DeviceAllReduce* device_allreduce = nullptr;
};

struct StepLog {
  int64_t step = 0;          // 1-based: steps done
  LossReport loss;
  double lr = 0, grad_norm = 0, tokens_per_s = 0, seconds = 0;
};

struct ValLog {
  int64_t step = 0;
  double loss = 0, ce = 0, ppl = 0;
  int windows = 0;
};

class Trainer {
 public:
  // student and teacher must outlive the Trainer; bos starts every window.
  Trainer(Model& student, const Model* teacher, const ObjectiveConfig& objective, const TrainOptions& opt,
          const TokenDataset& data, int bos);
  ~Trainer();

  // Restores weights, moments, projections and the step from a state file
  // written by save() for the same model and recipe.
  void resume(const std::string& path);
  // Runs steps until opt.steps (or stop_after more steps, when >= 0).
  void run(const std::function<void(const StepLog&)>& on_step, const std::function<void(const ValLog&)>& on_val,
           int64_t stop_after = -1);
  ValLog validate();
  // Re-reads the student's masks after they changed (gradual pruning) and
  // zeroes the newly removed weights and their moments.
  void refresh_masks();
  void save(const std::string& path);

  int64_t step() const { return step_; }
  int ranks() const { return comm_ ? comm_->size() : 1; }
  // Data-parallel runs: the gradient all-reduce so far (null alone).
  const ReduceStats* reduce_stats() const;
  size_t reduce_bytes_per_step() const;
  // CRC-32C of every parameter, AdamW moment and mask (what a state holds).
  uint32_t state_checksum();
  // Fails naming the step when the ranks' states differ (a no-op alone).
  void check_ranks_agree();
  // On the GPU: device activations and loss buffers.
  size_t activation_bytes() const { return gpu_ ? gpu_->activation_bytes() : objective_.activation_bytes(); }
  size_t state_bytes() const;  // weights + gradients + moments
  // Stored in the state's metadata (the recipe, stage name).
  std::string meta_json = "{}";

 private:
  // What a state file holds: every parameter, its two AdamW moments and its
  // mask (as 0/1 values in mask_values_, when it has one).
  NamedTensors state_tensors();
  void zero_masked(bool grads);  // the removed entries of every gradient (or value)
  void sync_host();              // GPU runs: the device's parameters and moments into the host's
  void broadcast_state();        // rank 0's state to every rank
  void resume_here(const std::string& path);
  void apply_mask_values();      // mask_values_ (as state_tensors() left them) into the student's masks
  std::vector<std::vector<Tensor*>> gradient_groups();

  Model& student_;
  TrainOptions opt_;
  const TokenDataset& data_;
  int bos_;
  dist::Communicator* comm_;  // null: alone
  StepShard shard_;
  Objective objective_;
  Model grads_;
  std::vector<Tensor> proj_grads_;
  std::unique_ptr<FakeQuant> fq_;
  ParamSet params_;
  std::unique_ptr<AdamW> adam_;
  int64_t step_ = 0;
  std::vector<int> inputs_, targets_;
  std::vector<const std::vector<uint64_t>*> masks_;  // parallel to params_ (null: dense)
  std::vector<Tensor> mask_values_;
  std::unique_ptr<GpuTrainer> gpu_;  // set when opt.device is a GPU
  std::unique_ptr<GradientReducer> reducer_;  // CPU ranks
  std::unique_ptr<dist::DeviceAllReduce> own_device_ar_;
  dist::DeviceAllReduce* device_ar_ = nullptr;  // GPU ranks (own_device_ar_ or the options')
  std::unique_ptr<ReduceStats> device_stats_;
};

}  // namespace condense::train
