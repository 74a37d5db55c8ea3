#include "tests/reference/llama2c_ref64.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <map>
#include <stdexcept>

namespace ref {

Llama2cRef load_llama2c_ref(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot open " + path);
  int32_t h[7];
  f.read(reinterpret_cast<char*>(h), sizeof h);
  Llama2cRef m{h[0], h[1], h[2], h[3], h[4], std::abs(h[5]), h[6], h[5] > 0, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}};
  const int hs = m.dim / m.n_heads, kv = m.n_kv_heads * hs, L = m.n_layers;
  auto rd = [&](std::vector<double>& v, size_t n) {
    std::vector<float> tmp(n);
    f.read(reinterpret_cast<char*>(tmp.data()), std::streamsize(n * 4));
    v.assign(tmp.begin(), tmp.end());
  };
  rd(m.emb, size_t(m.vocab) * m.dim);
  rd(m.att_norm, size_t(L) * m.dim);
  rd(m.wq, size_t(L) * m.dim * m.dim);
  rd(m.wk, size_t(L) * kv * m.dim);
  rd(m.wv, size_t(L) * kv * m.dim);
  rd(m.wo, size_t(L) * m.dim * m.dim);
  rd(m.ffn_norm, size_t(L) * m.dim);
  rd(m.w1, size_t(L) * m.hidden * m.dim);
  rd(m.w2, size_t(L) * m.dim * m.hidden);
  rd(m.w3, size_t(L) * m.hidden * m.dim);
  rd(m.final_norm, size_t(m.dim));
  std::vector<double> skip;
  rd(skip, size_t(m.seq_len) * hs);  // freq_cis
  if (m.shared) m.wcls = m.emb; else rd(m.wcls, size_t(m.vocab) * m.dim);
  if (!f) throw std::runtime_error("short read in " + path);
  return m;
}

namespace {

// out[i] = sum_j w[i*n + j] x[j]
void matvec(const double* w, const std::vector<double>& x, int rows, std::vector<double>& out) {
  const size_t n = x.size();
  out.assign(size_t(rows), 0.0);
  for (int i = 0; i < rows; ++i) {
    double s = 0;
    for (size_t j = 0; j < n; ++j) s += w[size_t(i) * n + j] * x[j];
    out[size_t(i)] = s;
  }
}

std::vector<double> rmsnorm(const std::vector<double>& x, const double* w) {
  double ss = 0;
  for (double v : x) ss += v * v;
  const double inv = 1.0 / std::sqrt(ss / double(x.size()) + 1e-5);
  std::vector<double> o(x.size());
  for (size_t i = 0; i < x.size(); ++i) o[i] = x[i] * inv * w[i];
  return o;
}

}  // namespace

std::vector<std::vector<double>> forward_ref(const Llama2cRef& m, const std::vector<int>& tokens) {
  const int d = m.dim, hs = d / m.n_heads, kvd = m.n_kv_heads * hs, T = int(tokens.size());
  std::vector<std::vector<std::vector<double>>> kcache(size_t(m.n_layers)), vcache(size_t(m.n_layers));
  std::vector<std::vector<double>> out;
  for (int t = 0; t < T; ++t) {
    std::vector<double> x(m.emb.begin() + size_t(tokens[size_t(t)]) * d, m.emb.begin() + size_t(tokens[size_t(t)] + 1) * d);
    for (int l = 0; l < m.n_layers; ++l) {
      std::vector<double> xb = rmsnorm(x, &m.att_norm[size_t(l) * d]), q, k, v;
      matvec(&m.wq[size_t(l) * d * d], xb, d, q);
      matvec(&m.wk[size_t(l) * kvd * d], xb, kvd, k);
      matvec(&m.wv[size_t(l) * kvd * d], xb, kvd, v);
      // run.c: rotate consecutive pairs (i, i+1) by pos * 10000^(-(i % hs) / hs)
      for (int i = 0; i < d; i += 2) {
        const double freq = std::pow(10000.0, -double(i % hs) / hs), a = t * freq, c = std::cos(a), s = std::sin(a);
        for (int which = 0; which < (i < kvd ? 2 : 1); ++which) {
          std::vector<double>& vec = which == 0 ? q : k;
          const double v0 = vec[size_t(i)], v1 = vec[size_t(i) + 1];
          vec[size_t(i)] = v0 * c - v1 * s;
          vec[size_t(i) + 1] = v0 * s + v1 * c;
        }
      }
      kcache[size_t(l)].push_back(k);
      vcache[size_t(l)].push_back(v);
      std::vector<double> att(size_t(d), 0.0);
      const int group = m.n_heads / m.n_kv_heads;
      for (int h = 0; h < m.n_heads; ++h) {
        const int kvh = h / group;
        std::vector<double> sc(size_t(t) + 1);
        double mx = -1e300;
        for (int s = 0; s <= t; ++s) {
          double dot = 0;
          for (int i = 0; i < hs; ++i) dot += q[size_t(h * hs + i)] * kcache[size_t(l)][size_t(s)][size_t(kvh * hs + i)];
          sc[size_t(s)] = dot / std::sqrt(double(hs));
          mx = std::max(mx, sc[size_t(s)]);
        }
        double sum = 0;
        for (double& s : sc) { s = std::exp(s - mx); sum += s; }
        for (int s = 0; s <= t; ++s) {
          for (int i = 0; i < hs; ++i) att[size_t(h * hs + i)] += sc[size_t(s)] / sum * vcache[size_t(l)][size_t(s)][size_t(kvh * hs + i)];
        }
      }
      std::vector<double> o;
      matvec(&m.wo[size_t(l) * d * d], att, d, o);
      for (int i = 0; i < d; ++i) x[size_t(i)] += o[size_t(i)];
      xb = rmsnorm(x, &m.ffn_norm[size_t(l) * d]);
      std::vector<double> h1, h3, h2;
      matvec(&m.w1[size_t(l) * m.hidden * d], xb, m.hidden, h1);
      matvec(&m.w3[size_t(l) * m.hidden * d], xb, m.hidden, h3);
      for (int i = 0; i < m.hidden; ++i) h1[size_t(i)] = h1[size_t(i)] / (1.0 + std::exp(-h1[size_t(i)])) * h3[size_t(i)];
      matvec(&m.w2[size_t(l) * d * m.hidden], h1, d, h2);
      for (int i = 0; i < d; ++i) x[size_t(i)] += h2[size_t(i)];
    }
    std::vector<double> logits;
    matvec(m.wcls.data(), rmsnorm(x, m.final_norm.data()), m.vocab, logits);
    out.push_back(std::move(logits));
  }
  return out;
}

TokenizerRef load_tokenizer_ref(const std::string& path, int vocab) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot open " + path);
  TokenizerRef t;
  int32_t max_len;
  f.read(reinterpret_cast<char*>(&max_len), 4);
  for (int i = 0; i < vocab; ++i) {
    float s;
    int32_t len;
    f.read(reinterpret_cast<char*>(&s), 4);
    f.read(reinterpret_cast<char*>(&len), 4);
    std::string p(size_t(len), '\0');
    f.read(p.data(), len);
    t.pieces.push_back(p);
    t.scores.push_back(s);
  }
  if (!f) throw std::runtime_error("short read in " + path);
  return t;
}

std::vector<int> encode_ref(const TokenizerRef& t, const std::string& text) {
  std::map<std::string, int> index;  // run.c bsearches a sorted copy; any exact-match lookup is equivalent
  for (size_t i = 0; i < t.pieces.size(); ++i) index.emplace(t.pieces[i], int(i));
  auto lookup = [&](const std::string& s) {
    auto it = index.find(s);
    return it == index.end() ? -1 : it->second;
  };
  std::vector<int> ids;
  if (text.empty()) return ids;
  ids.push_back(lookup(" "));
  std::string buf;
  for (size_t i = 0; i < text.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if ((c & 0xC0) != 0x80) buf.clear();
    buf += char(c);
    if (i + 1 < text.size() && (static_cast<unsigned char>(text[i + 1]) & 0xC0) == 0x80 && buf.size() < 4) continue;
    const int id = lookup(buf);
    if (id >= 0) ids.push_back(id);
    else for (unsigned char b : buf) ids.push_back(int(b) + 3);
    buf.clear();
  }
  while (true) {
    float best = -1e10f;
    int best_id = -1, best_i = -1;
    for (size_t i = 0; i + 1 < ids.size(); ++i) {
      const int id = lookup(t.pieces[size_t(ids[i])] + t.pieces[size_t(ids[i + 1])]);
      if (id != -1 && t.scores[size_t(id)] > best) { best = t.scores[size_t(id)]; best_id = id; best_i = int(i); }
    }
    if (best_i == -1) break;
    ids[size_t(best_i)] = best_id;
    ids.erase(ids.begin() + best_i + 1);
  }
  return ids;
}

double perplexity_ref(const Llama2cRef& m, const std::vector<int>& tokens, int ctx, int max_windows, int bos) {
  const int windows = std::min(int(tokens.size()) / ctx, max_windows);
  double nll = 0;
  for (int w = 0; w < windows; ++w) {
    std::vector<int> in = {bos};
    in.insert(in.end(), tokens.begin() + w * ctx, tokens.begin() + (w + 1) * ctx - 1);
    const auto logits = forward_ref(m, in);
    for (int i = 0; i < ctx; ++i) {
      const auto& l = logits[size_t(i)];
      double mx = l[0], s = 0;
      for (double v : l) mx = std::max(mx, v);
      for (double v : l) s += std::exp(v - mx);
      nll += mx + std::log(s) - l[size_t(tokens[size_t(w * ctx + i)])];
    }
  }
  return std::exp(nll / (double(windows) * ctx));
}

}  // namespace ref
