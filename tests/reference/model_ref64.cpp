#include "tests/reference/model_ref64.h"

#include <algorithm>
#include <cmath>

#include "model/model.h"

namespace ref {

std::vector<std::vector<double>*> Ref64Model::params() {
  std::vector<std::vector<double>*> p = {&embed, &final_norm, &lm_head};
  for (Ref64Layer& l : layers) {
    for (auto* v : {&l.attn_norm, &l.wq, &l.wk, &l.wv, &l.wo, &l.bq, &l.bk, &l.bv, &l.ffn_norm, &l.wg, &l.wu, &l.wd}) p.push_back(v);
  }
  return p;
}

namespace {
std::vector<double> to64(const condense::Tensor& t) {
  return t.defined() ? std::vector<double>(t.f32(), t.f32() + t.numel()) : std::vector<double>{};
}
}  // namespace

Ref64Model ref_from_model(const condense::Model& m) {
  const condense::ModelConfig& c = m.config;
  Ref64Model r;
  r.c = {c.dim, c.n_layers, c.n_heads, c.n_kv_heads, c.head_dim, c.ffn_dim, c.vocab, c.rope_theta, c.norm_eps, c.tied_embeddings, c.qkv_bias};
  r.embed = to64(m.embed);
  r.final_norm = to64(m.final_norm);
  r.lm_head = to64(m.lm_head);
  for (const condense::LayerWeights& l : m.layers) {
    r.layers.push_back({to64(l.attn_norm), to64(l.wq), to64(l.wk), to64(l.wv), to64(l.wo), to64(l.bq), to64(l.bk), to64(l.bv),
                        to64(l.ffn_norm), to64(l.w_gate), to64(l.w_up), to64(l.w_down)});
  }
  return r;
}

namespace {
using V = std::vector<double>;

// y[t, o] = sum_i x[t, i] w[o, i] (+ b[o])
V matvec_rows(const V& x, int rows, int in, const V& w, int out, const V* b) {
  V y(size_t(rows) * out, 0.0);
  for (int t = 0; t < rows; ++t) {
    for (int o = 0; o < out; ++o) {
      double s = b && !b->empty() ? (*b)[size_t(o)] : 0.0;
      for (int i = 0; i < in; ++i) s += x[size_t(t) * in + i] * w[size_t(o) * in + i];
      y[size_t(t) * out + o] = s;
    }
  }
  return y;
}

V norm(const V& x, int rows, int d, const V& w, double eps) {
  V y(x.size());
  for (int t = 0; t < rows; ++t) {
    double ss = 0;
    for (int i = 0; i < d; ++i) ss += x[size_t(t) * d + i] * x[size_t(t) * d + i];
    const double r = 1.0 / std::sqrt(ss / d + eps);
    for (int i = 0; i < d; ++i) y[size_t(t) * d + i] = x[size_t(t) * d + i] * r * w[size_t(i)];
  }
  return y;
}

// rotate-half: pairs (i, i + hd/2) of each head rotate by pos * theta^(-2i/hd)
void rope(V& x, int rows, int heads, int hd, double theta) {
  for (int t = 0; t < rows; ++t) {
    for (int h = 0; h < heads; ++h) {
      double* v = &x[size_t(t) * heads * hd + size_t(h) * hd];
      for (int i = 0; i < hd / 2; ++i) {
        const double a = t * std::pow(theta, -2.0 * i / hd);
        const double x0 = v[i], x1 = v[i + hd / 2];
        v[i] = x0 * std::cos(a) - x1 * std::sin(a);
        v[i + hd / 2] = x0 * std::sin(a) + x1 * std::cos(a);
      }
    }
  }
}

std::vector<double> log_softmax(const double* l, int n, double temp) {
  double mx = -1e300;
  for (int j = 0; j < n; ++j) mx = std::max(mx, l[j] / temp);
  double z = 0;
  for (int j = 0; j < n; ++j) z += std::exp(l[j] / temp - mx);
  std::vector<double> out(static_cast<size_t>(n));
  for (int j = 0; j < n; ++j) out[size_t(j)] = l[j] / temp - mx - std::log(z);
  return out;
}
}  // namespace

V forward64(const Ref64Model& m, const std::vector<int>& tokens, std::vector<V>* layer_out) {
  const Ref64Config& c = m.c;
  const int T = int(tokens.size()), d = c.dim, qd = c.n_heads * c.hd, kvd = c.n_kv * c.hd;
  V x(size_t(T) * d);
  for (int t = 0; t < T; ++t) std::copy_n(&m.embed[size_t(tokens[size_t(t)]) * d], d, &x[size_t(t) * d]);
  if (layer_out) layer_out->clear();
  for (const Ref64Layer& L : m.layers) {
    V xn = norm(x, T, d, L.attn_norm, c.eps);
    V q = matvec_rows(xn, T, d, L.wq, qd, c.bias ? &L.bq : nullptr);
    V k = matvec_rows(xn, T, d, L.wk, kvd, c.bias ? &L.bk : nullptr);
    V v = matvec_rows(xn, T, d, L.wv, kvd, c.bias ? &L.bv : nullptr);
    rope(q, T, c.n_heads, c.hd, c.theta);
    rope(k, T, c.n_kv, c.hd, c.theta);
    V att(size_t(T) * qd, 0.0);
    for (int h = 0; h < c.n_heads; ++h) {
      const int g = h / (c.n_heads / c.n_kv);
      for (int t = 0; t < T; ++t) {
        V s(size_t(t) + 1);
        double mx = -1e300;
        for (int j = 0; j <= t; ++j) {
          double dot = 0;
          for (int i = 0; i < c.hd; ++i) dot += q[size_t(t) * qd + h * c.hd + i] * k[size_t(j) * kvd + g * c.hd + i];
          s[size_t(j)] = dot / std::sqrt(double(c.hd));
          mx = std::max(mx, s[size_t(j)]);
        }
        double z = 0;
        for (double& e : s) z += (e = std::exp(e - mx));
        for (int j = 0; j <= t; ++j) {
          for (int i = 0; i < c.hd; ++i) att[size_t(t) * qd + h * c.hd + i] += s[size_t(j)] / z * v[size_t(j) * kvd + g * c.hd + i];
        }
      }
    }
    V o = matvec_rows(att, T, qd, L.wo, d, nullptr);
    for (size_t i = 0; i < x.size(); ++i) x[i] += o[i];
    V xn2 = norm(x, T, d, L.ffn_norm, c.eps);
    V gt = matvec_rows(xn2, T, d, L.wg, c.ffn, nullptr);
    V up = matvec_rows(xn2, T, d, L.wu, c.ffn, nullptr);
    for (size_t i = 0; i < gt.size(); ++i) gt[i] = gt[i] / (1.0 + std::exp(-gt[i])) * up[i];
    V dn = matvec_rows(gt, T, c.ffn, L.wd, d, nullptr);
    for (size_t i = 0; i < x.size(); ++i) x[i] += dn[i];
    if (layer_out) layer_out->push_back(x);
  }
  V xn = norm(x, T, d, m.final_norm, c.eps);
  return matvec_rows(xn, T, d, c.tied ? m.embed : m.lm_head, c.vocab, nullptr);
}

double loss64(const Ref64Model& s, const Ref64Model* t, const std::vector<V>& proj, const Ref64Objective& o,
              const std::vector<int>& inputs, const std::vector<int>& targets, int batch, int seq) {
  double tok = 0, hid = 0;
  int scored = 0;
  const int V_ = s.c.vocab;
  for (int b = 0; b < batch; ++b) {
    std::vector<int> in(inputs.begin() + b * seq, inputs.begin() + (b + 1) * seq);
    std::vector<V> hs, ht;
    const V ls = forward64(s, in, &hs);
    V lt;
    if (t) lt = forward64(*t, in, &ht);
    for (int r = 0; r < seq; ++r) {
      const int y = targets[size_t(b * seq + r)];
      if (y < 0) continue;
      ++scored;
      const std::vector<double> lq = log_softmax(&ls[size_t(r) * V_], V_, 1.0);
      tok += o.ce * -lq[size_t(y)];
      if (o.kd > 0) {
        const std::vector<double> pt = log_softmax(&lt[size_t(r) * V_], V_, o.temperature);
        const std::vector<double> qs = log_softmax(&ls[size_t(r) * V_], V_, o.temperature);
        double kl = 0;
        for (int j = 0; j < V_; ++j) kl += std::exp(pt[size_t(j)]) * (pt[size_t(j)] - qs[size_t(j)]);
        tok += o.kd * o.temperature * o.temperature * kl;
      }
    }
    for (size_t k = 0; k < o.hidden.size(); ++k) {
      const V& xs = hs[size_t(o.hidden[k].first)];
      const V& xt = ht[size_t(o.hidden[k].second)];
      const int ds = s.c.dim, dt = t->c.dim;
      for (int r = 0; r < seq; ++r) {
        for (int i = 0; i < dt; ++i) {
          double y = 0;
          if (proj[k].empty()) {
            y = xs[size_t(r) * ds + i];
          } else {
            for (int j = 0; j < ds; ++j) y += proj[k][size_t(i) * ds + j] * xs[size_t(r) * ds + j];
          }
          const double e = y - xt[size_t(r) * dt + i];
          hid += o.hidden_beta * e * e / (double(batch) * seq * dt);
        }
      }
    }
  }
  return tok / scored + hid;
}

}  // namespace ref
