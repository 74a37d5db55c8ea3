// The native linear kernels of each stored encoding (kernels/cpu/qlinear.h) at
// a stories110M shape (fused q/k/v: n = 2304, k = 768): decode (m = 1,
// memory-bound: bytes_per_second is the packed bytes streamed, compare with
// bench_machine's read bandwidth) and batched rows (m = 4, 16, 128: GFLOPS,
// compare with the FMA peak). Decode cycles through enough copies (>= 512 MB)
// that no pass finds its matrix in the L3.
// "_sparseNN": NN% of the weights pruned at random (sparse kernels), "_2of4": 2:4.
// "_xint8": integer activations (W8A8 / W4A8: vpdpbusd where the CPU has VNNI).
// "_xint16": f32 inputs quantized to int16 inside the kernel (the weight-only
// default, vpdpwssd / vpmaddwd); without a suffix the codes decode to f32.
// ISA: CONDENSE_ISA (default the best); threads: OMP_NUM_THREADS.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "core/ops/linear.h"
#include "kernels/cpu/cpu_features.h"

using namespace condense;
namespace kc = condense::kernels;

namespace {

struct Enc {
  const char* name;
  kc::WCode code;
  int64_t group;
  bool asym, a8;
  double sparsity = 0;  // fraction pruned at random; -1: 2:4
  bool a16 = false;
};
const Enc kEncs[] = {{"f32", kc::WCode::F32, 0, false, false},          {"int8_channel", kc::WCode::I8, 0, false, false},
                     {"int4_g32", kc::WCode::I4, 32, false, false},      {"int4_g32_asym", kc::WCode::I4, 32, true, false},
                     {"fp8_channel", kc::WCode::E4M3, 0, false, false},  {"int8_channel_xint8", kc::WCode::I8, 0, false, true},
                     {"int4_g32_xint8", kc::WCode::I4, 32, false, true}, {"int4_g32_asym_xint8", kc::WCode::I4, 32, true, true},
                     {"f32_sparse50", kc::WCode::F32, 0, false, false, 0.5},   {"f32_sparse70", kc::WCode::F32, 0, false, false, 0.7},
                     {"f32_2of4", kc::WCode::F32, 0, false, false, -1},        {"int8_channel_sparse50", kc::WCode::I8, 0, false, false, 0.5},
                     {"int8_channel_sparse70", kc::WCode::I8, 0, false, false, 0.7}, {"int8_channel_2of4", kc::WCode::I8, 0, false, false, -1},
                     {"int8_channel_xint8_sparse50", kc::WCode::I8, 0, false, true, 0.5},
                     {"int8_channel_xint8_sparse70", kc::WCode::I8, 0, false, true, 0.7},
                     {"int8_channel_xint8_2of4", kc::WCode::I8, 0, false, true, -1},
                     {"int8_channel_xint16", kc::WCode::I8, 0, false, false, 0, true},
                     {"int4_g32_xint16", kc::WCode::I4, 32, false, false, 0, true},
                     {"int4_g32_asym_xint16", kc::WCode::I4, 32, true, false, 0, true}};

void run(benchmark::State& state, Enc e) {
  const int64_t m = state.range(0), n = 2304, k = 768;
  std::mt19937 g(1);
  std::normal_distribution<float> nd;
  std::vector<float> dense(size_t(n * k)), x(size_t(m * k)), y(size_t(m * n));
  for (auto& v : dense) v = nd(g);
  for (auto& v : x) v = nd(g);
  ops::LinearPart p;
  p.rows = n;
  p.cols = k;
  p.code = e.code;
  p.group = e.group;
  p.asym = e.asym;
  p.int8_activations = e.a8;
  p.int16_activations = e.a16;
  std::vector<uint8_t> codes(size_t(n * k)), zeros;
  const int64_t ns = n * (e.group ? k / e.group : 1);
  std::vector<float> scales(size_t(ns), 0.0123f);
  for (auto& c : codes) c = uint8_t(e.code == kc::WCode::I4 ? g() % 16 : e.code == kc::WCode::E4M3 ? g() % 0x7e : g() % 256);
  if (e.asym) zeros.assign(size_t(ns), 8);
  std::vector<uint64_t> mask;
  if (e.sparsity != 0) {
    mask.assign(size_t((n * k + 63) / 64), 0);
    std::uniform_real_distribution<double> u(0, 1);
    for (int64_t i = 0; i < n * k; ++i) {
      const bool keep = e.sparsity < 0 ? (i % 4 == int64_t(g() % 2) || i % 4 == 3) : u(g) >= e.sparsity;
      if (keep) mask[size_t(i >> 6)] |= uint64_t(1) << (i & 63);
      else dense[size_t(i)] = 0.f;
    }
    p.mask = mask.data();
  }
  if (e.code == kc::WCode::F32) {
    p.f32 = dense.data();
  } else {
    p.codes = codes.data();
    p.scales = scales.data();
    p.zeros = e.asym ? zeros.data() : nullptr;
  }
  const ops::PackedLinear one = ops::PackedLinear::pack_parts({p});
  // m = 1 (and every m with BENCH_STREAM set) cycles through 512 MB of copies,
  // so the weights come from memory as in a model's decode step.
  const bool stream = !std::getenv("BENCH_ONE_COPY") && (m == 1 || std::getenv("BENCH_STREAM"));
  const int64_t copies = stream ? std::max<int64_t>(1, (int64_t(512) << 20) / int64_t(one.weight_bytes())) : 1;
  std::vector<ops::PackedLinear> packed;
  ByteArena arena;  // as the engine packs: huge pages, matrices back to back
  for (int64_t c = 0; c < copies; ++c) packed.push_back(ops::PackedLinear::pack_parts({p}, &arena));
  size_t next = 0;
  for (auto _ : state) {
    packed[next].apply({x.data(), m, k, k}, {y.data(), m, n, n});
    next = (next + 1) % packed.size();
    benchmark::DoNotOptimize(y.data());
  }
  const double it = double(state.iterations());
  state.SetBytesProcessed(int64_t(it * double(one.weight_bytes())));
  state.counters["GFLOPS"] = benchmark::Counter(it * 2.0 * double(m * n * k), benchmark::Counter::kIsRate, benchmark::Counter::kIs1000);
}

}  // namespace

int main(int argc, char** argv) {
  const std::string isa = kc::isa_name(kc::active_isa());
  for (const Enc& e : kEncs) {
    benchmark::RegisterBenchmark(("BM_QLinear/" + std::string(e.name) + "/" + isa).c_str(), run, e)
        ->ArgName("m")
        ->Arg(1)
        ->Arg(4)
        ->Arg(16)
        ->Arg(128)
        ->Unit(benchmark::kMicrosecond)
        ->UseRealTime();
  }
  benchmark::AddCustomContext("isa", isa);
  benchmark::AddCustomContext("cpu", kc::cpu_name());
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
