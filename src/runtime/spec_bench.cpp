#include "runtime/spec_bench.h"

#include "runtime/generate.h"

namespace condense {

namespace {

SpecPoint run_once(Engine& target, Engine* draft, const std::vector<std::vector<int>>& prompts, int steps, float temperature,
                   const SpecConfig& cfg) {
  SpecPoint r;
  uint64_t seed = 7;
  for (const auto& p : prompts) {
    target.truncate(0, 0);
    if (draft) draft->truncate(0, 0);
    Sampler s(temperature, 1.f, seed++);
    SpecStats ss;
    const GenerateStats st = draft ? generate_speculative(target, *draft, p, steps, s, cfg, {}, nullptr, false, &ss)
                                   : generate(target, p, steps, s, {}, nullptr, false);
    r.tokens += draft ? st.generated : st.decode_steps;  // plain decoding's first token comes from the prefill
    r.seconds += st.decode_seconds;
    SpecStats& a = r.spec;
    a.drafts += ss.drafts;
    a.draft_tokens += ss.draft_tokens;
    a.accepted_tokens += ss.accepted_tokens;
    a.draft_seconds += ss.draft_seconds;
    a.target_seconds += ss.target_seconds;
    a.proposed_per_pos.resize(std::max(a.proposed_per_pos.size(), ss.proposed_per_pos.size()));
    a.accepted_per_pos.resize(a.proposed_per_pos.size());
    for (size_t i = 0; i < ss.proposed_per_pos.size(); ++i) {
      a.proposed_per_pos[i] += ss.proposed_per_pos[i];
      a.accepted_per_pos[i] += ss.accepted_per_pos[i];
    }
  }
  return r;
}

}  // namespace

SpecPoint time_generation(Engine& target, Engine* draft, const std::vector<std::vector<int>>& prompts, int steps, int reps,
                          float temperature, const SpecConfig& cfg) {
  SpecPoint best;
  for (int i = 0; i < std::max(1, reps); ++i) {
    SpecPoint r = run_once(target, draft, prompts, steps, temperature, cfg);
    if (i == 0 || r.tok_s() > best.tok_s()) best = r;
  }
  return best;
}

nlohmann::json spec_point_json(const SpecPoint& p, const SpecPoint& plain) {
  const SpecStats& s = p.spec;
  nlohmann::json pos = nlohmann::json::array();
  for (size_t i = 0; i < s.proposed_per_pos.size() && s.proposed_per_pos[i] > 0; ++i) pos.push_back(s.per_position_rate(i));
  const double busy = s.draft_seconds + s.target_seconds;
  return {{"tok_s", p.tok_s()}, {"plain_tok_s", plain.tok_s()}, {"speedup", plain.tok_s() > 0 ? p.tok_s() / plain.tok_s() : 0.0},
          {"spec_decode_num_drafts", s.drafts}, {"spec_decode_draft_tokens", s.draft_tokens},
          {"spec_decode_accepted_tokens", s.accepted_tokens}, {"spec_decode_acceptance_rate", 100.0 * s.acceptance_rate()},
          {"spec_decode_acceptance_length", s.acceptance_length()}, {"spec_decode_per_position_acceptance_rates", pos},
          {"draft_time_share", busy > 0 ? s.draft_seconds / busy : 0.0}, {"target_time_share", busy > 0 ? s.target_seconds / busy : 0.0}};
}

}  // namespace condense
