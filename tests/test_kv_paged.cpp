// The paged KV cache and the batched step. Attention over a randomly permuted
// block table equals attention_f32 over a contiguous f32 cache bit for bit;
// every dtype's write-then-read equals a float64 reference of the same codec
// (nearest value, ties to even, of x / scale, times the scale); a sequence run
// alone and inside a batch of differently long sequences gives identical
// logits; running out of blocks is a clear error that changes nothing.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <ostream>
#include <random>
#include <vector>

#include "compress/kv_calibration.h"
#include "compress/quantize_model.h"
#include "core/error.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/kv_paged.h"
#include "kernels/cpu/transformer_f32.h"
#include "model/shapes.h"
#include "runtime/engine.h"
#include "tests/isa_test.h"
#include "tests/tiny_model.h"

using namespace condense;
namespace kc = condense::kernels;


namespace {

class KvPagedIsa : public testutil::ForcedIsa {};

std::vector<float> randn(size_t n, uint32_t seed, float sd = 1.f) { return testutil::normal(n, seed, sd); }

// A pool of n_blocks blocks for one layer, a permuted table over all of them.
struct Pool {
  std::vector<uint8_t> bytes;
  std::vector<int32_t> table;
  std::vector<float> ks, vs;
  kc::KvPagedView view;
  Pool(kc::KvCode code, int n_kv, int hd, int n_blocks, uint32_t seed) {
    bytes.assign(size_t(kc::kv_block_bytes(code, n_kv, hd, 16) * n_blocks), 0xAB);
    table.resize(size_t(n_blocks));
    std::iota(table.begin(), table.end(), 0);
    std::shuffle(table.begin(), table.end(), std::mt19937(seed));
    for (int h = 0; h < n_kv; ++h) {
      ks.push_back(0.02f + 0.01f * h);
      vs.push_back(0.015f + 0.02f * h);
    }
    view.code = code;
    view.base = bytes.data();
    view.block_bytes = kc::kv_block_bytes(code, n_kv, hd, 16);
    view.table = table.data();
    view.n_kv = n_kv;
    view.hd = hd;
    view.k_scale = ks.data();
    view.v_scale = vs.data();
  }
};

// float64 reference codecs: the nearest value (ties to even) on each grid.
double nearest_on_grid(double a, const std::vector<double>& grid) {  // grid ascending, a >= 0
  auto it = std::lower_bound(grid.begin(), grid.end(), a);
  if (it == grid.end()) return grid.back();
  if (it == grid.begin()) return *it;
  const double hi = *it, lo = *(it - 1);
  if (a - lo < hi - a) return lo;
  if (hi - a < a - lo) return hi;
  return (it - grid.begin()) % 2 == 0 ? hi : lo;  // tie: the even code (index parity = code parity)
}
std::vector<double> e4m3_grid() {
  std::vector<double> g;
  for (int c = 0; c < 127; ++c) g.push_back((c >> 3) == 0 ? std::ldexp(c & 7, -9) : std::ldexp(8 + (c & 7), (c >> 3) - 10));
  return g;
}
std::vector<double> f16_grid() {
  std::vector<double> g;
  for (int c = 0; c < 0x7c00; ++c) g.push_back((c >> 10) == 0 ? std::ldexp(c & 1023, -24) : std::ldexp(1024 + (c & 1023), (c >> 10) - 25));
  return g;
}
double bf16_ref(float x) {  // bf16 keeps 8 significant bits: round the f32 to them, ties to even
  const int e = std::ilogb(x);
  const double q = std::ldexp(1.0, e - 7), r = double(x) / q, f = std::floor(r);
  const double d = r - f;
  const double m = d > 0.5 ? f + 1 : d < 0.5 ? f : (std::fmod(f, 2.0) == 0 ? f : f + 1);
  return m * q;
}

}  // namespace

TEST_P(KvPagedIsa, PermutedBlocksEqualContiguousF32Bitwise) {
  for (int hd : {256, 128, 64, 16, 8, 5}) {  // 16k: vector bodies (256: two passes over the values); short heads: keys in lanes
  const int n_kv = 2, n_heads = 6, n_pos = 77;
  Pool pool(kc::KvCode::F32, n_kv, hd, 5, 7);
  const auto k = randn(size_t(n_pos * n_kv * hd), 1), v = randn(size_t(n_pos * n_kv * hd), 2);
  for (int p = 0; p < n_pos; ++p) kc::kv_paged_write(pool.view, &k[size_t(p * n_kv * hd)], &v[size_t(p * n_kv * hd)], p);
  // The same keys and values contiguous, head-major [n_kv][n_pos][hd].
  std::vector<float> kc_(size_t(n_kv * n_pos * hd)), vc_(kc_.size());
  for (int h = 0; h < n_kv; ++h)
    for (int p = 0; p < n_pos; ++p)
      for (int i = 0; i < hd; ++i) {
        kc_[size_t((h * n_pos + p) * hd + i)] = k[size_t((p * n_kv + h) * hd + i)];
        vc_[size_t((h * n_pos + p) * hd + i)] = v[size_t((p * n_kv + h) * hd + i)];
      }
  for (int rows : {1, 3, 16, 40}) {
    const int pos0 = n_pos - rows;
    const auto q = randn(size_t(rows * n_heads * hd), 3 + uint32_t(rows));
    std::vector<float> a(q.size()), b(q.size());
    kc::attention_paged_f32(q.data(), n_heads * hd, rows, pos0, n_heads, pool.view, a.data(), n_heads * hd);
    kc::attention_f32(q.data(), n_heads * hd, kc_.data(), vc_.data(), n_pos * hd, rows, pos0, n_heads, n_kv, hd, b.data(), n_heads * hd);
    ASSERT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * 4)) << "rows " << rows << " head_dim " << hd;
  }
  }
}

TEST_P(KvPagedIsa, EveryDtypeReadsBackItsFloat64Codec) {
  const int n_kv = 3, hd = 24, n_pos = 40;
  const auto e4m3 = e4m3_grid(), f16 = f16_grid();
  for (kc::KvCode code : {kc::KvCode::F32, kc::KvCode::F16, kc::KvCode::BF16, kc::KvCode::E4M3, kc::KvCode::I8}) {
    Pool pool(code, n_kv, hd, 3, 11);
    const auto k = randn(size_t(n_pos * n_kv * hd), 5, 0.5f), v = randn(size_t(n_pos * n_kv * hd), 6, 0.5f);
    for (int p = 0; p < n_pos; ++p) kc::kv_paged_write(pool.view, &k[size_t(p * n_kv * hd)], &v[size_t(p * n_kv * hd)], p);
    for (int part = 0; part < 2; ++part) {
      const auto& src = part ? v : k;
      for (int h = 0; h < n_kv; ++h) {
        std::vector<float> got(size_t(n_pos * hd));
        kc::kv_paged_read(pool.view, part == 1, h, 0, n_pos, got.data());
        const float s = (part ? pool.vs : pool.ks)[size_t(h)];
        for (int p = 0; p < n_pos; ++p) {
          for (int i = 0; i < hd; ++i) {
            const float x = src[size_t((p * n_kv + h) * hd + i)];
            double ref = x;
            const double sign = x < 0 ? -1 : 1;
            switch (code) {
              case kc::KvCode::F32: break;
              case kc::KvCode::F16: ref = sign * nearest_on_grid(std::fabs(double(x)), f16); break;
              case kc::KvCode::BF16: ref = bf16_ref(x); break;
              case kc::KvCode::E4M3: ref = sign * nearest_on_grid(std::fabs(double(x / s)), e4m3) * s; break;
              case kc::KvCode::I8: {
                const double r = std::nearbyint(double(x / s));  // x / s as the cache computes it (f32)
                ref = std::fmin(127, std::fmax(-128, r)) * s;
                break;
              }
            }
            ASSERT_NEAR(got[size_t(p * hd + i)], ref, 1e-7 * std::fabs(ref)) << kc::kv_code_bytes(code) << "-byte code " << int(code)
                                                                             << " pos " << p << " head " << h << " elem " << i;
          }
        }
      }
    }
  }
}

// Attention over a cache in each stored dtype equals attention_f32 over the
// values that cache reads back (AVX-512 decodes the stored dtype in registers
// inside the score and value bodies, AVX2 converts block by block), bitwise,
// through a permuted block table; head_dim 32/64 (fixed-length bodies), 144
// (any multiple of 16: two passes over the values) and 8.
// E4M3 also with scales of 2^8 and more (x 20000), which the in-register decode
// (scale times 2^120) leaves to the converted blocks.
TEST_P(KvPagedIsa, EveryDtypeAttendsOverWhatItReadsBack) {
  const int n_kv = 2, n_heads = 4, n_pos = 45;
  for (int hd : {32, 64, 144, 8})
  for (kc::KvCode code : {kc::KvCode::F16, kc::KvCode::BF16, kc::KvCode::E4M3, kc::KvCode::I8})
  for (float big : {1.f, 20000.f}) {
    if (big != 1.f && code != kc::KvCode::E4M3) continue;
    Pool pool(code, n_kv, hd, 4, 13);
    for (float& x : pool.ks) x *= big;
    for (float& x : pool.vs) x *= big;
    auto k = randn(size_t(n_pos * n_kv * hd), 7, 0.5f), v = randn(size_t(n_pos * n_kv * hd), 8, 0.5f);
    for (float& x : k) x *= big;
    for (float& x : v) x *= big;
    for (int p = 0; p < n_pos; ++p) kc::kv_paged_write(pool.view, &k[size_t(p * n_kv * hd)], &v[size_t(p * n_kv * hd)], p);
    std::vector<float> kc_(size_t(n_kv * n_pos * hd)), vc_(kc_.size());
    for (int h = 0; h < n_kv; ++h) {
      kc::kv_paged_read(pool.view, false, h, 0, n_pos, &kc_[size_t(h * n_pos * hd)]);
      kc::kv_paged_read(pool.view, true, h, 0, n_pos, &vc_[size_t(h * n_pos * hd)]);
    }
    for (int rows : {1, 2}) {
      const int pos0 = n_pos - rows;
      const auto q = randn(size_t(rows * n_heads * hd), 21 + uint32_t(rows));
      std::vector<float> a(q.size()), b(q.size());
      kc::attention_paged_f32(q.data(), n_heads * hd, rows, pos0, n_heads, pool.view, a.data(), n_heads * hd);
      kc::attention_f32(q.data(), n_heads * hd, kc_.data(), vc_.data(), n_pos * hd, rows, pos0, n_heads, n_kv, hd, b.data(), n_heads * hd);
      ASSERT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * 4)) << "code " << int(code) << " rows " << rows << " head_dim " << hd << " x" << big;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Isa, KvPagedIsa, ::testing::ValuesIn(kc::kAllIsas), testutil::isa_test_name);

namespace {

Model quantized_model(bool fp8_kv) {
  Model m = random_model(testutil::tiny_config({.ffn = 72, .max_seq = 64}), 9);
  compress::QuantizeOptions q;
  q.scheme = QuantScheme::of(DType::I4, Granularity::Group, 16);
  compress::quantize_model(m, q, nullptr);
  if (fp8_kv) {
    const compress::CalibrationSet c = testutil::pattern_calibration(2, 16);
    compress::KvCalibrationOptions o;
    o.type = DType::F8E4M3;
    o.per_head = true;
    compress::calibrate_kv(m, o, &c);
  }
  return m;
}

std::vector<int> tokens(int n, uint32_t seed) {
  std::mt19937 g(seed);
  std::vector<int> t(static_cast<size_t>(n));
  for (auto& x : t) x = int(g() % 40);
  return t;
}

}  // namespace

// One sequence prefilled and decoded alone, then the same inside a batch of 8
// sequences of other lengths (prefill chunks and decode tokens mixed): its
// logits are the same bits at every step.
TEST(BatchedStep, ASequenceAloneEqualsItInsideABatch) {
  for (bool fp8 : {false, true}) {
    const Model m = quantized_model(fp8);
    const int V = m.config.vocab;
    const auto prompt = tokens(13, 1), cont = tokens(6, 2);
    std::vector<std::vector<float>> alone;
    {
      Engine e(m, EngineOptions{64, 64, ""});
      std::vector<float> lg(static_cast<size_t>(V));
      e.step({{0, prompt.data(), 13, lg.data(), 1}});
      alone.push_back(lg);
      for (int t : cont) {
        e.step({{0, &t, 1, lg.data(), 1}});
        alone.push_back(lg);
      }
    }
    Engine e(m, EngineOptions{64, 64, ""});
    std::vector<int> ids = {0};
    for (int i = 1; i < 8; ++i) ids.push_back(e.add_sequence());
    std::vector<std::vector<int>> others;
    for (int i = 1; i < 8; ++i) others.push_back(tokens(3 + 4 * i, 10 + uint32_t(i)));
    // Step 0: every sequence's prompt at once; then one token each.
    std::vector<std::vector<float>> lg(8, std::vector<float>(size_t(V)));
    std::vector<Engine::SeqStep> b = {{0, prompt.data(), 13, lg[0].data(), 1}};
    for (int i = 1; i < 8; ++i) b.push_back({ids[size_t(i)], others[size_t(i - 1)].data(), int(others[size_t(i - 1)].size()), lg[size_t(i)].data(), 1});
    std::shuffle(b.begin(), b.end(), std::mt19937(3));
    e.step(b);
    ASSERT_EQ(0, std::memcmp(lg[0].data(), alone[0].data(), size_t(V) * 4)) << "prefill, fp8 kv " << fp8;
    for (size_t s = 0; s < cont.size(); ++s) {
      std::vector<Engine::SeqStep> d;
      const int t0 = cont[s];
      d.push_back({0, &t0, 1, lg[0].data(), 1});
      std::vector<int> nxt(8);
      for (int i = 1; i < 8; ++i) {
        nxt[size_t(i)] = int((s * 7 + size_t(i)) % 40);
        if ((s + size_t(i)) % 3 != 0) d.push_back({ids[size_t(i)], &nxt[size_t(i)], 1, lg[size_t(i)].data(), 1});
      }
      e.step(d);
      ASSERT_EQ(0, std::memcmp(lg[0].data(), alone[s + 1].data(), size_t(V) * 4)) << "decode step " << s << ", fp8 kv " << fp8;
    }
  }
}

TEST(BatchedStep, OutOfBlocksIsAClearErrorThatChangesNothing) {
  const Model m = quantized_model(false);
  Engine e(m, EngineOptions{64, 3, ""});  // 48 positions in all
  const int s1 = e.add_sequence();
  const auto a = tokens(30, 4), b = tokens(30, 5);
  std::vector<float> lg(static_cast<size_t>(m.config.vocab));
  e.step({{0, a.data(), 30, lg.data(), 1}});
  try {
    e.step({{s1, b.data(), 30, lg.data(), 1}});
    FAIL() << "no error";
  } catch (const Error& err) {
    EXPECT_NE(std::string(err.what()).find("out of blocks"), std::string::npos) << err.what();
  }
  EXPECT_EQ(e.length(s1), 0);
  EXPECT_EQ(e.kv().free_blocks(), 1);
  e.drop_sequence(0);
  EXPECT_EQ(e.kv().free_blocks(), 3);
  e.step({{s1, b.data(), 30, lg.data(), 1}});  // now it fits
  EXPECT_EQ(e.length(s1), 30);
}

TEST(BatchedStep, KvDtypeOverrideNeedsScalesForFp8) {
  const Model m = quantized_model(false);
  EXPECT_THROW(Engine(m, EngineOptions{64, 0, "fp8"}), Error);
  Engine f16(m, EngineOptions{64, 0, "f16"});
  EXPECT_EQ(f16.kv().code(), kc::KvCode::F16);
  EXPECT_THROW(Engine(m, EngineOptions{64, 0, "f8"}), Error);
}
