// condense sweep SPEC.json [--budget B]: a grid of compressed variants, cached,
// evaluated, benchmarked and reported (src/pipeline/sweep.h, docs/SWEEP.md).
#include <cstdio>
#include <iostream>

#include "pipeline/mixed_precision.h"
#include "pipeline/recipe.h"
#include "pipeline/sweep.h"
#include "report/report_html.h"
#include "tools/cli_common.h"

namespace condense::cli {

namespace {
struct SweepArgs {
  std::string spec, budget;
  std::vector<std::string> sets;
  bool dry_run = false, log_json = false;
  int threads = 0;
};
}  // namespace

void register_sweep(CLI::App& app) {
  auto* cmd = app.add_subcommand("sweep",
                                 "Run a grid of compressed variants of one teacher (cached by recipe and teacher hash), evaluate and bench "
                                 "each, write the Pareto report; docs/SWEEP.md");
  auto a = std::make_shared<SweepArgs>();
  cmd->add_option("spec", a->spec, "Sweep spec (JSON: teacher, data, eval, grid, bench, output)")->required()->check(CLI::ExistingFile);
  cmd->add_option("--budget", a->budget, "Name the best-quality variant within size<=BYTES[K|M|G] or tpot_p99<=MS");
  cmd->add_option("--set", a->sets, "Override a value of the spec: key=value (as `condense run --set`)");
  cmd->add_flag("--dry-run", a->dry_run, "List the variants (and the skipped combinations); run nothing");
  cmd->add_flag("--log-json", a->log_json, "Progress as JSON lines on stderr");
  add_threads_option(*cmd, a->threads);
  cmd->callback([a] {
    nlohmann::json spec = pipeline::load_recipe_json(a->spec);
    for (const std::string& s : a->sets) pipeline::apply_set(spec, s);
    if (a->dry_run) {
      std::vector<std::string> skipped;
      for (const auto& p : pipeline::expand_sweep(spec, &skipped)) std::cout << p.name << "\n";
      for (const auto& s : skipped) std::cout << "skipped " << s << "\n";
      const pipeline::MixedSpec ms = pipeline::parse_mixed(spec);
      for (const auto& b : ms.budgets) {
        std::cout << "mixed at " << b.dump() << (b.is_number() ? " bits per weight" : " (that option's uniform size)") << " (" << ms.method
                  << "; formats chosen after the sensitivity pass)\n";
      }
      for (double t : ms.tpot_ms) std::cout << "mixed at " << t << " ms per token (" << ms.method << "; formats chosen after the sensitivity pass)\n";
      return;
    }
    apply_threads(a->threads);
    const pipeline::SweepResult r = pipeline::run_sweep(spec, {a->log_json});
    const report::Fronts f = report::fronts_of(r.variants);
    std::printf("%-34s %9s %9s %9s  %s\n", "variant", "dPPL %", "TPOT99 ms", "MB", "front");
    for (size_t i = 0; i < r.variants.size(); ++i) {
      const auto& v = r.variants[i];
      std::printf("%-34s %9.3f %9.3f %9.2f  %s%s\n", v.name.c_str(), v.delta_ppl_pct, v.tpot_p99_ms, v.weight_bytes * 1e-6,
                  f.latency[i] ? "latency " : "", f.size[i] ? "size" : "");
    }
    std::printf("ran %zu, cached %zu; wrote %s\n", r.ran.size(), r.cached.size(), r.report.c_str());
    if (!a->budget.empty()) {
      const auto best = pipeline::best_within(r.variants, a->budget);
      if (best) std::printf("best within %s: %s (dPPL %.3f%%)\n", a->budget.c_str(), best->name.c_str(), best->delta_ppl_pct);
      else std::printf("no variant within %s\n", a->budget.c_str());
    }
  });
}

}  // namespace condense::cli
