#include "pipeline/sensitivity.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>

#include "compress/prune.h"
#include "compress/quantize_model.h"
#include "compress/rtn.h"
#include "core/error.h"
#include "runtime/compare.h"
#include "runtime/engine.h"
#include "runtime/linear_parts.h"

namespace condense::pipeline {

using nlohmann::json;

namespace {

constexpr const char* kSensitivitySchema = "condense-sensitivity/2";


// Microseconds per call of `lin` on one row: the least of five batches of
// calls lasting >= 1 ms each (noise only ever adds time).
double one_row_us(const ops::PackedLinear& lin) {
  std::vector<float> x(size_t(lin.in_features())), y(size_t(lin.out_features()));
  for (size_t i = 0; i < x.size(); ++i) x[i] = float((i * 37) % 17) / 17.f - 0.5f;
  const ops::Mat X{x.data(), 1, lin.in_features(), lin.in_features()}, Y{y.data(), 1, lin.out_features(), lin.out_features()};
  lin.apply(X, Y);  // warm: caches, pages
  double best = 1e300;
  for (int batch = 0; batch < 5; ++batch) {
    const auto t0 = std::chrono::steady_clock::now();
    int64_t calls = 0;
    double el = 0;
    do {
      lin.apply(X, Y);
      ++calls;
      el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    } while (el < 1e-3);
    best = std::min(best, el / double(calls));
  }
  return best * 1e6;
}

// The option's pruning of one weight (magnitude, within the matrix): the
// kept-bitmap, applied to `values` (empty when the option does not prune).
std::vector<uint64_t> prune_one(const StorageOption& o, std::vector<float>& values, int64_t rows, int64_t cols) {
  if (o.sparsity <= 0) return {};
  const int64_t n = rows * cols;
  std::vector<uint64_t> mask =
      compress::select_mask(compress::magnitude_scores(values.data(), n), rows, cols, o.sparsity, compress::Compare::Matrix, compress::NmPattern{});
  compress::apply_mask(values.data(), n, mask);
  return mask;
}

}  // namespace

json Sensitivity::to_json() const {
  json opts = json::array(), rs = json::array();
  for (const StorageOption& o : options) opts.push_back({{"name", o.name}, {"weights", o.weights}, {"sparsity", o.sparsity}});
  for (const SensitivityRow& r : rows) {
    rs.push_back({{"tensor", r.tensor}, {"rows", r.rows}, {"cols", r.cols}, {"kl_mean", r.kl}, {"delta_nll", r.dnll}, {"bytes", r.bytes}, {"us", r.us}, {"reference_us", r.reference_us}});
  }
  return {{"schema", kSensitivitySchema}, {"options", opts}, {"tensors", rs}, {"reference_bytes", reference_bytes},
          {"windows", windows}, {"ctx", ctx}, {"seconds", seconds}};
}

Sensitivity sensitivity_from_json(const json& j, const std::vector<StorageOption>& options) {
  try {
    if (j.at("schema") != kSensitivitySchema) fail("sensitivity", std::string("not a ") + kSensitivitySchema + " table");
    Sensitivity s;
    s.options = options;
    const json& o = j.at("options");
    bool same = o.size() == options.size();
    for (size_t i = 0; same && i < options.size(); ++i) same = o[i].at("name") == options[i].name;
    if (!same) fail("sensitivity", "the table was measured for other options");
    for (const json& r : j.at("tensors")) {
      SensitivityRow row{r.at("tensor").get<std::string>(), r.at("rows").get<int64_t>(), r.at("cols").get<int64_t>(),
                         r.at("kl_mean").get<std::vector<double>>(), r.at("delta_nll").get<std::vector<double>>(),
                         r.at("bytes").get<std::vector<double>>(), r.at("us").get<std::vector<double>>(), r.at("reference_us").get<double>()};
      if (row.kl.size() != options.size() || row.dnll.size() != options.size() || row.bytes.size() != options.size() || row.us.size() != options.size()) fail("sensitivity", "'" + row.tensor + "' lacks an option's values");
      s.rows.push_back(std::move(row));
    }
    s.reference_bytes = j.at("reference_bytes").get<double>();
    s.windows = j.at("windows").get<int>();
    s.ctx = j.at("ctx").get<int>();
    s.seconds = j.at("seconds").get<double>();
    return s;
  } catch (const nlohmann::json::exception& e) {
    fail("sensitivity", std::string("malformed table: ") + e.what());
  }
}

Sensitivity measure_sensitivity(const Model& m, const std::vector<StorageOption>& options, const std::vector<std::string>& targets,
                                const compress::CalibrationSet& cal, const SensitivityMethod& method,
                                const std::function<void(int, int)>& on_progress) {
  if (method.method != "rtn" && method.method != "gptq") fail("sensitivity", "method '" + method.method + "': expected rtn or gptq");
  if (method.method == "gptq" && !method.calibration) fail("sensitivity", "gptq needs calibration windows");
  const auto t0 = std::chrono::steady_clock::now();
  if (options.empty()) fail("sensitivity", "no storage option to measure");
  const int windows = cal.n_seq, ctx = cal.seq;
  if (windows < 1 || ctx < 1 || ctx > m.config.max_seq || cal.inputs.size() != size_t(windows) * size_t(ctx)) {
    fail("sensitivity", "expected windows of 1.." + std::to_string(m.config.max_seq) + " tokens");
  }
  const int vocab = m.config.vocab;
  Sensitivity s;
  s.options = options;
  s.windows = windows;
  s.ctx = ctx;
  std::vector<std::vector<int>> inputs;
  for (int w = 0; w < windows; ++w) inputs.emplace_back(cal.inputs.begin() + ptrdiff_t(w) * ctx, cal.inputs.begin() + ptrdiff_t(w + 1) * ctx);
  std::vector<float> ref(size_t(windows) * size_t(ctx) * size_t(vocab)), logits(size_t(ctx) * size_t(vocab));
  std::vector<double> lp(static_cast<size_t>(vocab));
  // every position's log-probabilities under e (in lp): fn(window, position, the reference's row)
  auto score = [&](Engine& e, const auto& fn) {
    for (int w = 0; w < windows; ++w) {
      e.forward(inputs[size_t(w)].data(), ctx, 0, logits.data(), ctx);
      for (int i = 0; i < ctx; ++i) {
        log_softmax64(logits.data() + size_t(i) * size_t(vocab), vocab, lp);
        fn(w, i, ref.data() + (size_t(w) * size_t(ctx) + size_t(i)) * size_t(vocab));
      }
    }
  };
  {  // the reference's, once (float: the KL's terms keep ~7 digits)
    Engine e(m, ctx);
    score(e, [&](int, int, float* r) {
      for (int j = 0; j < vocab; ++j) r[j] = float(lp[size_t(j)]);
    });
  }
  // mean KL over every position, and the mean change of the text's NLL over
  // the positions whose next token is in the window (ctx - 1 per window)
  auto measure = [&](Engine& e, double* kl_mean, double* dnll) {
    double sum = 0, nll = 0;
    score(e, [&](int w, int i, const float* r) {
      double kl = 0;
      for (int j = 0; j < vocab; ++j) kl += std::exp(double(r[j])) * (double(r[j]) - lp[size_t(j)]);
      sum += std::max(kl, 0.0);
      if (i + 1 < ctx) {
        const int next = inputs[size_t(w)][size_t(i) + 1];
        nll += double(r[next]) - lp[size_t(next)];
      }
    });
    *kl_mean = sum / (double(windows) * ctx);
    *dnll = ctx > 1 ? nll / (double(windows) * (ctx - 1)) : 0;
  };

  const std::vector<std::string> names = compress::select_weights(m, targets, "mixed.targets");
  std::map<std::string, std::pair<const Tensor*, Shape>> by_name;
  for_each_weight(m, [&](const WeightRef& r) { by_name[r.name] = {r.tensor, r.shape}; });
  const int total = int(names.size() * options.size());
  int done = 0;
  for (const std::string& name : names) {
    const auto& [t, shape] = by_name.at(name);
    if (m.compression.count(name)) fail("sensitivity", "'" + name + "' is already compressed; measure sensitivity on the uncompressed model");
    SensitivityRow row{name, shape[0], shape[1], {}, {}, {}, {}, 0};
    {
      const ops::PackedLinear ref_lin = pack_linear(m, {{name, t}}, {row.rows}, row.cols);
      s.reference_bytes += double(ref_lin.weight_bytes());
      row.reference_us = one_row_us(ref_lin);
    }
    for (const StorageOption& o : options) {
      std::vector<float> values(t->f32(), t->f32() + row.rows * row.cols);
      WeightCompression wc;
      wc.mask = prune_one(o, values, row.rows, row.cols);
      const bool gptq = method.method == "gptq" && o.scheme.quantized();
      if (o.scheme.quantized() && !gptq) wc = compress::quantize_rtn(o.scheme, values.data(), row.rows, row.cols, wc.mask, values.data());
      // a shallow copy shares every other weight with m; only this one is replaced
      Model w = m;
      Tensor changed = Tensor::from_f32(values, {row.rows, row.cols});
      for_each_weight(w, [&](const WeightRef& r) {
        if (r.name == name) *r.tensor = changed;
      });
      if (gptq) {  // from the (pruned) values, the quantizer keeping the mask
        if (wc.sparse()) w.compression[name] = wc;
        compress::QuantizeOptions q;
        q.scheme = o.scheme;
        q.method = "gptq";
        q.gptq = method.gptq;
        q.targets = {name};
        compress::quantize_model(w, q, method.calibration);
        wc = w.compression.at(name);
      }
      {
        Model packed = w;
        packed.compression[name] = wc;
        const ops::PackedLinear lin = pack_linear(packed, {{name, &changed}}, {row.rows}, row.cols);
        row.bytes.push_back(double(lin.weight_bytes()));
        row.us.push_back(one_row_us(lin));
      }
      w.compression.erase(name);
      // effective f32 values: the quantity is the weights' error, not a kernel's arithmetic
      Engine e(w, ctx);
      double kl = 0, dnll = 0;
      measure(e, &kl, &dnll);
      row.kl.push_back(kl);
      row.dnll.push_back(dnll);
      if (on_progress) on_progress(++done, total);
    }
    s.rows.push_back(std::move(row));
  }
  s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return s;
}

}  // namespace condense::pipeline
