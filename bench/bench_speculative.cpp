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
#include "runtime/spec_bench.h"
#include "runtime/speculative.h"

using namespace condense;
using nlohmann::json;

namespace {
const char* const kPrompts[] = {"Once upon a time", "The little dog", "One day, a girl named", "Tom and his mom went to the"};
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
      const SpecPoint base = time_generation(target, nullptr, prompts, steps, reps, t, sc);
      json jt = {{"temperature", t}, {"plain_tok_s", base.tok_s()}};
      json per_draft = json::array();
      for (const std::string& dp : drafts) {
        LoadedModel dm = load_model(dp, "", {.effective_f32 = false});
        Engine draft(dm.model, std::min(dm.model.config.max_seq, max_seq));
        const SpecPoint r = time_generation(target, &draft, prompts, steps, reps, t, sc);
        json row = spec_point_json(r, base);
        row["draft"] = dp;
        row["draft_layers"] = dm.model.config.n_layers;
        per_draft.push_back(row);
        std::fprintf(stderr, "T=%.0f %s: %.0f tok/s vs %.0f plain (x%.2f), acceptance %.1f%%, %.2f tokens/step\n", t, dp.c_str(), r.tok_s(),
                     base.tok_s(), r.tok_s() / base.tok_s(), 100.0 * r.spec.acceptance_rate(), r.spec.acceptance_length());
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
