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
#include "tests/report_fixture.h"
#include "tests/test_util.h"

using namespace condense;
using nlohmann::json;


TEST(Report, JoinsResultsAndBenchByModel) {
  testfix::ReportRuns r;
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
  EXPECT_DOUBLE_EQ(v[5].ppl, 5.0);  // the teacher's, from the recipes' evaluation
  EXPECT_EQ(v[0].recipe["name"], "v-a");
  EXPECT_EQ(v[0].revision, "abc123");
}

TEST(Report, SvgMarksAndFrontsAreTheParetoFronts) {
  testfix::ReportRuns r;
  const auto v = report::load_variants(r.paths);
  const std::string html = report::render_html(v, "t");
  for (const char* chart : {"chart-latency", "chart-size", "chart-bits"}) {
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
    for (const auto& x : v) {
      const std::string c = chart;
      pts.push_back({c == "chart-latency" ? x.tpot_p50_ms : c == "chart-size" ? x.weight_bytes : x.bits_per_weight, x.delta_ppl_pct});
    }
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
  testfix::ReportRuns r;
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

TEST(Report, LoadBenchmarksJoinTheirModelAndGainChartsAndRows) {
  testfix::ReportRuns r;
  // A load sweep as `condense bench --model` writes it, for the first variant's model.
  const auto base = report::load_variants(r.paths);
  json runs = json::array();
  for (int c : {1, 4, 16}) {
    runs.push_back({{"max_concurrency", c}, {"request_rate", "inf"}, {"output_throughput", 100.0 * c}, {"request_goodput", nullptr},
                    {"p50_ttft_ms", 10.0 * c}, {"p99_ttft_ms", 20.0 * c}, {"p50_tpot_ms", 1.0 + c}, {"p99_tpot_ms", 1.5 + c},
                    {"p99_itl_ms", 3.0}, {"p99_e2el_ms", 500.0}, {"completed", 2 * c}, {"failed", 0}});
  }
  const json load = {{"schema", "condense-bench/1"}, {"kind", "load"}, {"model", {{"path", base[0].model}}},
                     {"target", {{"kind", "engine"}}}, {"runs", runs}};
  const std::string lp = r.dir / "load.json";
  testutil::write_file(lp, load.dump());
  auto paths = r.paths;
  paths.push_back(lp);
  const auto v = report::load_variants(paths);
  ASSERT_EQ(v.size(), base.size()) << "joined by model path, not a new variant";
  ASSERT_EQ(v[0].load.size(), 3u);
  EXPECT_EQ(v[0].load[2].label, "concurrency 16");
  EXPECT_DOUBLE_EQ(v[0].load[2].output_tok_s, 1600);
  EXPECT_DOUBLE_EQ(v[0].load[1].tpot_p99_ms, 5.5);
  EXPECT_EQ(v[0].load_target, "in-process");
  const std::string html = report::render_html(v, "t");
  EXPECT_NE(html.find("id=\"chart-load\""), std::string::npos);
  EXPECT_NE(html.find("id=\"chart-ttft\""), std::string::npos);
  EXPECT_NE(html.find("<table id=\"load\">"), std::string::npos);
  // Three points on each load chart, one line.
  const std::string chart = html.substr(html.find("id=\"chart-load\""), html.find("id=\"chart-ttft\"") - html.find("id=\"chart-load\""));
  size_t pts = 0;
  for (size_t p = 0; (p = chart.find("<circle", p)) != std::string::npos; ++p) ++pts;
  EXPECT_EQ(pts, 3u);
  const json j = report::to_json(v);
  EXPECT_EQ(j["variants"][0]["load"].size(), 3u);
  EXPECT_EQ(j["variants"][0]["load"][0]["output_throughput"], 100.0);
  EXPECT_TRUE(j["variants"][1]["load"].empty());
  // Without load runs the page has no load section.
  EXPECT_EQ(report::render_html(base, "t").find("chart-load"), std::string::npos);
}

// `condense bench --draft` points: read into the variant, a table of their own
// (and in the JSON), absent without them.
TEST(Report, SpeculativePointsGetTheirOwnTable) {
  testfix::ReportRuns r;
  const auto base = report::load_variants(r.paths);
  json b = testfix::bench(base[0].model, 4e6, 2.0);
  b["speculative"] = {{"draft", "out/draft/model"}, {"draft_layers", 2},
                      {"greedy", {{"tok_s", 600.0}, {"plain_tok_s", 500.0}, {"speedup", 1.2}, {"spec_decode_acceptance_rate", 61.4},
                                  {"spec_decode_acceptance_length", 4.57}, {"draft_time_share", 0.43}}},
                      {"sampled_t1", {{"tok_s", 450.0}, {"plain_tok_s", 500.0}, {"speedup", 0.9}, {"spec_decode_acceptance_rate", 40.0},
                                      {"spec_decode_acceptance_length", 2.1}, {"draft_time_share", 0.3}}}};
  const std::string bp = r.dir / "a/bench.json";
  testutil::write_file(bp, b.dump());
  const auto v = report::load_variants(r.paths);
  ASSERT_EQ(v[0].speculative.size(), 2u);
  EXPECT_EQ(v[0].speculative[0].mode, "greedy");
  EXPECT_DOUBLE_EQ(v[0].speculative[0].acceptance_length, 4.57);
  EXPECT_EQ(v[0].speculative[1].mode, "T = 1");
  EXPECT_EQ(v[0].speculative[1].draft_layers, 2);
  const std::string html = report::render_html(v, "t");
  ASSERT_NE(html.find("<table id=\"speculative\">"), std::string::npos);
  EXPECT_NE(html.find("61.4"), std::string::npos);
  EXPECT_NE(html.find("out/draft/model"), std::string::npos);
  EXPECT_EQ(report::to_json(v)["variants"][0]["speculative"][0]["speedup"], 1.2);
  EXPECT_EQ(report::render_html(base, "t").find("id=\"speculative\""), std::string::npos);
}
