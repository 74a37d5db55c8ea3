#include "compress/quantize_model.h"

#include <fnmatch.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <map>
#include <set>

#include "compress/calibration.h"
#include "compress/rtn.h"
#include "core/error.h"

namespace condense::compress {

using nlohmann::json;

size_t peak_rss_bytes() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return size_t(std::stoull(line.substr(6))) * 1024;
  }
  return 0;
}

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

namespace {

struct Target {
  std::string name;
  Tensor* t;
  int layer;
};

std::vector<uint64_t> existing_mask(const Model& m, const std::string& name) {
  auto it = m.compression.find(name);
  return it == m.compression.end() ? std::vector<uint64_t>{} : it->second.mask;
}

// The canonical name of a block weight, for matching targets to sites.
std::map<const Tensor*, std::string> tensor_names(Model& m) {
  std::map<const Tensor*, std::string> n;
  for_each_weight(m, [&](const WeightRef& r) { n[r.tensor] = r.name; });
  return n;
}

void scale_cols(Tensor& w, const std::vector<float>& s, bool divide) {
  const int64_t rows = w.dim(0), cols = w.dim(1);
  float* p = w.f32();
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) p[r * cols + c] = divide ? p[r * cols + c] / s[size_t(c)] : p[r * cols + c] * s[size_t(c)];
  }
}

void divide_rows(Tensor& w, const std::vector<float>& s) {
  const int64_t rows = w.dim(0), cols = w.ndim() == 2 ? w.dim(1) : 1;
  float* p = w.f32();
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) p[r * cols + c] /= s[size_t(r)];
  }
}

}  // namespace

json quantize_model(Model& m, const QuantizeOptions& opt, const CalibrationSet* calib, const std::function<void(int, int)>& on_progress) {
  const auto t0 = std::chrono::steady_clock::now();
  const std::vector<std::string> names = select_weights(m, opt.targets, "quantize.targets");
  if (opt.method != "rtn" && opt.method != "gptq" && opt.method != "awq") {
    fail("quantize.method", "'" + opt.method + "' is not one of rtn, gptq, awq");
  }
  std::map<std::string, Target> targets;
  for_each_weight(m, [&](const WeightRef& r) {
    if (std::find(names.begin(), names.end(), r.name) != names.end()) targets[r.name] = {r.name, r.tensor, r.layer};
  });
  for (const auto& [n, t] : targets) {
    validate_scheme(opt.scheme, t.t->dim(1), "quantize " + n);
    auto it = m.compression.find(n);
    if (it != m.compression.end() && it->second.scheme.quantized()) {
      fail("quantize", "'" + n + "' is already quantized (" + it->second.scheme.describe() + ")", "Quantize each weight once");
    }
  }
  if (opt.method == "awq") {
    // AWQ rescales every weight reading a site (and v_proj/up_proj rows), targets or not
    for (const auto& [n, wc] : m.compression) {
      if (wc.scheme.quantized()) fail("quantize", "AWQ rescales weights, but '" + n + "' is already quantized", "Run AWQ before other quantize stages");
    }
  }

  json tensors = json::object();
  int done = 0;
  const int total = int(targets.size());
  auto progress = [&] {
    if (on_progress) on_progress(++done, total);
  };
  auto store = [&](const std::string& name, WeightCompression wc) {
    m.compression[name] = std::move(wc);
  };

  const bool calibrated = opt.method != "rtn";
  if (calibrated && !calib) fail("quantize", opt.method + " needs calibration data", "Give the stage a \"calibration\" object");
  json calib_j;
  // block weights go through the calibrated method; anything else (head, embedding) by RTN
  std::set<std::string> handled;
  if (calibrated) {
    LayerwiseCalibrator cal(m, calib->inputs, calib->n_seq, calib->seq, calib->chunk);
    calib_j = {{"sequences", calib->n_seq}, {"seq", calib->seq}, {"tokens", cal.tokens()}, {"buffers_mb", double(cal.bytes()) / 1e6}};
    const auto tnames = tensor_names(m);
    int retries = 0;
    for (int l = 0; l < m.config.n_layers; ++l) {
      LayerWeights& lw = m.layers[size_t(l)];
      bool any = false;
      for (int si = 0; si < kNumSites; ++si) {
        for (Tensor* t : site_weights(lw, Site(si))) any |= targets.count(tnames.at(t)) > 0;
      }
      if (any) {
        const bool sequential = opt.method == "gptq" && opt.gptq.true_sequential;
        std::array<SiteStats, kNumSites> st = cal.collect(l, sequential ? 1u : 0xfu);
        // AWQ: scales per site, folded into the producer of the site's input
        std::map<const Tensor*, std::vector<float>> col_scale, row_scale;
        std::map<const Tensor*, std::vector<float>> original;
        if (opt.method == "awq") {
          for (int si = 0; si < kNumSites; ++si) {
            const Site site = Site(si);
            std::vector<Tensor*> ws;
            for (Tensor* t : site_weights(lw, site)) {
              if (targets.count(tnames.at(t))) ws.push_back(t);
            }
            if (ws.empty()) continue;
            // o_proj's input channels are v_proj's outputs only when every query head has its own kv head
            if (site == Site::AttnOut && m.config.n_heads != m.config.n_kv_heads) continue;
            std::vector<AwqWeight> aw;
            std::vector<std::vector<uint64_t>> masks;
            masks.reserve(ws.size());
            for (Tensor* t : ws) masks.push_back(existing_mask(m, tnames.at(t)));
            for (size_t i = 0; i < ws.size(); ++i) aw.push_back({ws[i]->f32(), ws[i]->dim(0), &masks[i]});
            const AwqSearch a = awq_search(opt.scheme, aw, st[size_t(si)].cols, st[size_t(si)].hessian, st[size_t(si)].abs_mean, opt.awq);
            for (Tensor* t : site_weights(lw, site)) {
              if (!original.count(t)) original[t].assign(t->f32(), t->f32() + t->numel());
              scale_cols(*t, a.scales, false);
              col_scale[t] = a.scales;
            }
            switch (site) {
              case Site::AttnIn: divide_rows(lw.attn_norm, a.scales); break;
              case Site::FfnIn: divide_rows(lw.ffn_norm, a.scales); break;
              case Site::AttnOut:
                if (!original.count(&lw.wv)) original[&lw.wv].assign(lw.wv.f32(), lw.wv.f32() + lw.wv.numel());
                divide_rows(lw.wv, a.scales);
                if (m.config.qkv_bias) divide_rows(lw.bv, a.scales);
                row_scale[&lw.wv] = a.scales;
                break;
              case Site::FfnHidden:
                if (!original.count(&lw.w_up)) original[&lw.w_up].assign(lw.w_up.f32(), lw.w_up.f32() + lw.w_up.numel());
                divide_rows(lw.w_up, a.scales);
                row_scale[&lw.w_up] = a.scales;
                break;
            }
            tensors["layer" + std::to_string(l) + "." + site_name(site) + ".awq"] = {{"alpha", a.alpha}, {"loss", a.loss},
                                                                                     {"loss_alpha0", a.loss_unscaled}};
          }
        }
        for (int si = 0; si < kNumSites; ++si) {
          if (sequential && si > 0) st[size_t(si)] = std::move(cal.collect(l, 1u << si)[size_t(si)]);
          const SiteStats& ss = st[size_t(si)];
          for (Tensor* t : site_weights(lw, Site(si))) {
            const std::string& name = tnames.at(t);
            if (!targets.count(name)) continue;
            const int64_t rows = t->dim(0), cols = t->dim(1);
            const std::vector<uint64_t> mask = existing_mask(m, name);
            // reference: the weight as it was (original coordinates) and its RTN error
            std::vector<float> ref = original.count(t) ? original[t] : std::vector<float>(t->f32(), t->f32() + t->numel());
            std::vector<float> rtn(ref.size());
            quantize_rtn(opt.scheme, ref.data(), rows, cols, mask, rtn.data());
            const double err_rtn = output_error(ref.data(), rtn.data(), rows, cols, ss.hessian);
            json tj = {{"scheme", opt.scheme.describe()}, {"method", opt.method}, {"output_error_rtn", err_rtn}};
            WeightCompression wc;
            if (opt.method == "gptq") {
              GptqReport rep;
              wc = gptq_quantize(opt.scheme, t->f32(), rows, cols, ss.hessian, opt.gptq, mask, &rep);
              tj["damp"] = rep.damp_used;
              if (rep.retries) tj["cholesky_retries"] = rep.retries;
              if (rep.dead_columns) tj["dead_columns"] = rep.dead_columns;
              retries += rep.retries;
            } else {
              // the site's input is x / s after folding: H' = S^-1 H S^-1
              std::vector<double> h = ss.hessian;
              if (col_scale.count(t)) {
                const std::vector<float>& s = col_scale[t];
                for (int64_t a = 0; a < cols; ++a) {
                  for (int64_t b = 0; b < cols; ++b) h[size_t(a * cols + b)] /= double(s[size_t(a)]) * double(s[size_t(b)]);
                }
              }
              wc = quantize_clip_search(opt.scheme, t->f32(), rows, cols, h, opt.awq, mask);
            }
            // the method's effective weight back in original coordinates
            std::vector<float> eff(t->f32(), t->f32() + t->numel());
            for (int64_t r = 0; r < rows; ++r) {
              for (int64_t c = 0; c < cols; ++c) {
                float& v = eff[size_t(r * cols + c)];
                if (col_scale.count(t)) v /= col_scale[t][size_t(c)];
                if (row_scale.count(t)) v *= row_scale[t][size_t(r)];
              }
            }
            tj["output_error"] = output_error(ref.data(), eff.data(), rows, cols, ss.hessian);
            tensors[name] = tj;
            store(name, std::move(wc));
            handled.insert(name);
            progress();
          }
        }
        // AWQ changed weights that were not targets (a norm is always fine; a
        // non-target v_proj/up_proj row scaling is exact in f32)
      }
      cal.advance(l);
    }
    calib_j["cholesky_retries"] = retries;
  }
  for (auto& [name, t] : targets) {
    if (handled.count(name)) continue;
    const int64_t rows = t.t->dim(0), cols = t.t->dim(1);
    store(name, quantize_rtn(opt.scheme, t.t->f32(), rows, cols, existing_mask(m, name), t.t->f32()));
    tensors[name] = {{"scheme", opt.scheme.describe()}, {"method", "rtn"}};
    progress();
  }
  json out = {{"method", opt.method}, {"scheme", opt.scheme.describe()}, {"tensors", tensors}, {"quantized", int(targets.size())},
              {"seconds", std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()},
              {"peak_rss_mb", double(peak_rss_bytes()) / 1e6}};
  if (!calib_j.is_null()) out["calibration"] = calib_j;
  return out;
}

}  // namespace condense::compress
