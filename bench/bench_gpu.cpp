// GPU kernel benchmark (CUDA or HIP build): decode GEMV on real model shapes
// against the device's HBM read bandwidth measured in the same run (issue 16's
// >= 85% target), per matrix and for a whole decode step's linears (the
// engine's launches, replayed as one graph), plus the linears of a batch-64
// step. Weights are laid out as the engine does (q, k, v, o, gate, up, down per
// layer, then the head) and replicated until a pass reads >= 512 MiB, so the
// 50 MB L2 cannot serve them. Writes JSON (stdout, or --out FILE).
//   bench_gpu [--out FILE] [--reps N]
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "kernels/gpu/device_memory.h"
#include "kernels/gpu/device_query.h"
#include "kernels/gpu/membw.h"
#include "kernels/gpu/qgemv.h"

namespace gpu = condense::kernels::gpu;
using nlohmann::json;

namespace {

struct Shape {
  const char* name;
  int64_t dim, layers, heads, kv_heads, ffn, vocab;
  int64_t kv_dim() const { return dim / heads * kv_heads; }
};

struct Code {
  const char* name;
  gpu::GCode code;
  int64_t group;  // 0: per-channel
};

// One matrix's device buffers.
struct Mat {
  gpu::GpuQMatrix w;
  gpu::DeviceBuffer codes, scales;
  size_t bytes() const { return codes.bytes() + scales.bytes(); }
};

Mat make(int64_t n, int64_t k, const Code& c, gpu::Stream& s) {
  Mat m;
  m.w.code = c.code;
  m.w.n = n;
  m.w.k = k;
  m.w.group = c.group > 0 ? c.group : k;
  m.w.row_bytes = gpu::gpu_row_bytes(c.code, k);
  m.codes = gpu::DeviceBuffer(size_t(n * m.w.row_bytes));
  gpu::memset_async(m.codes.data(), 0x5a, m.codes.bytes(), s);  // the codes' values do not change the speed
  m.w.codes = m.codes.data();
  if (c.code != gpu::GCode::F32 && c.code != gpu::GCode::BF16) {
    m.scales = gpu::DeviceBuffer(size_t(m.w.scale_count()) * 4);
    gpu::memset_async(m.scales.data(), 0x3c, m.scales.bytes(), s);  // 0.0115 as f32
    m.w.scales = m.scales.as<float>();
  }
  return m;
}

std::vector<std::pair<int64_t, int64_t>> step_shapes(const Shape& sh) {
  std::vector<std::pair<int64_t, int64_t>> v;
  for (int64_t l = 0; l < sh.layers; ++l) {
    for (auto nk : {std::pair{sh.dim, sh.dim}, {sh.kv_dim(), sh.dim}, {sh.kv_dim(), sh.dim}, {sh.dim, sh.dim}, {sh.ffn, sh.dim},
                    {sh.ffn, sh.dim}, {sh.dim, sh.ffn}})
      v.push_back(nk);
  }
  v.push_back({sh.vocab, sh.dim});
  return v;
}

// Seconds per pass of `launch` over all copies (a graph replayed `reps` times).
template <class F>
double time_graph(int reps, gpu::Stream& s, F launch) {
  gpu::Graph g;
  g.begin_capture(s);
  launch();
  g.end_capture(s);
  g.replay(s);  // warm-up
  gpu::Timer t;
  t.start(s);
  for (int r = 0; r < reps; ++r) g.replay(s);
  t.stop(s);
  return t.seconds() / reps;
}

}  // namespace

int main(int argc, char** argv) {
  std::string out_path;
  int reps = 20;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--out" && i + 1 < argc) out_path = argv[++i];
    else if (a == "--reps" && i + 1 < argc) reps = std::max(1, std::atoi(argv[++i]));
    else {
      std::fprintf(stderr, "usage: bench_gpu [--out FILE] [--reps N (default 20)]\n");
      return 2;
    }
  }
  if (!gpu::available()) {
    std::fprintf(stderr, "bench_gpu: no GPU visible to this %s build\n", gpu::backend_name());
    return 1;
  }
  gpu::Stream s;
  json j;
  const auto devs = gpu::list_devices();
  j["schema"] = "condense-bench-gpu/1";
  j["backend"] = gpu::backend_name();
  j["device"] = devs.empty() ? "?" : devs[0].name;
  j["compute_capability"] = devs.empty() ? "" : std::to_string(devs[0].compute_major) + "." + std::to_string(devs[0].compute_minor);
  j["memory_gib"] = devs.empty() ? 0 : devs[0].memory_gib;
  const double hbm = gpu::read_bandwidth(size_t(4) << 30, 10, s);
  j["hbm_read_gbs"] = hbm / 1e9;
  j["hbm_copy_gbs"] = gpu::copy_bandwidth(size_t(2) << 30, 10, s) / 1e9;
  std::fprintf(stderr, "bench_gpu: %s, HBM read %.0f GB/s\n", j["device"].get<std::string>().c_str(), hbm / 1e9);

  const Shape shapes[] = {{"stories110M", 768, 12, 12, 12, 2048, 32000}, {"tinyllama-1.1B", 2048, 22, 32, 4, 5632, 32000}};
  const Code codes[] = {{"int8 per-channel", gpu::GCode::I8, 0}, {"int4 g32", gpu::GCode::I4, 32}, {"bf16", gpu::GCode::BF16, 0}};
  json rows = json::array();
  for (const Shape& sh : shapes) {
    for (const Code& c : codes) {
      const auto shapes_of_step = step_shapes(sh);
      // One copy's bytes, then as many copies as make a pass >= 512 MiB.
      size_t one = 0;
      for (auto [n, k] : shapes_of_step) {
        gpu::GpuQMatrix w;
        w.code = c.code;
        w.n = n;
        w.k = k;
        w.group = c.group > 0 ? c.group : k;
        one += size_t(n * gpu::gpu_row_bytes(c.code, k)) + (c.code == gpu::GCode::BF16 ? 0 : size_t(w.scale_count()) * 4);
      }
      const int copies = int(std::max<size_t>(1, ((size_t(512) << 20) + one - 1) / one));
      std::vector<std::vector<Mat>> model(static_cast<size_t>(copies));
      for (auto& cp : model)
        for (auto [n, k] : shapes_of_step) cp.push_back(make(n, k, c, s));
      s.synchronize();
      const int64_t kmax = std::max(sh.dim, sh.ffn);
      gpu::DeviceBuffer x(size_t(64 * kmax) * 4), y(size_t(64 * std::max(sh.vocab, sh.ffn)) * 4);
      gpu::memset_async(x.data(), 0, x.bytes(), s);
      json row = {{"model", sh.name}, {"code", c.name}, {"weight_bytes_per_step", one}, {"copies", copies}};
      // A whole decode step's linears (m = 1), then a batch-64 step's.
      for (int m : {1, 64}) {
        const double sec = time_graph(reps, s, [&] {
          for (auto& cp : model)
            for (auto& mat : cp) gpu::linear(x.as<float>(), m, kmax, mat.w, y.as<float>(), mat.w.n, s);
        }) / copies;
        if (m == 1) {
          row["decode_step_s"] = sec;
          row["decode_gbs"] = double(one) / sec / 1e9;
          row["decode_fraction_of_hbm"] = double(one) / sec / hbm;
        } else {
          row["batch64_step_s"] = sec;
          row["batch64_linear_tok_s"] = 64.0 / sec;
        }
      }
      // Each distinct matrix alone (rotating over the copies).
      json per = json::array();
      std::vector<std::pair<int64_t, int64_t>> seen;
      for (size_t i = 0; i < shapes_of_step.size(); ++i) {
        if (std::find(seen.begin(), seen.end(), shapes_of_step[i]) != seen.end()) continue;
        seen.push_back(shapes_of_step[i]);
        std::vector<const Mat*> same;
        for (auto& cp : model)
          for (size_t t = 0; t < cp.size(); ++t)
            if (shapes_of_step[t] == shapes_of_step[i]) same.push_back(&cp[t]);
        const double sec = time_graph(reps, s, [&] {
          for (const Mat* mat : same) gpu::linear(x.as<float>(), 1, kmax, mat->w, y.as<float>(), mat->w.n, s);
        }) / double(same.size());
        const double bytes = double(same[0]->bytes());
        per.push_back({{"n", shapes_of_step[i].first}, {"k", shapes_of_step[i].second}, {"bytes", bytes}, {"seconds", sec},
                       {"gbs", bytes / sec / 1e9}, {"fraction_of_hbm", bytes / sec / hbm}});
      }
      row["matrices"] = per;
      std::fprintf(stderr, "bench_gpu: %s %s: decode step %.1f us, %.0f GB/s = %.0f%% of HBM\n", sh.name, c.name,
                   row["decode_step_s"].get<double>() * 1e6, row["decode_gbs"].get<double>(),
                   100 * row["decode_fraction_of_hbm"].get<double>());
      rows.push_back(row);
      model.clear();
      gpu::release_cached();
    }
  }
  j["gemv"] = rows;
  const std::string text = j.dump(1) + "\n";
  if (out_path.empty()) std::fwrite(text.data(), 1, text.size(), stdout);
  else std::ofstream(out_path) << text;
  return 0;
}
