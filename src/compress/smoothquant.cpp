#include "compress/smoothquant.h"

#include <algorithm>
#include <cmath>

#include "compress/calibration.h"
#include "compress/fold_scales.h"
#include "core/error.h"

namespace condense::compress {

using nlohmann::json;

json smooth_model(Model& m, const CalibrationSet& calib, double alpha) {
  if (!(alpha >= 0 && alpha <= 1)) fail("smoothquant", "alpha must be in [0, 1]");
  LayerwiseCalibrator cal(m, calib.inputs, calib.n_seq, calib.seq, calib.chunk, calib.comm);
  json layers = json::array();
  for (int l = 0; l < m.config.n_layers; ++l) {
    LayerWeights& w = m.layers[size_t(l)];
    json lj = json::object();
    // one pass for all sites: smoothing one site leaves the f32 inputs of the others unchanged
    const std::array<SiteStats, kNumSites> all = cal.collect(l, 0xf, false);
    for (int si = 0; si < kNumSites; ++si) {
      const Site site = Site(si);
      if (!site_foldable(m.config, site)) continue;
      const SiteStats& st = all[size_t(si)];
      std::vector<float> wmax(size_t(st.cols), 0.f);
      for (Tensor* t : site_weights(w, site)) {
        const int64_t rows = t->dim(0), cols = t->dim(1);
        for (int64_t r = 0; r < rows; ++r) {
          for (int64_t c = 0; c < cols; ++c) wmax[size_t(c)] = std::max(wmax[size_t(c)], std::fabs(t->f32()[r * cols + c]));
        }
      }
      std::vector<float> s(size_t(st.cols), 1.f);
      float xmax_before = 0, xmax_after = 0, smax = 0;
      for (int64_t j = 0; j < st.cols; ++j) {
        const double x = st.abs_max[size_t(j)], wj = wmax[size_t(j)];
        if (x > 0 && wj > 0) s[size_t(j)] = float(std::clamp(std::pow(x, alpha) / std::pow(wj, 1 - alpha), 1e-5, 1e5));
        xmax_before = std::max(xmax_before, float(x));
        xmax_after = std::max(xmax_after, float(x / s[size_t(j)]));
        smax = std::max(smax, s[size_t(j)]);
      }
      fold_input_scales(m.config, w, site, s);
      lj[site_name(site)] = {{"max_scale", smax}, {"act_absmax_before", xmax_before}, {"act_absmax_after", xmax_after}};
    }
    layers.push_back(lj);
    cal.advance(l);
  }
  return {{"alpha", alpha}, {"layers", layers}};
}

json calibrate_input_scales(Model& m, const CalibrationSet& calib) {
  LayerwiseCalibrator cal(m, calib.inputs, calib.n_seq, calib.seq, calib.chunk, calib.comm);
  ActivationQuant a;
  a.type = DType::F8E4M3;
  a.scales.assign(size_t(m.config.n_layers) * ActivationQuant::kSites, 1.f);
  for (int l = 0; l < m.config.n_layers; ++l) {
    const std::array<SiteStats, kNumSites> st = cal.collect(l, 0xf, false);
    for (int si = 0; si < kNumSites; ++si) {
      const float amax = *std::max_element(st[size_t(si)].abs_max.begin(), st[size_t(si)].abs_max.end());
      a.scales[size_t(l) * ActivationQuant::kSites + size_t(si)] = amax > 0 ? amax / 448.f : 1.f;
    }
    cal.advance(l);
  }
  m.activations = a;
  return {{"dtype", "fp8-e4m3"}, {"scales", "static"}, {"input_scales", a.scales}};
}

}  // namespace condense::compress
