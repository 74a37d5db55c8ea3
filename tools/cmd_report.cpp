// condense report RUN... --out report.html [--json F] [--csv F]: the Pareto
// report of recipe runs and benchmarks (src/report/).
#include <cstdio>
#include <iostream>

#include "io/atomic_writer.h"
#include "report/report_html.h"
#include "report/variants.h"
#include "tools/cli_common.h"

namespace condense::cli {

namespace {
struct ReportArgs {
  std::vector<std::string> runs;
  std::string out, json, csv, title = "condense report";
};
}  // namespace

void register_report(CLI::App& app) {
  auto* cmd = app.add_subcommand("report",
                                 "Pareto report of compressed variants: quality against decode latency and size, as one offline HTML page "
                                 "(and JSON / CSV); docs/REPORT.md");
  auto a = std::make_shared<ReportArgs>();
  cmd->add_option("runs", a->runs,
                  "Recipe output folders (results.json, and bench*.json beside it), results.json files, or `condense bench --json` files; "
                  "joined by model path")
      ->required();
  cmd->add_option("--out", a->out, "The HTML report to write")->required();
  cmd->add_option("--json", a->json, "Also write the rows as JSON (schema condense-report/1)");
  cmd->add_option("--csv", a->csv, "Also write the rows as CSV");
  cmd->add_option("--title", a->title, "The page's title");
  cmd->callback([a] {
    const std::vector<report::Variant> v = report::load_variants(a->runs);
    write_file_atomically(a->out, report::render_html(v, a->title));
    if (!a->json.empty()) write_file_atomically(a->json, report::to_json(v).dump(1) + "\n");
    if (!a->csv.empty()) write_file_atomically(a->csv, report::to_csv(v));
    const report::Fronts f = report::fronts_of(v);
    std::printf("%-40s %9s %9s %9s  %s\n", "variant", "dPPL %", "TPOT ms", "MB", "front");
    for (size_t i = 0; i < v.size(); ++i) {
      auto n = [](double x, const char* fmt) {
        char b[32];
        std::snprintf(b, sizeof b, fmt, x);
        return x == x ? std::string(b) : std::string("-");
      };
      std::printf("%-40s %9s %9s %9s  %s%s\n", v[i].name.c_str(), n(v[i].delta_ppl_pct, "%.3f").c_str(), n(v[i].tpot_p50_ms, "%.3f").c_str(),
                  n(v[i].weight_bytes * 1e-6, "%.2f").c_str(), f.latency[i] ? "latency " : "", f.size[i] ? "size" : "");
    }
    std::printf("wrote %s\n", a->out.c_str());
  });
}

}  // namespace condense::cli
