#include "report/report_html.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "report/pareto.h"

namespace condense::report {

using nlohmann::json;

namespace {

// Okabe-Ito: distinguishable with every common colour-vision deficiency.
const char* const kColours[] = {"#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"};

bool ok(double x) { return std::isfinite(x); }

std::string esc(const std::string& s) {
  std::string o;
  for (char c : s) {
    switch (c) {
      case '&': o += "&amp;"; break;
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '"': o += "&quot;"; break;
      default: o += c;
    }
  }
  return o;
}

std::string fmt(double x, const char* f = "%.4g") {
  if (!ok(x)) return "";
  char b[64];
  std::snprintf(b, sizeof b, f, x);
  return b;
}

struct Axis {
  double lo, hi;
  // "Nice" ticks (1, 2, 5 x 10^k steps) covering [lo, hi].
  std::vector<double> ticks() const {
    const double span = hi - lo, raw = span / 5, mag = std::pow(10.0, std::floor(std::log10(raw)));
    const double step = raw / mag < 1.5 ? mag : raw / mag < 3.5 ? 2 * mag : raw / mag < 7.5 ? 5 * mag : 10 * mag;
    std::vector<double> t;
    for (double x = std::ceil(lo / step) * step; x <= hi + 1e-9 * span; x += step) t.push_back(std::fabs(x) < 1e-12 * step ? 0 : x);
    return t;
  }
};

Axis axis_of(std::vector<double> xs) {
  const auto [mn, mx] = std::minmax_element(xs.begin(), xs.end());
  double lo = *mn, hi = *mx;
  if (hi - lo < 1e-12 * std::max(1.0, std::fabs(hi))) {
    lo -= std::max(1.0, std::fabs(lo)) * 0.1;
    hi += std::max(1.0, std::fabs(hi)) * 0.1;
  }
  const double pad = (hi - lo) * 0.08;
  return {lo - pad, hi + pad};
}

// A chart's frame: the svg header and title, the plot's rectangle, grid lines
// and tick labels for the value ranges of xs and ys, and the axis labels; the
// returned mappers place a value in the plot.
struct Frame {
  Axis ax, ay;
  double X(double x) const { return kL + (x - ax.lo) / (ax.hi - ax.lo) * (kW - kL - kR); }
  double Y(double y) const { return kH - kB - (y - ay.lo) / (ay.hi - ay.lo) * (kH - kT - kB); }
  static constexpr double kW = 640, kH = 400, kL = 70, kR = 20, kT = 36, kB = 52;
};

std::string svg_open(const std::string& id, const std::string& title) {
  return "<figure><svg id=\"" + id + "\" viewBox=\"0 0 640 400\" width=\"640\" height=\"400\" role=\"img\" aria-label=\"" + esc(title) +
         "\">\n<title>" + esc(title) + "</title>\n<text x=\"320\" y=\"22\" text-anchor=\"middle\" class=\"ct\">" + esc(title) + "</text>\n";
}

Frame draw_frame(const std::vector<double>& xs, const std::vector<double>& ys, const std::string& xlabel, const std::string& ylabel, std::string& s) {
  const Frame f{axis_of(xs), axis_of(ys)};
  const double W = Frame::kW, H = Frame::kH, L = Frame::kL, R = Frame::kR, T = Frame::kT, B = Frame::kB;
  s += "<rect x=\"" + fmt(L, "%.0f") + "\" y=\"" + fmt(T, "%.0f") + "\" width=\"" + fmt(W - L - R, "%.0f") + "\" height=\"" +
       fmt(H - T - B, "%.0f") + "\" class=\"frame\"/>\n";
  for (double t : f.ax.ticks()) {
    s += "<line x1=\"" + fmt(f.X(t), "%.1f") + "\" x2=\"" + fmt(f.X(t), "%.1f") + "\" y1=\"" + fmt(H - B, "%.0f") + "\" y2=\"" + fmt(T, "%.0f") +
         "\" class=\"grid\"/><text x=\"" + fmt(f.X(t), "%.1f") + "\" y=\"" + fmt(H - B + 16, "%.0f") + "\" text-anchor=\"middle\">" + fmt(t, "%g") +
         "</text>\n";
  }
  for (double t : f.ay.ticks()) {
    s += "<line x1=\"" + fmt(L, "%.0f") + "\" x2=\"" + fmt(W - R, "%.0f") + "\" y1=\"" + fmt(f.Y(t), "%.1f") + "\" y2=\"" + fmt(f.Y(t), "%.1f") +
         "\" class=\"grid\"/><text x=\"" + fmt(L - 6, "%.0f") + "\" y=\"" + fmt(f.Y(t) + 4, "%.1f") + "\" text-anchor=\"end\">" + fmt(t, "%g") +
         "</text>\n";
  }
  s += "<text x=\"" + fmt((L + W - R) / 2, "%.0f") + "\" y=\"" + fmt(H - 12, "%.0f") + "\" text-anchor=\"middle\">" + esc(xlabel) + "</text>\n";
  s += "<text transform=\"translate(16 " + fmt((T + H - B) / 2, "%.0f") + ") rotate(-90)\" text-anchor=\"middle\">" + esc(ylabel) + "</text>\n";
  return f;
}

// One scatter chart: a mark per variant that has both values, the front as a
// step line through its marks (labelled), the other marks dimmed.
std::string chart(const std::vector<Variant>& v, const std::vector<double>& xs, const std::vector<double>& ys, const std::vector<bool>& front,
                  const std::string& id, const std::string& title, const std::string& xlabel, const std::string& ylabel) {
  std::vector<size_t> shown;
  for (size_t i = 0; i < v.size(); ++i) {
    if (ok(xs[i]) && ok(ys[i])) shown.push_back(i);
  }
  std::string s = svg_open(id, title);
  if (shown.empty()) {
    s += "<text x=\"320\" y=\"200\" text-anchor=\"middle\">no variant has both values</text></svg></figure>\n";
    return s;
  }
  std::vector<double> sx, sy;
  for (size_t i : shown) sx.push_back(xs[i]), sy.push_back(ys[i]);
  const Frame fr = draw_frame(sx, sy, xlabel, ylabel, s);
  auto X = [&](double x) { return fr.X(x); };  // as the marks below name them
  auto Y = [&](double y) { return fr.Y(y); };
  // The front as steps (each front point dominates the region up and to its right).
  std::vector<size_t> f;
  for (size_t i : shown) {
    if (front[i]) f.push_back(i);
  }
  std::sort(f.begin(), f.end(), [&](size_t a, size_t b) { return xs[a] != xs[b] ? xs[a] < xs[b] : ys[a] > ys[b]; });
  if (!f.empty()) {
    std::string pts;
    for (size_t k = 0; k < f.size(); ++k) {
      if (k > 0) pts += fmt(X(xs[f[k]]), "%.1f") + "," + fmt(Y(ys[f[k - 1]]), "%.1f") + " ";
      pts += fmt(X(xs[f[k]]), "%.1f") + "," + fmt(Y(ys[f[k]]), "%.1f") + " ";
    }
    s += "<polyline class=\"frontline\" points=\"" + pts + "\"/>\n";
  }
  for (size_t i : shown) {
    s += "<circle class=\"pt " + std::string(front[i] ? "front" : "dominated") + "\" data-variant=\"" + std::to_string(i) + "\" cx=\"" +
         fmt(X(xs[i]), "%.1f") + "\" cy=\"" + fmt(Y(ys[i]), "%.1f") + "\" r=\"6\" fill=\"" + kColours[i % 8] + "\"" +
         (v[i].mixed ? " stroke-width=\"3\" data-mixed=\"1\"" : "") + "><title>" + esc(v[i].name) +
         ": " + fmt(xs[i]) + ", " + fmt(ys[i]) + "</title></circle>\n";
    if (front[i]) {
      s += "<text class=\"lbl\" x=\"" + fmt(X(xs[i]) + 8, "%.1f") + "\" y=\"" + fmt(Y(ys[i]) - 8, "%.1f") + "\">" + esc(v[i].name) + "</text>\n";
    }
  }
  s += "</svg>";
  if (shown.size() < v.size()) {
    s += "<figcaption>" + std::to_string(v.size() - shown.size()) + " variant(s) lack one of the two values and are not shown.</figcaption>";
  }
  return s + "</figure>\n";
}

// Under load: a line per variant through its runs (in concurrency or rate
// order), x and y read from each LoadPoint, each point labelled by its run.
std::string load_chart(const std::vector<Variant>& v, double LoadPoint::*xm, double LoadPoint::*ym, const std::string& id, const std::string& title,
                       const std::string& xlabel, const std::string& ylabel) {
  std::vector<double> sx, sy;
  for (const Variant& x : v) {
    for (const LoadPoint& p : x.load) {
      if (ok(p.*xm) && ok(p.*ym)) sx.push_back(p.*xm), sy.push_back(p.*ym);
    }
  }
  std::string s = svg_open(id, title);
  if (sx.empty()) return s + "<text x=\"320\" y=\"200\" text-anchor=\"middle\">no run has both values</text></svg></figure>\n";
  const Frame fr = draw_frame(sx, sy, xlabel, ylabel, s);
  auto X = [&](double x) { return fr.X(x); };
  auto Y = [&](double y) { return fr.Y(y); };
  for (size_t i = 0; i < v.size(); ++i) {
    std::vector<const LoadPoint*> pts;
    for (const LoadPoint& p : v[i].load) {
      if (ok(p.*xm) && ok(p.*ym)) pts.push_back(&p);
    }
    if (pts.empty()) continue;
    std::stable_sort(pts.begin(), pts.end(), [](const LoadPoint* a, const LoadPoint* b) {
      const double ka = ok(a->concurrency) ? a->concurrency : a->rate, kb = ok(b->concurrency) ? b->concurrency : b->rate;
      return ok(ka) && ok(kb) && ka < kb;
    });
    std::string line;
    for (const LoadPoint* p : pts) line += fmt(X(p->*xm), "%.1f") + "," + fmt(Y(p->*ym), "%.1f") + " ";
    s += "<polyline class=\"loadline\" data-variant=\"" + std::to_string(i) + "\" points=\"" + line + "\" stroke=\"" + kColours[i % 8] + "\"/>\n";
    for (const LoadPoint* p : pts) {
      s += "<circle class=\"pt\" data-variant=\"" + std::to_string(i) + "\" cx=\"" + fmt(X(p->*xm), "%.1f") + "\" cy=\"" + fmt(Y(p->*ym), "%.1f") +
           "\" r=\"4\" fill=\"" + kColours[i % 8] + "\"><title>" + esc(v[i].name) + ", " + esc(p->label) + ": " + fmt(p->*xm) + ", " + fmt(p->*ym) +
           "</title></circle>\n";
    }
  }
  return s + "</svg></figure>\n";
}

std::vector<double> col(const std::vector<Variant>& v, double Variant::*m, double scale = 1) {
  std::vector<double> o;
  for (const Variant& x : v) o.push_back(x.*m * scale);
  return o;
}

std::string stages_text(const Variant& v) {
  std::string s;
  for (const json& h : v.stages) {
    s += (s.empty() ? "" : " → ") + h.value("type", std::string());
    if (h.contains("summary")) s += " " + h["summary"].dump();
  }
  return s;
}

}  // namespace

Fronts fronts_of(const std::vector<Variant>& v) {
  std::vector<std::array<double, 2>> lat, size, bits;
  for (const Variant& x : v) {
    lat.push_back({x.tpot_p50_ms, x.delta_ppl_pct});
    size.push_back({x.weight_bytes, x.delta_ppl_pct});
    bits.push_back({x.bits_per_weight, x.delta_ppl_pct});
  }
  return {pareto_front(lat), pareto_front(size), pareto_front(bits)};
}

json load_json(const Variant& x) {
  auto n = [](double d) { return ok(d) ? json(d) : json(nullptr); };
  json a = json::array();
  for (const LoadPoint& p : x.load) {
    a.push_back({{"run", p.label}, {"concurrency", n(p.concurrency)}, {"request_rate", n(p.rate)}, {"output_throughput", n(p.output_tok_s)},
                 {"request_goodput", n(p.request_goodput)}, {"p50_ttft_ms", n(p.ttft_p50_ms)}, {"p99_ttft_ms", n(p.ttft_p99_ms)},
                 {"p50_tpot_ms", n(p.tpot_p50_ms)}, {"p99_tpot_ms", n(p.tpot_p99_ms)}, {"p99_itl_ms", n(p.itl_p99_ms)}, {"p99_e2el_ms", n(p.e2el_p99_ms)},
                 {"completed", p.completed}, {"failed", p.failed}});
  }
  return a;
}

json spec_json(const Variant& x) {
  auto n = [](double d) { return ok(d) ? json(d) : json(nullptr); };
  json a = json::array();
  for (const SpecPoint& p : x.speculative) {
    a.push_back({{"mode", p.mode}, {"draft", p.draft}, {"draft_layers", p.draft_layers}, {"tok_s", n(p.tok_s)}, {"plain_tok_s", n(p.plain_tok_s)},
                 {"speedup", n(p.speedup)}, {"spec_decode_acceptance_rate", n(p.acceptance_rate)},
                 {"spec_decode_acceptance_length", n(p.acceptance_length)}, {"draft_time_share", n(p.draft_time_share)}});
  }
  return a;
}

json to_json(const std::vector<Variant>& v) {
  const Fronts f = fronts_of(v);
  json rows = json::array();
  auto n = [](double x) { return ok(x) ? json(x) : json(nullptr); };
  for (size_t i = 0; i < v.size(); ++i) {
    const Variant& x = v[i];
    rows.push_back({{"name", x.name}, {"model", x.model}, {"reference", x.reference}, {"mixed", x.mixed}, {"ppl", n(x.ppl)}, {"delta_ppl_pct", n(x.delta_ppl_pct)},
                    {"kl_mean", n(x.kl_mean)}, {"kl_p99", n(x.kl_p99)}, {"top1_agreement", n(x.top1)}, {"weight_bytes", n(x.weight_bytes)},
                    {"params", n(x.params)}, {"bits_per_weight", n(x.bits_per_weight)}, {"tpot_p50_ms", n(x.tpot_p50_ms)},
                    {"tpot_p99_ms", n(x.tpot_p99_ms)}, {"decode_tok_s", n(x.decode_tok_s)}, {"context", x.context}, {"linears", x.linears},
                    {"machine", x.machine}, {"date", x.date}, {"revision", x.revision}, {"on_latency_front", bool(f.latency[i])}, {"on_size_front", bool(f.size[i])}, {"on_bits_front", bool(f.bits[i])},
                    {"stages", x.stages}, {"recipe", x.recipe}, {"sources", x.sources}, {"load", load_json(x)}, {"load_target", x.load_target},
                    {"speculative", spec_json(x)}});
  }
  return {{"schema", "condense-report/1"}, {"variants", rows}};
}

std::string to_csv(const std::vector<Variant>& v) {
  const Fronts f = fronts_of(v);
  auto q = [](const std::string& s) {
    std::string o = "\"";
    for (char c : s) o += c == '"' ? std::string("\"\"") : std::string(1, c);
    return o + "\"";
  };
  std::string s =
      "name,model,reference,ppl,delta_ppl_pct,kl_mean,kl_p99,top1_agreement,weight_bytes,bits_per_weight,tpot_p50_ms,tpot_p99_ms,decode_tok_s,"
      "on_latency_front,on_size_front,linears,machine\n";
  for (size_t i = 0; i < v.size(); ++i) {
    const Variant& x = v[i];
    s += q(x.name) + "," + q(x.model) + "," + (x.reference ? "1" : "0") + "," + fmt(x.ppl, "%.6g") + "," + fmt(x.delta_ppl_pct, "%.6g") + "," +
         fmt(x.kl_mean, "%.6g") + "," + fmt(x.kl_p99, "%.6g") + "," + fmt(x.top1, "%.6g") + "," + fmt(x.weight_bytes, "%.0f") + "," +
         fmt(x.bits_per_weight, "%.4g") + "," + fmt(x.tpot_p50_ms, "%.6g") + "," + fmt(x.tpot_p99_ms, "%.6g") + "," + fmt(x.decode_tok_s, "%.6g") +
         "," + (f.latency[i] ? "1" : "0") + "," + (f.size[i] ? "1" : "0") + "," + q(x.linears) + "," + q(x.machine) + "\n";
  }
  return s;
}

std::string render_html(const std::vector<Variant>& v, const std::string& title) {
  const Fronts f = fronts_of(v);
  std::string s = "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>" + esc(title) + "</title>\n<style>\n"
      "body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#111}h1{font-size:20px}figure{display:inline-block;margin:0 16px 16px 0}\n"
      "svg text{font-size:11px;fill:#222}.ct{font-size:13px;font-weight:600}.frame{fill:none;stroke:#888}.grid{stroke:#e4e4e4}\n"
      ".frontline{fill:none;stroke:#333;stroke-width:1.5;stroke-dasharray:5 3}.loadline{fill:none;stroke-width:2}.pt{stroke:#111;stroke-width:1}.pt.dominated{opacity:.35}\n"
      ".lbl{font-size:11px}table{border-collapse:collapse;margin-top:8px}th,td{border:1px solid #ccc;padding:3px 6px;text-align:right}\n"
      "th{background:#f3f3f3;cursor:pointer}td.l{text-align:left}.sw{display:inline-block;width:10px;height:10px;margin-right:4px;border:1px solid #111}\n"
      ".legend>span{margin-right:14px;white-space:nowrap}pre{background:#f7f7f7;padding:8px;overflow:auto;max-height:320px}@media print{th{cursor:auto}pre{max-height:none}}\n"
      "</style></head><body>\n<h1>" + esc(title) + "</h1>\n";
  s += "<p>Every variant placed by quality (ΔPPL against the reference, %: lower is better) against decode latency (time per output "
       "token at batch 1, p50) and against size (weight bytes the runtime holds). The dashed steps join the Pareto front, whose variants "
       "are labelled; dominated variants are dimmed; a thick outline marks a mixed-precision variant (a format per tensor, chosen "
       "by the sweep's sensitivity pass). The table sorts on a click on its header.</p>\n";
  s += chart(v, col(v, &Variant::tpot_p50_ms), col(v, &Variant::delta_ppl_pct), f.latency, "chart-latency", "Quality vs decode latency",
             "TPOT p50 (ms per token, batch 1)", "ΔPPL vs reference (%)");
  s += chart(v, col(v, &Variant::weight_bytes, 1e-6), col(v, &Variant::delta_ppl_pct), f.size, "chart-size", "Quality vs size",
             "weights (MB)", "ΔPPL vs reference (%)");
  s += chart(v, col(v, &Variant::bits_per_weight), col(v, &Variant::delta_ppl_pct), f.bits, "chart-bits", "Quality vs bits per weight",
             "bits per weight (all weight bytes x 8 / parameters)", "ΔPPL vs reference (%)");
  bool any_load = false;
  for (const Variant& x : v) any_load = any_load || !x.load.empty();
  if (any_load) {
    s += "<h2>Under load</h2>\n<p>Runs of <code>condense bench --server</code> / <code>--model</code> (a line per variant through its "
         "concurrencies or rates, vLLM's definitions): output throughput against the tail of the time per output token, and the tail of "
         "the time to first token against throughput.</p>\n";
    s += load_chart(v, &LoadPoint::tpot_p99_ms, &LoadPoint::output_tok_s, "chart-load", "Throughput under load vs tail TPOT",
                    "TPOT p99 (ms per token)", "output tokens/s");
    s += load_chart(v, &LoadPoint::output_tok_s, &LoadPoint::ttft_p99_ms, "chart-ttft", "Tail TTFT vs throughput", "output tokens/s",
                    "TTFT p99 (ms)");
  }
  s += "\n<p class=\"legend\">";
  for (size_t i = 0; i < v.size(); ++i) {
    s += "<span><span class=\"sw\" style=\"background:" + std::string(kColours[i % 8]) + "\"></span>" + esc(v[i].name) + "</span> ";
  }
  s += "</p>\n<table id=\"variants\"><thead><tr><th>variant</th><th>ΔPPL %</th><th>PPL</th><th>KL mean</th><th>KL p99</th><th>top-1 agr.</th>"
       "<th>TPOT p50 ms</th><th>TPOT p99 ms</th><th>decode tok/s</th><th>weights MB</th><th>bits/weight</th><th>front</th>"
       "<th>formats</th><th>stages</th><th>recipe</th></tr></thead><tbody>\n";
  for (size_t i = 0; i < v.size(); ++i) {
    const Variant& x = v[i];
    auto td = [](double val, const char* f) { return "<td data-v=\"" + (ok(val) ? fmt(val, "%.9g") : std::string()) + "\">" + fmt(val, f) + "</td>"; };
    std::string fr = std::string(f.latency[i] ? "latency " : "") + (f.size[i] ? "size" : "");
    s += "<tr><td class=\"l\"><span class=\"sw\" style=\"background:" + std::string(kColours[i % 8]) + "\"></span>" + esc(x.name) +
         (x.reference && x.name.rfind("reference", 0) != 0 ? " (reference)" : "") + "</td>" + td(x.delta_ppl_pct, "%.3f") + td(x.ppl, "%.4f") + td(x.kl_mean, "%.4g") +
         td(x.kl_p99, "%.4g") + td(x.top1, "%.4f") + td(x.tpot_p50_ms, "%.3f") + td(x.tpot_p99_ms, "%.3f") + td(x.decode_tok_s, "%.1f") +
         td(x.weight_bytes * 1e-6, "%.2f") + td(x.bits_per_weight, "%.2f") + "<td class=\"l\">" + fr + "</td><td class=\"l\">" + esc(x.linears) +
         "</td><td class=\"l\">" + esc(stages_text(x)) + "</td><td class=\"l\">" +
         (x.recipe.is_null() ? std::string() : "<a href=\"#recipe-" + std::to_string(i) + "\">recipe</a>") + "</td></tr>\n";
  }
  s += "</tbody></table>\n";
  if (any_load) {
    s += "<table id=\"load\"><thead><tr><th>variant</th><th>run</th><th>served by</th><th>output tok/s</th><th>TTFT p50 ms</th><th>TTFT p99 ms</th>"
         "<th>TPOT p50 ms</th><th>TPOT p99 ms</th><th>ITL p99 ms</th><th>E2E p99 ms</th><th>goodput req/s</th><th>completed</th><th>failed</th>"
         "</tr></thead><tbody>\n";
    for (size_t i = 0; i < v.size(); ++i) {
      for (const LoadPoint& p : v[i].load) {
        auto td = [](double val, const char* f) { return "<td data-v=\"" + (ok(val) ? fmt(val, "%.9g") : std::string()) + "\">" + fmt(val, f) + "</td>"; };
        s += "<tr><td class=\"l\"><span class=\"sw\" style=\"background:" + std::string(kColours[i % 8]) + "\"></span>" + esc(v[i].name) +
             "</td><td class=\"l\">" + esc(p.label) + "</td><td class=\"l\">" + esc(v[i].load_target) + "</td>" + td(p.output_tok_s, "%.1f") +
             td(p.ttft_p50_ms, "%.1f") + td(p.ttft_p99_ms, "%.1f") + td(p.tpot_p50_ms, "%.2f") + td(p.tpot_p99_ms, "%.2f") + td(p.itl_p99_ms, "%.2f") +
             td(p.e2el_p99_ms, "%.0f") + td(p.request_goodput, "%.2f") + "<td>" + std::to_string(p.completed) + "</td><td>" +
             std::to_string(p.failed) + "</td></tr>\n";
      }
    }
    s += "</tbody></table>\n";
  }
  bool any_spec = false;
  for (const Variant& x : v) any_spec = any_spec || !x.speculative.empty();
  if (any_spec) {
    s += "<h2>Speculative decoding</h2>\n<p>Batch 1, the same model decoding plainly and with a draft that proposes tokens it "
         "verifies (its output distribution unchanged; `condense bench --draft`). Acceptance as vLLM reports it: accepted / proposed "
         "draft tokens, and tokens per target step.</p>\n"
         "<table id=\"speculative\"><thead><tr><th>variant</th><th>sampling</th><th>draft</th><th>draft blocks</th><th>tok/s</th>"
         "<th>plain tok/s</th><th>speedup</th><th>acceptance %</th><th>tokens/step</th><th>draft time %</th></tr></thead><tbody>\n";
    for (size_t i = 0; i < v.size(); ++i) {
      for (const SpecPoint& p : v[i].speculative) {
        auto td = [](double val, const char* f) { return "<td data-v=\"" + (ok(val) ? fmt(val, "%.9g") : std::string()) + "\">" + fmt(val, f) + "</td>"; };
        s += "<tr><td class=\"l\"><span class=\"sw\" style=\"background:" + std::string(kColours[i % 8]) + "\"></span>" + esc(v[i].name) +
             "</td><td class=\"l\">" + esc(p.mode) + "</td><td class=\"l\">" + esc(p.draft) + "</td><td>" + std::to_string(p.draft_layers) +
             "</td>" + td(p.tok_s, "%.1f") + td(p.plain_tok_s, "%.1f") + td(p.speedup, "%.2f") + td(p.acceptance_rate, "%.1f") +
             td(p.acceptance_length, "%.2f") + td(100 * p.draft_time_share, "%.0f") + "</tr>\n";
      }
    }
    s += "</tbody></table>\n";
  }
  s += "<h2>Recipes and sources</h2>\n";
  for (size_t i = 0; i < v.size(); ++i) {
    const Variant& x = v[i];
    s += "<h3 id=\"recipe-" + std::to_string(i) + "\">" + esc(x.name) + "</h3>\n<p>model " + esc(x.model) + "<br>machine " + esc(x.machine) +
         (x.date.empty() ? "" : "; measured " + esc(x.date)) + (x.revision.empty() ? "" : " by condense " + esc(x.revision)) +
         "<br>read from ";
    for (size_t k = 0; k < x.sources.size(); ++k) s += (k ? ", " : "") + esc(x.sources[k]);
    s += "</p>\n";
    if (!x.recipe.is_null()) s += "<pre>" + esc(x.recipe.dump(2)) + "</pre>\n";
  }
  s += "<script>\n"
       "document.querySelectorAll('#variants th, #load th, #speculative th').forEach(function(th,c){var up=true;th.addEventListener('click',function(){\n"
       "var tb=th.closest('table').tBodies[0],rows=Array.prototype.slice.call(tb.rows);\n"
       "rows.sort(function(a,b){var x=a.cells[c],y=b.cells[c],p=x.getAttribute('data-v'),q=y.getAttribute('data-v');\n"
       "if(p!==null&&q!==null){if(p==='')return 1;if(q==='')return -1;return up?p-q:q-p;}\n"
       "return up?x.textContent.localeCompare(y.textContent):y.textContent.localeCompare(x.textContent);});\n"
       "rows.forEach(function(r){tb.appendChild(r);});up=!up;});});\n"
       "</script>\n</body></html>\n";
  return s;
}

}  // namespace condense::report
