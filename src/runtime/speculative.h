// Speculative decoding (Leviathan et al. 2023, arXiv 2211.17192; Chen et al.
// 2023): a small draft model proposes k tokens one at a time, the target scores
// all k + 1 positions in one step, and the rejection rule keeps the target's
// output distribution exactly: token x_i is accepted with probability
// min(1, p(x_i) / q(x_i)); at the first rejection one token is drawn from
// norm(max(0, p - q)) and the round ends; when all k are accepted a bonus
// token is drawn from the target's next distribution. p and q are what the
// Sampler draws from (temperature, top-k, top-p applied to both). At
// temperature 0 the rule reduces to prefix matching against the target's
// argmax, so greedy output equals plain greedy decoding token for token.
// Rejected positions are cut from both KV caches (Engine::truncate).
//
// k adapts (bounded k_min..k_max) to the running per-token acceptance rate a
// and the measured cost c of a draft step relative to a target step: the k
// that maximises the expected tokens per unit of time,
// (1 - a^(k+1)) / (1 - a) / (k c + 1).
#pragma once
#include <cstdint>
#include <string>
#include <functional>
#include <vector>

#include "runtime/engine.h"
#include "runtime/generate.h"
#include "runtime/sampler.h"

namespace condense {

struct SpecConfig {
  int k = 4;                 // draft tokens of the first round
  int k_min = 1, k_max = 8;  // adaptive k stays within these
  bool adaptive = true;
  // Tests only: deliberately wrong rules, to show the distribution test fails on them.
  enum class Rule : uint8_t {
    Exact,
    ResampleFromTarget,  // on rejection draw from p instead of norm(max(0, p - q))
    NoRejectionTest,     // accept every draft token (the draft's distribution, not the target's)
  } rule = Rule::Exact;
};

// Counters as vLLM names them (spec_decode_*): a "draft" is one round.
struct SpecStats {
  int64_t drafts = 0, draft_tokens = 0, accepted_tokens = 0;
  std::vector<int64_t> proposed_per_pos, accepted_per_pos;  // [k_max]: rounds that proposed / accepted position i
  double draft_seconds = 0, target_seconds = 0;
  // accepted / proposed (a fraction; vLLM's bench prints it x100), and
  // 1 + accepted / drafts: tokens per target step.
  double acceptance_rate() const { return draft_tokens ? double(accepted_tokens) / double(draft_tokens) : 0.0; }
  double acceptance_length() const { return drafts ? 1.0 + double(accepted_tokens) / double(drafts) : 0.0; }
  double per_position_rate(size_t i) const {
    return i < proposed_per_pos.size() && proposed_per_pos[i] ? double(accepted_per_pos[i]) / double(proposed_per_pos[i]) : 0.0;
  }
};

// The rejection test of one round. x: the k proposals; q: the draft's
// distribution each was drawn from; target_logits: the target's k + 1 rows
// (row i scores the position of x_i; row k the bonus). Returns how many
// proposals are accepted and sets *next to the corrected (or bonus) token.
// p and resid are scratch.
int verify_proposals(Sampler& sampler, const std::vector<int>& x, const std::vector<std::vector<float>>& q, const float* target_logits,
                     int vocab, SpecConfig::Rule rule, std::vector<float>& p, std::vector<float>& resid, int* next);

// A proposal drawn from the draft's logits: argmax when greedy, else from q
// (the sampler's distribution, written to q).
int propose(Sampler& sampler, const float* draft_logits, int vocab, std::vector<float>& q);

// Adaptive draft length: decayed per-token acceptance and step-time estimates.
class DraftLength {
 public:
  explicit DraftLength(const SpecConfig& cfg) : cfg_(cfg), k_(cfg.k) {}
  int k() const { return k_; }
  // After a round that proposed `proposed` and accepted `accepted` tokens.
  void update(int proposed, int accepted, double draft_seconds, double target_seconds);

 private:
  SpecConfig cfg_;
  int k_;
  double acc_ = 0, trials_ = 0, draft_step_s_ = 0, target_step_s_ = 0;
};

// One sequence decoded speculatively: `target_seq` on the target engine and
// `draft_seq` on the draft engine (both must exist and be empty).
class SpeculativeDecoder {
 public:
  SpeculativeDecoder(Engine& target, Engine& draft, const SpecConfig& cfg, int target_seq = 0, int draft_seq = 0);

  // Feeds the prompt (it must hold at least one token) to both models, all
  // but its last token, which the first round scores.
  void start(const std::vector<int>& prompt);
  // One round: appends 1 .. k + 1 new tokens (at most max_new >= 1) to out
  // and returns how many.
  int round(Sampler& sampler, int max_new, std::vector<int>& out);

  const SpecStats& stats() const { return stats_; }
  int k() const { return len_.k(); }
  int length() const { return int(committed_.size()); }  // prompt + generated

 private:
  Engine& target_;
  Engine& draft_;
  SpecConfig cfg_;
  int tseq_, dseq_;
  std::vector<int> committed_;  // every token so far; the last one is not yet in either cache
  std::vector<int> pending_;    // committed tokens the draft's cache lacks (ends with the last one)
  DraftLength len_;
  SpecStats stats_;
  std::vector<float> dlogits_, tlogits_, p_, resid_;
  std::vector<std::vector<float>> q_;         // the draft's distributions of this round
};

// Fails (naming --draft) unless a draft with config `draft` can serve a
// target with config `target` (the same vocabulary).
void check_draft_fits(const std::string& draft_path, const ModelConfig& draft, const ModelConfig& target);

// generate() with a draft: the same stopping rules (BOS/EOS unless
// !stop_at_eos, `steps` tokens at most) and callbacks. In the stats,
// decode_steps counts generated tokens and decode_seconds the rounds' time, so
// decode_tok_s() is generated tokens per second; prefill excludes the prompt's
// last token (the first round scores it).
GenerateStats generate_speculative(Engine& target, Engine& draft, const std::vector<int>& prompt, int steps, Sampler& sampler,
                                   const SpecConfig& cfg, const std::function<void(int, int)>& on_token, std::vector<int>* out,
                                   bool stop_at_eos, SpecStats* spec_stats);

}  // namespace condense
