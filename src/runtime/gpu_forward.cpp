#include "runtime/gpu_forward.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "kernels/gpu/device_memory.h"
#include "runtime/linear_parts.h"

#ifdef CONDENSE_HAVE_GPU
#include "kernels/gpu/paged_attention.h"
#include "kernels/gpu/qgemv.h"
#include "kernels/gpu/transformer_ops.h"
#endif

namespace condense {

#ifndef CONDENSE_HAVE_GPU

std::unique_ptr<GpuForward> make_gpu_forward(const Model&, Device d, const ops::RopeTable&, kernels::KvCode, int64_t,
                                             const std::vector<float>&, const std::vector<float>&) {
  std::string why;
  device_usable(d, &why);
  fail("engine", std::string("cannot run on ") + device_name(d) + ": " + why, "Use --device cpu");
}

#else

namespace gpu = kernels::gpu;

namespace {

int64_t round4(int64_t n) { return (n + 3) / 4 * 4; }

// One linear (possibly several weights side by side: q/k/v, gate/up), each
// part its own matrix writing its columns of the output.
struct GpuLinear {
  struct Part {
    gpu::GpuQMatrix w;
    int64_t col0 = 0;
    gpu::DeviceBuffer codes, scales, zeros;
  };
  std::vector<Part> parts;
  int64_t n = 0, k = 0;
  size_t bytes = 0;
  std::string describe;

  void apply(const float* x, int64_t m, int64_t ldx, float* y, int64_t ldy, gpu::Stream& s) const {
    for (const Part& p : parts) gpu::linear(x, m, ldx, p.w, y + p.col0, ldy, s);
  }
};

gpu::GCode gcode(kernels::WCode c) {
  switch (c) {
    case kernels::WCode::I8: return gpu::GCode::I8;
    case kernels::WCode::I4: return gpu::GCode::I4;
    case kernels::WCode::E4M3: return gpu::GCode::E4M3;
    default: return gpu::GCode::F32;
  }
}

// Host-side packed form of one part before upload.
struct HostPart {
  gpu::GpuQMatrix w;  // pointers unset
  std::vector<uint8_t> codes, zeros;
  std::vector<float> scales;
};

// Parts with one scheme (same encoding, group and zero points; not per-tensor,
// whose single scales differ) become one matrix: one launch for q/k/v or gate/up.
bool fusable(const gpu::GpuQMatrix& a, const gpu::GpuQMatrix& b) {
  return a.code == b.code && a.k == b.k && a.group == b.group && a.asym == b.asym && !a.per_tensor && !b.per_tensor;
}

GpuLinear upload_linear(const Model& m, const std::vector<std::pair<std::string, const Tensor*>>& weights,
                        const std::vector<int64_t>& rows, int64_t cols, gpu::Stream& s) {
  GpuLinear L;
  L.k = cols;
  std::vector<HostPart> host;
  for (size_t i = 0; i < weights.size(); ++i) {
    const LinearSource src = linear_source(m, weights[i].first, *weights[i].second, rows[i], cols, false);
    const ops::LinearPart& p = src.part;
    HostPart h;
    gpu::GpuQMatrix& w = h.w;
    w.code = p.f32 ? gpu::GCode::F32 : gcode(p.code);
    w.n = rows[i];
    w.k = cols;
    w.per_tensor = p.per_tensor;
    w.group = p.group > 0 ? p.group : cols;
    w.asym = p.asym;
    w.row_bytes = gpu::gpu_row_bytes(w.code, cols);
    const void* elements = p.f32 ? static_cast<const void*>(p.f32) : static_cast<const void*>(src.codes.empty() ? p.codes : src.codes.data());
    h.codes = gpu::pack_gpu_codes(w.code, w.n, cols, elements);
    if (!p.f32) {
      const size_t ns = size_t(w.scale_count());
      h.scales.assign(p.scales, p.scales + ns);
      if (w.asym) h.zeros.assign(p.zeros, p.zeros + ns);
    }
    const std::string d = p.f32 ? "f32"
                                : std::string(w.code == gpu::GCode::I8 ? "int8" : w.code == gpu::GCode::I4 ? "int4" : "fp8") +
                                      (w.per_tensor ? " per-tensor" : p.group > 0 ? " g" + std::to_string(p.group) : " per-channel") +
                                      (w.asym ? " asym" : "");
    if (L.describe.find(d) == std::string::npos) L.describe += (L.describe.empty() ? "" : "+") + d;
    if (!host.empty() && fusable(host.back().w, w)) {
      HostPart& prev = host.back();
      prev.w.n += w.n;
      prev.codes.insert(prev.codes.end(), h.codes.begin(), h.codes.end());
      prev.scales.insert(prev.scales.end(), h.scales.begin(), h.scales.end());
      prev.zeros.insert(prev.zeros.end(), h.zeros.begin(), h.zeros.end());
    } else {
      host.push_back(std::move(h));
    }
  }
  for (HostPart& h : host) {
    GpuLinear::Part part;
    part.w = h.w;
    part.codes = gpu::upload(h.codes.data(), h.codes.size(), s);
    part.w.codes = part.codes.data();
    if (!h.scales.empty()) {
      part.scales = gpu::upload(h.scales.data(), h.scales.size() * 4, s);
      part.w.scales = part.scales.as<float>();
    }
    if (!h.zeros.empty()) {
      part.zeros = gpu::upload(h.zeros.data(), h.zeros.size(), s);
      part.w.zeros = part.zeros.as<uint8_t>();
    }
    part.col0 = L.n;
    L.n += part.w.n;
    L.bytes += part.codes.bytes() + part.scales.bytes() + part.zeros.bytes();
    L.parts.push_back(std::move(part));
  }
  return L;
}

gpu::GKv gkv(kernels::KvCode c) { return static_cast<gpu::GKv>(static_cast<uint8_t>(c)); }

class GpuForwardImpl final : public GpuForward {
 public:
  GpuForwardImpl(const Model& m, Device device, const ops::RopeTable& rope, kernels::KvCode kv_code,
                 int64_t kv_blocks, const std::vector<float>& k_scales, const std::vector<float>& v_scales)
      : cfg_(m.config), device_(device) {
    const int64_t d = cfg_.dim, qd = cfg_.q_dim(), kvd = cfg_.kv_dim(), f = cfg_.ffn_dim;
    auto up_f32 = [&](const Tensor& t) { return gpu::upload(t.f32(), t.nbytes(), s_); };
    const bool tied = cfg_.tied_embeddings;
    head_ = upload_linear(m, {{tied ? "model.embed_tokens.weight" : "lm_head.weight", &m.head()}}, {cfg_.vocab}, d, s_);
    if (!tied) embed_ = upload_linear(m, {{"model.embed_tokens.weight", &m.embed}}, {cfg_.vocab}, d, s_);
    final_norm_ = up_f32(m.final_norm);
    for (size_t li = 0; li < m.layers.size(); ++li) {
      const LayerWeights& w = m.layers[li];
      const std::string p = "model.layers." + std::to_string(li) + ".";
      Layer l;
      l.attn_norm = up_f32(w.attn_norm);
      l.ffn_norm = up_f32(w.ffn_norm);
      l.qkv = upload_linear(m, {{p + "self_attn.q_proj.weight", &w.wq}, {p + "self_attn.k_proj.weight", &w.wk}, {p + "self_attn.v_proj.weight", &w.wv}},
                            {qd, kvd, kvd}, d, s_);
      l.o = upload_linear(m, {{p + "self_attn.o_proj.weight", &w.wo}}, {d}, qd, s_);
      l.gate_up = upload_linear(m, {{p + "mlp.gate_proj.weight", &w.w_gate}, {p + "mlp.up_proj.weight", &w.w_up}}, {f, f}, d, s_);
      l.down = upload_linear(m, {{p + "mlp.down_proj.weight", &w.w_down}}, {d}, f, s_);
      if (cfg_.qkv_bias) {
        std::vector<float> b(size_t(qd + 2 * kvd));
        std::memcpy(b.data(), w.bq.f32(), size_t(qd) * 4);
        std::memcpy(b.data() + qd, w.bk.f32(), size_t(kvd) * 4);
        std::memcpy(b.data() + qd + kvd, w.bv.f32(), size_t(kvd) * 4);
        l.bias = gpu::upload(b.data(), b.size() * 4, s_);
      }
      if (m.activations.type == DType::F8E4M3)
        for (int si = 0; si < ActivationQuant::kSites; ++si) l.act_scale[si] = m.activations.scale(int(li), si);
      layers_.push_back(std::move(l));
    }
    act_ = m.activations.type == DType::I8 ? gpu::ActQuant::Int8PerRow
           : m.activations.type == DType::F8E4M3 ? gpu::ActQuant::E4M3Static
                                                 : gpu::ActQuant::None;
    head_a8_ = m.activations.type == DType::I8 && m.activations.head;
    rope_cos_ = up_f32(rope.cos);
    rope_sin_ = up_f32(rope.sin);
    max_pos_ = rope.cos.dim(0);
    kv_code_ = kv_code;
    kv_blocks_ = kv_blocks;
    block_bytes_ = kernels::kv_block_bytes(kv_code, cfg_.n_kv_heads, cfg_.head_dim, 16);
    kv_ = gpu::DeviceBuffer(size_t(kv_blocks_ * block_bytes_ * cfg_.n_layers));
    if (!k_scales.empty()) {
      k_scales_ = gpu::upload(k_scales.data(), k_scales.size() * 4, s_);
      v_scales_ = gpu::upload(v_scales.data(), v_scales.size() * 4, s_);
    }
  }

  void step(const GpuStepRows& r, float* logits) override {
    const int64_t R = int64_t(r.tokens.size()), NL = int64_t(r.logit_rows.size());
    ensure(R, NL, int64_t(r.tables.size()));
    const int64_t d = cfg_.dim, qd = cfg_.q_dim(), kvd = cfg_.kv_dim(), f = cfg_.ffn_dim, hd = cfg_.head_dim;
    for (int32_t p : r.pos)
      if (p >= max_pos_) fail("engine", "position " + std::to_string(p) + " is past the RoPE table of " + std::to_string(max_pos_));
    gpu::copy_h2d(tokens_.data(), r.tokens.data(), size_t(R) * 4, s_);
    gpu::copy_h2d(pos_.data(), r.pos.data(), size_t(R) * 4, s_);
    gpu::copy_h2d(toff_.data(), r.table_off.data(), size_t(R) * 4, s_);
    gpu::copy_h2d(tables_.data(), r.tables.data(), r.tables.size() * 4, s_);
    if (NL) gpu::copy_h2d(lrows_.data(), r.logit_rows.data(), size_t(NL) * 4, s_);
    gpu::GpuRows rows{R, pos_.as<int32_t>(), toff_.as<int32_t>(), tables_.as<int32_t>()};

    float* x = x_.as<float>();
    float* xn = xn_.as<float>();
    float* qkv = qkv_.as<float>();
    float* att = att_.as<float>();
    float* gu = gu_.as<float>();
    float* tmp = tmp_.as<float>();
    const GpuLinear& table = cfg_.tied_embeddings ? head_ : embed_;
    for (const auto& p : table.parts) gpu::decode_rows(p.w, tokens_.as<int32_t>(), R, x, ld_d_, s_);
    for (size_t li = 0; li < layers_.size(); ++li) {
      const Layer& l = layers_[li];
      gpu::GpuKvLayer kv;
      kv.code = gkv(kv_code_);
      kv.base = kv_.as<uint8_t>() + int64_t(li) * kv_blocks_ * block_bytes_;
      kv.block_bytes = block_bytes_;
      kv.n_kv = cfg_.n_kv_heads;
      kv.hd = int(hd);
      kv.block_tokens = 16;
      if (k_scales_.data()) {
        kv.k_scale = k_scales_.as<float>() + li * size_t(cfg_.n_kv_heads);
        kv.v_scale = v_scales_.as<float>() + li * size_t(cfg_.n_kv_heads);
      }
      gpu::rmsnorm(x, ld_d_, R, d, l.attn_norm.as<float>(), cfg_.norm_eps, xn, ld_d_, s_);
      gpu::fake_quant_rows(xn, ld_d_, R, d, act_, l.act_scale[0], s_);
      l.qkv.apply(xn, R, ld_d_, qkv, ld_qkv_, s_);
      if (l.bias.data()) gpu::add_bias(qkv, ld_qkv_, R, qd + 2 * kvd, l.bias.as<float>(), s_);
      gpu::rope(qkv, ld_qkv_, R, 0, cfg_.n_heads, int(hd), rows.pos, rope_cos_.as<float>(), rope_sin_.as<float>(), s_);
      gpu::rope(qkv + qd, ld_qkv_, R, 0, cfg_.n_kv_heads, int(hd), rows.pos, rope_cos_.as<float>(), rope_sin_.as<float>(), s_);
      gpu::kv_write(kv, rows, qkv + qd, ld_qkv_, qkv + qd + kvd, ld_qkv_, s_);
      gpu::attention(qkv, ld_qkv_, cfg_.n_heads, kv, rows, att, ld_q_, s_);
      gpu::fake_quant_rows(att, ld_q_, R, qd, act_, l.act_scale[1], s_);
      l.o.apply(att, R, ld_q_, tmp, ld_d_, s_);
      gpu::add(x, ld_d_, tmp, ld_d_, R, d, s_);
      gpu::rmsnorm(x, ld_d_, R, d, l.ffn_norm.as<float>(), cfg_.norm_eps, xn, ld_d_, s_);
      gpu::fake_quant_rows(xn, ld_d_, R, d, act_, l.act_scale[2], s_);
      l.gate_up.apply(xn, R, ld_d_, gu, ld_gu_, s_);
      gpu::silu_mul(gu, ld_gu_, gu + f, ld_gu_, R, f, gu, ld_gu_, s_);
      gpu::fake_quant_rows(gu, ld_gu_, R, f, act_, l.act_scale[3], s_);
      l.down.apply(gu, R, ld_gu_, tmp, ld_d_, s_);
      gpu::add(x, ld_d_, tmp, ld_d_, R, d, s_);
    }
    if (NL) {
      // Gather the rows that need logits (x read as an f32 matrix), norm, head.
      gpu::GpuQMatrix xm;
      xm.code = gpu::GCode::F32;
      xm.n = R;
      xm.k = d;
      xm.group = d;
      xm.row_bytes = ld_d_ * 4;
      xm.codes = x;
      gpu::decode_rows(xm, lrows_.as<int32_t>(), NL, tmp, ld_d_, s_);
      gpu::rmsnorm(tmp, ld_d_, NL, d, final_norm_.as<float>(), cfg_.norm_eps, xn, ld_d_, s_);
      if (head_a8_) gpu::fake_quant_rows(xn, ld_d_, NL, d, gpu::ActQuant::Int8PerRow, 1.f, s_);
      head_.apply(xn, NL, ld_d_, logits_.as<float>(), cfg_.vocab, s_);
      gpu::copy_d2h(logits, logits_.data(), size_t(NL) * size_t(cfg_.vocab) * 4, s_);
    }
    s_.synchronize();
  }

  void copy_blocks(const std::vector<int32_t>& from, const std::vector<int32_t>& to) override {
    for (int l = 0; l < cfg_.n_layers; ++l) {
      uint8_t* base = kv_.as<uint8_t>() + int64_t(l) * kv_blocks_ * block_bytes_;
      for (size_t i = 0; i < to.size() && i < from.size(); ++i)
        gpu::copy_d2d(base + int64_t(to[i]) * block_bytes_, base + int64_t(from[i]) * block_bytes_, size_t(block_bytes_), s_);
    }
    s_.synchronize();
  }

  size_t weight_bytes() const override {
    size_t b = head_.bytes + embed_.bytes + final_norm_.bytes();
    for (const Layer& l : layers_)
      b += l.qkv.bytes + l.o.bytes + l.gate_up.bytes + l.down.bytes + l.attn_norm.bytes() + l.ffn_norm.bytes();
    return b;
  }
  size_t decode_weight_bytes() const override {
    size_t b = head_.bytes + size_t(cfg_.dim) * 4;
    for (const Layer& l : layers_) b += l.qkv.bytes + l.o.bytes + l.gate_up.bytes + l.down.bytes;
    return b;
  }
  size_t kv_bytes() const override { return kv_.bytes(); }
  std::string describe() const override {
    std::string blocks;
    for (const Layer& l : layers_)
      for (const GpuLinear* p : {&l.qkv, &l.o, &l.gate_up, &l.down})
        if (blocks.find(p->describe) == std::string::npos) blocks += (blocks.empty() ? "" : ", ") + p->describe;
    return std::string(device_name(device_)) + " (" + gpu::backend_name() + "): blocks: " + blocks + "; head: " + head_.describe;
  }

 private:
  struct Layer {
    gpu::DeviceBuffer attn_norm, ffn_norm, bias;
    GpuLinear qkv, o, gate_up, down;
    float act_scale[ActivationQuant::kSites] = {1, 1, 1, 1};
  };

  // Scratch for R rows (grown, never shrunk: the pool keeps the blocks).
  void ensure(int64_t R, int64_t NL, int64_t n_tables) {
    ld_d_ = round4(cfg_.dim);
    ld_q_ = round4(cfg_.q_dim());
    ld_qkv_ = round4(cfg_.q_dim() + 2 * int64_t(cfg_.kv_dim()));
    ld_gu_ = round4(2 * int64_t(cfg_.ffn_dim));
    if (R > rows_cap_) {
      const int64_t c = std::max<int64_t>(R, 2 * rows_cap_);
      x_ = gpu::DeviceBuffer(size_t(c * ld_d_) * 4);
      xn_ = gpu::DeviceBuffer(size_t(c * ld_d_) * 4);
      tmp_ = gpu::DeviceBuffer(size_t(c * ld_d_) * 4);
      qkv_ = gpu::DeviceBuffer(size_t(c * ld_qkv_) * 4);
      att_ = gpu::DeviceBuffer(size_t(c * ld_q_) * 4);
      gu_ = gpu::DeviceBuffer(size_t(c * ld_gu_) * 4);
      tokens_ = gpu::DeviceBuffer(size_t(c) * 4);
      pos_ = gpu::DeviceBuffer(size_t(c) * 4);
      toff_ = gpu::DeviceBuffer(size_t(c) * 4);
      lrows_ = gpu::DeviceBuffer(size_t(c) * 4);
      logits_ = gpu::DeviceBuffer(size_t(c) * size_t(cfg_.vocab) * 4);
      rows_cap_ = c;
    }
    if (NL > rows_cap_) fail("engine", "more logit rows than rows");
    if (n_tables > tables_cap_) {
      tables_cap_ = std::max<int64_t>(n_tables, 2 * tables_cap_);
      tables_ = gpu::DeviceBuffer(size_t(tables_cap_) * 4);
    }
  }

  ModelConfig cfg_;
  Device device_;
  gpu::Stream s_;
  GpuLinear head_, embed_;
  gpu::DeviceBuffer final_norm_, rope_cos_, rope_sin_, kv_, k_scales_, v_scales_;
  std::vector<Layer> layers_;
  gpu::ActQuant act_ = gpu::ActQuant::None;
  bool head_a8_ = false;
  int64_t max_pos_ = 0;
  kernels::KvCode kv_code_ = kernels::KvCode::F32;
  int64_t kv_blocks_ = 0, block_bytes_ = 0;
  int64_t rows_cap_ = 0, tables_cap_ = 0;
  int64_t ld_d_ = 0, ld_q_ = 0, ld_qkv_ = 0, ld_gu_ = 0;
  gpu::DeviceBuffer x_, xn_, tmp_, qkv_, att_, gu_, tokens_, pos_, toff_, lrows_, logits_, tables_;
};

}  // namespace

std::unique_ptr<GpuForward> make_gpu_forward(const Model& m, Device device, const ops::RopeTable& rope,
                                             kernels::KvCode kv_code, int64_t kv_blocks, const std::vector<float>& k_scales,
                                             const std::vector<float>& v_scales) {
  std::string why;
  if (!device_usable(device, &why)) fail("engine", std::string("cannot run on ") + device_name(device) + ": " + why, "Use --device cpu");
  try {
    return std::make_unique<GpuForwardImpl>(m, device, rope, kv_code, kv_blocks, k_scales, v_scales);
  } catch (const kernels::gpu::GpuError& e) {
    fail("engine", std::string("loading the model onto ") + device_name(device) + ": " + e.what());
  }
}

#endif

}  // namespace condense
