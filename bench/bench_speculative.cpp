// Speculative decoding speed on one target with one or more drafts: plain
// decoding against speculative decoding, greedy (T = 0) and sampled (T = 1),
// the same prompts and the same number of generated tokens (EOS does not stop
// either), on --threads threads (default 1). Reports generated tokens per
// second over the decode phase, the speedup, and vLLM's spec_decode_*
// numbers per draft; writes one JSON object (stdout, or --out FILE).
//   bench_speculative TARGET --draft MODEL [--draft MODEL ...] [--steps 200] [--reps 3]
//                     [--threads 1] [--k 4] [--k-max 8] [--out FILE]
#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "io/model_loader.h"
#include "kernels/cpu/cpu_features.h"
#include "runtime/generate.h"
#include "runtime/speculative.h"

using namespace condense;
using nlohmann::json;

namespace {

const char* const kPrompts[] = {"Once upon a time", "The little dog", "One day, a girl named", "Tom and his mom went to the"};

struct Run {
  double seconds = 0;
  int64_t tokens = 0;
  SpecStats spec;
};

// Every prompt once: decode seconds and generated tokens summed.
Run run_all(Engine& target, Engine* draft, const std::vector<std::vector<int>>& prompts, int steps, float temperature,
            const SpecConfig& sc) {
  Run r;
  uint64_t seed = 7;
  for (const auto& p : prompts) {
    target.truncate(0, 0);
    if (draft) draft->truncate(0, 0);
    Sampler s(temperature, 1.f, seed++);
    SpecStats ss;
    const GenerateStats st = draft ? generate_speculative(target, *draft, p, steps, s, sc, {}, nullptr, false, &ss)
                                   : generate(target, p, steps, s, {}, nullptr, false);
    // plain decoding: its first token comes from the prefill's logits
    r.tokens += draft ? st.generated : st.decode_steps;
    r.seconds += st.decode_seconds;
    r.spec.drafts += ss.drafts;
    r.spec.draft_tokens += ss.draft_tokens;
    r.spec.accepted_tokens += ss.accepted_tokens;
    r.spec.draft_seconds += ss.draft_seconds;
    r.spec.target_seconds += ss.target_seconds;
    r.spec.proposed_per_pos.resize(ss.proposed_per_pos.size());
    r.spec.accepted_per_pos.resize(ss.accepted_per_pos.size());
    for (size_t i = 0; i < ss.proposed_per_pos.size(); ++i) {
      r.spec.proposed_per_pos[i] += ss.proposed_per_pos[i];
      r.spec.accepted_per_pos[i] += ss.accepted_per_pos[i];
    }
  }
  return r;
}

// The repetition with the best tokens per second (the machine is shared).
Run best_of(int reps, Engine& target, Engine* draft, const std::vector<std::vector<int>>& prompts, int steps, float t,
            const SpecConfig& sc) {
  Run best;
  for (int i = 0; i < reps; ++i) {
    Run r = run_all(target, draft, prompts, steps, t, sc);
    if (i == 0 || r.tokens / r.seconds > best.tokens / best.seconds) best = r;
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  std::string target_path, out_path;
  std::vector<std::string> drafts;
  int steps = 200, reps = 3, threads = 1;
  SpecConfig sc;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw std::runtime_error(a + " needs a value");
      return argv[++i];
    };
    try {
      if (a == "--draft") drafts.push_back(value());
      else if (a == "--steps") steps = std::stoi(value());
      else if (a == "--reps") reps = std::stoi(value());
      else if (a == "--threads") threads = std::stoi(value());
      else if (a == "--k") sc.k = std::stoi(value());
      else if (a == "--k-max") sc.k_max = std::stoi(value());
      else if (a == "--out") out_path = value();
      else if (a.rfind("--", 0) == 0) throw std::runtime_error("unknown option " + a);
      else target_path = a;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "bench_speculative: %s\n", e.what());
      return 2;
    }
  }
  if (target_path.empty() || drafts.empty()) {
    std::fprintf(stderr, "usage: bench_speculative TARGET --draft MODEL [--draft MODEL ...] [--steps 200] [--reps 3] [--threads 1] "
                         "[--k 4] [--k-max 8] [--out FILE]\n");
    return 2;
  }
  try {
    omp_set_num_threads(threads);
    LoadedModel tm = load_model(target_path, "", {.effective_f32 = false});
    // text prompts; a model without a tokenizer (a `condense init` shape) gets fixed token ids
    std::vector<std::vector<int>> prompts;
    for (size_t i = 0; i < std::size(kPrompts); ++i) {
      std::vector<int> p{tm.model.config.bos_id};
      if (tm.tokenizer) {
        for (int id : tm.tokenizer->encode(kPrompts[i])) p.push_back(id);
      } else {
        for (int j = 0; j < 4 + int(i); ++j) p.push_back(int((17 + 31 * i + 7 * j) % uint64_t(tm.model.config.vocab)));
      }
      prompts.push_back(p);
    }
    const int max_seq = std::min<int>(tm.model.config.max_seq, int(prompts.back().size()) + steps + 8);
    Engine target(tm.model, max_seq);
    json j = {{"target", target_path}, {"threads", threads}, {"isa", kernels::isa_name(kernels::active_isa())},
              {"cpu", kernels::cpu_name()}, {"steps", steps}, {"prompts", prompts.size()}, {"reps", reps},
              {"k_start", sc.k}, {"k_max", sc.k_max}, {"target_linears", target.describe_linears()},
              {"prompt_kind", tm.tokenizer ? "text" : "token ids (no tokenizer)"}};
    for (const float t : {0.f, 1.f}) {
      const Run base = best_of(reps, target, nullptr, prompts, steps, t, sc);
      json jt = {{"temperature", t}, {"plain_tok_s", base.tokens / base.seconds}};
      json per_draft = json::array();
      for (const std::string& dp : drafts) {
        LoadedModel dm = load_model(dp, "", {.effective_f32 = false});
        Engine draft(dm.model, std::min(dm.model.config.max_seq, max_seq));
        const Run r = best_of(reps, target, &draft, prompts, steps, t, sc);
        json pos = json::array();
        for (size_t i = 0; i < r.spec.proposed_per_pos.size() && r.spec.proposed_per_pos[i] > 0; ++i) pos.push_back(r.spec.per_position_rate(i));
        const double tok_s = r.tokens / r.seconds;
        per_draft.push_back({{"draft", dp}, {"draft_layers", dm.model.config.n_layers}, {"tok_s", tok_s},
                             {"speedup", tok_s / (base.tokens / base.seconds)},
                             {"spec_decode_num_drafts", r.spec.drafts}, {"spec_decode_draft_tokens", r.spec.draft_tokens},
                             {"spec_decode_accepted_tokens", r.spec.accepted_tokens},
                             {"spec_decode_acceptance_rate", 100.0 * r.spec.acceptance_rate()},
                             {"spec_decode_acceptance_length", r.spec.acceptance_length()},
                             {"spec_decode_per_position_acceptance_rates", pos},
                             {"draft_time_share", r.spec.draft_seconds / (r.spec.draft_seconds + r.spec.target_seconds)}});
        std::fprintf(stderr, "T=%.0f %s: %.0f tok/s vs %.0f plain (x%.2f), acceptance %.1f%%, %.2f tokens/step\n", t, dp.c_str(), tok_s,
                     base.tokens / base.seconds, tok_s / (base.tokens / base.seconds), 100.0 * r.spec.acceptance_rate(),
                     r.spec.acceptance_length());
      }
      jt["drafts"] = per_draft;
      j[t == 0.f ? "greedy" : "sampled_t1"] = jt;
    }
    if (out_path.empty()) {
      std::printf("%s\n", j.dump(2).c_str());
    } else {
      std::ofstream(out_path) << j.dump(2) << "\n";
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_speculative: %s\n", e.what());
    return 1;
  }
}
