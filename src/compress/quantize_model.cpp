#include "compress/quantize_model.h"

#include <fnmatch.h>

#include <chrono>
#include <fstream>
#include <map>
#include <set>

#include "compress/calibration.h"
#include "compress/fold_scales.h"
#include "compress/rtn.h"
#include "compress/smoothquant.h"
#include "core/error.h"

namespace condense::compress {

using nlohmann::json;

std::vector<std::string> select_weights(const Model& m, const std::vector<std::string>& globs, const std::string& where) {
  std::vector<std::string> names;
  std::set<std::string> used;
  for_each_weight(m, [&](const WeightRef& r) {
    bool take = false;
    if (globs.empty()) {
      take = r.kind == WeightKind::Linear;
    } else {
      for (const std::string& g : globs) {
        if (fnmatch(g.c_str(), r.name.c_str(), 0) == 0) {
          take = true;
          used.insert(g);
        }
      }
    }
    if (!take) return;
    if (r.kind != WeightKind::Linear && r.kind != WeightKind::Head && r.kind != WeightKind::Embedding) {
      fail(where, "'" + r.name + "' is a " + (r.kind == WeightKind::Norm ? "norm" : "bias") + " vector, not a weight matrix",
           "Narrow the pattern to matrices (e.g. model.layers.*.mlp.*)");
    }
    names.push_back(r.name);
  });
  for (const std::string& g : globs) {
    if (!used.count(g)) fail(where, "pattern '" + g + "' matches no weight matrix", "Weight names look like model.layers.0.self_attn.q_proj.weight");
  }
  return names;
}

std::map<std::string, Tensor*> weights_by_name(Model& m, const std::vector<std::string>& names) {
  const std::set<std::string> wanted(names.begin(), names.end());
  std::map<std::string, Tensor*> out;
  for_each_weight(m, [&](const WeightRef& r) {
    if (wanted.count(r.name)) out[r.name] = r.tensor;
  });
  return out;
}

const std::vector<uint64_t>& mask_of(const Model& m, const std::string& name) {
  static const std::vector<uint64_t> none;
  auto it = m.compression.find(name);
  return it == m.compression.end() ? none : it->second.mask;
}

namespace {

std::vector<float> copy_of(const Tensor& t) { return std::vector<float>(t.f32(), t.f32() + t.numel()); }

// One block being quantized: which of its weights are targets, their names,
// and (AWQ) the scales folded into each weight's columns and rows, with the
// weights as they were before folding, to measure errors in original coordinates.
struct BlockState {
  LayerWeights& w;
  std::map<const Tensor*, std::string> targets;
  std::map<const Tensor*, std::vector<float>> col_scale, row_scale, original;

  void keep_original(const Tensor* t) {
    if (!original.count(t)) original[t] = copy_of(*t);
  }
};

// AWQ for one site: searches the scales on the target weights reading it, then
// multiplies every weight reading the site by them and divides the producer of
// the site's input (an RMSNorm weight, v_proj's or up_proj's rows), which keeps
// the float model's function.
json fold_awq_site(const Model& m, BlockState& b, Site site, const SiteStats& st, const QuantizeOptions& opt) {
  std::vector<AwqWeight> aw;
  std::vector<std::vector<uint64_t>> masks;
  for (Tensor* t : site_weights(b.w, site)) {
    if (b.targets.count(t)) masks.push_back(mask_of(m, b.targets.at(t)));
  }
  size_t i = 0;
  for (Tensor* t : site_weights(b.w, site)) {
    if (b.targets.count(t)) aw.push_back({t->f32(), t->dim(0), &masks[i++]});
  }
  if (aw.empty()) return nullptr;
  const AwqSearch a = awq_search(opt.scheme, aw, st.cols, st.hessian, st.abs_mean, opt.awq);
  // bookkeeping first: errors are measured against the weights as they were
  for (Tensor* t : site_weights(b.w, site)) {
    b.keep_original(t);
    b.col_scale[t] = a.scales;
  }
  Tensor* producer_rows = site == Site::AttnOut ? &b.w.wv : (site == Site::FfnHidden ? &b.w.w_up : nullptr);
  if (producer_rows) {
    b.keep_original(producer_rows);
    b.row_scale[producer_rows] = a.scales;
  }
  fold_input_scales(m.config, b.w, site, a.scales);
  return {{"alpha", a.alpha}, {"loss", a.loss}, {"loss_alpha0", a.loss_unscaled}};
}

// GPTQ, or AWQ's clipped RTN, of one target weight from its site's statistics;
// the report compares its output error with plain RTN's on the original weight.
WeightCompression quantize_calibrated(const Model& m, BlockState& b, Tensor* t, const SiteStats& ss, const QuantizeOptions& opt,
                                      json& report, int& retries) {
  const std::string& name = b.targets.at(t);
  const int64_t rows = t->dim(0), cols = t->dim(1);
  const std::vector<uint64_t>& mask = mask_of(m, name);
  const std::vector<float> ref = b.original.count(t) ? b.original.at(t) : copy_of(*t);
  std::vector<float> rtn(ref.size());
  const QuantScheme& scheme = opt.scheme_for(name);
  quantize_rtn(scheme, ref.data(), rows, cols, mask, rtn.data());
  report = {{"scheme", scheme.describe()}, {"method", opt.method}, {"output_error_rtn", output_error(ref.data(), rtn.data(), rows, cols, ss.hessian)}};
  WeightCompression wc;
  const auto col = b.col_scale.find(t), row = b.row_scale.find(t);
  if (opt.method == "gptq") {
    GptqReport rep;
    wc = gptq_quantize(scheme, t->f32(), rows, cols, ss.hessian, opt.gptq, mask, &rep);
    report["damp"] = rep.damp_used;
    if (rep.retries) report["cholesky_retries"] = rep.retries;
    if (rep.dead_columns) report["dead_columns"] = rep.dead_columns;
    retries += rep.retries;
  } else {
    // after folding, the site's input is x / s: H' = S^-1 H S^-1
    std::vector<double> h = ss.hessian;
    if (col != b.col_scale.end()) {
      const std::vector<float>& s = col->second;
      for (int64_t i = 0; i < cols; ++i) {
        for (int64_t j = 0; j < cols; ++j) h[size_t(i * cols + j)] /= double(s[size_t(i)]) * double(s[size_t(j)]);
      }
    }
    wc = quantize_clip_search(scheme, t->f32(), rows, cols, h, opt.awq, mask);
  }
  // the effective weight back in original coordinates
  std::vector<float> eff = copy_of(*t);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      float& v = eff[size_t(r * cols + c)];
      if (col != b.col_scale.end()) v /= col->second[size_t(c)];
      if (row != b.row_scale.end()) v *= row->second[size_t(r)];
    }
  }
  report["output_error"] = output_error(ref.data(), eff.data(), rows, cols, ss.hessian);
  return wc;
}

}  // namespace

json quantize_model(Model& m, const QuantizeOptions& opt, const CalibrationSet* calib, const std::function<void(int, int)>& on_progress) {
  const auto t0 = std::chrono::steady_clock::now();
  if (opt.method != "rtn" && opt.method != "gptq" && opt.method != "awq") {
    fail("quantize.method", "'" + opt.method + "' is not one of rtn, gptq, awq");
  }
  const std::vector<std::string> names = select_weights(m, opt.targets, "quantize.targets");
  std::map<std::string, Tensor*> targets = weights_by_name(m, names);
  for (const auto& [n, t] : targets) {
    validate_scheme(opt.scheme_for(n), "quantize " + n);
    auto it = m.compression.find(n);
    if (it != m.compression.end() && it->second.scheme.quantized()) {
      fail("quantize", "'" + n + "' is already quantized (" + it->second.scheme.describe() + ")", "Quantize each weight once");
    }
  }
  for (const auto& [n, sch] : opt.schemes) {
    if (!targets.count(n)) fail("quantize", "a scheme is given for '" + n + "', which is not among the stage's targets");
    if (opt.method == "awq" && !(sch == opt.scheme)) fail("quantize", "AWQ searches one scale per input site, so every target needs the same scheme ('" + n + "' differs)");
  }
  if (opt.method == "awq") {
    // AWQ rescales every weight reading a site (and v_proj/up_proj rows), targets or not
    for (const auto& [n, wc] : m.compression) {
      if (wc.scheme.quantized()) fail("quantize", "AWQ rescales weights, but '" + n + "' is already quantized", "Run AWQ before other quantize stages");
    }
  }
  const bool calibrated = opt.method != "rtn";
  const ActivationOptions& act = opt.activations;
  if (opt.needs_calibration() && !calib) {
    fail("quantize", std::string(calibrated ? opt.method : (act.smooth ? "SmoothQuant" : "static fp8 activation scales")) + " needs calibration data",
         "Give the stage a \"calibration\" object");
  }
  json act_j;
  if (act.smooth) {
    // rescales weights: before anything is quantized
    for (const auto& [n, wc] : m.compression) {
      if (wc.scheme.quantized()) fail("quantize", "SmoothQuant rescales weights, but '" + n + "' is already quantized", "Smooth in the first quantize stage");
    }
    act_j["smoothquant"] = smooth_model(m, *calib, act.alpha);
  }

  json tensors = json::object();
  int done = 0;
  auto finish = [&](const std::string& name, WeightCompression wc, json report) {
    m.compression[name] = std::move(wc);
    tensors[name] = std::move(report);
    targets.erase(name);
    if (on_progress) on_progress(++done, int(names.size()));
  };
  json calib_j;
  if (calibrated) {
    // block weights by the calibrated method; the rest (head, embedding) by RTN below
    LayerwiseCalibrator cal(m, calib->inputs, calib->n_seq, calib->seq, calib->chunk, calib->comm);
    calib_j = {{"sequences", calib->n_seq}, {"seq", calib->seq}, {"tokens", cal.tokens()}, {"buffers_mb", double(cal.bytes()) / 1e6}};
    std::map<const Tensor*, std::string> by_tensor;
    for (const auto& [n, t] : targets) by_tensor[t] = n;
    const bool sequential = opt.method == "gptq" && opt.gptq.true_sequential;
    int retries = 0;
    for (int l = 0; l < m.config.n_layers; ++l) {
      BlockState b{m.layers[size_t(l)], {}, {}, {}, {}};
      for (int si = 0; si < kNumSites; ++si) {
        for (Tensor* t : site_weights(b.w, Site(si))) {
          if (by_tensor.count(t)) b.targets[t] = by_tensor.at(t);
        }
      }
      if (!b.targets.empty()) {
        std::array<SiteStats, kNumSites> st = cal.collect(l, sequential ? 1u : 0xfu);
        if (opt.method == "awq") {
          for (int si = 0; si < kNumSites; ++si) {
            if (!site_foldable(m.config, Site(si))) continue;
            json a = fold_awq_site(m, b, Site(si), st[size_t(si)], opt);
            if (!a.is_null()) tensors["layer" + std::to_string(l) + "." + site_name(Site(si)) + ".awq"] = a;
          }
        }
        for (int si = 0; si < kNumSites; ++si) {
          if (sequential && si > 0) st[size_t(si)] = std::move(cal.collect(l, 1u << si)[size_t(si)]);
          for (Tensor* t : site_weights(b.w, Site(si))) {
            if (!b.targets.count(t)) continue;
            json report;
            WeightCompression wc = quantize_calibrated(m, b, t, st[size_t(si)], opt, report, retries);
            finish(b.targets.at(t), std::move(wc), report);
          }
        }
      }
      cal.advance(l);
    }
    calib_j["cholesky_retries"] = retries;
  }
  for (const auto& [name, t] : std::map<std::string, Tensor*>(targets)) {
    finish(name, quantize_rtn(opt.scheme_for(name), t->f32(), t->dim(0), t->dim(1), mask_of(m, name), t->f32()),
           {{"scheme", opt.scheme_for(name).describe()}, {"method", "rtn"}});
  }
  if (act.type == DType::F8E4M3) act_j["input_scales"] = calibrate_input_scales(m, *calib)["input_scales"];
  if (act.type == DType::I8) m.activations = {DType::I8, {}, act.head};
  if (act.type != DType::F32) act_j["dtype"] = act.type == DType::I8 ? "int8 dynamic per-token" : "fp8-e4m3 static per-tensor";
  if (act.type == DType::I8) act_j["head"] = act.head;
  std::string scheme = opt.scheme.describe();
  if (!opt.schemes.empty()) {
    std::map<std::string, int> count;
    for (const std::string& n : names) ++count[opt.scheme_for(n).describe()];
    scheme = "mixed:";
    for (const auto& [d, c] : count) scheme += " " + d + " x" + std::to_string(c) + ",";
    scheme.pop_back();
  }
  json out = {{"method", opt.method}, {"scheme", scheme}, {"tensors", tensors}, {"quantized", int(names.size())},
              {"seconds", std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()},
              {"peak_rss_mb", double(peak_rss_bytes()) / 1e6}};
  if (!calib_j.is_null()) out["calibration"] = calib_j;
  if (!act_j.is_null()) out["activations"] = act_j;
  return out;
}

}  // namespace condense::compress
