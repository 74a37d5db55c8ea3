#include "runtime/speculative.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "core/error.h"

namespace condense {

namespace {
using clock_type = std::chrono::steady_clock;
double since(clock_type::time_point t0) { return std::chrono::duration<double>(clock_type::now() - t0).count(); }
constexpr double kDecay = 0.9;  // weight of the previous rounds in the running estimates
}  // namespace

SpeculativeDecoder::SpeculativeDecoder(Engine& target, Engine& draft, const SpecConfig& cfg, int target_seq, int draft_seq)
    : target_(target), draft_(draft), cfg_(cfg), tseq_(target_seq), dseq_(draft_seq), len_(cfg) {
  if (target.config().vocab != draft.config().vocab) {
    fail("speculative decoding", "the draft's vocabulary (" + std::to_string(draft.config().vocab) + ") differs from the target's (" +
                                     std::to_string(target.config().vocab) + ")",
         "Use a draft trained with the target's tokenizer (a distilled student)");
  }
  if (cfg.k_min < 1 || cfg.k_max < cfg.k_min || cfg.k_max > 64 || cfg.k < cfg.k_min || cfg.k > cfg.k_max) {
    fail("speculative decoding", "draft lengths must satisfy 1 <= k_min <= k <= k_max <= 64 (got " + std::to_string(cfg.k_min) + " <= " +
                                     std::to_string(cfg.k) + " <= " + std::to_string(cfg.k_max) + ")");
  }
  stats_.proposed_per_pos.assign(size_t(cfg.k_max), 0);
  stats_.accepted_per_pos.assign(size_t(cfg.k_max), 0);
  const size_t v = size_t(target.config().vocab);
  dlogits_.resize(v);
  tlogits_.resize(v * size_t(cfg.k_max + 1));
  q_.resize(size_t(cfg.k_max));
}

void SpeculativeDecoder::start(const std::vector<int>& prompt) {
  if (prompt.empty()) fail("speculative decoding", "the prompt must hold at least the BOS token");
  if (target_.length(tseq_) != 0 || draft_.length(dseq_) != 0) fail("speculative decoding", "the sequences must start empty");
  committed_ = prompt;
  const int n = int(prompt.size()) - 1;
  if (n > 0) {
    target_.step({{tseq_, prompt.data(), n, nullptr, 0}});
    draft_.step({{dseq_, prompt.data(), n, nullptr, 0}});
  }
  pending_ = {prompt.back()};
}

// The k that maximises expected tokens per unit time, from the decayed
// acceptance estimate a (a prior of one accepted trial in two keeps it off 0
// and 1) and the measured draft/target step cost ratio.
void DraftLength::update(int proposed, int accepted, double draft_seconds, double target_seconds) {
  if (proposed > 0) {
    acc_ = kDecay * acc_ + accepted;
    trials_ = kDecay * trials_ + accepted + (accepted < proposed ? 1 : 0);
    const double per_draft = draft_seconds / proposed;
    draft_step_s_ = draft_step_s_ > 0 ? kDecay * draft_step_s_ + (1 - kDecay) * per_draft : per_draft;
  }
  target_step_s_ = target_step_s_ > 0 ? kDecay * target_step_s_ + (1 - kDecay) * target_seconds : target_seconds;
  if (!cfg_.adaptive) return;
  const double a = std::clamp((acc_ + 1.0) / (trials_ + 2.0), 0.0, 0.999);
  const double c = target_step_s_ > 0 ? draft_step_s_ / target_step_s_ : 0.1;
  double best = -1;
  for (int k = cfg_.k_min; k <= cfg_.k_max; ++k) {
    const double rate = (1.0 - std::pow(a, k + 1)) / (1.0 - a) / (double(k) * c + 1.0);
    if (rate > best + 1e-12) {
      best = rate;
      k_ = k;
    }
  }
}

int propose(Sampler& sampler, const float* draft_logits, int vocab, std::vector<float>& q) {
  sampler.distribution(draft_logits, vocab, q);
  return sampler.greedy() ? argmax(draft_logits, vocab) : sampler.sample_weights(q.data(), vocab);
}

int verify_proposals(Sampler& sampler, const std::vector<int>& x, const std::vector<std::vector<float>>& q, const float* target_logits,
                     int vocab, SpecConfig::Rule rule, std::vector<float>& p, std::vector<float>& resid, int* next) {
  const int k = int(x.size());
  for (int n = 0; n < k; ++n) {
    const float* lp = target_logits + size_t(n) * size_t(vocab);
    const int xi = x[size_t(n)];
    if (sampler.greedy()) {
      const int best = argmax(lp, vocab);
      if (best == xi) continue;
      *next = best;
      return n;
    }
    sampler.distribution(lp, vocab, p);
    const float* qn = q[size_t(n)].data();
    // u <= p / q, i.e. accepted with probability min(1, p/q)
    const bool accept = rule == SpecConfig::Rule::NoRejectionTest ||
                        (qn[xi] > 0.f && double(p[size_t(xi)]) >= double(sampler.uniform()) * double(qn[xi]));
    if (accept) continue;
    if (rule == SpecConfig::Rule::ResampleFromTarget) {
      *next = sampler.sample_weights(p.data(), vocab);
    } else {
      resid.resize(size_t(vocab));
      double mass = 0;
      for (int j = 0; j < vocab; ++j) {
        resid[size_t(j)] = std::max(0.f, p[size_t(j)] - qn[j]);
        mass += resid[size_t(j)];
      }
      // p == q to the last bit leaves no residual (a rejection then is rounding): draw from p
      *next = sampler.sample_weights(mass > 0 ? resid.data() : p.data(), vocab);
    }
    return n;
  }
  *next = sampler.sample(target_logits + size_t(k) * size_t(vocab), vocab);  // every proposal accepted: the bonus
  return k;
}

int SpeculativeDecoder::round(Sampler& sampler, int max_new, std::vector<int>& out) {
  if (max_new < 1) fail("speculative decoding", "a round produces at least one token");
  const int vocab = target_.config().vocab;
  const int t_len = target_.length(tseq_), d_len = draft_.length(dseq_);
  // room: the target scores k + 1 positions, the draft feeds pending + k - 1
  int k = std::min(len_.k(), max_new - 1);
  k = std::min(k, target_.max_seq() - t_len - 1);
  k = std::min(k, draft_.max_seq() - d_len - int(pending_.size()) + 1);
  if (target_.max_seq() - t_len < 1) fail("speculative decoding", "the context of " + std::to_string(target_.max_seq()) + " is full");
  k = std::max(k, 0);

  // draft: k tokens, each from its own distribution q_i
  std::vector<int> x(static_cast<size_t>(k));
  auto t0 = clock_type::now();
  for (int i = 0; i < k; ++i) {
    if (i == 0) draft_.step({{dseq_, pending_.data(), int(pending_.size()), dlogits_.data(), 1}});
    else draft_.step({{dseq_, &x[size_t(i - 1)], 1, dlogits_.data(), 1}});
    x[size_t(i)] = propose(sampler, dlogits_.data(), vocab, q_[size_t(i)]);
  }
  const double draft_s = since(t0);
  if (k > 0) pending_.clear();

  // target: the last committed token and the k proposals in one step
  std::vector<int> feed;
  feed.reserve(size_t(k + 1));
  feed.push_back(committed_.back());
  feed.insert(feed.end(), x.begin(), x.end());
  t0 = clock_type::now();
  target_.step({{tseq_, feed.data(), k + 1, tlogits_.data(), k + 1}});
  const double target_s = since(t0);

  int y = -1;
  const int n = verify_proposals(sampler, x, q_, tlogits_.data(), vocab, cfg_.rule, p_, resid_, &y);

  // commit x_1 .. x_n and y; cut what the caches hold beyond the committed prefix
  for (int i = 0; i < n; ++i) committed_.push_back(x[size_t(i)]);
  committed_.push_back(y);
  target_.truncate(tseq_, t_len + 1 + n);
  if (k > 0) {
    if (n < k) {
      draft_.truncate(dseq_, draft_.length(dseq_) - (k - 1 - n));
      pending_ = {y};
    } else {
      pending_ = {x[size_t(k - 1)], y};  // the draft never fed its last proposal
    }
  } else {
    pending_.push_back(y);
  }
  const int made = std::min(n + 1, max_new);
  out.insert(out.end(), committed_.end() - (n + 1), committed_.end() - (n + 1) + made);

  // statistics and the next k
  if (k > 0) {
    ++stats_.drafts;
    stats_.draft_tokens += k;
    stats_.accepted_tokens += n;
    for (int i = 0; i < k; ++i) ++stats_.proposed_per_pos[size_t(i)];
    for (int i = 0; i < n; ++i) ++stats_.accepted_per_pos[size_t(i)];
  }
  stats_.draft_seconds += draft_s;
  stats_.target_seconds += target_s;
  len_.update(k, n, draft_s, target_s);
  return made;
}

void check_draft_fits(const std::string& draft_path, const ModelConfig& draft, const ModelConfig& target) {
  if (draft.vocab != target.vocab) {
    fail("--draft", draft_path + " has a vocabulary of " + std::to_string(draft.vocab) + " tokens, the model " + std::to_string(target.vocab),
         "The draft must use the model's tokenizer (a student distilled from it)");
  }
}

GenerateStats generate_speculative(Engine& target, Engine& draft, const std::vector<int>& prompt, int steps, Sampler& sampler,
                                   const SpecConfig& cfg, const std::function<void(int, int)>& on_token, std::vector<int>* out,
                                   bool stop_at_eos, SpecStats* spec_stats) {
  check_generation(target, prompt, steps);
  check_generation(draft, prompt, steps, "the draft's");
  const ModelConfig& c = target.config();
  GenerateStats st;
  st.prompt_tokens = int(prompt.size());
  SpeculativeDecoder dec(target, draft, cfg);
  auto t0 = clock_type::now();
  dec.start(prompt);
  st.prefill_seconds = since(t0);
  int prev = prompt.back();
  std::vector<int> fresh;
  t0 = clock_type::now();
  bool done = false;
  while (!done && st.generated < steps) {
    fresh.clear();
    dec.round(sampler, steps - st.generated, fresh);
    for (int t : fresh) {
      if (stop_at_eos && (t == c.eos_id || t == c.bos_id)) {
        st.stop_token = t;
        done = true;
        break;
      }
      ++st.generated;
      if (out) out->push_back(t);
      if (on_token) on_token(prev, t);
      prev = t;
    }
  }
  st.decode_seconds = since(t0);
  st.decode_steps = st.generated;
  if (spec_stats) *spec_stats = dec.stats();
  return st;
}

}  // namespace condense
