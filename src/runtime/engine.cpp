#include "runtime/engine.h"

#include <algorithm>
#include <cstring>

#include <omp.h>

#include "core/error.h"
#include "kernels/cpu/kv_paged.h"
#include "runtime/gpu_forward.h"
#include "runtime/linear_parts.h"

namespace condense {

namespace {

kernels::KvCode checkpoint_kv(const KvCacheQuant& q) {
  if (q.type == DType::F8E4M3) return kernels::KvCode::E4M3;
  if (q.type == DType::I8) return kernels::KvCode::I8;
  return kernels::KvCode::F32;
}

}  // namespace

Engine::~Engine() = default;
Engine::Engine(Engine&&) noexcept = default;

void Engine::init_kv(const Model& m, const EngineOptions& opt) {
  const kernels::KvCode kv_code = opt.kv_dtype.empty() ? checkpoint_kv(m.kv_cache) : kv_code_from_name(opt.kv_dtype);
  int64_t blocks = opt.kv_blocks > 0 ? opt.kv_blocks : (max_seq_ + kKvBlockTokens - 1) / kKvBlockTokens;
  if (opt.kv_blocks <= 0 && opt.kv_bytes > 0) {
    const int64_t per_block = kernels::kv_block_bytes(kv_code, cfg_.n_kv_heads, cfg_.head_dim, kKvBlockTokens) * cfg_.n_layers;
    blocks = std::max<int64_t>(1, int64_t(opt.kv_bytes / size_t(per_block)));
  }
  kv_ = KvPool(cfg_, blocks, kv_code, m.kv_cache, device_ == Device::CPU);
}

Engine::Engine(const Model& m, const EngineOptions& opt)
    : cfg_(m.config), max_seq_(opt.max_seq > 0 ? opt.max_seq : m.config.max_seq), device_(opt.device) {
  if (device_ != Device::CPU) {
    // Only the bookkeeping stays here: the weights and the KV bytes go to the device.
    rope_ = ops::RopeTable::make(max_seq_, cfg_.head_dim, cfg_.rope_theta);
    init_kv(m, opt);
    gpu_ = make_gpu_forward(m, device_, rope_, kv_.code(), kv_.total_blocks(), kv_.k_scales(), kv_.v_scales());
    add_sequence();
    return;
  }
  const char* kEmbed = "model.embed_tokens.weight";
  ByteArena arena;  // every packed weight, in the order a step reads them (its regions outlive it)
  auto ec = m.compression.find(kEmbed);
  if (ec != m.compression.end() && ec->second.scheme.quantized()) {
    // A quantized table stays packed: lookups decode one row. Tied, it is the head's pack.
    embed_from_head_ = cfg_.tied_embeddings;
    if (!embed_from_head_) embed_packed_ = pack_linear(m, {{kEmbed, &m.embed}}, {cfg_.vocab}, cfg_.dim, false, &arena);
  } else if (cfg_.tied_embeddings) {
    // Tied f32: the head's pack holds the same floats (kept ones, when pruned);
    // a second f32 copy would double the table's memory.
    if (!m.embed.defined()) fail("engine", std::string("the embedding '") + kEmbed + "' has no values");
    embed_from_head_ = true;
  } else {
    if (!m.embed.defined()) fail("engine", std::string("the embedding '") + kEmbed + "' has no values");
    embed_ = m.embed;
  }
  final_norm_ = m.final_norm;
  const int64_t d = cfg_.dim, qd = cfg_.q_dim(), kvd = cfg_.kv_dim(), f = cfg_.ffn_dim;
  for (const LayerWeights& w : m.layers) {
    Layer l;
    l.attn_norm = w.attn_norm;
    l.ffn_norm = w.ffn_norm;
    const std::string p = "model.layers." + std::to_string(layers_.size()) + ".";
    const bool a8 = m.activations.type == DType::I8;
    l.qkv = pack_linear(m, {{p + "self_attn.q_proj.weight", &w.wq}, {p + "self_attn.k_proj.weight", &w.wk}, {p + "self_attn.v_proj.weight", &w.wv}},
                        {qd, kvd, kvd}, d, a8, &arena);
    l.o = pack_linear(m, {{p + "self_attn.o_proj.weight", &w.wo}}, {d}, qd, a8, &arena);
    l.gate_up = pack_linear(m, {{p + "mlp.gate_proj.weight", &w.w_gate}, {p + "mlp.up_proj.weight", &w.w_up}}, {f, f}, d, a8, &arena);
    l.down = pack_linear(m, {{p + "mlp.down_proj.weight", &w.w_down}}, {d}, f, a8, &arena);
    if (cfg_.qkv_bias) {
      l.qkv_bias = Tensor::empty(DType::F32, {cfg_.q_dim() + 2 * kvd});
      std::memcpy(l.qkv_bias.f32(), w.bq.f32(), w.bq.nbytes());
      std::memcpy(l.qkv_bias.f32() + cfg_.q_dim(), w.bk.f32(), w.bk.nbytes());
      std::memcpy(l.qkv_bias.f32() + cfg_.q_dim() + kvd, w.bv.f32(), w.bv.nbytes());
    }
    if (m.activations.type == DType::F8E4M3) {
      for (int si = 0; si < ActivationQuant::kSites; ++si) l.act_scale[si] = m.activations.scale(int(layers_.size()), si);
    }
    layers_.push_back(std::move(l));
  }
  act_type_ = m.activations.type;
  head_a8_ = m.activations.type == DType::I8 && m.activations.head;
  head_ = pack_linear(m, {{cfg_.tied_embeddings ? "model.embed_tokens.weight" : "lm_head.weight", &m.head()}}, {cfg_.vocab}, d, head_a8_,
                      &arena);
  rope_ = ops::RopeTable::make(max_seq_, cfg_.head_dim, cfg_.rope_theta);
  init_kv(m, opt);
  add_sequence();
}

int Engine::add_sequence() {
  for (size_t i = 0; i < seqs_.size(); ++i) {
    if (!seqs_[i].live) {
      seqs_[i] = Seq{true, 0, {}};
      return int(i);
    }
  }
  seqs_.push_back(Seq{true, 0, {}});
  return int(seqs_.size() - 1);
}

Engine::Seq& Engine::seq(int id) {
  if (id < 0 || size_t(id) >= seqs_.size() || !seqs_[size_t(id)].live) fail("engine", "no sequence " + std::to_string(id));
  return seqs_[size_t(id)];
}

int Engine::fork_sequence(int id) {
  const int len = length(id);
  const int f = add_sequence();
  try {
    kv_.copy(seq(id).blocks, seq(f).blocks, len);
    if (gpu_) gpu_->copy_blocks(seq(id).blocks, seq(f).blocks);
  } catch (...) {
    drop_sequence(f);
    throw;
  }
  seq(f).len = len;
  return f;
}

void Engine::drop_sequence(int id) {
  Seq& s = seq(id);
  kv_.shrink(s.blocks, 0);
  s = Seq{};
}

void Engine::truncate(int id, int len) {
  Seq& s = seq(id);
  if (len < 0 || len > s.len) fail("engine", "cannot truncate sequence " + std::to_string(id) + " of " + std::to_string(s.len) + " positions to " + std::to_string(len));
  s.len = len;
  kv_.shrink(s.blocks, len);
}

int Engine::length(int id) const {
  if (id < 0 || size_t(id) >= seqs_.size() || !seqs_[size_t(id)].live) fail("engine", "no sequence " + std::to_string(id));
  return seqs_[size_t(id)].len;
}

size_t Engine::weight_bytes() const {
  if (gpu_) return gpu_->weight_bytes();
  size_t b = head_.weight_bytes() + embed_packed_.weight_bytes() + (embed_.defined() ? embed_.nbytes() : 0) + final_norm_.nbytes();
  for (const Layer& l : layers_) {
    b += l.qkv.weight_bytes() + l.o.weight_bytes() + l.gate_up.weight_bytes() + l.down.weight_bytes() + l.attn_norm.nbytes() + l.ffn_norm.nbytes();
  }
  return b;
}

std::string Engine::describe_linears() const {
  if (gpu_) return gpu_->describe();
  std::string blocks;
  for (const Layer& l : layers_) {
    for (const ops::PackedLinear* p : {&l.qkv, &l.o, &l.gate_up, &l.down}) {
      const std::string d = p->describe();
      if (blocks.find(d) == std::string::npos) blocks += (blocks.empty() ? "" : ", ") + d;
    }
  }
  const std::string emb = embed_.defined() ? "f32" : embed_from_head_ ? "the head's" : embed_packed_.describe();
  return "blocks: " + blocks + "; head: " + head_.describe() + "; embedding: " + emb;
}

void Engine::macs_per_token(int64_t* f32_macs, int64_t* int8_macs, int64_t* int16_macs) const {
  *f32_macs = *int8_macs = *int16_macs = 0;
  if (gpu_) {  // the GPU kernels multiply in f32 whatever the weights' encoding
    const int64_t d = cfg_.dim, f = cfg_.ffn_dim;
    *f32_macs = int64_t(cfg_.n_layers) * ((cfg_.q_dim() + 2 * int64_t(cfg_.kv_dim())) * d + d * cfg_.q_dim() + 3 * f * d) +
                int64_t(cfg_.vocab) * d;
    return;
  }
  auto add = [&](const ops::PackedLinear& p) {
    (p.integer_activations() ? *int8_macs : p.int16_activations() ? *int16_macs : *f32_macs) += p.macs();
  };
  add(head_);
  for (const Layer& l : layers_) {
    for (const ops::PackedLinear* p : {&l.qkv, &l.o, &l.gate_up, &l.down}) add(*p);
  }
}

size_t Engine::decode_weight_bytes() const {
  if (gpu_) return gpu_->decode_weight_bytes();
  // + one embedding row per token
  const ops::PackedLinear& table = embed_from_head_ ? head_ : embed_packed_;
  size_t b = head_.weight_bytes() + (embed_.defined() ? size_t(cfg_.dim) * 4 : table.weight_bytes() / size_t(cfg_.vocab));
  for (const Layer& l : layers_) b += l.qkv.weight_bytes() + l.o.weight_bytes() + l.gate_up.weight_bytes() + l.down.weight_bytes();
  return b;
}

void Engine::quantize_input(const Layer& l, int site, ops::Mat x, const ops::PackedLinear& consumer) const {
  // Integer kernels quantize their input rows themselves, the same way.
  if (act_type_ == DType::I8 && consumer.integer_activations()) return;
  if (act_type_ != DType::F32) fake_quant_rows(x.data, x.rows, x.cols, x.ld, act_type_, l.act_scale[site]);
}

void Engine::ensure_scratch(int n) {
  if (n <= scratch_rows_) return;
  const int64_t d = cfg_.dim, qd = cfg_.q_dim(), kvd = cfg_.kv_dim();
  x_ = Tensor::empty(DType::F32, {n, d});
  xn_ = Tensor::empty(DType::F32, {n, d});
  qkv_ = Tensor::empty(DType::F32, {n, qd + 2 * kvd});
  att_ = Tensor::empty(DType::F32, {n, qd});
  gu_ = Tensor::empty(DType::F32, {n, 2 * int64_t(cfg_.ffn_dim)});
  tmp_ = Tensor::empty(DType::F32, {n, d});
  scratch_rows_ = n;
}

void Engine::forward(const int* tokens, int n, int pos, float* logits, int n_logits) {
  if (pos < 0 || pos > length(0)) {
    fail("Engine::forward", "position " + std::to_string(pos) + " skips past the " + std::to_string(length(0)) + " positions the sequence holds");
  }
  truncate(0, pos);
  step({SeqStep{0, tokens, n, logits, n_logits}});
}

// Chunks of at most this many rows count as decoding (attention parallel over sequences).
constexpr int kSmallChunk = 4;

void Engine::step(const std::vector<SeqStep>& batch) {
  if (batch.empty()) return;
  // Check everything and take the KV blocks before touching any state.
  int total = 0, total_logits = 0;
  for (const SeqStep& b : batch) {
    const Seq& s = seq(b.seq);
    if (b.n <= 0 || b.n_logits < 0 || b.n_logits > b.n) fail("Engine::step", "need 0 <= n_logits <= n and n > 0");
    if (s.len + b.n > max_seq_) {
      fail("Engine::step", "positions " + std::to_string(s.len) + ".." + std::to_string(s.len + b.n - 1) + " exceed the context of " +
                               std::to_string(max_seq_),
           "Use a shorter prompt/--ctx or a larger --max-seq");
    }
    for (int i = 0; i < b.n; ++i) {
      if (b.tokens[i] < 0 || b.tokens[i] >= cfg_.vocab) {
        fail("Engine::step", "token id " + std::to_string(b.tokens[i]) + " is outside the vocabulary of " + std::to_string(cfg_.vocab));
      }
    }
    for (const SeqStep& o : batch) {
      if (&o != &b && o.seq == b.seq) fail("Engine::step", "sequence " + std::to_string(b.seq) + " appears twice in one step");
    }
    total += b.n;
    total_logits += b.n_logits;
  }
  {
    int64_t need = 0;
    for (const SeqStep& b : batch) {
      const Seq& s = seq(b.seq);
      need += std::max<int64_t>(0, (s.len + b.n + kKvBlockTokens - 1) / kKvBlockTokens - int64_t(s.blocks.size()));
    }
    if (need > kv_.free_blocks()) {
      fail("KV cache", "out of blocks: this step needs " + std::to_string(need) + " more, " + std::to_string(kv_.free_blocks()) + " of " +
                           std::to_string(kv_.total_blocks()) + " are free (16 positions each)",
           "Give the engine more KV blocks (--kv-blocks / --kv-memory), fewer or shorter sequences");
    }
    for (const SeqStep& b : batch) {
      Seq& s = seq(b.seq);
      kv_.reserve(s.blocks, s.len + b.n);
    }
  }
  if (gpu_) {
    step_gpu(batch, total_logits);
    return;
  }
  ensure_scratch(total);
  const int64_t d = cfg_.dim, qd = cfg_.q_dim(), kvd = cfg_.kv_dim(), f = cfg_.ffn_dim;
  const int hd = cfg_.head_dim;
  ops::Mat x = ops::mat(x_).rows_slice(0, total);
  ops::Mat xn = ops::mat(xn_).rows_slice(0, total);
  ops::Mat qkv = ops::mat(qkv_).rows_slice(0, total);
  ops::Mat att = ops::mat(att_).rows_slice(0, total);
  ops::Mat gu = ops::mat(gu_).rows_slice(0, total);
  ops::Mat tmp = ops::mat(tmp_).rows_slice(0, total);

  int row = 0;
  for (const SeqStep& b : batch) {
    for (int i = 0; i < b.n; ++i, ++row) {
      if (embed_.defined()) std::memcpy(x.row(row), embed_.f32() + int64_t(b.tokens[i]) * d, size_t(d) * 4);
      else (embed_from_head_ ? head_ : embed_packed_).row(b.tokens[i], x.row(row));
    }
  }
  std::vector<int> row_of(batch.size());
  std::vector<size_t> small, large;
  for (size_t i = 0, r = 0; i < batch.size(); r += size_t(batch[i].n), ++i) {
    row_of[i] = int(r);
    (batch[i].n <= kSmallChunk ? small : large).push_back(i);
  }
  for (size_t li = 0; li < layers_.size(); ++li) {
    Layer& l = layers_[li];
    ops::rmsnorm(x, l.attn_norm, cfg_.norm_eps, xn);
    quantize_input(l, 0, xn, l.qkv);
    l.qkv.apply(xn, qkv);
    if (l.qkv_bias.defined()) ops::add_bias(qkv, l.qkv_bias);
    // Each sequence's RoPE, KV write and attention over its own blocks.
    auto attend = [&](size_t i) {
      const SeqStep& b = batch[i];
      const Seq& s = seq(b.seq);
      ops::Mat qs = qkv.rows_slice(row_of[i], b.n);
      ops::Mat q = qs.cols_slice(0, qd), k = qs.cols_slice(qd, kvd), v = qs.cols_slice(qd + kvd, kvd);
      ops::rope(q, cfg_.n_heads, hd, s.len, rope_);
      ops::rope(k, cfg_.n_kv_heads, hd, s.len, rope_);
      const kernels::KvPagedView view = kv_.view(int(li), s.blocks);
      for (int r = 0; r < b.n; ++r) kernels::kv_paged_write(view, k.row(r), v.row(r), s.len + r);
      ops::Mat a = att.rows_slice(row_of[i], b.n);
      kernels::attention_paged_f32(q.data, q.ld, b.n, s.len, cfg_.n_heads, view, a.data, a.ld);
    };
    // Decoding sequences (a few rows each) are too small for the kernels to
    // split; they share one parallel region, a sequence per thread at a time.
    // Larger chunks (prefill) run one by one with the kernels' own threads.
    // The arithmetic of a sequence is the same either way (batch invariance).
    if (small.size() > 1 && omp_get_max_threads() > 1) {
#pragma omp parallel for schedule(dynamic)
      for (size_t j = 0; j < small.size(); ++j) attend(small[j]);
    } else {
      for (size_t i : small) attend(i);
    }
    for (size_t i : large) attend(i);
    quantize_input(l, 1, att, l.o);
    l.o.apply(att, tmp);
    ops::add(x, tmp);
    ops::rmsnorm(x, l.ffn_norm, cfg_.norm_eps, xn);
    quantize_input(l, 2, xn, l.gate_up);
    l.gate_up.apply(xn, gu);
    ops::Mat g = gu.cols_slice(0, f), u = gu.cols_slice(f, f);
    ops::silu_mul(g, u, g);
    quantize_input(l, 3, g, l.down);
    l.down.apply(g, tmp);
    ops::add(x, tmp);
  }
  for (const SeqStep& b : batch) seq(b.seq).len += b.n;
  if (total_logits == 0) return;
  // The rows that need logits, gathered, normed and through the head together.
  row = 0;
  int out = 0;
  for (const SeqStep& b : batch) {
    for (int i = b.n - b.n_logits; i < b.n; ++i) std::memcpy(tmp.row(out++), x.row(row + i), size_t(d) * 4);
    row += b.n;
  }
  ops::Mat last = tmp.rows_slice(0, total_logits), last_n = xn.rows_slice(0, total_logits);
  ops::rmsnorm(last, final_norm_, cfg_.norm_eps, last_n);
  if (head_a8_ && !head_.integer_activations()) fake_quant_rows(last_n.data, last_n.rows, last_n.cols, last_n.ld, DType::I8, 1.f);
  if (batch.size() == 1) {
    head_.apply(last_n, ops::Mat{batch[0].logits, total_logits, cfg_.vocab, cfg_.vocab});
    return;
  }
  if (logits_.size() < size_t(total_logits) * size_t(cfg_.vocab)) logits_.resize(size_t(total_logits) * size_t(cfg_.vocab));
  head_.apply(last_n, ops::Mat{logits_.data(), total_logits, cfg_.vocab, cfg_.vocab});
  scatter_logits(batch);
}

void Engine::scatter_logits(const std::vector<SeqStep>& batch) const {
  size_t o = 0;
  for (const SeqStep& b : batch) {
    if (b.n_logits > 0) std::memcpy(b.logits, logits_.data() + o * size_t(cfg_.vocab), size_t(b.n_logits) * size_t(cfg_.vocab) * 4);
    o += size_t(b.n_logits);
  }
}

void Engine::step_gpu(const std::vector<SeqStep>& batch, int total_logits) {
  GpuStepRows r;
  for (const SeqStep& b : batch) {
    const Seq& s = seq(b.seq);
    const int32_t off = int32_t(r.tables.size());
    r.tables.insert(r.tables.end(), s.blocks.begin(), s.blocks.end());
    for (int i = 0; i < b.n; ++i) {
      if (i >= b.n - b.n_logits) r.logit_rows.push_back(int32_t(r.tokens.size()));
      r.tokens.push_back(b.tokens[i]);
      r.pos.push_back(s.len + i);
      r.table_off.push_back(off);
    }
  }
  float* out = batch.size() == 1 ? batch[0].logits : nullptr;
  if (!out && total_logits > 0) {
    if (logits_.size() < size_t(total_logits) * size_t(cfg_.vocab)) logits_.resize(size_t(total_logits) * size_t(cfg_.vocab));
    out = logits_.data();
  }
  gpu_->step(r, out);
  for (const SeqStep& b : batch) seq(b.seq).len += b.n;
  if (batch.size() > 1 && total_logits > 0) scatter_logits(batch);
}

}  // namespace condense
