#include "serve/scheduler.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <optional>

#include <omp.h>

#include "core/error.h"
#include "runtime/compare.h"
#include "runtime/sampler.h"
#include "serve/text_stream.h"

namespace condense {

const char* finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::Stop: return "stop";
    case FinishReason::Length: return "length";
    case FinishReason::Cancelled: return "cancelled";
    case FinishReason::Error: return "error";
  }
  return "error";
}

struct Scheduler::Seq {
  Seq(GenRequest r, std::shared_ptr<RequestSink> k, const Tokenizer& tok)
      : req(std::move(r)),
        sink(std::move(k)),
        tokens(req.prompt),
        prompt_len(int(req.prompt.size())),
        sampler(req.sampling.temperature, req.sampling.top_p, req.sampling.seed, req.sampling.top_k),
        text(tok, req.prompt.back(), req.stop) {}
  GenRequest req;
  std::shared_ptr<RequestSink> sink;
  std::vector<int> tokens;  // prompt, then what was generated
  int prompt_len;
  int generated() const { return int(tokens.size()) - prompt_len; }
  int computed = 0;      // positions held in the engine's KV cache
  int prompt_counted = 0;  // prompt tokens already counted in the stats (recomputation is not counted)
  std::vector<TokenOut> prompt_lp;  // prompt logprobs so far (entry i: token i + 1); sent once complete
  bool prompt_lp_sent = false;
  // This chunk's rows need logits for prompt logprobs (not yet recorded).
  bool wants_prompt_logits() const { return req.prompt_logprobs && !prompt_lp_sent; }
  int engine_seq = -1;   // -1 while waiting
  Sampler sampler;
  TextStream text;
  // speculative decoding: this sequence in the draft engine, the positions it
  // holds there, and its own draft length
  int draft_seq = -1;
  int draft_computed = 0;
  std::optional<DraftLength> len;
};

struct Scheduler::Planned {
  Planned(Seq* seq, int rows, int proposals = 0) : s(seq), n(rows), k(proposals) {}
  Seq* s;
  int n;                                 // rows fed to the target
  int k = 0;                             // draft proposals among them (the rows after the last token)
  std::vector<int> feed;                 // k > 0: the last token and the proposals
  std::vector<int> x;                    // the proposals
  std::vector<std::vector<float>> q;     // the draft's distributions they were drawn from
};

Scheduler::Scheduler(Engine& engine, const Tokenizer& tok, const SchedulerOptions& opt, Engine* draft, const SpecConfig& spec)
    : engine_(engine), draft_(draft), spec_(spec), tok_(tok), opt_(opt) {
  if (draft && draft->config().vocab != engine.config().vocab) {
    fail("--draft", "the draft's vocabulary (" + std::to_string(draft->config().vocab) + ") differs from the model's (" +
                        std::to_string(engine.config().vocab) + ")");
  }
  if (opt_.max_batch_tokens < 1) fail("--max-batch-tokens", "must be at least 1");
  if (opt_.max_seqs < 1) fail("--max-seqs", "must be at least 1");
  if (opt_.max_queue < 0) fail("--max-queue", "must be >= 0");
  if (blocks_for(engine_.max_seq()) > engine_.kv().total_blocks()) {
    fail("KV cache", "the pool's " + std::to_string(engine_.kv().total_blocks()) + " blocks cannot hold one sequence of the context (" +
                         std::to_string(engine_.max_seq()) + " positions need " + std::to_string(blocks_for(engine_.max_seq())) + ")",
         "Give it more --kv-blocks / --kv-memory");
  }
  if (opt_.threads <= 0) opt_.threads = omp_get_max_threads();  // a new thread starts from the process default, not the caller's
  stats_.kv_blocks_total = engine_.kv().total_blocks();
  stats_.kv_blocks_free = engine_.kv().free_blocks();
  if (draft_) {
    stats_.spec_accepted_per_pos.assign(size_t(spec_.k_max), 0);
    stats_.draft_kv_blocks_total = draft_->kv().total_blocks();
    stats_.draft_kv_blocks_free = draft_->kv().free_blocks();
  }
  thread_ = std::thread([this] { loop(); });
}

Scheduler::~Scheduler() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    quit_ = true;
    closed_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

int64_t Scheduler::blocks_for(int64_t positions) const { return (positions + kKvBlockTokens - 1) / kKvBlockTokens; }

bool Scheduler::submit(GenRequest req, std::shared_ptr<RequestSink> sink) {
  const int vocab = engine_.config().vocab;
  if (req.prompt.empty()) fail("prompt", "is empty (it needs at least the BOS token)");
  if (int(req.prompt.size()) >= engine_.max_seq()) {
    fail("prompt", std::to_string(req.prompt.size()) + " tokens leave no room to generate in the context of " + std::to_string(engine_.max_seq()));
  }
  for (int t : req.prompt) {
    if (t < 0 || t >= vocab) fail("prompt", "token id " + std::to_string(t) + " is outside the vocabulary of " + std::to_string(vocab));
  }
  if (req.max_tokens < 0 || (req.max_tokens == 0 && !req.prompt_logprobs)) fail("max_tokens", "must be at least 1 (0 only for prompt logprobs)");
  std::unique_lock<std::mutex> lk(mu_);
  if (closed_ || queued_.load() >= opt_.max_queue) return false;
  incoming_.push_back(std::make_unique<Seq>(std::move(req), std::move(sink), tok_));
  queued_.fetch_add(1);
  lk.unlock();
  cv_.notify_one();
  return true;
}

void Scheduler::close() {
  std::lock_guard<std::mutex> lk(mu_);
  closed_ = true;
}

bool Scheduler::wait_idle(double seconds) {
  std::unique_lock<std::mutex> lk(mu_);
  return idle_cv_.wait_for(lk, std::chrono::duration<double>(seconds),
                           [&] { return incoming_.empty() && queued_.load() == 0 && running_count_.load() == 0; });
}

SchedulerStats Scheduler::stats() const {
  std::lock_guard<std::mutex> lk(stats_mu_);
  SchedulerStats s = stats_;
  s.waiting = queued_.load();
  s.running = running_count_.load();
  return s;
}

void Scheduler::loop() {
  omp_set_num_threads(opt_.threads);
  for (;;) {
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait(lk, [&] { return quit_ || !incoming_.empty() || !running_.empty() || !waiting_.empty(); });
      if (quit_) break;
      while (!incoming_.empty()) {
        waiting_.push_back(std::move(incoming_.front()));
        incoming_.pop_front();
      }
    }
    step_once();
    std::lock_guard<std::mutex> lk(mu_);
    if (incoming_.empty() && running_.empty() && waiting_.empty()) idle_cv_.notify_all();
  }
  // Shutting down: whatever is left is cancelled, so no caller waits forever.
  std::deque<std::unique_ptr<Seq>> left;
  {
    std::lock_guard<std::mutex> lk(mu_);
    left.swap(incoming_);
  }
  for (auto& s : left) waiting_.push_back(std::move(s));
  while (!running_.empty()) finish(*running_.back(), FinishReason::Cancelled, "the server is shutting down");
  while (!waiting_.empty()) finish(*waiting_.back(), FinishReason::Cancelled, "the server is shutting down");
  idle_cv_.notify_all();
}

void Scheduler::finish(Seq& s, FinishReason why, const std::string& error) {
  if (s.engine_seq >= 0) engine_.drop_sequence(s.engine_seq);
  if (s.draft_seq >= 0) draft_->drop_sequence(s.draft_seq);
  s.draft_seq = -1;
  std::string rest = s.text.flush();
  const bool was_running = s.engine_seq >= 0;
  s.engine_seq = -1;
  s.sink->on_finish(rest, why, s.prompt_len, s.generated(), error);
  {
    std::lock_guard<std::mutex> lk(stats_mu_);
    if (why == FinishReason::Cancelled) ++stats_.requests_cancelled;
    else ++stats_.requests_finished;
    stats_.kv_blocks_free = engine_.kv().free_blocks();
    if (draft_) stats_.draft_kv_blocks_free = draft_->kv().free_blocks();
  }
  auto drop = [&](auto& list) {
    for (auto it = list.begin(); it != list.end(); ++it) {
      if (it->get() == &s) {
        list.erase(it);
        return true;
      }
    }
    return false;
  };
  if (was_running) {
    drop(running_);
    running_count_.fetch_sub(1);
  } else {
    drop(waiting_);
    queued_.fetch_sub(1);
  }
}

void Scheduler::preempt(Seq& s) {
  engine_.drop_sequence(s.engine_seq);
  s.engine_seq = -1;
  s.computed = 0;
  if (s.draft_seq >= 0) draft_->drop_sequence(s.draft_seq);
  s.draft_seq = -1;
  s.draft_computed = 0;
  for (auto it = running_.begin(); it != running_.end(); ++it) {
    if (it->get() == &s) {
      waiting_.push_front(std::move(*it));
      running_.erase(it);
      break;
    }
  }
  running_count_.fetch_sub(1);
  queued_.fetch_add(1);
  std::lock_guard<std::mutex> lk(stats_mu_);
  ++stats_.preemptions;
}

void Scheduler::step_once() {
  // Cancelled requests leave before anything is planned.
  for (size_t i = running_.size(); i-- > 0;) {
    if (running_[i]->sink->cancelled()) finish(*running_[i], FinishReason::Cancelled);
  }
  for (size_t i = waiting_.size(); i-- > 0;) {
    if (waiting_[i]->sink->cancelled()) finish(*waiting_[i], FinishReason::Cancelled);
  }
  if (running_.empty() && waiting_.empty()) return;

  std::vector<Planned> plan;
  int budget = 0;
  int64_t need = 0;
  const int64_t free = engine_.kv().free_blocks(), total = engine_.kv().total_blocks();
  // Running sequences first, oldest first; the newest is preempted while
  // their blocks do not fit.
  for (;;) {
    plan.clear();
    budget = opt_.max_batch_tokens;
    need = 0;
    for (auto& p : running_) {
      Seq& s = *p;
      int n = std::min(int(s.tokens.size()) - s.computed, budget);
      if (n <= 0) continue;
      int k = 0;
      // A decoding sequence speculates: up to its k proposals after its last
      // token, within the budget, its max_tokens (the last token of a request
      // comes from the target) and the context.
      if (draft_ && n == 1 && s.computed + 1 == int(s.tokens.size()) && !s.wants_prompt_logits()) {
        if (!s.len) s.len.emplace(spec_);
        k = std::min({s.len->k(), budget - 1, s.req.max_tokens - s.generated() - 1, engine_.max_seq() - s.computed - 2,
                      draft_->max_seq() - s.computed - 2});
        k = std::max(k, 0);
        n += k;
      }
      plan.emplace_back(&s, n, k);
      need += blocks_for(s.computed + n) - blocks_for(s.computed);
      budget -= n;
    }
    if (need <= free || running_.size() <= 1) break;
    preempt(*running_.back());
  }
  // Then waiting ones, first come first served, while their whole sequence
  // (and one more token) fits beside what runs, keeping the watermark free.
  const int64_t watermark = int64_t(std::ceil(opt_.watermark * double(total)));
  while (!waiting_.empty() && budget > 0 && int(running_.size()) < opt_.max_seqs) {
    Seq& s = *waiting_.front();
    const int64_t full = blocks_for(int64_t(s.tokens.size()) + 1);
    const int64_t keep = running_.empty() ? 0 : watermark;
    if (need + full + keep > free) break;
    const int n = std::min(int(s.tokens.size()), budget);
    s.engine_seq = engine_.add_sequence();
    s.computed = 0;
    plan.emplace_back(&s, n);
    need += blocks_for(n);
    budget -= n;
    running_.push_back(std::move(waiting_.front()));
    waiting_.pop_front();
    queued_.fetch_sub(1);
    running_count_.fetch_add(1);
  }
  if (plan.empty()) return;

  using clock_type = std::chrono::steady_clock;
  const auto t_draft = clock_type::now();
  propose_drafts(plan);
  const double draft_s = std::chrono::duration<double>(clock_type::now() - t_draft).count();
  int speculating = 0;  // the draft phase's time is shared among these
  for (const Planned& p : plan) speculating += p.k > 0;

  const int vocab = engine_.config().vocab;
  // Logits: the last row of a chunk that completes a sequence's known tokens;
  // every row of a chunk whose prompt logprobs are wanted; every row of a
  // speculating sequence (the proposals' positions and the bonus).
  auto logit_rows = [](const Planned& p) {
    if (p.k > 0) return p.k + 1;
    const bool last = p.s->computed + p.n == int(p.s->tokens.size());
    return p.s->wants_prompt_logits() ? p.n : last ? 1 : 0;
  };
  int n_logits = 0;
  for (const Planned& p : plan) n_logits += logit_rows(p);
  logits_.resize(size_t(n_logits) * size_t(vocab));
  std::vector<Engine::SeqStep> batch;
  batch.reserve(plan.size());
  std::vector<int> first_row(plan.size());
  int li = 0;
  int64_t prompt_tokens = 0;
  for (size_t pi = 0; pi < plan.size(); ++pi) {
    const Planned& p = plan[pi];
    const int rows = logit_rows(p);
    first_row[pi] = li;
    const int* fed = p.k > 0 ? p.feed.data() : p.s->tokens.data() + p.s->computed;
    batch.push_back({p.s->engine_seq, fed, p.n, rows ? logits_.data() + size_t(li) * size_t(vocab) : nullptr, rows});
    li += rows;
    const int upto = std::min(p.s->computed + p.n, p.s->prompt_len);
    if (upto > p.s->prompt_counted) {
      prompt_tokens += upto - p.s->prompt_counted;
      p.s->prompt_counted = upto;
    }
  }
  const auto t_target = clock_type::now();
  try {
    engine_.step(batch);
  } catch (const std::exception& e) {
    for (const Planned& p : plan) finish(*p.s, FinishReason::Error, e.what());
    return;
  }
  const double target_s = std::chrono::duration<double>(clock_type::now() - t_target).count();
  int64_t spec_drafts = 0, spec_proposed = 0, spec_accepted = 0;
  std::vector<int64_t> accepted_at(draft_ ? size_t(spec_.k_max) : 0, 0);
  std::vector<float> p_scratch, resid_scratch;
  int64_t generated = 0;
  std::vector<double> lsm;
  // `out.token`'s logprob under the logits `lg`, and the k most likely tokens.
  auto score = [&](const float* lg, int k, TokenOut& out) {
    lsm.resize(size_t(vocab));
    log_softmax64(lg, vocab, lsm);
    out.logprob = float(lsm[size_t(out.token)]);
    k = std::min(k, vocab);
    std::vector<int> idx(static_cast<size_t>(vocab));
    for (int i = 0; i < vocab; ++i) idx[size_t(i)] = i;
    std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int a, int b) { return lsm[size_t(a)] > lsm[size_t(b)] || (lsm[size_t(a)] == lsm[size_t(b)] && a < b); });
    for (int i = 0; i < k; ++i) out.top.push_back({idx[size_t(i)], float(lsm[size_t(idx[size_t(i)])])});
  };
  for (size_t pi = 0; pi < plan.size(); ++pi) {
    const Planned& p = plan[pi];
    Seq& s = *p.s;
    const int start = s.computed;
    s.computed += p.n;
    const bool all_rows = s.wants_prompt_logits();
    if (all_rows) {
      // Row r predicts position start + r + 1; record each prompt position once (recomputation repeats none).
      for (int r = 0; r < p.n; ++r) {
        const int next = start + r + 1;
        if (next >= s.prompt_len || next != int(s.prompt_lp.size()) + 1) continue;
        TokenOut e;
        e.token = s.tokens[size_t(next)];
        score(logits_.data() + size_t(first_row[pi] + r) * size_t(vocab), std::max(0, s.req.sampling.logprobs), e);
        s.prompt_lp.push_back(std::move(e));
      }
      if (int(s.prompt_lp.size()) + 1 >= s.prompt_len) {
        s.prompt_lp_sent = true;
        s.sink->on_prompt_logprobs(s.prompt_lp);
        s.prompt_lp.clear();
      }
    }
    // One generated token (scored by the target row lg) to the sequence and its
    // sink; false when that ended the request (which is then finished).
    auto emit = [&](int token, const float* lg) {
      TokenOut out;
      out.token = token;
      const ModelConfig& c = engine_.config();
      if (!s.req.ignore_eos && (out.token == c.eos_id || out.token == c.bos_id)) {
        finish(s, FinishReason::Stop);
        return false;
      }
      if (s.req.sampling.logprobs >= 0) score(lg, s.req.sampling.logprobs, out);
      s.tokens.push_back(out.token);
      ++generated;
      bool stopped = false;
      const std::string text = s.text.push(out.token, &stopped);
      out.piece = s.text.last_piece();
      s.sink->on_token(out, text);
      if (stopped) finish(s, FinishReason::Stop);
      else if (s.generated() >= s.req.max_tokens || int(s.tokens.size()) >= engine_.max_seq()) finish(s, FinishReason::Length);
      else return true;
      return false;
    };
    if (p.k > 0) {
      // the rejection test over the k + 1 rows; then cut both caches back to the committed tokens
      const float* rows = logits_.data() + size_t(first_row[pi]) * size_t(vocab);
      int y = -1;
      const int acc = verify_proposals(s.sampler, p.x, p.q, rows, vocab, spec_.rule, p_scratch, resid_scratch, &y);
      ++spec_drafts;
      spec_proposed += p.k;
      spec_accepted += acc;
      for (int i = 0; i < acc; ++i) ++accepted_at[size_t(i)];
      s.len->update(p.k, acc, draft_s / double(speculating), target_s);
      bool alive = true;
      for (int i = 0; i <= acc && alive; ++i) alive = emit(i < acc ? p.x[size_t(i)] : y, rows + size_t(i) * size_t(vocab));
      if (!alive) continue;
      s.computed = int(s.tokens.size()) - 1;
      engine_.truncate(s.engine_seq, s.computed);
      s.draft_computed = std::min(draft_->length(s.draft_seq), s.computed);
      draft_->truncate(s.draft_seq, s.draft_computed);
      continue;
    }
    if (s.computed != int(s.tokens.size())) continue;
    if (s.req.max_tokens == 0) {
      finish(s, FinishReason::Length);  // the prompt only
      continue;
    }
    const float* lg = logits_.data() + size_t(first_row[pi] + (all_rows ? p.n - 1 : 0)) * size_t(vocab);
    emit(s.sampler.sample(lg, vocab), lg);
  }
  std::lock_guard<std::mutex> lk(stats_mu_);
  stats_.kv_blocks_free = engine_.kv().free_blocks();
  stats_.prompt_tokens += prompt_tokens;
  stats_.generation_tokens += generated;
  ++stats_.steps;
  if (draft_) {
    stats_.draft_kv_blocks_free = draft_->kv().free_blocks();
    stats_.spec_drafts += spec_drafts;
    stats_.spec_draft_tokens += spec_proposed;
    stats_.spec_accepted_tokens += spec_accepted;
    for (size_t i = 0; i < accepted_at.size(); ++i) stats_.spec_accepted_per_pos[i] += accepted_at[i];
  }
}

void Scheduler::propose_drafts(std::vector<Planned>& plan) {
  int rounds = 0;
  for (const Planned& p : plan) rounds = std::max(rounds, p.k);
  if (rounds == 0) return;
  const int vocab = engine_.config().vocab;
  std::vector<Planned*> spec;
  for (Planned& p : plan) {
    if (p.k == 0) continue;
    Seq& s = *p.s;
    if (s.draft_seq < 0) {
      s.draft_seq = draft_->add_sequence();
      s.draft_computed = 0;
    }
    p.x.assign(size_t(p.k), 0);
    p.q.resize(size_t(p.k));
    spec.push_back(&p);
  }
  std::vector<float> logits;
  try {
    // round i: every sequence proposing more than i tokens, batched; the first
    // round feeds each the committed tokens its draft cache lacks
    for (int i = 0; i < rounds; ++i) {
      std::vector<Engine::SeqStep> batch;
      std::vector<Planned*> in;
      for (Planned* p : spec) {
        if (p->k <= i) continue;
        Seq& s = *p->s;
        if (i == 0) batch.push_back({s.draft_seq, s.tokens.data() + s.draft_computed, int(s.tokens.size()) - s.draft_computed, nullptr, 1});
        else batch.push_back({s.draft_seq, &p->x[size_t(i - 1)], 1, nullptr, 1});
        in.push_back(p);
      }
      logits.resize(in.size() * size_t(vocab));
      for (size_t b = 0; b < batch.size(); ++b) batch[b].logits = logits.data() + b * size_t(vocab);
      draft_->step(batch);
      for (size_t b = 0; b < in.size(); ++b) {
        Planned& p = *in[b];
        p.x[size_t(i)] = propose(p.s->sampler, logits.data() + b * size_t(vocab), vocab, p.q[size_t(i)]);
      }
    }
  } catch (const std::exception&) {
    // (a full draft KV pool): these sequences decode plainly this step; their
    // draft caches start again from nothing
    for (Planned* p : spec) {
      Seq& s = *p->s;
      draft_->drop_sequence(s.draft_seq);
      s.draft_seq = -1;
      s.draft_computed = 0;
      p->n -= p->k;
      p->k = 0;
      p->x.clear();
      p->q.clear();
    }
    return;
  }
  for (Planned* p : spec) {
    Seq& s = *p->s;
    s.draft_computed = draft_->length(s.draft_seq);
    p->feed.clear();
    p->feed.push_back(s.tokens.back());
    p->feed.insert(p->feed.end(), p->x.begin(), p->x.end());
  }
}

}  // namespace condense
