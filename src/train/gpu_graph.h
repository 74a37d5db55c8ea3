// GpuGraph: train/model_graph.h's forward and backward of a Llama-family
// model on the GPU (CUDA or HIP builds only). The same batch of `batch`
// sequences of `seq` tokens, the same saved activations, the same order of
// operations; weights, gradients and activations are device memory, and
// everything runs on one stream. GEMMs are f32 (cuBLAS without TF32; HIP:
// condense's tiled kernel) or, with bf16, take bf16 copies of both operands
// and accumulate in f32 (mixed precision: f32 master weights stay with the
// optimizer; bf16 has f32's exponent range, so no loss scaling is needed).
#pragma once
#include <functional>
#include <vector>

#include "kernels/gpu/device_memory.h"
#include "model/config.h"

namespace condense::train {

namespace gpu = kernels::gpu;

// Device pointers of one model's tensors (weights, or their gradients), as
// model/model.h lays them out; biases are null without qkv_bias.
struct GpuLayer {
  float *attn_norm = nullptr, *wq = nullptr, *wk = nullptr, *wv = nullptr, *wo = nullptr, *bq = nullptr, *bk = nullptr,
        *bv = nullptr, *ffn_norm = nullptr, *w_gate = nullptr, *w_up = nullptr, *w_down = nullptr;
};
struct GpuModel {
  float* embed = nullptr;
  std::vector<GpuLayer> layers;
  float* final_norm = nullptr;
  float* head = nullptr;  // embed when tied
};

// C = alpha op(A) op(B) + beta C on the stream, row-major, in the graph's
// precision. Keeps the bf16 copies' scratch between calls.
class GpuMatmul {
 public:
  GpuMatmul(bool bf16, gpu::Stream& s) : bf16_(bf16), s_(s) {}
  void operator()(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda, const float* b,
                  int64_t ldb, float beta, float* c, int64_t ldc);
  bool bf16() const { return bf16_; }

 private:
  bool bf16_;
  gpu::Stream& s_;
  gpu::DeviceBuffer a16_, b16_;
};

class GpuGraph {
 public:
  using Hook = std::function<void(int layer, float* x)>;  // x: [rows, dim] device

  GpuGraph(const ModelConfig& cfg, int batch, int seq, bool keep_activations, GpuMatmul& mm, gpu::Stream& s);
  int rows() const { return batch_ * seq_; }
  // tokens: [rows] device ids (checked against the vocabulary by the caller);
  // host_tokens the same ids on the host (backward groups the embedding's rows
  // by id). Returns the final-normed hidden states [rows, dim] (device).
  float* forward(const GpuModel& w, const int32_t* tokens, const int* host_tokens, const Hook& on_output = {});
  // As ModelGraph::backward: d_final is overwritten; gradients are added into g.
  void backward(const GpuModel& w, float* d_final, const GpuModel& g, const Hook& inject = {});
  size_t activation_bytes() const;

 private:
  struct Saved {
    gpu::DeviceBuffer x_in, xn1, q, k, v, att, x_mid, xn2, gate, up, h;  // k, v head-major [batch][n_kv][seq][hd]
  };
  void run_block(const GpuLayer& w, Saved& s, float* out);

  ModelConfig cfg_;
  int batch_, seq_;
  bool keep_;
  GpuMatmul& mm_;
  gpu::Stream& s_;
  std::vector<Saved> saved_;
  gpu::DeviceBuffer x_final_, xn_final_, k_rows_, v_rows_, pos_, cos_, sin_;
  gpu::DeviceBuffer dx_, dxn_, dh_, dq_, dk_rows_, dv_rows_, dk_, dv_, scratch_;
  // the embedding's rows grouped by token id (host, then device)
  std::vector<int32_t> unique_, offsets_, positions_;
  gpu::DeviceBuffer d_unique_, d_offsets_, d_positions_;
};

}  // namespace condense::train
