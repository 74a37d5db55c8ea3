// Engine: runs a Model's forward pass on the CPU over a paged KV cache
// (runtime/kv_pool.h), weights in their stored encodings (runtime/
// linear_parts.h). step() advances several sequences at once: each brings
// n >= 1 new tokens (a prefill chunk or one decode token) at its own position;
// all rows go through every linear together, attention runs per sequence over
// its own blocks, logits come back per sequence. A sequence's results do not
// depend on the other sequences in the batch (every kernel reduces a row the
// same way whatever the batch). Not thread-safe.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "core/ops/linear.h"
#include "core/ops/transformer.h"
#include "model/model.h"
#include "runtime/kv_pool.h"

namespace condense {

struct EngineOptions {
  int max_seq = 0;            // positions per sequence; <= 0: the config's
  int64_t kv_blocks = 0;      // KV pool size in 16-position blocks; <= 0: kv_bytes, else one max_seq sequence
  std::string kv_dtype;       // "" : the checkpoint's (calibrated fp8/int8), else f32; or f32|f16|bf16|fp8|int8
  size_t kv_bytes = 0;        // with kv_blocks <= 0: as many blocks as fit in this many bytes (at least one)
  Device device = Device::CPU;  // CUDA / HIP: weights, KV cache and the forward pass on the GPU (runtime/gpu_forward.h)
};

class GpuForward;

class Engine {
 public:
  // Packs the weights (the Model may be dropped afterwards) and allocates the
  // KV pool. Sequence 0 exists from the start (forward() uses it).
  Engine(const Model& model, const EngineOptions& opt);
  explicit Engine(const Model& model, int max_seq = 0) : Engine(model, EngineOptions{max_seq, 0, ""}) {}
  ~Engine();
  Engine(Engine&&) noexcept;
  Device device() const { return device_; }

  const ModelConfig& config() const { return cfg_; }
  int max_seq() const { return max_seq_; }

  // Sequences: ids are small integers, reused after drop_sequence().
  int add_sequence();
  void drop_sequence(int seq);
  // A new sequence holding a copy of `seq`'s positions (its own blocks).
  int fork_sequence(int seq);
  // Forgets positions >= len (their blocks go back to the pool).
  void truncate(int seq, int len);
  int length(int seq) const;

  struct SeqStep {
    int seq;
    const int* tokens;  // n tokens at positions length(seq) .. length(seq) + n - 1
    int n;
    float* logits;      // [n_logits, vocab] for the last n_logits of the n tokens (may be null when 0)
    int n_logits;
  };
  void step(const std::vector<SeqStep>& batch);

  // One sequence (0): n tokens at positions pos .. pos + n - 1, forgetting
  // whatever it held at pos and after; pos must not exceed what it holds.
  void forward(const int* tokens, int n, int pos, float* logits, int n_logits);

  // Bytes of weights one decode step reads (linears, head, one embedding row).
  size_t decode_weight_bytes() const;
  size_t weight_bytes() const;  // everything the engine holds for weights
  // Multiply-adds of the linears (and head) per token: in f32 FMAs, and in
  // int8 dot products (the integer-activation kernels).
  void macs_per_token(int64_t* f32_macs, int64_t* int8_macs, int64_t* int16_macs) const;
  bool head_integer() const { return head_.integer_activations(); }  // the head's macs are int8 ones
  bool head_int16() const { return head_.int16_activations(); }      // the head's macs are int16 ones
  // What the linear kernels run, e.g. "blocks: int4 g32 x int8; head: int8 per-channel".
  std::string describe_linears() const;
  const KvPool& kv() const { return kv_; }

 private:
  struct Layer {
    Tensor attn_norm, ffn_norm, qkv_bias;  // qkv_bias undefined unless config.qkv_bias
    ops::PackedLinear qkv, o, gate_up, down;
    float act_scale[ActivationQuant::kSites] = {1, 1, 1, 1};  // static fp8 input scales
  };
  struct Seq {
    bool live = false;
    int len = 0;
    std::vector<int32_t> blocks;
  };
  // Applies the model's activation quantization to the input of site `site`
  // (read by `consumer`), unless the consumer's kernels quantize it themselves.
  void quantize_input(const Layer& l, int site, ops::Mat x, const ops::PackedLinear& consumer) const;
  void ensure_scratch(int n);
  Seq& seq(int id);

  void init_kv(const Model& m, const EngineOptions& opt);
  void step_gpu(const std::vector<SeqStep>& batch, int total_logits);
  // A multi-sequence step's logits_ rows, to each sequence's buffer.
  void scatter_logits(const std::vector<SeqStep>& batch) const;

  ModelConfig cfg_;
  int max_seq_;
  Device device_ = Device::CPU;
  std::unique_ptr<GpuForward> gpu_;
  Tensor embed_, final_norm_;             // embed_ undefined when the table is quantized:
  ops::PackedLinear embed_packed_;        // then rows come from here (or from head_ when tied)
  bool embed_from_head_ = false;
  std::vector<Layer> layers_;
  ops::PackedLinear head_;
  ops::RopeTable rope_;
  DType act_type_ = DType::F32;
  bool head_a8_ = false;  // the head's input quantized per token (int8 activations with `head`)
  KvPool kv_;
  std::vector<Seq> seqs_;
  int scratch_rows_ = 0;
  Tensor x_, xn_, qkv_, att_, gu_, tmp_;
  std::vector<float> logits_;  // head output of a multi-sequence step
};

}  // namespace condense
