#include "train/gpu_trainer.h"

#include "core/error.h"
#include "dist/device_allreduce.h"

#ifdef CONDENSE_HAVE_GPU
#include <algorithm>
#include <cmath>
#include <optional>
#include <unordered_map>

#include "kernels/gpu/train_ops.h"
#include "kernels/gpu/train_step_ops.h"
#include "kernels/gpu/transformer_ops.h"
#include "kernels/gpu/weight_fake_quant.h"
#include "train/gpu_graph.h"
#endif

namespace condense::train {

#ifndef CONDENSE_HAVE_GPU

std::unique_ptr<GpuTrainer> make_gpu_trainer(const GpuTrainSetup& su) {
  std::string why;
  device_usable(su.device, &why);
  fail("train", std::string("cannot train on ") + device_name(su.device) + ": " + why, "Use --device cpu");
}

#else

namespace {

float* F(const gpu::DeviceBuffer& b) { return b.as<float>(); }

gpu::FakeQuantLayout fq_layout(const QuantScheme& s, int64_t rows, int64_t cols, int64_t num_scales) {
  gpu::FakeQuantLayout l;
  l.type = s.type == DType::I8 ? gpu::FakeQuantLayout::Int8 : s.type == DType::I4 ? gpu::FakeQuantLayout::Int4 : gpu::FakeQuantLayout::E4M3;
  l.granularity = s.granularity == Granularity::PerTensor    ? gpu::FakeQuantLayout::PerTensor
                  : s.granularity == Granularity::PerChannel ? gpu::FakeQuantLayout::PerChannel
                                                             : gpu::FakeQuantLayout::Group;
  l.symmetric = s.symmetric;
  l.group = s.group;
  l.qmin = s.qmin();
  l.qmax = s.qmax();
  l.rows = rows;
  l.cols = cols;
  l.num_scales = num_scales;
  return l;
}

class Impl final : public GpuTrainer {
 public:
  explicit Impl(const GpuTrainSetup& su);
  void zero_grads() override;
  LossReport run(const int* inputs, const int* targets, float scale, bool grads) override;
  double finish_gradients() override;
  size_t allreduce_gradients(dist::DeviceAllReduce& ar) override;
  void scale_grads(float factor) override;
  std::string update(const AdamWStep& step) override;
  void to_host() override;
  void grads_to_host() override;
  void from_host() override;
  size_t activation_bytes() const override;

 private:
  struct DevParam {
    float* value = nullptr;
    float* grad = nullptr;
    gpu::DeviceBuffer m, v, mask;
    int64_t n = 0, partial_offset = 0;
  };
  struct DevFq {
    gpu::FakeQuantLayout layout;
    size_t param = 0;  // the latent's entry in params_ (its mask)
    float *latent = nullptr, *latent_grad = nullptr, *scale = nullptr, *scale_grad = nullptr, *weight = nullptr,
          *weight_grad = nullptr;
    gpu::DeviceBuffer eff, zeros;
    float gscale = 1.f;
  };

  // The device copy of a host tensor (null for an undefined one), made on first use.
  float* mirror(const Tensor* t);
  GpuModel model_of(const Model& m);
  void upload_masks();
  void fake_quant_forward();
  float* hidden_loss(size_t k, float* x, float scale, bool grads);

  GpuTrainSetup su_;
  const ObjectiveConfig& obj_;
  gpu::Stream s_;
  GpuMatmul mm_;
  std::unordered_map<const Tensor*, gpu::DeviceBuffer> mirrors_;
  GpuModel w_, g_, tw_;
  std::optional<GpuGraph> student_, teacher_;
  std::vector<DevParam> params_;
  gpu::DeviceBuffer partials_, norm_, flags_;
  int64_t n_partials_ = 0;
  std::vector<DevFq> fq_;
  gpu::DeviceBuffer fq_scratch_;
  // objective
  int64_t rows_ = 0, chunk_ = 0;
  gpu::DeviceBuffer tokens_, targets_, logits_, teacher_logits_, grad_tmp_, row_ce_, row_kl_, d_final_;
  std::vector<gpu::DeviceBuffer> teacher_hidden_, d_hidden_, hidden_r_;
  std::vector<int> proj_index_;
  gpu::DeviceBuffer hidden_partials_, hidden_sums_;
  int64_t hidden_blocks_ = 0;
  std::vector<int32_t> host_tokens_, host_targets_;
  std::vector<double> host_ce_, host_kl_, host_hidden_;
};

Impl::Impl(const GpuTrainSetup& su) : su_(su), obj_(*su.objective), mm_(su.bf16, s_) {
  const ModelConfig& cfg = su.student->config;
  const bool hidden = !obj_.hidden.empty() && obj_.hidden_beta > 0;
  const bool needs_teacher = obj_.token.kd > 0 || hidden;
  w_ = model_of(*su.student);
  g_ = model_of(*su.grads);
  student_.emplace(cfg, su.batch, su.seq, true, mm_, s_);
  if (needs_teacher && su.teacher) {
    tw_ = model_of(*su.teacher);
    teacher_.emplace(su.teacher->config, su.batch, su.seq, false, mm_, s_);
  }
  rows_ = int64_t(su.batch) * su.seq;
  chunk_ = std::min<int64_t>(std::max<int64_t>(1, obj_.loss_chunk), rows_);
  const int64_t vocab = cfg.vocab;
  tokens_ = gpu::DeviceBuffer(size_t(rows_) * 4);
  targets_ = gpu::DeviceBuffer(size_t(rows_) * 4);
  logits_ = gpu::DeviceBuffer(size_t(chunk_ * vocab) * 4);
  row_ce_ = gpu::DeviceBuffer(size_t(rows_) * 8);
  row_kl_ = gpu::DeviceBuffer(size_t(rows_) * 8);
  d_final_ = gpu::DeviceBuffer(size_t(rows_ * cfg.dim) * 4);
  if (obj_.token.kd > 0) {
    teacher_logits_ = gpu::DeviceBuffer(size_t(chunk_ * vocab) * 4);
    grad_tmp_ = gpu::DeviceBuffer(size_t(chunk_ * vocab) * 4);
  }
  if (hidden && teacher_) {
    const int64_t dt = su.teacher->config.dim;
    int pi = 0;
    for (const HiddenPair& p : obj_.hidden) {
      (void)p;
      const bool proj = obj_.hidden_projection || cfg.dim != dt;
      proj_index_.push_back(proj ? pi++ : -1);
      teacher_hidden_.emplace_back(size_t(rows_ * dt) * 4);
      hidden_r_.emplace_back(size_t(rows_ * dt) * 4);
      d_hidden_.emplace_back(size_t(rows_ * cfg.dim) * 4);
    }
    hidden_blocks_ = gpu::sum_squares_blocks(rows_ * dt);
    hidden_partials_ = gpu::DeviceBuffer(size_t(hidden_blocks_) * obj_.hidden.size() * 8);
    hidden_sums_ = gpu::DeviceBuffer(obj_.hidden.size() * 8);
  }
  // the optimizer's parameters: a weight's device copy is the one the graph reads
  for (size_t i = 0; i < su.params->params.size(); ++i) {
    const Param& p = su.params->params[i];
    DevParam d;
    d.value = mirror(p.value);
    d.grad = mirror(p.grad);
    d.n = p.value->numel();
    d.m = gpu::upload(su.adam->m()[i].f32(), su.adam->m()[i].nbytes(), s_);
    d.v = gpu::upload(su.adam->v()[i].f32(), su.adam->v()[i].nbytes(), s_);
    d.partial_offset = n_partials_;
    n_partials_ += gpu::sum_squares_blocks(d.n);
    params_.push_back(std::move(d));
  }
  partials_ = gpu::DeviceBuffer(size_t(std::max<int64_t>(1, n_partials_)) * 8);
  norm_ = gpu::DeviceBuffer(8);
  flags_ = gpu::DeviceBuffer(std::max<size_t>(1, params_.size()) * 4);
  upload_masks();
  if (su.fake_quant) {
    std::vector<const Tensor*> grad_tensors;
    for_each_weight(*su.grads, [&](const WeightRef& r) { grad_tensors.push_back(r.tensor); });
    int64_t scratch = 0;
    for (FakeQuant::Entry& e : su.fake_quant->entries()) {
      DevFq f;
      f.layout = fq_layout(e.wc->scheme, e.rows, e.cols, e.scale.numel());
      for (size_t i = 0; i < su.params->params.size(); ++i) {
        if (su.params->params[i].value == &e.latent) f.param = i;
      }
      f.latent = mirror(&e.latent);
      f.latent_grad = mirror(&e.latent_grad);
      f.scale = mirror(&e.scale);
      f.scale_grad = su.learn_scales ? mirror(&e.scale_grad) : nullptr;
      f.weight = mirror(e.weight);
      f.weight_grad = mirror(grad_tensors[e.weight_index]);
      f.eff = gpu::DeviceBuffer(size_t(e.scale.numel()) * 4);
      if (!e.wc->scheme.symmetric) f.zeros = gpu::upload(e.wc->zeros.data(), e.wc->zeros.size(), s_);
      const QuantScheme& qs = e.wc->scheme;
      const double per_scale = double(e.rows * e.cols) / double(e.scale.numel());
      f.gscale = float(1.0 / std::sqrt(per_scale * (qs.type == DType::F8E4M3 ? 448.0 : double(qs.qmax()))));
      if (su.learn_scales) scratch = std::max(scratch, gpu::weight_fake_quant_scratch(f.layout));
      fq_.push_back(std::move(f));
    }
    fq_scratch_ = gpu::DeviceBuffer(size_t(std::max<int64_t>(1, scratch)) * 4);
    fake_quant_forward();
  }
  s_.synchronize();
}

float* Impl::mirror(const Tensor* t) {
  if (!t || !t->defined()) return nullptr;
  auto it = mirrors_.find(t);
  if (it == mirrors_.end()) it = mirrors_.emplace(t, gpu::upload(t->f32(), t->nbytes(), s_)).first;
  return F(it->second);
}

GpuModel Impl::model_of(const Model& m) {
  GpuModel g;
  g.embed = mirror(&m.embed);
  for (const LayerWeights& l : m.layers) {
    g.layers.push_back({mirror(&l.attn_norm), mirror(&l.wq), mirror(&l.wk), mirror(&l.wv), mirror(&l.wo), mirror(&l.bq),
                        mirror(&l.bk), mirror(&l.bv), mirror(&l.ffn_norm), mirror(&l.w_gate), mirror(&l.w_up), mirror(&l.w_down)});
  }
  g.final_norm = mirror(&m.final_norm);
  g.head = m.config.tied_embeddings ? g.embed : mirror(&m.lm_head);
  return g;
}

void Impl::upload_masks() {
  const std::vector<const std::vector<uint64_t>*>& masks = *su_.masks;
  for (size_t i = 0; i < params_.size(); ++i) {
    if (i < masks.size() && masks[i] && !masks[i]->empty()) {
      params_[i].mask = gpu::upload(masks[i]->data(), masks[i]->size() * 8, s_);
    } else {
      params_[i].mask = gpu::DeviceBuffer();
    }
  }
}

void Impl::fake_quant_forward() {
  for (DevFq& f : fq_) {
    gpu::weight_fake_quant(f.layout, f.scale, F(f.eff), f.zeros.as<uint8_t>(), params_[f.param].mask.as<uint64_t>(), f.latent,
                           f.weight, s_);
  }
}

void Impl::zero_grads() {
  for (DevParam& p : params_) gpu::memset_async(p.grad, 0, size_t(p.n) * 4, s_);
}

// train/hidden_loss.cpp on the device: r = (P xs or xs) - xt, sum of squares
// into hidden_sums_[k], and with grads d_hidden_[k] (and P's gradient).
float* Impl::hidden_loss(size_t k, float* xs, float scale, bool grads) {
  const int64_t ds = su_.student->config.dim, dt = su_.teacher->config.dim, n = rows_ * dt;
  float* r = F(hidden_r_[k]);
  const int pi = proj_index_[k];
  float* P = pi >= 0 ? mirror(&(*su_.projections)[size_t(pi)]) : nullptr;
  if (P) mm_(false, true, rows_, dt, ds, 1.f, xs, ds, P, ds, 0.f, r, dt);
  else gpu::copy_d2d(r, xs, size_t(n) * 4, s_);
  gpu::axpy(r, F(teacher_hidden_[k]), n, -1.f, s_);
  double* part = hidden_partials_.as<double>() + int64_t(k) * hidden_blocks_;
  gpu::sum_squares(r, n, part, s_);
  gpu::reduce_partials(part, hidden_blocks_, hidden_sums_.as<double>() + k, s_);
  if (!grads) return nullptr;
  const float g = float(2.0 * obj_.hidden_beta * scale / double(n));
  float* d = F(d_hidden_[k]);
  if (P) {
    float* dP = mirror(&(*su_.projection_grads)[size_t(pi)]);
    mm_(true, false, dt, ds, rows_, g, r, dt, xs, ds, 1.f, dP, ds);
    mm_(false, false, rows_, ds, dt, g, r, dt, P, ds, 0.f, d, ds);
  } else {
    gpu::memset_async(d, 0, size_t(rows_ * ds) * 4, s_);
    gpu::axpy(d, r, n, g, s_);
  }
  return d;
}

LossReport Impl::run(const int* inputs, const int* targets, float scale, bool grads) {
  const ModelConfig& cfg = su_.student->config;
  const int64_t vocab = cfg.vocab, d = cfg.dim;
  host_tokens_.assign(inputs, inputs + rows_);
  host_targets_.assign(targets, targets + rows_);
  for (int64_t i = 0; i < rows_; ++i) {
    if (inputs[i] < 0 || inputs[i] >= vocab) {
      fail("train", "token id " + std::to_string(inputs[i]) + " is outside the vocabulary of " + std::to_string(vocab));
    }
  }
  gpu::copy_h2d(tokens_.data(), host_tokens_.data(), size_t(rows_) * 4, s_);
  gpu::copy_h2d(targets_.data(), host_targets_.data(), size_t(rows_) * 4, s_);
  const bool hidden = !hidden_r_.empty();
  float* xt = nullptr;
  if (teacher_) {
    xt = teacher_->forward(tw_, tokens_.as<int32_t>(), host_tokens_.data(), [&](int l, float* x) {
      for (size_t k = 0; k < obj_.hidden.size() && hidden; ++k) {
        if (obj_.hidden[k].teacher_layer == l) gpu::copy_d2d(teacher_hidden_[k].data(), x, teacher_hidden_[k].bytes(), s_);
      }
    });
  }
  float* xs = student_->forward(w_, tokens_.as<int32_t>(), host_tokens_.data(), [&](int l, float* x) {
    for (size_t k = 0; k < obj_.hidden.size() && hidden; ++k) {
      if (obj_.hidden[k].student_layer == l) hidden_loss(k, x, scale, grads);
    }
  });
  // the head and token losses, `chunk_` rows of logits at a time (train/lm_loss.cpp)
  int64_t scored = 0;
  for (int64_t i = 0; i < rows_; ++i) scored += targets[i] >= 0;
  const bool kd = obj_.token.kd > 0;
  float* head = w_.head;
  float* d_head = g_.head;
  if (scored == 0) {
    gpu::memset_async(d_final_.data(), 0, d_final_.bytes(), s_);
  } else {
    const float g = scale / float(scored);
    for (int64_t r0 = 0; r0 < rows_; r0 += chunk_) {
      const int64_t nr = std::min(chunk_, rows_ - r0);
      float* lg = F(logits_);
      const float* x = xs + r0 * d;
      const int32_t* tg = targets_.as<int32_t>() + r0;
      mm_(false, true, nr, vocab, d, 1.f, x, d, head, d, 0.f, lg, vocab);
      if (kd) {
        const int64_t dtc = su_.teacher->config.dim;
        float* tl = F(teacher_logits_);
        mm_(false, true, nr, vocab, dtc, 1.f, xt + r0 * dtc, dtc, tw_.head, dtc, 0.f, tl, vocab);
        gpu::copy_unscored_rows(lg, tg, nr, vocab, tl, s_);
        gpu::kl_divergence(tl, lg, nr, vocab, obj_.token.temperature, obj_.token.kd * g, grads ? F(grad_tmp_) : nullptr,
                           row_kl_.as<double>() + r0, s_);
      }
      gpu::cross_entropy(lg, tg, nr, vocab, obj_.token.ce * g, lg, row_ce_.as<double>() + r0, s_);
      if (!grads) continue;
      if (kd) gpu::add(lg, vocab, F(grad_tmp_), vocab, nr, vocab, s_);
      mm_(false, false, nr, d, vocab, 1.f, lg, vocab, head, d, 0.f, F(d_final_) + r0 * d, d);
      mm_(true, false, vocab, d, nr, 1.f, lg, vocab, x, d, 1.f, d_head, d);
    }
  }
  if (grads) {
    student_->backward(w_, F(d_final_), g_, [&](int l, float* dx) {
      for (size_t k = 0; k < obj_.hidden.size() && hidden; ++k) {
        if (obj_.hidden[k].student_layer == l) gpu::add(dx, d, F(d_hidden_[k]), d, rows_, d, s_);
      }
    });
  }
  host_ce_.assign(size_t(rows_), 0.0);
  host_kl_.assign(size_t(rows_), 0.0);
  host_hidden_.assign(hidden ? obj_.hidden.size() : 0, 0.0);
  if (scored > 0) {
    gpu::copy_d2h(host_ce_.data(), row_ce_.data(), size_t(rows_) * 8, s_);
    if (kd) gpu::copy_d2h(host_kl_.data(), row_kl_.data(), size_t(rows_) * 8, s_);
  }
  if (hidden) gpu::copy_d2h(host_hidden_.data(), hidden_sums_.data(), host_hidden_.size() * 8, s_);
  s_.synchronize();  // also: the host token vectors may change from here on
  LossReport rep;
  double ce = 0, kl = 0;
  for (int64_t i = 0; i < rows_; ++i) {
    ce += host_ce_[size_t(i)];
    kl += host_kl_[size_t(i)];
  }
  if (hidden) {
    const double n = double(rows_) * double(su_.teacher->config.dim);
    for (double s2 : host_hidden_) rep.hidden += obj_.hidden_beta * s2 / n;
  }
  rep.tokens = scored;
  rep.ce = scored ? ce / double(scored) : 0;
  rep.kd = scored ? kl / double(scored) : 0;
  rep.total = (scored ? (obj_.token.ce * ce + obj_.token.kd * kl) / double(scored) : 0.0) + rep.hidden;
  return rep;
}

size_t Impl::allreduce_gradients(dist::DeviceAllReduce& ar) {
  std::vector<std::pair<float*, size_t>> b;
  size_t bytes = 0;
  auto add = [&](const Tensor* t) {
    if (!t->defined()) return;
    b.push_back({mirror(t), size_t(t->numel())});
    bytes += t->nbytes();
  };
  for_each_weight(*su_.grads, [&](const WeightRef& r) { add(r.tensor); });
  if (su_.projection_grads) {
    for (const Tensor& t : *su_.projection_grads) add(&t);
  }
  ar.sum(b, s_.handle());
  return bytes;
}

double Impl::finish_gradients() {
  for (DevParam& p : params_) {
    if (p.mask.data()) gpu::apply_mask(p.grad, p.mask.as<uint64_t>(), p.n, s_);
  }
  for (DevFq& f : fq_) {
    gpu::weight_fake_quant_backward(f.layout, F(f.eff), f.zeros.as<uint8_t>(), params_[f.param].mask.as<uint64_t>(), f.latent,
                                    f.weight_grad, f.latent_grad, f.scale_grad, f.gscale, F(fq_scratch_), s_);
  }
  for (DevParam& p : params_) gpu::sum_squares(p.grad, p.n, partials_.as<double>() + p.partial_offset, s_);
  gpu::reduce_partials(partials_.as<double>(), n_partials_, norm_.as<double>(), s_);
  double ss = 0;
  gpu::copy_d2h(&ss, norm_.data(), 8, s_);
  s_.synchronize();
  return std::sqrt(ss);
}

void Impl::scale_grads(float factor) {
  for (DevParam& p : params_) gpu::scale(p.grad, p.n, factor, s_);
}

std::string Impl::update(const AdamWStep& c) {
  for (size_t i = 0; i < params_.size(); ++i) {
    DevParam& p = params_[i];
    const float decay = su_.params->params[i].decay ? c.decay : 1.f;
    gpu::adamw(p.value, p.grad, F(p.m), F(p.v), p.n, c.b1, c.b2, c.eps, c.step_size, c.inv_sqrt_bc2, decay, s_);
    if (p.mask.data()) gpu::apply_mask(p.value, p.mask.as<uint64_t>(), p.n, s_);
  }
  gpu::memset_async(flags_.data(), 0, flags_.bytes(), s_);
  for (size_t i = 0; i < params_.size(); ++i) gpu::flag_non_finite(params_[i].value, params_[i].n, flags_.as<int32_t>() + i, s_);
  std::vector<int32_t> flags(params_.size());
  gpu::copy_d2h(flags.data(), flags_.data(), flags.size() * 4, s_);
  s_.synchronize();
  for (size_t i = 0; i < flags.size(); ++i) {
    if (flags[i]) return su_.params->params[i].name;
  }
  fake_quant_forward();
  return "";
}

void Impl::to_host() {
  for (size_t i = 0; i < params_.size(); ++i) {
    const Param& p = su_.params->params[i];
    gpu::copy_d2h(p.value->f32(), params_[i].value, p.value->nbytes(), s_);
    gpu::copy_d2h(su_.adam->m()[i].f32(), params_[i].m.data(), su_.adam->m()[i].nbytes(), s_);
    gpu::copy_d2h(su_.adam->v()[i].f32(), params_[i].v.data(), su_.adam->v()[i].nbytes(), s_);
  }
  if (su_.fake_quant) {
    for (FakeQuant::Entry& e : su_.fake_quant->entries()) {
      gpu::copy_d2h(e.scale.f32(), mirror(&e.scale), e.scale.nbytes(), s_);  // clamped on the device
    }
  }
  s_.synchronize();
}

void Impl::grads_to_host() {
  for (size_t i = 0; i < params_.size(); ++i) {
    const Param& p = su_.params->params[i];
    gpu::copy_d2h(p.grad->f32(), params_[i].grad, p.grad->nbytes(), s_);
  }
  s_.synchronize();
}

void Impl::from_host() {
  for (size_t i = 0; i < params_.size(); ++i) {
    const Param& p = su_.params->params[i];
    gpu::copy_h2d(params_[i].value, p.value->f32(), p.value->nbytes(), s_);
    gpu::copy_h2d(params_[i].m.data(), su_.adam->m()[i].f32(), su_.adam->m()[i].nbytes(), s_);
    gpu::copy_h2d(params_[i].v.data(), su_.adam->v()[i].f32(), su_.adam->v()[i].nbytes(), s_);
  }
  if (su_.fake_quant) {
    for (FakeQuant::Entry& e : su_.fake_quant->entries()) gpu::copy_h2d(mirror(&e.scale), e.scale.f32(), e.scale.nbytes(), s_);
  }
  s_.synchronize();
  upload_masks();
  fake_quant_forward();
  s_.synchronize();
}

size_t Impl::activation_bytes() const {
  size_t b = student_->activation_bytes() + logits_.bytes() + teacher_logits_.bytes() + grad_tmp_.bytes() + d_final_.bytes();
  if (teacher_) b += teacher_->activation_bytes();
  for (const auto* v : {&teacher_hidden_, &d_hidden_, &hidden_r_}) {
    for (const gpu::DeviceBuffer& x : *v) b += x.bytes();
  }
  return b;
}

}  // namespace

std::unique_ptr<GpuTrainer> make_gpu_trainer(const GpuTrainSetup& su) {
  std::string why;
  if (!device_usable(su.device, &why)) fail("train", std::string("cannot train on ") + device_name(su.device) + ": " + why, "Use --device cpu");
  return std::make_unique<Impl>(su);
}

#endif  // CONDENSE_HAVE_GPU

}  // namespace condense::train
