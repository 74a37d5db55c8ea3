#include "io/compressed_tensors.h"

#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>
#include <regex>

#include "core/error.h"
#include "core/json_text.h"
#include "kernels/common/int_codes.h"

namespace condense {
namespace {

using json = nlohmann::json;

const char* st_name(DType t) { return t == DType::F16 ? "F16" : t == DType::BF16 ? "BF16" : "F32"; }

std::string module_of(const std::string& weight) { return weight.substr(0, weight.size() - std::string(".weight").size()); }

// The static-activation site (model/activation_quant.h) a block linear reads.
int site_of(const std::string& name) {
  if (name.find("o_proj") != std::string::npos) return 1;
  if (name.find("down_proj") != std::string::npos) return 3;
  if (name.find("gate_proj") != std::string::npos || name.find("up_proj") != std::string::npos) return 2;
  return 0;
}

json int_args(int bits, bool sym, const std::string& strategy, int group) {
  return {{"num_bits", bits}, {"type", "int"},          {"symmetric", sym},        {"strategy", strategy},
          {"group_size", group > 0 ? json(group) : json(nullptr)}, {"block_structure", nullptr}, {"dynamic", false},
          {"actorder", nullptr}, {"observer", "minmax"}, {"observer_kwargs", json::object()}};
}

// Element i's code as an unsigned b-bit value (signed code + 2^(b-1)); pruned
// entries as the code of 0.0.
uint32_t unsigned_code(const WeightCompression& wc, int64_t i, int64_t si, int bits) {
  const QuantScheme& s = wc.scheme;
  const int off = 1 << (bits - 1);
  if (s.symmetric) {
    if (!wc.kept(i)) return uint32_t(off);
    const uint8_t c = wc.codes[size_t(i)];
    return uint32_t((s.type == DType::I4 ? intcode::i4_from_nibble(c) : int(int8_t(c))) + off);
  }
  const uint32_t z = wc.zeros[size_t(si)];
  if (!wc.kept(i)) return z;
  return s.type == DType::I4 ? wc.codes[size_t(i)] & 0xfu : wc.codes[size_t(i)];
}

void put_f32(std::vector<uint8_t>& out, float v) {
  const size_t at = out.size();
  out.resize(at + 4);
  std::memcpy(out.data() + at, &v, 4);
}

bool exact_in(DType t, float v) {
  if (t == DType::F32) return true;
  float back;
  uint16_t h;
  convert_from_f32(&v, t, &h, 1);
  convert_to_f32(t, &h, &back, 1);
  return back == v;
}

}  // namespace

CompressedTensorsExport plan_compressed_tensors(const Model& m, DType dense, WeightSource* src) {
  if (dense != DType::F16 && dense != DType::BF16 && dense != DType::F32) fail("compressed-tensors", "dense dtype must be f16, bf16 or f32");
  CompressedTensorsExport ex;
  if (!src) {
    ex.own_source = std::make_shared<ModelWeights>(m);
    src = ex.own_source.get();
  }
  const ModelConfig& c = m.config;
  const size_t dense_size = dense == DType::F32 ? 4 : 2;
  struct Group { json weights, inputs; std::string format; std::vector<std::string> modules; };
  std::map<std::string, Group> groups;
  std::vector<std::string> ignore;
  bool sparse = false, rounded_scales = false;
  const bool w8a8 = m.activations.type == DType::I8, fp8_static = m.activations.type == DType::F8E4M3;

  auto add_dense = [&](const WeightRef& w, const WeightCompression* wc, const std::string& why) {
    const int64_t n = shape_numel(w.shape);
    ex.items.push_back({w.name, st_name(dense), w.shape, uint64_t(n) * dense_size, [src, w, n, dense, shape = w.shape](std::vector<uint8_t>& out) {
                          const WeightView v = src->get(w);
                          const Tensor* t = v.values;
                          const WeightCompression* wc = v.packed;
                          std::vector<float> eff;
                          const float* x = t && t->defined() ? t->f32() : nullptr;
                          if (!x) {
                            eff.resize(size_t(n));
                            dequantize(*wc, shape[0], n / shape[0], eff.data());
                            x = eff.data();
                          }
                          out.resize(size_t(n) * (dense == DType::F32 ? 4 : 2));
                          convert_from_f32(x, dense, out.data(), n);
                        }});
    const bool quantized = wc && wc->scheme.quantized();
    ex.tensors.push_back({{"name", w.name}, {"format", "dense"}, {"scheme", quantized ? wc->scheme.describe() : "f32"},
                          {"how", dense == DType::F32 ? "exact" : std::string("rounded to ") + name(dense)}, {"note", why}});
    if (w.kind == WeightKind::Linear) ignore.push_back(module_of(w.name));
  };

  for_each_weight(m, [&](const WeightRef& w) {
    const WeightCompression* wc = src->get(w).packed;
    if (wc && wc->sparse()) sparse = true;
    if (!wc || !wc->scheme.quantized()) return add_dense(w, wc, "");
    const QuantScheme s = wc->scheme;
    if (w.kind != WeightKind::Linear) return add_dense(w, wc, s.describe() + " outside the block linears: vLLM reads it dense");
    const int64_t rows = w.shape[0], cols = w.shape[1];
    const std::string mod = module_of(w.name);
    if (s.granularity == Granularity::Group && cols % s.group) {
      return add_dense(w, wc, s.describe() + " over rows of " + std::to_string(cols) + ": the last group is short, which no compressed-tensors scheme holds");
    }
    Group g;
    const WeightCompression* p = wc;  // valid until the next get: the sizes below are taken now
    if (s.type == DType::F8E4M3) {
      if (s.granularity == Granularity::Group) return add_dense(w, wc, "fp8 in groups: vLLM's fp8 schemes are per tensor or per channel");
      const bool per_tensor = s.granularity == Granularity::PerTensor;
      g.format = "float-quantized";
      g.weights = {{"num_bits", 8}, {"type", "float"}, {"symmetric", true}, {"strategy", per_tensor ? "tensor" : "channel"}, {"group_size", nullptr},
                   {"block_structure", nullptr}, {"dynamic", false}, {"actorder", nullptr}, {"observer", "minmax"}, {"observer_kwargs", json::object()}};
      g.inputs = fp8_static ? json{{"num_bits", 8}, {"type", "float"}, {"symmetric", true}, {"strategy", "tensor"}, {"group_size", nullptr},
                                   {"block_structure", nullptr}, {"dynamic", false}, {"actorder", nullptr}, {"observer", "minmax"}, {"observer_kwargs", json::object()}}
                            : json(nullptr);
      ex.items.push_back({mod + ".weight", "F8_E4M3", w.shape, uint64_t(rows * cols), [src, w, n = rows * cols](std::vector<uint8_t>& out) {
                            const WeightCompression* p = src->get(w).packed;
                            out.assign(p->codes.begin(), p->codes.end());
                            for (int64_t i = 0; i < n; ++i) if (!p->kept(i)) out[size_t(i)] = 0;
                          }});
      const std::vector<int64_t> sshape = per_tensor ? std::vector<int64_t>{1} : std::vector<int64_t>{rows, 1};
      ex.items.push_back({mod + ".weight_scale", "F32", sshape, uint64_t(p->scales.size()) * 4, [src, w](std::vector<uint8_t>& out) {
                            const WeightCompression* p = src->get(w).packed;
                            for (float v : p->scales) put_f32(out, v);
                          }});
      if (fp8_static) {
        const float in_scale = m.activations.scale(w.layer, site_of(w.name));
        ex.items.push_back({mod + ".input_scale", "F32", {1}, 4, [in_scale](std::vector<uint8_t>& out) { put_f32(out, in_scale); }});
      }
    } else if (w8a8 && s.type == DType::I8 && s.granularity != Granularity::Group) {
      const bool per_tensor = s.granularity == Granularity::PerTensor;
      g.format = "int-quantized";
      g.weights = int_args(8, s.symmetric, per_tensor ? "tensor" : "channel", 0);
      g.inputs = {{"num_bits", 8}, {"type", "int"}, {"symmetric", true}, {"strategy", "token"}, {"group_size", nullptr}, {"block_structure", nullptr},
                  {"dynamic", true}, {"actorder", nullptr}, {"observer", nullptr}, {"observer_kwargs", json::object()}};
      ex.items.push_back({mod + ".weight", "I8", w.shape, uint64_t(rows * cols), [src, w, rows, cols](std::vector<uint8_t>& out) {
                            const WeightCompression* p = src->get(w).packed;
                            out.resize(size_t(rows * cols));
                            for (int64_t i = 0; i < rows * cols; ++i) {
                              const int64_t si = p->scheme.scale_index(i / cols, i % cols, cols);
                              out[size_t(i)] = uint8_t(int(unsigned_code(*p, i, si, 8)) - 128);
                            }
                          }});
      const std::vector<int64_t> sshape = per_tensor ? std::vector<int64_t>{1} : std::vector<int64_t>{rows, 1};
      ex.items.push_back({mod + ".weight_scale", "F32", sshape, uint64_t(p->scales.size()) * 4, [src, w](std::vector<uint8_t>& out) {
                            const WeightCompression* p = src->get(w).packed;
                            for (float v : p->scales) put_f32(out, v);
                          }});
      if (!s.symmetric) {
        ex.items.push_back({mod + ".weight_zero_point", "I8", sshape, uint64_t(p->zeros.size()), [src, w](std::vector<uint8_t>& out) {
                            const WeightCompression* p = src->get(w).packed;
                              for (uint8_t z : p->zeros) out.push_back(uint8_t(int(z) - 128));
                            }});
      }
    } else {  // int4 / int8 weight-only: pack-quantized
      const int bits = s.type == DType::I4 ? 4 : 8, pf = 32 / bits;
      const bool grouped = s.granularity == Granularity::Group;
      const int64_t ngroups = grouped ? cols / s.group : 1;
      g.format = "pack-quantized";
      g.weights = int_args(bits, s.symmetric, grouped ? "group" : "channel", grouped ? s.group : 0);
      g.inputs = nullptr;
      if (w8a8 || fp8_static) {
        ex.notes.push_back(w.name + ": " + s.describe() + " goes out weight-only (pack-quantized): its input quantization has no compressed-tensors scheme here");
      }
      const int64_t words = (cols * bits + 31) / 32;
      ex.items.push_back({mod + ".weight_packed", "I32", {rows, words}, uint64_t(rows * words) * 4, [src, w, rows, cols, words, bits, pf](std::vector<uint8_t>& out) {
                            const WeightCompression* p = src->get(w).packed;
                            std::vector<uint32_t> wv(size_t(rows * words), 0);
                            for (int64_t r = 0; r < rows; ++r) {
                              for (int64_t col = 0; col < cols; ++col) {
                                const int64_t i = r * cols + col;
                                wv[size_t(r * words + col / pf)] |= unsigned_code(*p, i, p->scheme.scale_index(r, col, cols), bits) << (bits * (col % pf));
                              }
                            }
                            out.resize(wv.size() * 4);
                            std::memcpy(out.data(), wv.data(), out.size());
                          }});
      // Scales per (row, group); a per-tensor scale repeated per row (channel strategy).
      for (float v : p->scales) rounded_scales = rounded_scales || !exact_in(dense, v);
      ex.items.push_back({mod + ".weight_scale", st_name(dense), {rows, ngroups}, uint64_t(rows * ngroups) * dense_size,
                          [src, w, rows, ngroups, dense](std::vector<uint8_t>& out) {
                            const WeightCompression* p = src->get(w).packed;
                            std::vector<float> sc(size_t(rows * ngroups));
                            for (int64_t i = 0; i < rows * ngroups; ++i) sc[size_t(i)] = p->scales.size() == 1 ? p->scales[0] : p->scales[size_t(i)];
                            out.resize(sc.size() * (dense == DType::F32 ? 4 : 2));
                            convert_from_f32(sc.data(), dense, out.data(), int64_t(sc.size()));
                          }});
      ex.items.push_back({mod + ".weight_shape", "I64", {2}, 16, [rows, cols](std::vector<uint8_t>& out) {
                            const int64_t v[2] = {rows, cols};
                            out.resize(16);
                            std::memcpy(out.data(), v, 16);
                          }});
      if (!s.symmetric) {
        const int64_t zwords = (rows * bits + 31) / 32;
        ex.items.push_back({mod + ".weight_zero_point", "I32", {zwords, ngroups}, uint64_t(zwords * ngroups) * 4,
                            [src, w, rows, ngroups, zwords, bits, pf](std::vector<uint8_t>& out) {
                            const WeightCompression* p = src->get(w).packed;
                              std::vector<uint32_t> zv(size_t(zwords * ngroups), 0);
                              for (int64_t r = 0; r < rows; ++r) {
                                for (int64_t gi = 0; gi < ngroups; ++gi) {
                                  const uint8_t z = p->zeros.size() == 1 ? p->zeros[0] : p->zeros[size_t(r * ngroups + gi)];
                                  zv[size_t((r / pf) * ngroups + gi)] |= uint32_t(z) << (bits * (r % pf));
                                }
                              }
                              out.resize(zv.size() * 4);
                              std::memcpy(out.data(), zv.data(), out.size());
                            }});
      }
    }
    ex.tensors.push_back({{"name", w.name}, {"format", g.format}, {"scheme", s.describe()}, {"how", "exact"}, {"note", ""}});
    const std::string key = json{{"f", g.format}, {"w", g.weights}, {"i", g.inputs}}.dump();
    auto [gi, fresh] = groups.emplace(key, g);
    gi->second.modules.push_back(mod);
  });

  // KV cache: fp8 per tensor (vLLM's scheme); per-head scales go out as their layer's maximum.
  json kv = nullptr;
  if (m.kv_cache.type == DType::F8E4M3) {
    kv = {{"num_bits", 8}, {"type", "float"}, {"symmetric", true}, {"strategy", "tensor"}, {"group_size", nullptr},
          {"block_structure", nullptr}, {"dynamic", false}, {"actorder", nullptr}, {"observer", "minmax"}, {"observer_kwargs", json::object()}};
    for (int l = 0; l < c.n_layers; ++l) {
      for (const char* kind : {"k", "v"}) {
        const std::vector<float> per = m.kv_cache.layer_scales(kind[0] == 'k' ? m.kv_cache.k_scales : m.kv_cache.v_scales, l, c.n_kv_heads);
        float mx = 0;
        for (float v : per) mx = std::max(mx, v);
        ex.items.push_back({"model.layers." + std::to_string(l) + ".self_attn." + kind + "_scale", "F32", {}, 4, [mx](std::vector<uint8_t>& out) { put_f32(out, mx); }});
      }
    }
    if (m.kv_cache.per_head) ex.notes.push_back("per-kv-head fp8 KV scales go out as each layer's largest (vLLM's per-tensor fp8 KV cache): values cache slightly coarser than in condense");
  } else if (m.kv_cache.type == DType::I8) {
    ex.notes.push_back("the int8 KV cache has no compressed-tensors scheme (vLLM's is fp8): kv_cache_scheme left out");
  }
  if (sparse) ex.notes.push_back("pruned weights go out dense (stored zeros): vLLM no longer loads the sparse formats");
  if (rounded_scales) ex.notes.push_back(std::string("some pack-quantized scales are not exact in ") + name(dense) + ": written rounded (use --dtype f32 or f16)");

  json cg = json::object();
  std::string fmt;
  int k = 0;
  for (auto& [key, g] : groups) {
    json targets;
    if (groups.size() == 1) targets = json::array({"Linear"});
    else targets = g.modules;
    cg["group_" + std::to_string(k++)] = {{"targets", targets}, {"weights", g.weights}, {"input_activations", g.inputs}, {"output_activations", nullptr},
                                          {"format", g.format}};
    fmt = fmt.empty() || fmt == g.format ? g.format : "mixed-precision";
  }
  if (!c.tied_embeddings) ignore.push_back("lm_head");
  json qc = {{"quant_method", "compressed-tensors"}, {"format", groups.empty() ? "dense" : fmt}, {"quantization_status", "compressed"},
             {"config_groups", cg}, {"ignore", ignore}, {"kv_cache_scheme", kv}, {"global_compression_ratio", nullptr}};
  ex.quantization_config = qc.dump();
  return ex;
}

namespace {

// The quantization args that apply to `module`, and its group's format.
bool match_target(const std::string& target, const std::string& module) {
  if (target == "Linear" || target == module) return true;
  if (target.rfind("re:", 0) == 0) return std::regex_search(module, std::regex(target.substr(3)));
  return false;
}

}  // namespace

bool read_compressed_linear(const json& qc, const std::string& weight_name, int64_t rows, int64_t cols,
                            const std::function<StoredTensor(const std::string&)>& tensor, Model& m, Tensor& out) {
  const std::string mod = module_of(weight_name), where = "compressed-tensors " + mod;
  if (qc.contains("ignore") && qc["ignore"].is_array()) {
    for (const json& t : qc["ignore"]) {
      if (t.is_string() && t.get<std::string>() != "Linear" && match_target(t.get<std::string>(), mod)) return false;
    }
  }
  const json* args = nullptr;
  std::string format = qc.value("format", "");
  if (qc.contains("config_groups") && qc["config_groups"].is_object()) {
    for (const auto& [gname, g] : qc["config_groups"].items()) {
      if (!g.is_object() || !g.contains("targets") || !g["targets"].is_array()) fail(where, "config group '" + gname + "' has no targets list");
      for (const json& t : g["targets"]) {
        if (t.is_string() && match_target(t.get<std::string>(), mod)) {
          args = &g;
          if (g.contains("format") && g["format"].is_string()) format = g["format"].get<std::string>();
        }
      }
    }
  }
  if (!args || !args->contains("weights") || (*args)["weights"].is_null()) return false;
  const json& wa = (*args)["weights"];
  const int bits = int(json_int(wa.value("num_bits", json(8)), where, "num_bits", 1, 8));
  const std::string type = wa.value("type", "int"), strategy = wa.value("strategy", "tensor");
  const bool sym = wa.value("symmetric", true);
  auto need = [&](const std::string& suffix) {
    const StoredTensor st = tensor(mod + "." + suffix);
    if (!st.entry) fail(where, "tensor '" + mod + "." + suffix + "' is missing for its " + format + " scheme");
    return st;
  };
  auto scales_of = [&](const StoredTensor& st, int64_t count) {
    if (shape_numel(st.entry->shape) != count) fail(where, "weight_scale has " + std::to_string(shape_numel(st.entry->shape)) + " values, expected " + std::to_string(count));
    const Tensor t = st.file->read_f32(mod + ".weight_scale");
    std::vector<float> v(t.f32(), t.f32() + count);
    for (float s : v) {
      if (!(s >= 0.f) || !std::isfinite(s)) fail(where, "a weight_scale is " + std::to_string(s) + " (condense holds finite, non-negative scales)");
    }
    return v;
  };
  WeightCompression wc;
  if (format == "pack-quantized") {
    if (type != "int" || (bits != 4 && bits != 8)) fail(where, "pack-quantized " + type + std::to_string(bits) + " is not read (int4 and int8 are)");
    if (strategy != "group" && strategy != "channel") fail(where, "pack-quantized strategy '" + strategy + "' is not read (group, channel)");
    const int group = strategy == "group" ? int(json_int(wa.value("group_size", json(0)), where, "group_size", 1, 1 << 20)) : 0;
    if (group && cols % group) fail(where, "group_size " + std::to_string(group) + " does not divide the " + std::to_string(cols) + " columns");
    const int64_t ngroups = group ? cols / group : 1, words = (cols * bits + 31) / 32, pf = 32 / bits;
    wc = WeightCompression::blank(QuantScheme::of(bits == 4 ? DType::I4 : DType::I8, group ? Granularity::Group : Granularity::PerChannel, group, sym), rows, cols, {});
    const StoredTensor packed = need("weight_packed");
    if (packed.entry->dtype_name != "I32" || packed.entry->shape != std::vector<int64_t>{rows, words}) {
      fail(where, "weight_packed is " + packed.entry->dtype_name + " " + shape_str(packed.entry->shape) + ", expected I32 " + shape_str({rows, words}));
    }
    const StoredTensor shape = tensor(mod + ".weight_shape");
    if (shape.entry) {
      int64_t v[2] = {0, 0};
      if (shape.entry->dtype_name != "I64" || shape_numel(shape.entry->shape) != 2) fail(where, "weight_shape must be I64 [2]");
      std::memcpy(v, shape.file->bytes(mod + ".weight_shape"), 16);
      if (v[0] != rows || v[1] != cols) fail(where, "weight_shape is [" + std::to_string(v[0]) + ", " + std::to_string(v[1]) + "] but the config implies " + shape_str({rows, cols}));
    }
    const uint8_t* pb = packed.file->bytes(mod + ".weight_packed");
    const int off = 1 << (bits - 1);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t col = 0; col < cols; ++col) {
        uint32_t word;
        std::memcpy(&word, pb + 4 * (r * words + col / pf), 4);
        const uint32_t u = (word >> (bits * (col % pf))) & ((1u << bits) - 1);
        const int code = sym ? int(u) - off : int(u);
        wc.codes[size_t(r * cols + col)] = bits == 4 ? uint8_t(code & 0xf) : uint8_t(code);
      }
    }
    wc.scales = scales_of(need("weight_scale"), rows * ngroups);
    if (!sym) {
      const StoredTensor zp = need("weight_zero_point");
      const int64_t zwords = (rows * bits + 31) / 32;
      if (zp.entry->dtype_name != "I32" || zp.entry->shape != std::vector<int64_t>{zwords, ngroups}) fail(where, "weight_zero_point must be I32 " + shape_str({zwords, ngroups}));
      const uint8_t* zb = zp.file->bytes(mod + ".weight_zero_point");
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t g = 0; g < ngroups; ++g) {
          uint32_t word;
          std::memcpy(&word, zb + 4 * ((r / pf) * ngroups + g), 4);
          wc.zeros[size_t(r * ngroups + g)] = uint8_t((word >> (bits * (r % pf))) & ((1u << bits) - 1));
        }
      }
    }
  } else if (format == "int-quantized" || format == "naive-quantized" || format == "float-quantized") {
    const bool fp8 = format == "float-quantized";
    if (fp8 ? (type != "float" || bits != 8) : (type != "int" || bits != 8)) fail(where, format + " " + type + std::to_string(bits) + " is not read");
    if (strategy != "tensor" && strategy != "channel") fail(where, format + " strategy '" + strategy + "' is not read (tensor, channel)");
    if (fp8 && !sym) fail(where, "asymmetric fp8 is not read");
    const bool per_tensor = strategy == "tensor";
    wc = WeightCompression::blank(QuantScheme::of(fp8 ? DType::F8E4M3 : DType::I8, per_tensor ? Granularity::PerTensor : Granularity::PerChannel, 0, sym), rows, cols, {});
    const StoredTensor wt = need("weight");
    if (wt.entry->dtype_name != (fp8 ? "F8_E4M3" : "I8") || wt.entry->shape != std::vector<int64_t>{rows, cols}) {
      fail(where, "weight is " + wt.entry->dtype_name + " " + shape_str(wt.entry->shape) + ", expected " + (fp8 ? "F8_E4M3 " : "I8 ") + shape_str({rows, cols}));
    }
    const uint8_t* b = wt.file->bytes(mod + ".weight");
    for (int64_t i = 0; i < rows * cols; ++i) wc.codes[size_t(i)] = sym ? b[i] : uint8_t(int(int8_t(b[i])) + 128);
    wc.scales = scales_of(need("weight_scale"), per_tensor ? 1 : rows);
    if (!sym) {
      const StoredTensor zp = need("weight_zero_point");
      if (zp.entry->dtype_name != "I8" || shape_numel(zp.entry->shape) != int64_t(wc.zeros.size())) fail(where, "weight_zero_point must be I8 with one value per scale");
      const uint8_t* zb = zp.file->bytes(mod + ".weight_zero_point");
      for (size_t i = 0; i < wc.zeros.size(); ++i) wc.zeros[i] = uint8_t(int(int8_t(zb[i])) + 128);
    }
    if (fp8) {
      for (uint8_t code : wc.codes) {
        if ((code & 0x7f) == 0x7f) fail(where, "weight holds an E4M3 NaN code");
      }
    }
  } else {
    fail(where, "format '" + format + "' is not read", "condense reads pack-quantized, int-quantized and float-quantized");
  }
  out = Tensor::empty(DType::F32, {rows, cols});
  dequantize(wc, rows, cols, out.f32());
  m.compression[weight_name] = std::move(wc);
  return true;
}

void read_compressed_extras(const json& qc, const std::function<StoredTensor(const std::string&)>& tensor, Model& m) {
  const ModelConfig& c = m.config;
  // Input activations: int8 dynamic per token (W8A8), or fp8 static per tensor
  // with one input_scale per linear (condense keeps one per input site: the
  // largest of the linears reading it, as vLLM does for its fused q/k/v).
  std::string kind;
  if (qc.contains("config_groups") && qc["config_groups"].is_object()) {
    for (const auto& [gname, g] : qc["config_groups"].items()) {
      if (!g.contains("input_activations") || g["input_activations"].is_null()) continue;
      const json& ia = g["input_activations"];
      const std::string k = ia.value("type", "") + (ia.value("dynamic", false) ? "-dynamic" : "-static");
      if (k != "int-dynamic" && k != "float-static") fail("compressed-tensors", "input_activations " + ia.dump() + " are not read (int dynamic per token, fp8 static per tensor)");
      if (!kind.empty() && kind != k) fail("compressed-tensors", "config groups quantize activations in different ways, which condense does not hold");
      kind = k;
    }
  }
  if (kind == "int-dynamic") m.activations.type = DType::I8;
  if (kind == "float-static") {
    m.activations.type = DType::F8E4M3;
    m.activations.scales.assign(size_t(c.n_layers) * ActivationQuant::kSites, 0.f);
    for_each_weight(m, [&](const WeightRef& w) {
      if (w.kind != WeightKind::Linear) return;
      const StoredTensor st = tensor(module_of(w.name) + ".input_scale");
      if (!st.entry) fail("compressed-tensors " + module_of(w.name), "input_scale is missing for static fp8 activations");
      const float v = st.file->read_f32(module_of(w.name) + ".input_scale").f32()[0];
      if (!(v > 0) || !std::isfinite(v)) fail("compressed-tensors " + module_of(w.name), "input_scale is not positive and finite");
      float& s = m.activations.scales[size_t(w.layer) * ActivationQuant::kSites + size_t(site_of(w.name))];
      s = std::max(s, v);
    });
  }
  if (qc.contains("kv_cache_scheme") && !qc["kv_cache_scheme"].is_null()) {
    const json& kv = qc["kv_cache_scheme"];
    if (kv.value("type", "") != "float" || kv.value("num_bits", 0) != 8 || kv.value("strategy", "") != "tensor") {
      fail("compressed-tensors", "kv_cache_scheme " + kv.dump() + " is not read (fp8 per tensor is)");
    }
    m.kv_cache.type = DType::F8E4M3;
    m.kv_cache.per_head = false;
    for (int l = 0; l < c.n_layers; ++l) {
      for (const char* k : {"k", "v"}) {
        const std::string n = "model.layers." + std::to_string(l) + ".self_attn." + k + "_scale";
        const StoredTensor st = tensor(n);
        if (!st.entry) fail("compressed-tensors", "'" + n + "' is missing for the fp8 KV cache");
        const float v = st.file->read_f32(n).f32()[0];
        if (!(v > 0) || !std::isfinite(v)) fail("compressed-tensors", "'" + n + "' is not positive and finite");
        (k[0] == 'k' ? m.kv_cache.k_scales : m.kv_cache.v_scales).push_back(v);
      }
    }
  }
}

}  // namespace condense
