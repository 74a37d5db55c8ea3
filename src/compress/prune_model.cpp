#include "compress/prune_model.h"

#include <algorithm>
#include <chrono>
#include <climits>
#include <cmath>
#include <map>
#include <set>

#include "compress/awq.h"
#include "compress/calibration.h"
#include "core/error.h"

namespace condense::compress {

using nlohmann::json;

double GradualSchedule::at(int64_t t) const {
  if (t <= begin) return initial;
  if (t >= end) return final_sparsity;
  const double f = 1.0 - double(t - begin) / double(end - begin);
  return final_sparsity + (initial - final_sparsity) * f * f * f;
}

bool GradualSchedule::update_at(int64_t t) const {
  return t >= begin && t <= end && ((t - begin) % every == 0 || t == end);
}

int64_t GradualSchedule::next_update(int64_t t) const {
  if (t < begin) return begin;
  if (t >= end) return INT64_MAX;
  return std::min(end, begin + ((t - begin) / every + 1) * every);
}

namespace {

json tensor_sparsity(int64_t kept, int64_t numel) { return {{"sparsity", 1.0 - double(kept) / double(numel)}, {"kept", kept}, {"numel", numel}}; }

// Records the mask (a new entry is f32 + mask) and zeroes the removed values.
json set_mask(Model& m, const std::string& name, Tensor& t, std::vector<uint64_t> mask) {
  apply_mask(t.f32(), t.numel(), mask);
  const int64_t kept = count_kept(mask, t.numel());
  m.compression[name].mask = std::move(mask);
  return tensor_sparsity(kept, t.numel());
}

}  // namespace

std::vector<std::string> prune_targets(const Model& m, const PruneOptions& opt, const std::string& where) {
  if (opt.method != "magnitude" && opt.method != "wanda" && opt.method != "sparsegpt") {
    fail(where, "method '" + opt.method + "' is not one of magnitude, wanda, sparsegpt");
  }
  if (opt.scope != "tensor" && opt.scope != "global") fail(where, "scope '" + opt.scope + "' is not one of tensor, global");
  if (opt.scope == "global" && opt.method != "magnitude") {
    fail(where, "a global threshold applies to magnitude pruning only (" + opt.method + " compares within rows or blocks)");
  }
  if (opt.scope == "global" && opt.nm.active()) fail(where, "an N:M pattern is chosen per group of m weights, not by a global threshold");
  if (!(opt.sparsity >= 0 && opt.sparsity < 1)) fail(where, "sparsity must be in [0, 1), got " + std::to_string(opt.sparsity));
  const std::vector<std::string> names = select_weights(m, opt.targets, where + ".targets");
  for (const std::string& n : names) {
    auto it = m.compression.find(n);
    if (it != m.compression.end() && it->second.scheme.quantized()) {
      fail(where, "'" + n + "' is already quantized (" + it->second.scheme.describe() + ")", "Prune before quantizing");
    }
  }
  if (opt.nm.active()) {
    for_each_weight(m, [&](const WeightRef& r) {
      if (std::find(names.begin(), names.end(), r.name) != names.end() && r.tensor->dim(1) % opt.nm.m) {
        fail(where, "'" + r.name + "' has rows of " + std::to_string(r.tensor->dim(1)) + " inputs, not a multiple of " +
                        std::to_string(opt.nm.m) + " for the " + std::to_string(opt.nm.n) + ":" + std::to_string(opt.nm.m) + " pattern");
      }
    });
  }
  return names;
}

json magnitude_prune_to(Model& m, const std::vector<std::string>& names, double sparsity, const std::string& scope, const NmPattern& nm) {
  const std::map<std::string, Tensor*> ts = weights_by_name(m, names);
  json out = json::object();
  if (scope != "global") {
    for (const auto& [n, t] : ts) {
      std::vector<uint64_t> mask = select_mask(magnitude_scores(t->f32(), t->numel()), t->dim(0), t->dim(1), sparsity, Compare::Matrix,
                                               nm, mask_of(m, n));
      out[n] = set_mask(m, n, *t, std::move(mask));
    }
    return out;
  }
  // one threshold over every kept |w| of every target
  int64_t total = 0, removed = 0;
  std::vector<float> kept_abs;
  for (const auto& [n, t] : ts) {
    const std::vector<uint64_t>& mk = mask_of(m, n);
    total += t->numel();
    for (int64_t i = 0; i < t->numel(); ++i) {
      if (mask_kept(mk, i)) kept_abs.push_back(std::fabs(t->f32()[i]));
      else ++removed;
    }
  }
  int64_t more = std::llround(sparsity * double(total)) - removed;
  float thr = -1;
  int64_t at_thr = 0;  // elements equal to the threshold still to remove, in model order
  if (more > 0) {
    std::nth_element(kept_abs.begin(), kept_abs.begin() + (more - 1), kept_abs.end());
    thr = kept_abs[size_t(more - 1)];
    int64_t below = 0;
    for (float v : kept_abs) below += v < thr;
    at_thr = more - below;
  }
  for (const auto& [n, t] : ts) {
    std::vector<uint64_t> mask = mask_of(m, n);
    if (mask.empty()) mask = keep_all(t->numel());
    for (int64_t i = 0; i < t->numel(); ++i) {
      const float a = std::fabs(t->f32()[i]);
      if (mask_kept(mask, i) && (a < thr || (a == thr && at_thr > 0))) {
        if (a == thr) --at_thr;
        mask_remove(mask, i);
      }
    }
    out[n] = set_mask(m, n, *t, std::move(mask));
  }
  return out;
}

json sparsity_report(const Model& m, const std::vector<std::string>& names) {
  json tensors = json::object();
  int64_t kept = 0, numel = 0;
  for_each_weight(m, [&](const WeightRef& r) {
    if (std::find(names.begin(), names.end(), r.name) == names.end()) return;
    const int64_t k = count_kept(mask_of(m, r.name), r.tensor->numel());
    tensors[r.name] = tensor_sparsity(k, r.tensor->numel());
    kept += k;
    numel += r.tensor->numel();
  });
  return {{"sparsity", numel ? 1.0 - double(kept) / double(numel) : 0.0}, {"tensors", tensors}};
}

json prune_model(Model& m, const PruneOptions& opt, const CalibrationSet* calib, const std::function<void(int, int)>& on_progress) {
  const auto t0 = std::chrono::steady_clock::now();
  const std::vector<std::string> names = prune_targets(m, opt, "prune");
  const double sparsity = opt.nm.active() ? opt.nm.sparsity() : opt.sparsity;
  json tensors = json::object(), calib_j;
  std::map<std::string, Tensor*> rest = weights_by_name(m, names);
  int done = 0;
  if (opt.needs_calibration()) {
    if (!calib) fail("prune", opt.method + " needs calibration data", "Give the stage a \"calibration\" object");
    LayerwiseCalibrator cal(m, calib->inputs, calib->n_seq, calib->seq, calib->chunk, calib->comm);
    calib_j = {{"sequences", calib->n_seq}, {"seq", calib->seq}, {"tokens", cal.tokens()}, {"buffers_mb", double(cal.bytes()) / 1e6}};
    std::map<const Tensor*, std::string> by_tensor;
    for (const auto& [n, t] : rest) by_tensor[t] = n;
    int retries = 0;
    for (int l = 0; l < m.config.n_layers; ++l) {
      LayerWeights& w = m.layers[size_t(l)];
      for (int si = 0; si < kNumSites; ++si) {
        std::vector<Tensor*> here;
        for (Tensor* t : site_weights(w, Site(si))) {
          if (by_tensor.count(t)) here.push_back(t);
        }
        if (here.empty()) continue;
        const SiteStats st = std::move(cal.collect(l, 1u << si)[size_t(si)]);
        for (Tensor* t : here) {
          const std::string& name = by_tensor.at(t);
          const int64_t rows = t->dim(0), cols = t->dim(1);
          const std::vector<float> orig(t->f32(), t->f32() + t->numel());
          const std::vector<uint64_t> existing = mask_of(m, name);
          std::vector<float> mag = orig;
          apply_mask(mag.data(), t->numel(),
                     select_mask(magnitude_scores(orig.data(), t->numel()), rows, cols, sparsity, Compare::Matrix, opt.nm, existing));
          std::vector<uint64_t> mask;
          json rep = {{"method", opt.method}};
          if (opt.method == "wanda") {
            mask = select_mask(wanda_scores(orig.data(), rows, cols, st.hessian), rows, cols, sparsity, Compare::Row, opt.nm, existing);
          } else {
            SparseGptReport sr;
            mask = sparsegpt_prune(t->f32(), rows, cols, st.hessian, sparsity, opt.nm, opt.sparsegpt, existing, &sr);
            rep["damp"] = sr.damp_used;
            if (sr.retries) rep["cholesky_retries"] = sr.retries;
            retries += sr.retries;
          }
          rep.update(set_mask(m, name, *t, std::move(mask)));
          rep["output_error"] = output_error(orig.data(), t->f32(), rows, cols, st.hessian);
          rep["output_error_magnitude"] = output_error(orig.data(), mag.data(), rows, cols, st.hessian);
          tensors[name] = rep;
          rest.erase(name);
          if (on_progress) on_progress(++done, int(names.size()));
        }
      }
      cal.advance(l);
    }
    calib_j["cholesky_retries"] = retries;
  }
  if (!rest.empty()) {
    // magnitude, and the targets outside the blocks (a named head or embedding) of the calibrated methods
    std::vector<std::string> left;
    for (const auto& [n, t] : rest) left.push_back(n);
    const json r = magnitude_prune_to(m, left, sparsity, opt.method == "magnitude" ? opt.scope : "tensor", opt.nm);
    for (auto it = r.begin(); it != r.end(); ++it) {
      json e = {{"method", "magnitude"}};
      e.update(it.value());
      tensors[it.key()] = e;
      if (on_progress) on_progress(++done, int(names.size()));
    }
  }
  json out = {{"method", opt.method}, {"target_sparsity", sparsity}, {"sparsity", sparsity_report(m, names)["sparsity"]},
              {"pruned_tensors", int(names.size())}, {"tensors", tensors},
              {"seconds", std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()},
              {"peak_rss_mb", double(peak_rss_bytes()) / 1e6}};
  if (opt.nm.active()) out["pattern"] = std::to_string(opt.nm.n) + ":" + std::to_string(opt.nm.m);
  if (opt.method == "magnitude") out["scope"] = opt.scope;
  if (!calib_j.is_null()) out["calibration"] = calib_j;
  return out;
}

}  // namespace condense::compress
