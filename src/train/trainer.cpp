#include "train/trainer.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/json_text.h"
#include "dist/device_allreduce.h"
#include "dist/watchdog.h"
#include "io/crc32c.h"
#include "io/train_state.h"
#include "train/grad_reducer.h"

namespace condense::train {

Trainer::Trainer(Model& student, const Model* teacher, const ObjectiveConfig& objective, const TrainOptions& opt,
                 const TokenDataset& data, int bos)
    : student_(student), opt_(opt), data_(data), bos_(bos), comm_(opt.comm && opt.comm->size() > 1 ? opt.comm : nullptr),
      shard_(shard_step(opt.batch, opt.accum, comm_ ? comm_->rank() : 0, comm_ ? comm_->size() : 1)),
      // on a GPU the host objective only holds the projections: one row of activations is enough
      objective_(student.config, teacher, objective, opt.device == Device::CPU ? shard_.rows : 1, opt.seq) {
  if (opt.steps <= 0 || opt.accum <= 0) fail("Trainer", "steps and grad_accum must be positive");
  if (opt.bf16 && opt.device == Device::CPU) {
    fail("train", "precision bf16 (mixed precision) runs on a GPU only; the CPU trains in f32",
         "Use --device cuda|hip, or precision f32");
  }
  grads_ = zeros_model(student.config);
  params_ = model_params(student, grads_, opt.decay_all);
  if (opt.qat) {
    // the optimizer trains the latent weights; the model's tensors are their fake-quantized values
    fq_ = std::make_unique<FakeQuant>(student, opt.learn_scales);
    for (FakeQuant::Entry& e : fq_->entries()) {
      for (Param& p : params_.params) {
        if (p.name == e.name) {
          p.value = &e.latent;
          p.grad = &e.latent_grad;
        }
      }
      if (opt.learn_scales) params_.params.push_back({"qat_scale/" + e.name, &e.scale, &e.scale_grad, false});
    }
  }
  for (size_t i = 0; i < objective_.projections().size(); ++i) {
    proj_grads_.push_back(Tensor::zeros(DType::F32, objective_.projections()[i].shape()));
  }
  for (size_t i = 0; i < proj_grads_.size(); ++i) {
    params_.params.push_back({"hidden_projection." + std::to_string(i), &objective_.projections()[i], &proj_grads_[i], false});
  }
  adam_ = std::make_unique<AdamW>(params_, opt.adam);
  refresh_masks();
  // GPU ranks: each its own GPU, gradients summed there (NCCL), before anything is allocated
  if (opt.device != Device::CPU && comm_ && !opt.device_allreduce) own_device_ar_ = dist::make_device_allreduce(*comm_);
  if (opt.device != Device::CPU && comm_) device_ar_ = opt.device_allreduce ? opt.device_allreduce : own_device_ar_.get();
  if (opt.device != Device::CPU) {
    GpuTrainSetup su;
    su.device = opt.device;
    su.bf16 = opt.bf16;
    su.student = &student;
    su.teacher = teacher;
    su.objective = &objective_.config();
    su.batch = shard_.rows;
    su.seq = opt.seq;
    su.params = &params_;
    su.adam = adam_.get();
    su.fake_quant = fq_.get();
    su.learn_scales = opt.learn_scales;
    su.projections = &objective_.projections();
    su.projection_grads = &proj_grads_;
    su.masks = &masks_;
    su.grads = &grads_;
    gpu_ = make_gpu_trainer(su);
  }
  inputs_.resize(size_t(shard_.rows) * size_t(opt.seq));
  targets_.resize(inputs_.size());
  if (comm_) {
    if (!gpu_) {
      reducer_ = std::make_unique<GradientReducer>(*comm_, gradient_groups(), opt.bucket_bytes);
      reducer_->set_sparse_tail(&grads_.embed, student_.config.dim);
    }
    else device_stats_ = std::make_unique<ReduceStats>();
    broadcast_state();  // every rank starts from rank 0's weights, whatever made them
  }
}

std::vector<std::vector<Tensor*>> Trainer::gradient_groups() {
  // the order the backward finishes them: head, final norm and embedding (its
  // lookup's rows, added last, go as the reducer's sparse tail), blocks last
  // to first, then the hidden-state projections
  const int L = student_.config.n_layers;
  std::vector<std::vector<Tensor*>> g(size_t(L) + 2);
  for_each_weight(grads_, [&](const WeightRef& w) {
    if (w.layer >= 0) g[size_t(L - w.layer)].push_back(w.tensor);
    else g[0].push_back(w.tensor);  // the embedding too: its lookup rows go sparsely (set_sparse_tail)
  });
  for (Tensor& p : proj_grads_) g[size_t(L) + 1].push_back(&p);
  return g;
}

Trainer::~Trainer() = default;

const ReduceStats* Trainer::reduce_stats() const { return reducer_ ? &reducer_->stats() : device_stats_.get(); }
size_t Trainer::reduce_bytes_per_step() const {
  if (reducer_) return reducer_->bytes_per_step();
  return device_stats_ && device_stats_->steps ? size_t(device_stats_->bytes / double(device_stats_->steps)) : 0;
}

void Trainer::refresh_masks() {
  masks_.assign(params_.params.size(), nullptr);
  for (size_t i = 0; i < params_.params.size(); ++i) {
    auto it = student_.compression.find(params_.params[i].name);
    if (it == student_.compression.end()) continue;
    if (it->second.scheme.quantized() && !fq_) {
      fail("train", "'" + it->first + "' is quantized; training would change it", "Train before quantizing (or use a qat stage)");
    }
    if (!it->second.sparse()) continue;
    masks_[i] = &it->second.mask;
    float* v = params_.params[i].value->f32();
    float* m = adam_->m()[i].f32();
    float* s = adam_->v()[i].f32();
    for (int64_t e = 0; e < params_.params[i].value->numel(); ++e) {
      if (!mask_kept(*masks_[i], e)) v[e] = m[e] = s[e] = 0.f;
    }
  }
  if (gpu_) gpu_->from_host();
}

void Trainer::sync_host() {
  if (!gpu_) return;
  gpu_->to_host();
  if (fq_) fq_->quantize();  // the model's weights and codes from the trained latents
}

void Trainer::zero_masked(bool grads) {
  for (size_t i = 0; i < masks_.size(); ++i) {
    if (!masks_[i]) continue;
    Tensor* t = grads ? params_.params[i].grad : params_.params[i].value;
    float* g = t->f32();
    for (int64_t e = 0; e < t->numel(); ++e) {
      if (!mask_kept(*masks_[i], e)) g[e] = 0.f;
    }
  }
}

size_t Trainer::state_bytes() const { return size_t(params_.numel()) * 4 * 4; }

ValLog Trainer::validate() {
  ValLog v;
  v.step = step_;
  const int n = data_.val_windows(opt_.seq, opt_.val_windows);
  if (n == 0) return v;
  double acc[3] = {0, 0, 0};  // loss * tokens, ce * tokens, tokens
  const int rows = shard_.rows, ranks = comm_ ? comm_->size() : 1, rank = comm_ ? comm_->rank() : 0;
  for (int w0 = 0, c = 0; w0 < n; w0 += rows, ++c) {
    if (c % ranks != rank) continue;  // the ranks share the validation windows
    for (int b = 0; b < rows; ++b) {
      int* in = inputs_.data() + size_t(b) * opt_.seq;
      int* tg = targets_.data() + size_t(b) * opt_.seq;
      if (w0 + b < n) {
        data_.val_window(w0 + b, opt_.seq, bos_, in, tg);
      } else {  // padding rows: any valid input, nothing scored
        std::fill_n(in, opt_.seq, bos_);
        std::fill_n(tg, opt_.seq, -1);
      }
    }
    const LossReport r = gpu_ ? gpu_->run(inputs_.data(), targets_.data(), 1.f, false)
                              : objective_.run(student_, inputs_.data(), targets_.data(), 1.f, nullptr, nullptr);
    acc[0] += r.total * double(r.tokens);
    acc[1] += r.ce * double(r.tokens);
    acc[2] += double(r.tokens);
  }
  if (comm_) {
    dist::set_comm_context("validation at step " + std::to_string(step_));
    comm_->allreduce_sum(acc, 3);
  }
  v.windows = n;
  v.loss = acc[0] / acc[2];
  v.ce = acc[1] / acc[2];
  v.ppl = std::exp(v.ce);
  return v;
}

void Trainer::run(const std::function<void(const StepLog&)>& on_step, const std::function<void(const ValLog&)>& on_val,
                  int64_t stop_after) {
  using clock = std::chrono::steady_clock;
  const int64_t end = stop_after >= 0 ? std::min(opt_.steps, step_ + stop_after) : opt_.steps;
  const float scale = shard_.scale;
  const int L = student_.config.n_layers;
  while (step_ < end) {
    const auto t0 = clock::now();
    if (comm_) dist::set_comm_context("train step " + std::to_string(step_ + 1));
    if (gpu_) gpu_->zero_grads();
    else params_.zero_grads();
    LossReport sum;
    for (size_t i = 0; i < shard_.micros.size(); ++i) {
      data_.sample(opt_.seed, step_, shard_.micros[i], shard_.rows, opt_.seq, bos_, inputs_.data(), targets_.data(), shard_.first_window);
      // the last local micro-batch's backward starts the all-reduce of each finished block
      std::function<void(int)> before_layer;
      if (reducer_ && i + 1 == shard_.micros.size()) before_layer = [&](int l) { reducer_->ready(L - 1 - l); };
      const LossReport r = gpu_ ? gpu_->run(inputs_.data(), targets_.data(), scale, true)
                                : objective_.run(student_, inputs_.data(), targets_.data(), scale, &grads_, &proj_grads_, before_layer);
      sum.total += r.total * scale;
      sum.ce += r.ce * scale;
      sum.kd += r.kd * scale;
      sum.hidden += r.hidden * scale;
      sum.tokens += r.tokens;
    }
    if (reducer_) reducer_->finish(inputs_);  // grads_ and proj_grads_ now hold the sum over ranks
    if (device_ar_) {
      // on the device after the backward (not overlapped yet: NCCL on its own stream during the backward would be)
      const auto tc = clock::now();
      device_stats_->bytes += double(gpu_->allreduce_gradients(*device_ar_));
      const double dt = std::chrono::duration<double>(clock::now() - tc).count();
      device_stats_->comm_s += dt;
      device_stats_->exposed_s += dt;
      ++device_stats_->buckets;
      ++device_stats_->steps;
    }
    if (comm_) {
      double l[5] = {sum.total, sum.ce, sum.kd, sum.hidden, double(sum.tokens)};
      comm_->allreduce_sum(l, 5);
      sum = {l[0], l[1], l[2], l[3], int64_t(l[4])};
    }
    double gn = 0;
    if (gpu_) {
      gn = gpu_->finish_gradients();
    } else {
      zero_masked(true);
      if (fq_) fq_->backward(grads_);
      gn = params_.grad_norm();
    }
    if (!std::isfinite(sum.total) || !std::isfinite(gn)) {
      fail("train", "step " + std::to_string(step_ + 1) + ": the " + (std::isfinite(sum.total) ? "gradient norm" : "loss") +
                        " is not finite (loss " + std::to_string(sum.total) + ", gradient norm " + std::to_string(gn) +
                        "); weights were not updated" +
                        (opt_.state_path.empty() ? "" : " and the last state written to " + opt_.state_path + " is kept"),
           "Lower the learning rate, raise warmup, or enable clipping");
    }
    if (opt_.clip > 0 && gn > opt_.clip) {
      if (gpu_) gpu_->scale_grads(float(opt_.clip / gn));
      else params_.scale_grads(float(opt_.clip / gn));
    }
    const double lr = opt_.schedule.at(step_);
    std::string bad;
    if (gpu_) {
      bad = gpu_->update(adam_->begin_step(lr));  // masks and the fake-quant forward included
    } else {
      adam_->step(params_, lr);
      zero_masked(false);  // with zero gradients and moments the update is 0 already, unless eps is 0 (0/0)
      // A finite loss and gradient can still give a non-finite update (a huge
      // learning rate, eps 0 with a zero moment): caught like a NaN loss, before
      // anything is saved.
      bad = params_.first_non_finite();
    }
    if (!bad.empty()) {
      fail("train", "step " + std::to_string(step_ + 1) + ": the update (learning rate " + std::to_string(lr) + ") made '" + bad +
                        "' non-finite" + (opt_.state_path.empty() ? "" : "; the last state written to " + opt_.state_path + " is kept"),
           "Lower the learning rate or raise AdamW's eps");
    }
    if (fq_ && !gpu_) fq_->quantize();
    ++step_;
    const double secs = std::chrono::duration<double>(clock::now() - t0).count();
    if (on_step) on_step({step_, sum, lr, gn, double(sum.tokens) / secs, secs});
    const bool last = step_ == opt_.steps;
    if (on_val && ((opt_.eval_every > 0 && step_ % opt_.eval_every == 0) || last)) on_val(validate());
    if (comm_ && ((opt_.check_every > 0 && step_ % opt_.check_every == 0) || step_ == end)) check_ranks_agree();
    if (!opt_.state_path.empty() && ((opt_.save_every > 0 && step_ % opt_.save_every == 0) || last || step_ == end)) save(opt_.state_path);
  }
  sync_host();  // the caller reads (or prunes) the student's weights next
}

NamedTensors Trainer::state_tensors() {
  NamedTensors t;
  mask_values_.clear();
  for (size_t i = 0; i < params_.params.size(); ++i) {
    if (masks_[i]) mask_values_.push_back(Tensor::zeros(DType::F32, params_.params[i].value->shape()));
  }
  size_t k = 0;
  for (size_t i = 0; i < params_.params.size(); ++i) {
    const std::string& n = params_.params[i].name;
    t.push_back({"param/" + n, params_.params[i].value});
    t.push_back({"adam_m/" + n, &adam_->m()[i]});
    t.push_back({"adam_v/" + n, &adam_->v()[i]});
    if (!masks_[i]) continue;
    Tensor& mv = mask_values_[k++];
    for (int64_t e = 0; e < mv.numel(); ++e) mv.f32()[e] = mask_kept(*masks_[i], e) ? 1.f : 0.f;
    t.push_back({"mask/" + n, &mv});
  }
  return t;
}

uint32_t Trainer::state_checksum() {
  sync_host();
  uint32_t crc = 0;
  for (const auto& [name, t] : state_tensors()) crc = crc32c(t->data(), t->nbytes(), crc);
  const int64_t steps[2] = {step_, adam_->steps()};
  return crc32c(steps, sizeof steps, crc);
}

void Trainer::check_ranks_agree() {
  if (!comm_) return;
  dist::set_comm_context("state check after step " + std::to_string(step_));
  const uint32_t mine = state_checksum();
  std::vector<uint32_t> all(size_t(comm_->size()));
  comm_->allgather(&mine, sizeof mine, all.data());
  for (size_t r = 1; r < all.size(); ++r) {
    if (all[r] == all[0]) continue;
    char buf[160];
    std::snprintf(buf, sizeof buf, "rank 0's weights, moments and masks have checksum %08x, rank %zu's %08x", all[0], r, all[r]);
    fail("train", "step " + std::to_string(step_) + ": the ranks' training states differ (" + buf +
                      "): a rank computed something the others did not",
         "Run every rank on the same build and ISA (CONDENSE_ISA), or report it as a bug");
  }
}

void Trainer::broadcast_state() {
  if (!comm_) return;
  dist::set_comm_context("sharing rank 0's training state");
  sync_host();
  for (const auto& [name, t] : state_tensors()) comm_->broadcast(t->data(), t->nbytes(), 0);
  int64_t steps[2] = {step_, adam_->steps()};
  comm_->broadcast(steps, sizeof steps, 0);
  apply_mask_values();
  refresh_masks();
  if (fq_) fq_->quantize();
  step_ = steps[0];
  adam_->set_steps(steps[1]);
}

void Trainer::apply_mask_values() {
  size_t k = 0;
  for (size_t i = 0; i < params_.params.size(); ++i) {
    if (!masks_[i]) continue;
    const Tensor& mv = mask_values_[k++];
    std::vector<uint64_t>& mask = student_.compression.at(params_.params[i].name).mask;
    std::fill(mask.begin(), mask.end(), 0);
    for (int64_t e = 0; e < mv.numel(); ++e) {
      if (mv.f32()[e] != 0.f) mask[size_t(e >> 6)] |= uint64_t(1) << (e & 63);
    }
  }
}

void Trainer::save(const std::string& path) {
  sync_host();
  if (comm_ && !comm_->root()) return;  // rank 0 writes; every rank holds the same state
  nlohmann::json meta = {{"format", "condense-train-state"}, {"version", 1}, {"step", step_}, {"adam_steps", adam_->steps()},
                         {"seed", opt_.seed}, {"data_position", {{"kind", "step"}, {"step", step_}}}};
  meta["run"] = nlohmann::json::parse(meta_json);
  const NamedTensors t = state_tensors();
  write_train_state(path, meta.dump(), t);
}

void Trainer::resume(const std::string& path) {
  // rank 0 reads (the file need not be visible to the others) and shares the
  // state, or its error, so every rank fails alike
  std::string err;
  if (!comm_ || comm_->root()) {
    try {
      resume_here(path);
    } catch (const std::exception& e) {
      if (!comm_) throw;
      err = e.what();
    }
  }
  if (!comm_) return;
  err = dist::broadcast_string(*comm_, err, 0);
  if (!err.empty()) throw Error(err);
  broadcast_state();
}

void Trainer::resume_here(const std::string& path) {
  const nlohmann::json meta = parse_json(read_train_state_meta(path), path + ": metadata");
  if (meta.value("format", "") != "condense-train-state" || meta.value("version", 0) != 1) {
    fail(path, "is not a version-1 condense training state");
  }
  if (meta.value("seed", uint64_t(0)) != opt_.seed) {
    fail(path, "was written with seed " + std::to_string(meta.value("seed", uint64_t(0))) + ", this run uses " + std::to_string(opt_.seed),
         "Resume with the recipe that wrote it");
  }
  const NamedTensors t = state_tensors();
  read_train_state_tensors(path, t);
  apply_mask_values();
  refresh_masks();
  if (fq_) fq_->quantize();
  step_ = meta.at("step").get<int64_t>();
  adam_->set_steps(meta.at("adam_steps").get<int64_t>());
}

}  // namespace condense::train
