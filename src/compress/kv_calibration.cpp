#include "compress/kv_calibration.h"

#include <algorithm>
#include <chrono>

#include "compress/calibration.h"
#include "core/error.h"

namespace condense::compress {

using nlohmann::json;

json calibrate_kv(Model& m, const KvCalibrationOptions& opt, const CalibrationSet* calib) {
  const auto t0 = std::chrono::steady_clock::now();
  if (opt.type != DType::F8E4M3 && opt.type != DType::I8) fail("calibrate_kv", "the KV cache can be fp8 or int8");
  if (opt.unit_scales && opt.type == DType::I8) fail("calibrate_kv", "int8 with unit scales would round every value to an integer", "Calibrate the scales");
  const int L = m.config.n_layers, n_kv = m.config.n_kv_heads, per = opt.per_head ? n_kv : 1;
  KvCacheQuant q;
  q.type = opt.type;
  q.per_head = opt.per_head;
  q.k_scales.assign(size_t(L * per), 1.f);
  q.v_scales.assign(size_t(L * per), 1.f);
  json layers = json::array();
  if (!opt.unit_scales) {
    if (!calib) fail("calibrate_kv", "calibrated scales need calibration data");
    const float top = opt.type == DType::F8E4M3 ? 448.f : 127.f;
    LayerwiseCalibrator cal(m, calib->inputs, calib->n_seq, calib->seq, calib->chunk, calib->comm);
    for (int l = 0; l < L; ++l) {
      std::vector<float> ka, va;
      cal.kv_absmax(l, ka, va);
      if (!opt.per_head) {
        ka = {*std::max_element(ka.begin(), ka.end())};
        va = {*std::max_element(va.begin(), va.end())};
      }
      for (int h = 0; h < per; ++h) {
        q.k_scales[size_t(l * per + h)] = ka[size_t(h)] > 0 ? ka[size_t(h)] / top : 1.f;
        q.v_scales[size_t(l * per + h)] = va[size_t(h)] > 0 ? va[size_t(h)] / top : 1.f;
      }
      layers.push_back({{"layer", l}, {"k_absmax", ka}, {"v_absmax", va}});
      if (l + 1 < L) cal.advance(l);
    }
  }
  m.kv_cache = q;
  return {{"dtype", opt.type == DType::F8E4M3 ? "fp8-e4m3" : "int8"},
          {"granularity", opt.per_head ? "head" : "tensor"},
          {"scales", opt.unit_scales ? "unit" : "calibrated"},
          {"k_scales", q.k_scales},
          {"v_scales", q.v_scales},
          {"layers", layers},
          {"seconds", std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()}};
}

}  // namespace condense::compress
