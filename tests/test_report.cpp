// The report: variants joined from results.json and bench JSON written here
// (the schemas condense writes), the front marks in the SVG against
// pareto_front, byte-identical output for the same inputs, no network
// reference in the page, CSV/JSON rows, and errors that name the file.
#include <gtest/gtest.h>

#include <regex>
#include <set>

#include "core/error.h"
#include "report/pareto.h"
#include "report/report_html.h"
#include "report/variants.h"
#include "tests/test_util.h"

using namespace condense;
using nlohmann::json;

namespace {

json results(const std::string& name, const std::string& model, double dppl, double params) {
  return {{"recipe", name},
          {"recipe_source", {{"name", name}, {"teacher", {{"model", "teacher.bin"}}}, {"stages", json::array({{{"type", "quantize"}}})}}},
          {"output_model", model},
          {"student", {{"params", params}}},
          {"stages", json::array({{{"name", "quantize"}, {"type", "quantize"}, {"summary", {{"scheme", "int4 g32 sym"}}}}})},
          {"eval", {{"student_ppl", 5.0 * (1 + dppl / 100)}, {"vs_teacher", {{"delta_ppl_pct", dppl}, {"kl_mean", dppl / 100}, {"kl_p99", dppl / 10}, {"top1_agreement", 1 - dppl / 200}}}}},
          {"machine", {{"cpu", "TestCPU"}, {"isa", "avx2"}, {"threads", 1}}}};
}

json bench(const std::string& model, double bytes, double tpot_ms) {
  return {{"schema", "condense-bench/1"},
          {"date", "2026-11-30T00:00:00Z"},
          {"model", {{"path", model}, {"weight_bytes", bytes}, {"params", 1000.0}, {"linears", "blocks: int4 g32 x int16"}}},
          {"machine", {{"cpu", "TestCPU"}, {"isa", "avx2"}, {"threads", 1}}},
          {"decode", json::array({{{"batch", 4}, {"context", 8}, {"tok_s", 1.0}, {"step_ms_p50", 99.0}},
                                  {{"batch", 1}, {"context", 8}, {"tok_s", 1000 / tpot_ms}, {"step_ms_p50", tpot_ms}, {"step_ms_p99", tpot_ms * 1.2}}})}};
}

struct Runs {
  testutil::TempDir dir;
  std::vector<std::string> paths;
  Runs() {
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

}  // namespace

TEST(Report, JoinsResultsAndBenchByModel) {
  Runs r;
  const auto v = report::load_variants(r.paths);
  ASSERT_EQ(v.size(), 6u);
  EXPECT_EQ(v[0].name, "v-a");
  EXPECT_DOUBLE_EQ(v[0].delta_ppl_pct, 1.0);
  EXPECT_DOUBLE_EQ(v[0].tpot_p50_ms, 2.0);  // batch 1, not the batch-4 row before it
  EXPECT_DOUBLE_EQ(v[0].tpot_p99_ms, 2.4);
  EXPECT_DOUBLE_EQ(v[0].bits_per_weight, 8 * 4e6 / 1000);
  EXPECT_EQ(v[0].sources.size(), 2u);
  EXPECT_TRUE(v[5].reference);  // the recipes' teacher
  EXPECT_DOUBLE_EQ(v[5].delta_ppl_pct, 0.0);
  EXPECT_EQ(v[0].recipe["name"], "v-a");
}

TEST(Report, SvgMarksAndFrontsAreTheParetoFronts) {
  Runs r;
  const auto v = report::load_variants(r.paths);
  const std::string html = report::render_html(v, "t");
  for (const char* chart : {"chart-latency", "chart-size"}) {
    const size_t a = html.find(std::string("<svg id=\"") + chart), b = html.find("</svg>", a);
    ASSERT_NE(a, std::string::npos);
    const std::string svg = html.substr(a, b - a);
    std::set<int> front, all;
    const std::regex mark("<circle class=\"pt (front|dominated)\" data-variant=\"(\\d+)\"");
    for (auto it = std::sregex_iterator(svg.begin(), svg.end(), mark); it != std::sregex_iterator(); ++it) {
      all.insert(std::stoi((*it)[2]));
      if ((*it)[1] == "front") front.insert(std::stoi((*it)[2]));
    }
    EXPECT_EQ(all.size(), v.size()) << chart << ": one mark per variant";
    std::vector<std::array<double, 2>> pts;
    for (const auto& x : v) pts.push_back({std::string(chart) == "chart-latency" ? x.tpot_p50_ms : x.weight_bytes, x.delta_ppl_pct});
    const auto f = report::pareto_front(pts);
    std::set<int> expect;
    for (size_t i = 0; i < f.size(); ++i) {
      if (f[i]) expect.insert(int(i));
    }
    EXPECT_EQ(front, expect) << chart;
  }
  // b and e are equal: both on the size front (neither dominates the other); c is dominated by a.
  const auto fr = report::fronts_of(v);
  EXPECT_TRUE(fr.size[1] && fr.size[4]);
  EXPECT_FALSE(fr.size[2] || fr.latency[2]);
}

TEST(Report, SameInputsSameBytesAndNoNetwork) {
  Runs r;
  const auto v = report::load_variants(r.paths);
  const std::string h1 = report::render_html(v, "t"), h2 = report::render_html(report::load_variants(r.paths), "t");
  EXPECT_EQ(h1, h2);
  EXPECT_EQ(report::to_csv(v), report::to_csv(report::load_variants(r.paths)));
  for (const char* net : {"http://", "https://", "src=", "@import", "url("}) EXPECT_EQ(h1.find(net), std::string::npos) << net;
  const std::string csv = report::to_csv(v);
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 7);  // header + 6 rows
  const json j = report::to_json(v);
  EXPECT_EQ(j["schema"], "condense-report/1");
  EXPECT_EQ(j["variants"].size(), 6u);
}

TEST(Report, ForeignFilesAreNamed) {
  testutil::TempDir d;
  testutil::write_file(d / "x.json", R"({"hello": 1})");
  testutil::write_file(d / "y.json", "not json");
  for (const char* f : {"x.json", "y.json", "missing.json"}) {
    try {
      report::load_variants({d / f});
      ADD_FAILURE() << f << " accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(f), std::string::npos) << e.what();
    }
  }
}
