#include "serve/load_metrics.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <sstream>

#include "core/error.h"

namespace condense {

using json = nlohmann::json;

Slo parse_slo(const std::string& spec) {
  Slo s;
  std::stringstream ss(spec);
  std::string part;
  while (std::getline(ss, part, ',')) {
    const size_t c = part.find(':');
    if (c == std::string::npos) fail("--slo", "'" + part + "' is not METRIC:MS (e.g. ttft:500,tpot:50)");
    const std::string k = part.substr(0, c);
    double v = 0;
    try {
      size_t used = 0;
      v = std::stod(part.substr(c + 1), &used);
      if (used != part.size() - c - 1) throw std::invalid_argument("trailing");
    } catch (const std::exception&) {
      fail("--slo", "'" + part + "': the limit must be a number of milliseconds");
    }
    if (!(v > 0) || !std::isfinite(v)) fail("--slo", "'" + part + "': the limit must be > 0 ms");
    if (k == "ttft") s.ttft_ms = v;
    else if (k == "tpot") s.tpot_ms = v;
    else if (k == "e2el") s.e2el_ms = v;
    else fail("--slo", "unknown metric '" + k + "' (ttft, tpot, e2el)");
  }
  return s;
}

double percentile_linear(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const double pos = q / 100.0 * double(v.size() - 1);
  const size_t lo = size_t(std::floor(pos)), hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (pos - double(lo));
}

namespace {

void stats(json& out, const std::string& name, const std::vector<double>& ms, const std::vector<double>& percentiles) {
  double mean = 0, var = 0;
  for (double x : ms) mean += x;
  mean = ms.empty() ? 0 : mean / double(ms.size());
  for (double x : ms) var += (x - mean) * (x - mean);
  out["mean_" + name + "_ms"] = mean;
  out["median_" + name + "_ms"] = percentile_linear(ms, 50);
  out["std_" + name + "_ms"] = ms.empty() ? 0 : std::sqrt(var / double(ms.size()));
  for (double q : percentiles) {
    std::ostringstream k;
    k << "p" << q << "_" << name << "_ms";  // p99_ttft_ms, p99.9_ttft_ms
    out[k.str()] = percentile_linear(ms, q);
  }
}

}  // namespace

json summarize_load(const std::vector<RequestRecord>& records, double duration, const std::vector<double>& percentiles, const Slo& slo) {
  std::vector<double> ttft, tpot, itl, e2el;
  int completed = 0, good = 0;
  int64_t in_tokens = 0, out_tokens = 0;
  std::map<int64_t, int64_t> per_second;  // output tokens by the second they arrived in
  std::vector<std::pair<double, int>> edges;
  for (const RequestRecord& r : records) {
    if (!r.success) continue;
    ++completed;
    in_tokens += r.input_len;
    out_tokens += r.output_len;
    ttft.push_back(r.ttft * 1e3);
    e2el.push_back(r.latency * 1e3);
    double t = r.start + r.ttft;
    ++per_second[int64_t(std::floor(t))];
    for (double g : r.itls) {
      itl.push_back(g * 1e3);
      t += g;
      ++per_second[int64_t(std::floor(t))];
    }
    double tp = 0;
    if (r.output_len > 1) {
      tp = (r.latency - r.ttft) / double(r.output_len - 1) * 1e3;
      tpot.push_back(tp);
    }
    edges.push_back({r.start, 1});
    edges.push_back({r.start + r.latency, -1});
    const bool ok = (slo.ttft_ms <= 0 || r.ttft * 1e3 <= slo.ttft_ms) && (slo.tpot_ms <= 0 || tp <= slo.tpot_ms) &&
                    (slo.e2el_ms <= 0 || r.latency * 1e3 <= slo.e2el_ms);
    good += ok ? 1 : 0;
  }
  std::sort(edges.begin(), edges.end(), [](auto& a, auto& b) { return a.first < b.first || (a.first == b.first && a.second < b.second); });
  int cur = 0, max_conc = 0;
  for (auto& e : edges) max_conc = std::max(max_conc, cur += e.second);
  int64_t max_tps = 0;
  for (auto& [s, n] : per_second) max_tps = std::max(max_tps, n);
  const double d = duration > 0 ? duration : 1e-9;
  json o = {{"duration", duration},
            {"completed", completed},
            {"failed", int(records.size()) - completed},
            {"total_input_tokens", in_tokens},
            {"total_output_tokens", out_tokens},
            {"request_throughput", completed / d},
            {"request_goodput", slo.any() ? json(good / d) : json(nullptr)},
            {"output_throughput", double(out_tokens) / d},
            {"total_token_throughput", double(in_tokens + out_tokens) / d},
            {"max_output_tokens_per_s", max_tps},
            {"max_concurrent_requests", max_conc}};
  stats(o, "ttft", ttft, percentiles);
  stats(o, "tpot", tpot, percentiles);
  stats(o, "itl", itl, percentiles);
  stats(o, "e2el", e2el, percentiles);
  return o;
}

}  // namespace condense
