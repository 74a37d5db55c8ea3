// Report inputs written as condense writes them (results.json and
// condense-bench/1 files), for the report's tests.
#pragma once
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/test_util.h"

namespace testfix {

using nlohmann::json;

inline nlohmann::json results(const std::string& name, const std::string& model, double dppl, double params) {
  return {{"recipe", name},
          {"recipe_source", {{"name", name}, {"teacher", {{"model", "teacher.bin"}}}, {"stages", json::array({{{"type", "quantize"}}})}}},
          {"output_model", model},
          {"student", {{"params", params}}},
          {"stages", json::array({{{"name", "quantize"}, {"type", "quantize"}, {"summary", {{"scheme", "int4 g32 sym"}}}}})},
          {"eval", {{"student_ppl", 5.0 * (1 + dppl / 100)}, {"teacher_ppl", 5.0}, {"vs_teacher", {{"delta_ppl_pct", dppl}, {"kl_mean", dppl / 100}, {"kl_p99", dppl / 10}, {"top1_agreement", 1 - dppl / 200}}}}},
          {"machine", {{"cpu", "TestCPU"}, {"isa", "avx2"}, {"threads", 1}}}};
}

inline nlohmann::json bench(const std::string& model, double bytes, double tpot_ms) {
  return {{"schema", "condense-bench/1"},
          {"date", "2026-11-30T00:00:00Z"},
          {"condense", {{"version", "0.1.0"}, {"revision", "abc123"}}},
          {"model", {{"path", model}, {"weight_bytes", bytes}, {"params", 1000.0}, {"linears", "blocks: int4 g32 x int16"}}},
          {"machine", {{"cpu", "TestCPU"}, {"isa", "avx2"}, {"threads", 1}}},
          {"decode", json::array({{{"batch", 4}, {"context", 8}, {"tok_s", 1.0}, {"step_ms_p50", 99.0}},
                                  {{"batch", 1}, {"context", 8}, {"tok_s", 1000 / tpot_ms}, {"step_ms_p50", tpot_ms}, {"step_ms_p99", tpot_ms * 1.2}}})}};
}

struct ReportRuns {
  testutil::TempDir dir;
  std::vector<std::string> paths;
  ReportRuns() {
    // (ΔPPL %, MB, TPOT ms): a dominates c in both charts; b and d trade off.
    const struct { const char* name; double dppl, bytes, tpot; } rows[] = {
        {"a", 1.0, 4e6, 2.0}, {"b", 0.5, 8e6, 3.0}, {"c", 2.0, 5e6, 2.5}, {"d", 3.0, 2e6, 1.5}, {"e", 0.5, 8e6, 3.0}};
    for (const auto& r : rows) {
      const std::string run = dir / r.name;
      std::filesystem::create_directories(run);
      const std::string model = run + "/model.cpk";
      testutil::write_file(run + "/results.json", results(std::string("v-") + r.name, model, r.dppl, 1000).dump());
      testutil::write_file(run + "/bench.json", bench(model, r.bytes, r.tpot).dump());
      paths.push_back(run);
    }
    testutil::write_file(dir / "teacher-bench.json", bench("teacher.bin", 16e6, 4.0).dump());
    paths.push_back(dir / "teacher-bench.json");
  }
};

}  // namespace testfix
