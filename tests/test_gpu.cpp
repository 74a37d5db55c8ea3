// The GPU backend (kernels/gpu, runtime/gpu_forward) against independent
// references: every kernel against a float64 reference (or the CPU kernel,
// where the arithmetic is the same operations: fake quantization, KV encoding)
// on random inputs, and the GPU engine against the CPU engine on the same
// models (random tiny models in every weight encoding, and the real
// stories260K greedily). Label gpu; every test skips where no GPU is visible.
// In a build without a GPU backend the tests check that the GPU entry points
// refuse with a message naming the build option.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <tuple>
#include <vector>

#include "core/error.h"
#include "kernels/gpu/device_memory.h"
#include "model/shapes.h"
#include "runtime/engine.h"
#include "runtime/gpu_forward.h"
#include "test_util.h"
#include "tiny_model.h"
#include "train/trainer.h"

// Every build: mixed precision is a GPU option, and the CPU says so.
TEST(Gpu, Bf16PrecisionOnTheCpuIsRefused) {
  condense::Model m = condense::random_model(testutil::tiny_config({}), 1);
  const condense::train::TokenDataset data = testutil::pattern_data(m.config.vocab, 3);
  condense::train::TrainOptions t = testutil::short_run(2, 2, 8, 1e-3);
  t.bf16 = true;
  testutil::expect_error([&] { condense::train::Trainer tr(m, nullptr, {}, t, data, 1); }, {"bf16", "GPU only"});
}

using namespace condense;
namespace gpu = condense::kernels::gpu;

#ifndef CONDENSE_HAVE_GPU

TEST(Gpu, BuildWithoutBackendRefusesClearly) {
  EXPECT_FALSE(gpu::available());
  EXPECT_STREQ(gpu::backend_name(), "none");
  EXPECT_EQ(gpu::device_alloc(0), nullptr);
  try {
    gpu::device_alloc(64);
    ADD_FAILURE() << "device_alloc succeeded without a GPU backend";
  } catch (const gpu::GpuError& e) {
    EXPECT_NE(std::string(e.what()).find("-DCONDENSE_CUDA=ON"), std::string::npos) << e.what();
  }
  Model m = random_model(testutil::tiny_config({}), 1);
  EngineOptions o;
  o.device = Device::CUDA;
  testutil::expect_error([&] { Engine e(m, o); }, {"cannot run on cuda", "without a GPU backend"});
  std::string why;
  EXPECT_FALSE(device_usable(Device::HIP, &why));
  EXPECT_NE(why.find("-DCONDENSE_HIP=ON"), std::string::npos) << why;
  EXPECT_TRUE(device_usable(Device::CPU, &why));
  testutil::expect_error([] { device_from_name("tpu"); }, {"'tpu'", "cpu, cuda, hip"});
  const train::TokenDataset data = testutil::pattern_data(m.config.vocab, 3);
  train::TrainOptions t = testutil::short_run(2, 2, 8, 1e-3);
  t.device = Device::CUDA;
  testutil::expect_error([&] { train::Trainer tr(m, nullptr, {}, t, data, 1); }, {"cannot train on cuda", "without a GPU backend"});
}

#else

#include "kernels/common/int_codes.h"
#include "kernels/common/minifloat.h"
#include "kernels/cpu/kv_paged.h"
#include "kernels/gpu/paged_attention.h"
#include "kernels/gpu/qgemv.h"
#include "kernels/cpu/transformer_backward_f32.h"
#include "kernels/cpu/transformer_f32.h"
#include "kernels/gpu/train_ops.h"
#include "kernels/gpu/transformer_ops.h"
#include "model/activation_quant.h"
#include "model/quantized_weight.h"
#include "runtime/generate.h"
#include "compress/quantize_model.h"
#include "io/model_loader.h"

namespace {

#define REQUIRE_GPU()                                                         \
  if (!gpu::available()) GTEST_SKIP() << "no GPU visible to this " << gpu::backend_name() << " build: GPU tests skipped"

template <class T>
gpu::DeviceBuffer up(const std::vector<T>& v, gpu::Stream& s) { return gpu::upload(v.data(), v.size() * sizeof(T), s); }
template <class T>
std::vector<T> down(const gpu::DeviceBuffer& b, size_t n, gpu::Stream& s) {
  std::vector<T> out(n);
  gpu::copy_d2h(out.data(), b.data(), n * sizeof(T), s);
  s.synchronize();
  return out;
}

std::vector<float> uniform(size_t n, uint32_t seed, float lo = -1.f, float hi = 1.f) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

struct QCase {
  const char* name;
  gpu::GCode code;
  int64_t group;  // 0: per-channel; -1: per-tensor
  bool asym;
};

}  // namespace

TEST(Gpu, PoolReusesFreedBlocksAndNamesSizesWhenOutOfMemory) {
  REQUIRE_GPU();
  void* a = gpu::device_alloc(1000);
  gpu::device_free(a);
  const auto before = gpu::pool_stats();
  void* b = gpu::device_alloc(900);  // rounds to the same 512-byte class: reused
  EXPECT_EQ(a, b);
  EXPECT_EQ(gpu::pool_stats().driver_allocs, before.driver_allocs);
  gpu::device_free(b);
  testutil::expect_error([] { gpu::device_alloc(size_t(1) << 52); }, {"allocating", "MiB"});
}

// y = x W^T for every encoding, against a float64 reference of the effective
// weights (scale * (q - zero)). f32 accumulation of k products: each error
// below k * 2^-23 * sum |x w| (the bound used, plus the reference's own).
TEST(Gpu, LinearMatchesFloat64ReferenceForEveryEncoding) {
  REQUIRE_GPU();
  gpu::Stream s;
  const QCase cases[] = {
      {"f32", gpu::GCode::F32, 0, false},           {"bf16", gpu::GCode::BF16, 0, false},
      {"int8 per-channel", gpu::GCode::I8, 0, false}, {"int8 g32 asym", gpu::GCode::I8, 32, true},
      {"int8 g24 (ragged chunks)", gpu::GCode::I8, 24, false}, {"int8 per-tensor", gpu::GCode::I8, -1, false},
      {"int4 g32", gpu::GCode::I4, 32, false},      {"int4 g32 asym", gpu::GCode::I4, 32, true},
      {"int4 g16 (group inside a chunk)", gpu::GCode::I4, 16, true}, {"int4 g128", gpu::GCode::I4, 128, false},
      {"int4 per-channel", gpu::GCode::I4, 0, false}, {"fp8 per-channel", gpu::GCode::E4M3, 0, false},
      {"fp8 per-tensor", gpu::GCode::E4M3, -1, false},
  };
  std::mt19937 g(7);
  for (const QCase& c : cases) {
    for (int64_t k : {256, 200, 72}) {
      for (int64_t m : {1, 3, 8, 13}) {
        const int64_t n = 37;
        const int64_t group = c.group > 0 ? c.group : k;
        const int64_t groups = c.group < 0 ? 1 : (k + group - 1) / group;
        // Codes, scales, zero points and the effective weights.
        std::vector<uint8_t> codes(size_t(n * k));
        std::vector<float> f32vals(size_t(n * k));
        std::vector<uint16_t> bf16vals(size_t(n * k));
        std::vector<float> scales(size_t(c.group < 0 ? 1 : n * groups));
        std::vector<uint8_t> zeros(scales.size());
        for (auto& sc : scales) sc = std::uniform_real_distribution<float>(0.01f, 0.1f)(g);
        for (auto& z : zeros) z = uint8_t(c.code == gpu::GCode::I4 ? g() % 16 : g() % 256);
        std::vector<double> w(size_t(n * k));
        for (int64_t r = 0; r < n; ++r) {
          for (int64_t col = 0; col < k; ++col) {
            const size_t i = size_t(r * k + col);
            const size_t si = c.group < 0 ? 0 : size_t(r * groups + col / group);
            const double sc = scales[si];
            switch (c.code) {
              case gpu::GCode::F32: f32vals[i] = std::uniform_real_distribution<float>(-1, 1)(g); w[i] = f32vals[i]; break;
              case gpu::GCode::BF16: {
                bf16vals[i] = minifloat::f32_to_bf16(std::uniform_real_distribution<float>(-1, 1)(g));
                w[i] = minifloat::bf16_to_f32(bf16vals[i]);
                break;
              }
              case gpu::GCode::I8:
                codes[i] = uint8_t(g());
                w[i] = sc * (c.asym ? double(codes[i]) - zeros[si] : double(int8_t(codes[i])));
                break;
              case gpu::GCode::I4:
                codes[i] = uint8_t(g() % 16);
                w[i] = sc * (c.asym ? double(codes[i]) - zeros[si] : double(intcode::i4_from_nibble(codes[i])));
                break;
              case gpu::GCode::E4M3:
                do codes[i] = uint8_t(g()); while ((codes[i] & 0x7f) == 0x7f);  // finite codes only
                w[i] = sc * double(minifloat::e4m3_to_f32(codes[i]));
                break;
            }
          }
        }
        const void* elements = c.code == gpu::GCode::F32 ? static_cast<const void*>(f32vals.data())
                               : c.code == gpu::GCode::BF16 ? static_cast<const void*>(bf16vals.data())
                                                             : static_cast<const void*>(codes.data());
        const auto packed = gpu::pack_gpu_codes(c.code, n, k, elements);
        gpu::DeviceBuffer dcodes = up(packed, s), dscales = up(scales, s), dzeros = up(zeros, s);
        gpu::GpuQMatrix W;
        W.code = c.code;
        W.n = n;
        W.k = k;
        W.group = group;
        W.per_tensor = c.group < 0;
        W.asym = c.asym;
        W.row_bytes = gpu::gpu_row_bytes(c.code, k);
        W.codes = dcodes.data();
        if (c.code != gpu::GCode::F32 && c.code != gpu::GCode::BF16) W.scales = dscales.as<float>();
        if (c.asym) W.zeros = dzeros.as<uint8_t>();
        const int64_t ldx = (k + 3) / 4 * 4 + 4, ldy = n + 3;
        const auto x = uniform(size_t(m * ldx), uint32_t(k * 31 + m));
        gpu::DeviceBuffer dx = up(x, s), dy(size_t(m * ldy) * 4);
        gpu::linear(dx.as<float>(), m, ldx, W, dy.as<float>(), ldy, s);
        const auto y = down<float>(dy, size_t(m * ldy), s);
        for (int64_t i = 0; i < m; ++i) {
          for (int64_t r = 0; r < n; ++r) {
            double ref = 0, mag = 0;
            for (int64_t col = 0; col < k; ++col) {
              ref += double(x[size_t(i * ldx + col)]) * w[size_t(r * k + col)];
              mag += std::fabs(double(x[size_t(i * ldx + col)]) * w[size_t(r * k + col)]);
            }
            ASSERT_NEAR(y[size_t(i * ldy + r)], ref, double(k) * 0x1p-23 * mag + 1e-30)
                << c.name << " k=" << k << " m=" << m << " row " << i << " out " << r;
          }
        }
        // Embedding lookups decode rows exactly: fl(scale * (q - z)) in f32.
        const std::vector<int32_t> rows = {3, 0, int32_t(n - 1), 3};
        gpu::DeviceBuffer drows = up(rows, s), dout(rows.size() * size_t(k) * 4);
        gpu::decode_rows(W, drows.as<int32_t>(), int64_t(rows.size()), dout.as<float>(), k, s);
        const auto dec = down<float>(dout, rows.size() * size_t(k), s);
        for (size_t i = 0; i < rows.size(); ++i)
          for (int64_t col = 0; col < k; ++col)
            ASSERT_NEAR(dec[i * size_t(k) + size_t(col)], w[size_t(rows[i] * k + col)], 1e-6 * std::fabs(w[size_t(rows[i] * k + col)]))
                << c.name << " decode_rows";
      }
    }
  }
}

TEST(Gpu, ElementwiseOpsMatchReferences) {
  REQUIRE_GPU();
  gpu::Stream s;
  const int64_t rows = 5, dim = 96, ld = 100;
  const auto x = uniform(size_t(rows * ld), 1), w = uniform(size_t(dim), 2, 0.5f, 1.5f);
  gpu::DeviceBuffer dx = up(x, s), dw = up(w, s), dout(size_t(rows * ld) * 4);
  gpu::rmsnorm(dx.as<float>(), ld, rows, dim, dw.as<float>(), 1e-5f, dout.as<float>(), ld, s);
  auto y = down<float>(dout, size_t(rows * ld), s);
  for (int64_t r = 0; r < rows; ++r) {
    double ss = 0;
    for (int64_t i = 0; i < dim; ++i) ss += double(x[size_t(r * ld + i)]) * x[size_t(r * ld + i)];
    const double inv = 1.0 / std::sqrt(ss / dim + 1e-5);
    for (int64_t i = 0; i < dim; ++i) ASSERT_NEAR(y[size_t(r * ld + i)], x[size_t(r * ld + i)] * inv * w[size_t(i)], 1e-5) << "rmsnorm";
  }
  // RoPE (rotate-half) at each row's own position.
  const int hd = 16, heads = 6, max_pos = 40;
  std::vector<float> cos_t(size_t(max_pos * hd / 2)), sin_t(cos_t.size());
  for (int p = 0; p < max_pos; ++p)
    for (int i = 0; i < hd / 2; ++i) {
      const double a = p * std::pow(10000.0, -2.0 * i / hd);
      cos_t[size_t(p * hd / 2 + i)] = float(std::cos(a));
      sin_t[size_t(p * hd / 2 + i)] = float(std::sin(a));
    }
  const std::vector<int32_t> pos = {0, 7, 39, 3, 12};
  gpu::DeviceBuffer dcos = up(cos_t, s), dsin = up(sin_t, s), dpos = up(pos, s), dq = up(x, s);
  gpu::rope(dq.as<float>(), ld, rows, 0, heads, hd, dpos.as<int32_t>(), dcos.as<float>(), dsin.as<float>(), s);
  y = down<float>(dq, size_t(rows * ld), s);
  for (int64_t r = 0; r < rows; ++r)
    for (int h = 0; h < heads; ++h)
      for (int i = 0; i < hd / 2; ++i) {
        const double a = x[size_t(r * ld + h * hd + i)], b = x[size_t(r * ld + h * hd + i + hd / 2)];
        const double c = cos_t[size_t(pos[size_t(r)] * hd / 2 + i)], sn = sin_t[size_t(pos[size_t(r)] * hd / 2 + i)];
        ASSERT_NEAR(y[size_t(r * ld + h * hd + i)], a * c - b * sn, 1e-6);
        ASSERT_NEAR(y[size_t(r * ld + h * hd + i + hd / 2)], b * c + a * sn, 1e-6);
      }
  // silu(g) * u, in place over g.
  gpu::DeviceBuffer dg = up(x, s), du = up(w, s);
  gpu::silu_mul(dg.as<float>(), ld, du.as<float>(), 0, rows, dim, dg.as<float>(), ld, s);
  y = down<float>(dg, size_t(rows * ld), s);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < dim; ++i) {
      const double a = x[size_t(r * ld + i)];
      ASSERT_NEAR(y[size_t(r * ld + i)], a / (1 + std::exp(-a)) * w[size_t(i)], 1e-6);
    }
  // Activation quantization: the same operations as the CPU's, so the same bits.
  for (DType t : {DType::I8, DType::F8E4M3}) {
    std::vector<float> cpu = x;
    fake_quant_rows(cpu.data(), rows, dim, ld, t, 0.004f);
    gpu::DeviceBuffer d = up(x, s);
    gpu::fake_quant_rows(d.as<float>(), ld, rows, dim, t == DType::I8 ? gpu::ActQuant::Int8PerRow : gpu::ActQuant::E4M3Static, 0.004f, s);
    const auto got = down<float>(d, size_t(rows * ld), s);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t i = 0; i < dim; ++i) ASSERT_EQ(got[size_t(r * ld + i)], cpu[size_t(r * ld + i)]) << name(t) << " fake quant";
  }
  std::vector<float> am = x;
  am[size_t(2 * ld + 50)] = 9.f;
  am[size_t(2 * ld + 60)] = 9.f;  // ties: the first index
  gpu::DeviceBuffer da = up(am, s), di(size_t(rows) * 4);
  gpu::argmax_rows(da.as<float>(), ld, rows, dim, di.as<int32_t>(), s);
  const auto idx = down<int32_t>(di, size_t(rows), s);
  EXPECT_EQ(idx[2], 50);
  for (int64_t r = 0; r < rows; ++r)
    EXPECT_EQ(idx[size_t(r)], int32_t(std::max_element(am.begin() + r * ld, am.begin() + r * ld + dim) - (am.begin() + r * ld)));
}

// The GPU pool's bytes equal the CPU pool's after the same writes (same
// encoders), and attention over them equals a float64 softmax over the
// read-back values.
TEST(Gpu, PagedKvAndAttentionMatchTheCpuPool) {
  REQUIRE_GPU();
  gpu::Stream s;
  const int n_kv = 2, hd = 64, n_heads = 4, bt = 16, n_blocks = 12;
  for (kernels::KvCode code : {kernels::KvCode::F32, kernels::KvCode::F16, kernels::KvCode::BF16, kernels::KvCode::E4M3, kernels::KvCode::I8}) {
    const int64_t bb = kernels::kv_block_bytes(code, n_kv, hd, bt);
    std::vector<uint8_t> host(size_t(bb * n_blocks), 0);
    const std::vector<float> ks = {0.01f, 0.02f}, vs = {0.015f, 0.03f};
    // Two sequences: A (70 positions, blocks 5,0,7,2,9) and B (20 positions, blocks 1,11).
    const std::vector<int32_t> ta = {5, 0, 7, 2, 9}, tb = {1, 11};
    const int la = 70, lb = 20;
    const auto kA = uniform(size_t(la * n_kv * hd), 11), vA = uniform(size_t(la * n_kv * hd), 12);
    const auto kB = uniform(size_t(lb * n_kv * hd), 13), vB = uniform(size_t(lb * n_kv * hd), 14);
    kernels::KvPagedView va{code, host.data(), bb, ta.data(), n_kv, hd, bt, ks.data(), vs.data()};
    kernels::KvPagedView vb{code, host.data(), bb, tb.data(), n_kv, hd, bt, ks.data(), vs.data()};
    for (int p = 0; p < la; ++p) kernels::kv_paged_write(va, &kA[size_t(p * n_kv * hd)], &vA[size_t(p * n_kv * hd)], p);
    for (int p = 0; p < lb; ++p) kernels::kv_paged_write(vb, &kB[size_t(p * n_kv * hd)], &vB[size_t(p * n_kv * hd)], p);
    // The GPU writes the same positions as one step of rows from both sequences.
    std::vector<int32_t> pos, off, tables(ta);
    tables.insert(tables.end(), tb.begin(), tb.end());
    std::vector<float> krows, vrows;
    for (int p = 0; p < la; ++p) { pos.push_back(p); off.push_back(0); }
    for (int p = 0; p < lb; ++p) { pos.push_back(p); off.push_back(int32_t(ta.size())); }
    krows = kA; krows.insert(krows.end(), kB.begin(), kB.end());
    vrows = vA; vrows.insert(vrows.end(), vB.begin(), vB.end());
    gpu::DeviceBuffer dpool(host.size()), dpos = up(pos, s), doff = up(off, s), dtab = up(tables, s), dk = up(krows, s),
        dv = up(vrows, s), dks = up(ks, s), dvs = up(vs, s);
    gpu::memset_async(dpool.data(), 0, host.size(), s);
    gpu::GpuKvLayer kv{static_cast<gpu::GKv>(code), dpool.as<uint8_t>(), bb, n_kv, hd, bt, dks.as<float>(), dvs.as<float>()};
    gpu::GpuRows rows{int64_t(pos.size()), dpos.as<int32_t>(), doff.as<int32_t>(), dtab.as<int32_t>()};
    gpu::kv_write(kv, rows, dk.as<float>(), n_kv * hd, dv.as<float>(), n_kv * hd, s);
    const auto dev = down<uint8_t>(dpool, host.size(), s);
    ASSERT_EQ(0, std::memcmp(dev.data(), host.data(), host.size())) << int(code) << ": pool bytes differ";
    // Attention of every row (causal: row at position p sees 0..p of its sequence).
    const auto q = uniform(size_t(pos.size() * n_heads * hd), 15);
    gpu::DeviceBuffer dq = up(q, s), dout(q.size() * 4);
    gpu::attention(dq.as<float>(), n_heads * hd, n_heads, kv, rows, dout.as<float>(), n_heads * hd, s);
    const auto out = down<float>(dout, q.size(), s);
    for (size_t r = 0; r < pos.size(); ++r) {
      const bool isA = r < size_t(la);
      const kernels::KvPagedView& view = isA ? va : vb;
      for (int h = 0; h < n_heads; ++h) {
        const int kvh = h / (n_heads / n_kv);
        std::vector<float> K(size_t((pos[r] + 1) * hd)), V(K.size());
        kernels::kv_paged_read(view, false, kvh, 0, pos[r] + 1, K.data());
        kernels::kv_paged_read(view, true, kvh, 0, pos[r] + 1, V.data());
        std::vector<double> sc(size_t(pos[r] + 1));
        double mx = -1e300;
        for (int p = 0; p <= pos[r]; ++p) {
          double d = 0;
          for (int i = 0; i < hd; ++i) d += double(q[r * size_t(n_heads * hd) + size_t(h * hd + i)]) * K[size_t(p * hd + i)];
          sc[size_t(p)] = d / std::sqrt(double(hd));
          mx = std::max(mx, sc[size_t(p)]);
        }
        double sum = 0;
        for (auto& e : sc) sum += (e = std::exp(e - mx));
        for (int i = 0; i < hd; ++i) {
          double o = 0;
          for (int p = 0; p <= pos[r]; ++p) o += sc[size_t(p)] / sum * V[size_t(p * hd + i)];
          ASSERT_NEAR(out[r * size_t(n_heads * hd) + size_t(h * hd + i)], o, 2e-5) << "row " << r << " head " << h;
        }
      }
    }
  }
}

// ---- training kernels: each against the CPU kernel of the same name (itself
// checked against finite differences in test_backward), or float64 ----------

TEST(Gpu, GemmsMatchFloat64ForEveryTransposition) {
  REQUIRE_GPU();
  gpu::Stream s;
  const int64_t m = 37, n = 70, k = 45;
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb) {
      const int64_t lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 5, ldc = n + 2;
      const auto a = uniform(size_t((ta ? k : m) * lda), 21), b = uniform(size_t((tb ? n : k) * ldb), 22);
      const auto c0 = uniform(size_t(m * ldc), 23);
      auto A = [&](int64_t i, int64_t p) { return double(ta ? a[size_t(p * lda + i)] : a[size_t(i * lda + p)]); };
      auto B = [&](int64_t p, int64_t j) { return double(tb ? b[size_t(j * ldb + p)] : b[size_t(p * ldb + j)]); };
      gpu::DeviceBuffer da = up(a, s), db = up(b, s), dc = up(c0, s);
      gpu::gemm_f32(ta, tb, m, n, k, 0.5f, da.as<float>(), lda, db.as<float>(), ldb, 2.f, dc.as<float>(), ldc, s);
      const auto c = down<float>(dc, c0.size(), s);
      // bf16 inputs: the reference multiplies the rounded values.
      std::vector<uint16_t> a16(a.size()), b16(b.size());
      for (size_t i = 0; i < a.size(); ++i) a16[i] = minifloat::f32_to_bf16(a[i]);
      for (size_t i = 0; i < b.size(); ++i) b16[i] = minifloat::f32_to_bf16(b[i]);
      gpu::DeviceBuffer da16 = up(a16, s), db16 = up(b16, s), dc16(size_t(m * ldc) * 4);
      gpu::gemm_bf16(ta, tb, m, n, k, 1.f, da16.as<uint16_t>(), lda, db16.as<uint16_t>(), ldb, 0.f, dc16.as<float>(), ldc, s);
      const auto c16 = down<float>(dc16, c0.size(), s);
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) {
          double ref = 0, ref16 = 0, mag = 0;
          for (int64_t p = 0; p < k; ++p) {
            ref += A(i, p) * B(p, j);
            mag += std::fabs(A(i, p) * B(p, j));
            const double a_ = minifloat::bf16_to_f32(ta ? a16[size_t(p * lda + i)] : a16[size_t(i * lda + p)]);
            const double b_ = minifloat::bf16_to_f32(tb ? b16[size_t(j * ldb + p)] : b16[size_t(p * ldb + j)]);
            ref16 += a_ * b_;
          }
          const double tol = double(k) * 0x1p-23 * mag + 1e-6;
          ASSERT_NEAR(c[size_t(i * ldc + j)], 0.5 * ref + 2.0 * c0[size_t(i * ldc + j)], tol) << "f32 ta " << ta << " tb " << tb;
          ASSERT_NEAR(c16[size_t(i * ldc + j)], ref16, tol) << "bf16 ta " << ta << " tb " << tb;
        }
    }
}

TEST(Gpu, BackwardKernelsMatchTheCpuKernels) {
  REQUIRE_GPU();
  gpu::Stream s;
  const int64_t rows = 19, dim = 72;
  const auto x = uniform(size_t(rows * dim), 31), w = uniform(size_t(dim), 32, 0.5f, 1.5f), dy = uniform(size_t(rows * dim), 33);
  std::vector<float> dx(x.size()), dw = uniform(size_t(dim), 34);
  std::vector<float> dw_gpu0 = dw;
  kernels::rmsnorm_backward_f32(x.data(), w.data(), dy.data(), rows, dim, 1e-5f, dx.data(), dw.data());
  gpu::DeviceBuffer dX = up(x, s), dW = up(w, s), dDY = up(dy, s), dDX(x.size() * 4), dDW = up(dw_gpu0, s);
  gpu::rmsnorm_backward(dX.as<float>(), dW.as<float>(), dDY.as<float>(), rows, dim, 1e-5f, dDX.as<float>(), dDW.as<float>(), s);
  auto got = down<float>(dDX, x.size(), s), gdw = down<float>(dDW, dw.size(), s);
  for (size_t i = 0; i < dx.size(); ++i) ASSERT_NEAR(got[i], dx[i], 1e-5 * (1 + std::fabs(dx[i]))) << "rmsnorm dx " << i;
  for (size_t i = 0; i < dw.size(); ++i) ASSERT_NEAR(gdw[i], dw[i], 1e-5 * (1 + std::fabs(dw[i]))) << "rmsnorm dw " << i;

  const int64_t n = 40, ld_gu = 2 * n, ld_h = n + 3;
  const auto gu = uniform(size_t(rows * ld_gu), 35, -3.f, 3.f), dh = uniform(size_t(rows * ld_h), 36);
  std::vector<float> dg(gu.size()), du(gu.size());
  kernels::silu_mul_backward_f32(gu.data(), gu.data() + n, dh.data(), rows, n, ld_gu, ld_h, dg.data(), du.data() + n);
  gpu::DeviceBuffer dGU = up(gu, s), dDH = up(dh, s), dDG(gu.size() * 4), dDU(gu.size() * 4);
  gpu::silu_mul_backward(dGU.as<float>(), dGU.as<float>() + n, dDH.as<float>(), rows, n, ld_gu, ld_h, dDG.as<float>(),
                         dDU.as<float>() + n, s);
  const auto gdg = down<float>(dDG, gu.size(), s), gdu = down<float>(dDU, gu.size(), s);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < n; ++j) {
      ASSERT_NEAR(gdg[size_t(r * ld_gu + j)], dg[size_t(r * ld_gu + j)], 1e-5) << "silu dg";
      ASSERT_NEAR(gdu[size_t(r * ld_gu + n + j)], du[size_t(r * ld_gu + n + j)], 1e-5) << "silu du";
    }

  const int hd = 16, heads = 3, max_pos = 64;
  std::vector<float> cos_t(size_t(max_pos * hd / 2)), sin_t(cos_t.size());
  for (int p = 0; p < max_pos; ++p)
    for (int i = 0; i < hd / 2; ++i) {
      cos_t[size_t(p * hd / 2 + i)] = float(std::cos(p * std::pow(10000.0, -2.0 * i / hd)));
      sin_t[size_t(p * hd / 2 + i)] = float(std::sin(p * std::pow(10000.0, -2.0 * i / hd)));
    }
  const int64_t ldr = heads * hd + 2;
  auto rd = uniform(size_t(rows * ldr), 37);
  gpu::DeviceBuffer dR = up(rd, s), dC = up(cos_t, s), dS = up(sin_t, s);
  kernels::rope_backward_f32(rd.data(), rows, ldr, heads, hd, 5, cos_t.data(), sin_t.data());
  gpu::rope_backward(dR.as<float>(), rows, ldr, heads, hd, 5, dC.as<float>(), dS.as<float>(), s);
  const auto grd = down<float>(dR, rd.size(), s);
  for (size_t i = 0; i < rd.size(); ++i) ASSERT_NEAR(grd[i], rd[i], 1e-6) << "rope backward";
}

TEST(Gpu, TrainingAttentionMatchesTheCpuForwardAndBackward) {
  REQUIRE_GPU();
  gpu::Stream s;
  for (auto [rows, n_heads, n_kv, hd] : {std::tuple{45, 4, 2, 16}, std::tuple{70, 2, 2, 64}, std::tuple{9, 6, 1, 32}}) {
    const int64_t ldq = int64_t(n_heads) * hd + 1, hs = int64_t(rows) * hd + 5;
    const auto q = uniform(size_t(rows * ldq), 41), k = uniform(size_t(n_kv * hs), 42), v = uniform(size_t(n_kv * hs), 43);
    const auto dout = uniform(size_t(rows * ldq), 44);
    std::vector<float> out(size_t(rows * ldq)), dq(size_t(rows * ldq)), dk = uniform(size_t(n_kv * hs), 45), dv = uniform(size_t(n_kv * hs), 46);
    const auto dk0 = dk, dv0 = dv;
    kernels::attention_f32(q.data(), ldq, k.data(), v.data(), hs, rows, 0, n_heads, n_kv, hd, out.data(), ldq);
    kernels::attention_backward_f32(q.data(), ldq, k.data(), v.data(), hs, rows, n_heads, n_kv, hd, dout.data(), ldq, dq.data(), ldq,
                                    dk.data(), dv.data());
    gpu::DeviceBuffer dQ = up(q, s), dK = up(k, s), dV = up(v, s), dO = up(dout, s), dOut(out.size() * 4), dDQ(dq.size() * 4),
        dDK = up(dk0, s), dDV = up(dv0, s);
    gpu::attention_forward(dQ.as<float>(), ldq, dK.as<float>(), dV.as<float>(), hs, rows, n_heads, n_kv, hd, dOut.as<float>(), ldq, s);
    gpu::attention_backward(dQ.as<float>(), ldq, dK.as<float>(), dV.as<float>(), hs, rows, n_heads, n_kv, hd, dO.as<float>(), ldq,
                            dDQ.as<float>(), ldq, dDK.as<float>(), dDV.as<float>(), s);
    const auto go = down<float>(dOut, out.size(), s), gq = down<float>(dDQ, dq.size(), s), gk = down<float>(dDK, dk.size(), s),
               gv = down<float>(dDV, dv.size(), s);
    for (int r = 0; r < rows; ++r)
      for (int c = 0; c < n_heads * hd; ++c) {
        const size_t i = size_t(r * ldq + c);
        ASSERT_NEAR(go[i], out[i], 1e-5) << "forward row " << r;
        ASSERT_NEAR(gq[i], dq[i], 1e-4 * (1 + std::fabs(dq[i]))) << "dq row " << r;
      }
    for (int g = 0; g < n_kv; ++g)
      for (int64_t i = 0; i < int64_t(rows) * hd; ++i) {
        const size_t j = size_t(g * hs + i);
        ASSERT_NEAR(gk[j], dk[j], 1e-4 * (1 + std::fabs(dk[j]))) << "dk";
        ASSERT_NEAR(gv[j], dv[j], 1e-4 * (1 + std::fabs(dv[j]))) << "dv";
      }
  }
}

TEST(Gpu, LossesAndAdamWMatchTheCpu) {
  REQUIRE_GPU();
  gpu::Stream s;
  const int64_t rows = 11, vocab = 300;
  const auto lg = uniform(size_t(rows * vocab), 51, -4.f, 4.f), tl = uniform(size_t(rows * vocab), 52, -4.f, 4.f);
  std::vector<int> tg(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) tg[size_t(r)] = r == 4 ? -1 : int((r * 37) % vocab);
  std::vector<float> dl(lg.size());
  const double ce = kernels::cross_entropy_f32(lg.data(), tg.data(), rows, vocab, 0.25f, dl.data());
  const std::vector<int32_t> tg32(tg.begin(), tg.end());
  gpu::DeviceBuffer dL = up(lg, s), dT = up(tg32, s), dD(lg.size() * 4), dLoss(size_t(rows) * 8);
  gpu::cross_entropy(dL.as<float>(), dT.as<int32_t>(), rows, vocab, 0.25f, dD.as<float>(), dLoss.as<double>(), s);
  const auto gl = down<double>(dLoss, size_t(rows), s);
  const auto gd = down<float>(dD, lg.size(), s);
  double sum = 0;
  for (double x : gl) sum += x;
  EXPECT_NEAR(sum, ce, 1e-4 * ce);
  for (size_t i = 0; i < dl.size(); ++i) ASSERT_NEAR(gd[i], dl[i], 1e-6) << "dlogits " << i;

  std::vector<float> ds(lg.size()), rk(static_cast<size_t>(rows));
  const double kl = kernels::kl_divergence_f32(tl.data(), lg.data(), rows, vocab, 2.f, 0.5f, ds.data(), rk.data());
  gpu::DeviceBuffer dTL = up(tl, s), dDS(lg.size() * 4), dRK(size_t(rows) * 8);
  gpu::kl_divergence(dTL.as<float>(), dL.as<float>(), rows, vocab, 2.f, 0.5f, dDS.as<float>(), dRK.as<double>(), s);
  const auto grk = down<double>(dRK, size_t(rows), s);
  const auto gds = down<float>(dDS, lg.size(), s);
  double ksum = 0;
  for (double x : grk) ksum += x;
  EXPECT_NEAR(ksum, kl, 1e-4 * kl + 1e-9);
  for (size_t i = 0; i < ds.size(); ++i) ASSERT_NEAR(gds[i], ds[i], 1e-6) << "dstudent " << i;

  // AdamW, three steps, with a mask applied to the weights after each.
  const int64_t n = 1000;
  auto wv = uniform(size_t(n), 61), m = std::vector<float>(size_t(n), 0.f), v = m;
  std::vector<uint64_t> kept((size_t(n) + 63) / 64, ~uint64_t(0));
  for (int64_t i = 0; i < n; i += 3) kept[size_t(i >> 6)] &= ~(uint64_t(1) << (i & 63));
  gpu::DeviceBuffer dw = up(wv, s), dm = up(m, s), dvv = up(v, s), dk = up(kept, s);
  for (int t = 1; t <= 3; ++t) {
    const auto g = uniform(size_t(n), uint32_t(70 + t));
    const double lr = 1e-2, bc1 = 1 - std::pow(0.9, t), bc2 = 1 - std::pow(0.95, t);
    const float step = float(lr / bc1), isb = float(1 / std::sqrt(bc2)), decay = float(1 - lr * 0.1);
    for (int64_t j = 0; j < n; ++j) {
      m[size_t(j)] = 0.9f * m[size_t(j)] + 0.1f * g[size_t(j)];
      v[size_t(j)] = 0.95f * v[size_t(j)] + 0.05f * g[size_t(j)] * g[size_t(j)];
      wv[size_t(j)] = wv[size_t(j)] * decay - step * m[size_t(j)] / (std::sqrt(v[size_t(j)]) * isb + 1e-8f);
      if (!((kept[size_t(j >> 6)] >> (j & 63)) & 1u)) wv[size_t(j)] = 0.f;
    }
    gpu::DeviceBuffer dg = up(g, s);
    gpu::adamw(dw.as<float>(), dg.as<float>(), dm.as<float>(), dvv.as<float>(), n, 0.9f, 0.95f, 1e-8f, step, isb, decay, s);
    gpu::apply_mask(dw.as<float>(), dk.as<uint64_t>(), n, s);
  }
  const auto gw = down<float>(dw, size_t(n), s);
  for (int64_t j = 0; j < n; ++j) ASSERT_NEAR(gw[size_t(j)], wv[size_t(j)], 1e-6) << "adamw " << j;
  for (int64_t j = 0; j < n; j += 3) ASSERT_EQ(gw[size_t(j)], 0.f) << "masked weight " << j;
}

namespace {
std::vector<float> engine_logits(const Model& m, Device d, const std::vector<int>& toks, const std::string& kv = "") {
  EngineOptions o;
  o.device = d;
  o.kv_dtype = kv;
  Engine e(m, o);
  std::vector<float> out(toks.size() * size_t(m.config.vocab));
  // A prefill chunk, then the rest one token at a time (the decode path).
  const int pre = int(toks.size()) / 2;
  e.forward(toks.data(), pre, 0, out.data(), pre);
  for (size_t i = size_t(pre); i < toks.size(); ++i) e.forward(&toks[i], 1, int(i), out.data() + i * size_t(m.config.vocab), 1);
  return out;
}
}  // namespace

// The GPU engine computes what the CPU engine computes on the same model, in
// every weight encoding and with quantized activations and KV caches. The CPU
// side decodes codes to f32 (CONDENSE_WEIGHT_ONLY=f32); the two differ by f32
// summation order only.
TEST(Gpu, EngineMatchesTheCpuEngine) {
  REQUIRE_GPU();
  const Device dev = std::string(gpu::backend_name()) == "hip" ? Device::HIP : Device::CUDA;
  testutil::ScopedEnv exact("CONDENSE_WEIGHT_ONLY", "f32");
  const std::vector<int> toks = {1, 5, 9, 33, 2, 17, 17, 30, 4, 11, 39, 0, 8, 21, 3};
  struct C { const char* name; QuantScheme scheme; std::vector<std::string> targets; };
  const C cases[] = {
      {"f32", QuantScheme{}, {}},
      {"int4 g16 sym", QuantScheme::of(DType::I4, Granularity::Group, 16), {}},
      {"int4 g24 asym", QuantScheme::of(DType::I4, Granularity::Group, 24, false), {}},
      {"int8 per-channel + embedding", QuantScheme::of(DType::I8, Granularity::PerChannel), {"model.layers.*_proj.weight", "model.embed_tokens.weight"}},
      {"fp8 per-tensor", QuantScheme::of(DType::F8E4M3, Granularity::PerTensor), {}},
  };
  for (const C& c : cases) {
    Model m = random_model(testutil::tiny_config({.ffn = 72, .bias = true}), 3);
    if (c.scheme.quantized()) {
      compress::QuantizeOptions q;
      q.scheme = c.scheme;
      q.targets = c.targets;
      compress::quantize_model(m, q, nullptr);
    }
    for (const std::string kv : {"", "bf16"}) {
      const auto cpu = engine_logits(m, Device::CPU, toks, kv), g = engine_logits(m, dev, toks, kv);
      for (size_t i = 0; i < cpu.size(); ++i) ASSERT_NEAR(g[i], cpu[i], 1e-4 * (1 + std::fabs(cpu[i]))) << c.name << " kv " << kv << " logit " << i;
    }
  }
}

TEST(Gpu, RealStories260KGreedyOutputEqualsTheCpus) {
  REQUIRE_GPU();
  REQUIRE_DATA("models/stories260K/stories260K.bin");
  const std::string path = testutil::data("models/stories260K/stories260K.bin");
  LoadedModel lm = load_model(path, testutil::data("models/stories260K/tok512.bin"), {});
  const Device dev = std::string(gpu::backend_name()) == "hip" ? Device::HIP : Device::CUDA;
  std::vector<int> prompt = {lm.model.config.bos_id};
  for (int id : lm.tokenizer->encode("Once upon a time, there was a little girl")) prompt.push_back(id);
  auto run = [&](Device d) {
    EngineOptions o;
    o.device = d;
    Engine e(lm.model, o);
    Sampler greedy(0.f, 1.f, 1);
    std::vector<int> out;
    generate(e, prompt, 120, greedy, [&](int, int t) { out.push_back(t); }, nullptr, false);
    return out;
  };
  EXPECT_EQ(run(dev), run(Device::CPU));
}


#endif
