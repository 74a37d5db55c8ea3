#include "io/cpk.h"

#include <zstd.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/atomic_writer.h"
#include "io/crc32c.h"
#include "io/file_view.h"
#include "core/json_text.h"
#include "kernels/common/minifloat.h"

namespace condense {

using nlohmann::json;
namespace fs = std::filesystem;

namespace {

constexpr char kMagic[8] = {'\x89', 'C', 'P', 'K', '\r', '\n', '\x1a', '\n'};
constexpr uint64_t kPreamble = 32, kAlign = 64;

uint64_t align_up(uint64_t v) { return (v + kAlign - 1) / kAlign * kAlign; }

template <typename T>
void put(std::vector<uint8_t>& b, T v) {
  const size_t o = b.size();
  b.resize(o + sizeof(T));
  std::memcpy(b.data() + o, &v, sizeof(T));
}

// ---- writing ----------------------------------------------------------

struct Sections {
  std::vector<std::vector<uint8_t>> raw;
  json table = json::array();
  int add(std::vector<uint8_t> bytes, const std::string& name) {
    table.push_back({{"name", name}});
    raw.push_back(std::move(bytes));
    return int(raw.size() - 1);
  }
};

bool scales_fit_f16(const std::vector<float>& s) {
  for (float v : s) {
    if (minifloat::f16_to_f32(minifloat::f32_to_f16(v)) != v) return false;
  }
  return true;
}

// Sparse positions: a bitmap (bit i of byte i/8 = element i kept) or CSR
// (u32 row starts, then u16 or u32 column indices), whichever is smaller.
json write_sparsity(const WeightCompression& wc, int64_t rows, int64_t cols, Sections& sec, const std::string& name) {
  const int64_t n = rows * cols, kept = wc.count_kept(n);
  const int idx_bytes = cols <= 65536 ? 2 : 4;
  const uint64_t bitmap_bytes = uint64_t((n + 7) / 8), csr_bytes = uint64_t(rows + 1) * 4 + uint64_t(kept) * uint64_t(idx_bytes);
  std::vector<uint8_t> b;
  json j = {{"kept", kept}};
  if (bitmap_bytes <= csr_bytes) {
    b.assign(size_t(bitmap_bytes), 0);
    for (int64_t i = 0; i < n; ++i) {
      if (wc.kept(i)) b[size_t(i >> 3)] |= uint8_t(1u << (i & 7));
    }
    j["encoding"] = "bitmap";
  } else {
    uint32_t count = 0;
    put<uint32_t>(b, 0);
    std::vector<uint8_t> colv;
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < cols; ++c) {
        if (!wc.kept(r * cols + c)) continue;
        ++count;
        if (idx_bytes == 2) put<uint16_t>(colv, uint16_t(c));
        else put<uint32_t>(colv, uint32_t(c));
      }
      put<uint32_t>(b, count);
    }
    b.insert(b.end(), colv.begin(), colv.end());
    j["encoding"] = "csr";
    j["index_bytes"] = idx_bytes;
  }
  j["section"] = sec.add(std::move(b), name + ".mask");
  return j;
}

json write_tensor(const std::string& name, const Tensor& t, const WeightCompression* wc, Sections& sec) {
  const int64_t rows = t.ndim() == 2 ? t.dim(0) : 1, cols = t.ndim() == 2 ? t.dim(1) : t.dim(0), n = rows * cols;
  json j = {{"name", name}, {"shape", t.shape()}};
  if (!wc) {
    std::vector<uint8_t> b(size_t(n) * 4);
    std::memcpy(b.data(), t.f32(), b.size());
    j["format"] = "f32";
    j["values"] = sec.add(std::move(b), name);
    return j;
  }
  const QuantScheme& s = wc->scheme;
  if (wc->sparse()) j["sparsity"] = write_sparsity(*wc, rows, cols, sec, name);
  std::vector<uint8_t> vals;
  if (!s.quantized()) {
    j["format"] = "f32";
    for (int64_t i = 0; i < n; ++i) {
      if (wc->kept(i)) put<float>(vals, t.f32()[i]);
    }
  } else {
    j["format"] = s.type == DType::F8E4M3 ? "fp8-e4m3" : quant_type_name(s.type);
    int64_t k = 0;
    for (int64_t i = 0; i < n; ++i) {
      if (!wc->kept(i)) continue;
      const uint8_t c = wc->codes[size_t(i)];
      if (s.type == DType::I4) {
        if ((k & 1) == 0) vals.push_back(c & 0xf);
        else vals.back() |= uint8_t((c & 0xf) << 4);
      } else {
        vals.push_back(c);
      }
      ++k;
    }
    json q = {{"granularity", s.granularity == Granularity::PerTensor ? "tensor" : (s.granularity == Granularity::PerChannel ? "channel" : "group")},
              {"symmetric", s.symmetric}};
    if (s.granularity == Granularity::Group) q["group"] = s.group;
    std::vector<uint8_t> sb;
    const bool f16 = scales_fit_f16(wc->scales);
    for (float v : wc->scales) {
      if (f16) put<uint16_t>(sb, minifloat::f32_to_f16(v));
      else put<float>(sb, v);
    }
    q["scales"] = {{"section", sec.add(std::move(sb), name + ".scales")}, {"dtype", f16 ? "f16" : "f32"}};
    if (!s.symmetric) {
      std::vector<uint8_t> zb;
      for (size_t i = 0; i < wc->zeros.size(); ++i) {
        if (s.type == DType::I4) {
          if ((i & 1) == 0) zb.push_back(wc->zeros[i] & 0xf);
          else zb.back() |= uint8_t((wc->zeros[i] & 0xf) << 4);
        } else {
          zb.push_back(wc->zeros[i]);
        }
      }
      q["zeros"] = {{"section", sec.add(std::move(zb), name + ".zeros")}, {"packing", s.type == DType::I4 ? "u4" : "u8"}};
    }
    j["quant"] = q;
  }
  j["values"] = sec.add(std::move(vals), name);
  return j;
}

json config_json(const ModelConfig& c) {
  return {{"arch", c.arch},         {"dim", c.dim},           {"n_layers", c.n_layers},   {"n_heads", c.n_heads},
          {"n_kv_heads", c.n_kv_heads}, {"head_dim", c.head_dim}, {"ffn_dim", c.ffn_dim},   {"vocab", c.vocab},
          {"max_seq", c.max_seq},   {"rope_theta", c.rope_theta}, {"norm_eps", c.norm_eps}, {"tied_embeddings", c.tied_embeddings},
          {"qkv_bias", c.qkv_bias}, {"bos_id", c.bos_id},     {"eos_id", c.eos_id}};
}

}  // namespace

void save_cpk(const Model& m, const std::string& path, const CpkWriteOptions& opt) {
  for (const auto& [name, wc] : m.compression) {
    const int g = wc.scheme.group;
    if (wc.scheme.granularity == Granularity::Group && (g < 1 || (g & (g - 1)))) {
      fail(path, "tensor '" + name + "' has group size " + std::to_string(g) + "; the .cpk format stores power-of-two groups");
    }
  }
  Sections sec;
  json tensors = json::array();
  for_each_weight(m, [&](const WeightRef& r) {
    auto it = m.compression.find(r.name);
    tensors.push_back(write_tensor(r.name, *r.tensor, it == m.compression.end() ? nullptr : &it->second, sec));
  });
  for (const auto& [name, wc] : m.compression) {
    bool found = false;
    for (const auto& t : tensors) found |= t["name"] == name;
    if (!found) fail(path, "packed form of '" + name + "' belongs to no weight of the model");
  }
  json tok = nullptr;
  if (!opt.tokenizer_path.empty()) {
    const std::string bytes = read_text_file(opt.tokenizer_path);
    tok = {{"file", fs::path(opt.tokenizer_path).filename().string()},
           {"section", sec.add(std::vector<uint8_t>(bytes.begin(), bytes.end()), "tokenizer")}};
  } else if (!opt.tokenizer_bytes.empty()) {
    tok = {{"file", opt.tokenizer_file},
           {"section", sec.add(std::vector<uint8_t>(opt.tokenizer_bytes.begin(), opt.tokenizer_bytes.end()), "tokenizer")}};
  }
  // sections: optional zstd, checksums, offsets relative to the data start
  std::vector<std::vector<uint8_t>> stored(sec.raw.size());
  uint64_t off = 0;
  for (size_t i = 0; i < sec.raw.size(); ++i) {
    const std::vector<uint8_t>& raw = sec.raw[i];
    json& e = sec.table[i];
    e["compression"] = "none";
    if (opt.zstd_level > 0 && raw.size() >= 256) {
      std::vector<uint8_t> z(ZSTD_compressBound(raw.size()));
      const size_t zn = ZSTD_compress(z.data(), z.size(), raw.data(), raw.size(), opt.zstd_level);
      if (!ZSTD_isError(zn) && zn < raw.size()) {
        z.resize(zn);
        stored[i] = std::move(z);
        e["compression"] = "zstd";
      }
    }
    if (e["compression"] == "none") stored[i] = raw;
    e["offset"] = off;
    e["bytes"] = stored[i].size();
    e["raw_bytes"] = raw.size();
    e["crc32c"] = crc32c(stored[i].data(), stored[i].size());
    off = align_up(off + stored[i].size());
  }
  json header = {{"format", "condense-cpk"},
                 {"version", {kCpkMajor, kCpkMinor}},
                 {"model", config_json(m.config)},
                 {"tokenizer", tok},
                 {"provenance", parse_json(opt.provenance_json, "provenance")},
                 {"history", parse_json(m.history, "model history")},
                 {"tensors", tensors},
                 {"sections", sec.table}};
  if (m.kv_cache.quantized()) {
    const KvCacheQuant& q = m.kv_cache;
    const size_t per = size_t(m.config.n_layers) * size_t(q.per_head ? m.config.n_kv_heads : 1);
    if (q.k_scales.size() != per || q.v_scales.size() != per) fail(path, "KV cache scales do not match the config's layers/heads");
    header["kv_cache"] = {{"dtype", q.type == DType::F8E4M3 ? "fp8-e4m3" : "int8"}, {"granularity", q.per_head ? "head" : "tensor"},
                          {"k_scales", q.k_scales}, {"v_scales", q.v_scales}};
  }
  if (m.activations.quantized()) {
    const ActivationQuant& a = m.activations;
    json aj = {{"dtype", a.type == DType::F8E4M3 ? "fp8-e4m3" : "int8"}, {"scales", a.type == DType::F8E4M3 ? "static" : "dynamic"}};
    if (a.head) {
      if (a.type != DType::I8) fail(path, "only int8 activations can quantize the LM head's input");
      aj["head"] = true;
    }
    if (a.type == DType::F8E4M3) {
      if (a.scales.size() != size_t(m.config.n_layers) * ActivationQuant::kSites) fail(path, "activation scales do not match the config's layers");
      aj["input_scales"] = a.scales;
    }
    header["activations"] = aj;
  }
  const std::string h = header.dump();
  std::vector<uint8_t> pre(kMagic, kMagic + 8);
  put<uint32_t>(pre, kCpkMajor);
  put<uint32_t>(pre, kCpkMinor);
  put<uint64_t>(pre, h.size());
  put<uint32_t>(pre, crc32c(h.data(), h.size()));
  put<uint32_t>(pre, 0);
  AtomicWriter w(path);
  w.write(pre.data(), pre.size());
  w.write(h.data(), h.size());
  const uint64_t data_start = align_up(kPreamble + h.size());
  w.write_zeros(data_start - w.offset());
  for (size_t i = 0; i < stored.size(); ++i) {
    w.write(stored[i].data(), stored[i].size());
    w.write_zeros(align_up(w.offset() - data_start) + data_start - w.offset());
  }
  w.commit();
}

bool is_cpk(const std::string& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return false;
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return false;
  char b[8] = {};
  const size_t n = std::fread(b, 1, 8, f);
  std::fclose(f);
  return n == 8 && std::memcmp(b, kMagic, 8) == 0;
}

// ---- reading ----------------------------------------------------------

namespace {

[[noreturn]] void bad(const std::string& path, const std::string& what) {
  fail(path, what, "The .cpk file is corrupted or truncated; write it again");
}

struct Reader {
  std::string path;
  FileView f;
  json header;
  uint64_t data_start = 0;
  uint32_t major = 0, minor = 0;

  explicit Reader(const std::string& p) : path(p), f(p) {
    if (f.size() < kPreamble || std::memcmp(f.data(), kMagic, 8) != 0) fail(path, "is not a .cpk file (no CPK magic)");
    major = f.read<uint32_t>(8, "version");
    minor = f.read<uint32_t>(12, "version");
    if (major != kCpkMajor) {
      fail(path, ".cpk version " + std::to_string(major) + "." + std::to_string(minor) + " is not readable by this condense (reads " +
                     std::to_string(kCpkMajor) + ".x)",
           "Use the condense version that wrote it, or re-export the model");
    }
    const uint64_t hlen = f.read<uint64_t>(16, "header length");
    const uint32_t hcrc = f.read<uint32_t>(24, "header checksum");
    if (hlen > f.size() - kPreamble) bad(path, "header of " + std::to_string(hlen) + " bytes runs past the end of the file (" + std::to_string(f.size()) + " bytes)");
    const char* hp = reinterpret_cast<const char*>(f.data() + kPreamble);
    if (crc32c(hp, hlen) != hcrc) bad(path, "header checksum mismatch");
    header = parse_json(std::string(hp, hlen), path + " header");
    data_start = align_up(kPreamble + hlen);
    if (!header.is_object()) bad(path, "header is not a JSON object");
    for (const char* k : {"model", "tensors", "sections"}) {
      if (!header.contains(k)) bad(path, std::string("header has no \"") + k + "\"");
    }
    try {
      if (!header.is_object() || header.value("format", json()) != "condense-cpk") bad(path, "header's \"format\" is not \"condense-cpk\"");
      if (!header["tensors"].is_array() || !header["sections"].is_array()) bad(path, "header's tensors and sections must be arrays");
      check_sections();
    } catch (const json::exception& e) {
      bad(path, std::string("malformed header: ") + e.what());
    }
  }

  // Every section: 64-byte aligned, after the previous one (no overlap), inside
  // the file, a known compression, and raw sizes that, summed, stay within
  // kMaxExpansion times the file (so a small file cannot make the reader
  // allocate gigabytes for zstd frames that claim to expand that far).
  static constexpr uint64_t kMaxExpansion = 256, kExpansionSlack = uint64_t(256) << 20;
  void check_sections() {
    uint64_t end = 0, raw_total = 0;
    const json& secs = header["sections"];
    for (size_t i = 0; i < secs.size(); ++i) {
      const json& e = secs[i];
      const std::string what = "section " + std::to_string(i);
      if (!e.is_object()) bad(path, what + " is not an object");
      const uint64_t off = uint64_t(json_int(e.at("offset"), path, what + ".offset", 0, INT64_MAX));
      const uint64_t n = uint64_t(json_int(e.at("bytes"), path, what + ".bytes", 0, INT64_MAX));
      const uint64_t raw = uint64_t(json_int(e.at("raw_bytes"), path, what + ".raw_bytes", 0, INT64_MAX));
      json_int(e.at("crc32c"), path, what + ".crc32c", 0, UINT32_MAX);
      if (off % kAlign) bad(path, what + ": offset " + std::to_string(off) + " is not 64-byte aligned");
      if (off < end) bad(path, what + ": starts at " + std::to_string(off) + ", inside the previous section (which ends at " + std::to_string(end) + ")");
      if (data_start > f.size() || off > f.size() - data_start || n > f.size() - data_start - off) {
        bad(path, what + " at " + std::to_string(data_start + off) + " (+" + std::to_string(n) + " bytes) runs past the end of the file (" +
                      std::to_string(f.size()) + " bytes): truncated");
      }
      const std::string comp = e.at("compression").get<std::string>();
      if (comp != "none" && comp != "zstd") fail(path, what + ": unknown section compression '" + comp + "'", "Use a newer condense");
      if (comp == "none" && n != raw) bad(path, what + ": stored and raw sizes differ for an uncompressed section");
      end = off + n;
      raw_total += raw;
      if (i + 1 == secs.size() && f.size() > data_start + align_up(end)) {
        bad(path, "has " + std::to_string(f.size() - data_start - end) + " bytes after its last section (at most the 63 bytes of padding to 64)");
      }
      if (raw_total > kMaxExpansion * f.size() + kExpansionSlack) {
        bad(path, "sections claim " + std::to_string(raw_total) + "+ bytes once decompressed, more than " + std::to_string(kMaxExpansion) +
                      " times the file: not a file condense wrote");
      }
    }
  }

  // Raw bytes of section i, checked and decompressed.
  // Raw bytes of section `ref`, which must decompress to exactly `expect`
  // bytes (checked before anything is allocated; kAnySize: the caller checks).
  static constexpr uint64_t kAnySize = UINT64_MAX;
  std::vector<uint8_t> section(const json& ref, const std::string& what, uint64_t expect) const {
    std::vector<uint8_t> out;
    section_into(ref, what, expect, &out, nullptr);
    return out;
  }
  // The same into `dst` (exactly `expect` bytes), without a copy in between:
  // a big f32 tensor is held once, not twice, while it is read.
  void section_into(const json& ref, const std::string& what, uint64_t expect, uint8_t* dst) const { section_into(ref, what, expect, nullptr, dst); }

 private:
  void section_into(const json& ref, const std::string& what, uint64_t expect, std::vector<uint8_t>* vec, uint8_t* dst) const {
    if (!ref.is_number_unsigned()) bad(path, what + ": section reference is not an index");
    const size_t i = ref.get<size_t>();
    const json& secs = header["sections"];
    if (i >= secs.size()) bad(path, what + ": section " + std::to_string(i) + " does not exist");
    if (!used_sections.insert(i).second) bad(path, what + ": section " + std::to_string(i) + " is already used by another item");
    const json& e = secs[i];
    const uint64_t off = e.at("offset").get<uint64_t>(), n = e.at("bytes").get<uint64_t>(), raw = e.at("raw_bytes").get<uint64_t>();
    if (expect != kAnySize && raw != expect) {
      bad(path, what + ": section " + std::to_string(i) + " holds " + std::to_string(raw) + " bytes, expected " + std::to_string(expect));
    }
    const uint8_t* p = f.data() + data_start + off;
    if (vec) {
      vec->resize(size_t(raw));
      dst = vec->data();
    }
    if (e.at("compression").get<std::string>() == "none") {
      // In chunks, each checksummed, copied and its mapped pages released, so
      // the file's pages and the copy are never both resident in full.
      constexpr uint64_t kChunk = uint64_t(8) << 20;
      uint32_t crc = 0;
      for (uint64_t at = 0; at < n; at += kChunk) {
        const uint64_t len = std::min(kChunk, n - at);
        crc = crc32c(p + at, size_t(len), crc);
        std::memcpy(dst + at, p + at, size_t(len));
        f.release(data_start + off + at, len);
      }
      if (crc != e.at("crc32c").get<uint32_t>()) bad(path, what + ": checksum mismatch in section " + std::to_string(i));
    } else {
      if (crc32c(p, n) != e.at("crc32c").get<uint32_t>()) bad(path, what + ": checksum mismatch in section " + std::to_string(i));
      if (ZSTD_getFrameContentSize(p, n) != raw) bad(path, what + ": zstd frame does not declare the section's " + std::to_string(raw) + " raw bytes");
      const size_t got = ZSTD_decompress(dst, size_t(raw), p, n);
      if (ZSTD_isError(got) || got != raw) bad(path, what + ": zstd section does not decompress to " + std::to_string(raw) + " bytes");
    }
    f.release(data_start + off, n);
  }

 public:
  mutable std::set<size_t> used_sections;
};

ModelConfig parse_config(const json& j, const std::string& path) {
  ModelConfig c;
  try {
    c.arch = j.at("arch").get<std::string>();
    for (auto [k, f] : {std::pair{"dim", &c.dim}, {"n_layers", &c.n_layers}, {"n_heads", &c.n_heads}, {"n_kv_heads", &c.n_kv_heads},
                        {"head_dim", &c.head_dim}, {"ffn_dim", &c.ffn_dim}, {"vocab", &c.vocab}, {"max_seq", &c.max_seq},
                        {"bos_id", &c.bos_id}, {"eos_id", &c.eos_id}}) {
      *f = int(json_int(j.at(k), path, std::string("model.") + k, INT32_MIN, INT32_MAX));  // validate() bounds each
    }
    c.rope_theta = j.at("rope_theta").get<float>();
    c.norm_eps = j.at("norm_eps").get<float>();
    c.tied_embeddings = j.at("tied_embeddings").get<bool>();
    c.qkv_bias = j.at("qkv_bias").get<bool>();
  } catch (const json::exception& e) {
    bad(path, std::string("model config: ") + e.what());
  }
  c.validate(path);
  return c;
}

QuantScheme parse_scheme(const json& t, const std::string& path, const std::string& name) {
  QuantScheme s;
  const std::string fmt = t.at("format").get<std::string>();
  if (fmt == "f32") return s;
  if (fmt == "int8") s.type = DType::I8;
  else if (fmt == "int4") s.type = DType::I4;
  else if (fmt == "fp8-e4m3") s.type = DType::F8E4M3;
  else fail(path, "tensor '" + name + "' has unknown format '" + fmt + "'", "Use a newer condense");
  const json& q = t.at("quant");
  const std::string g = q.at("granularity").get<std::string>();
  s.granularity = g == "tensor" ? Granularity::PerTensor : g == "channel" ? Granularity::PerChannel : Granularity::Group;
  if (g != "tensor" && g != "channel" && g != "group") bad(path, "tensor '" + name + "': unknown granularity '" + g + "'");
  if (s.granularity == Granularity::Group) {
    s.group = int(json_int(q.at("group"), path, "tensor '" + name + "' quant.group", 1, 1 << 20));
    // A power of two: then the scale count rows * ceil(cols / group) pins the group down
    // (up to groups >= cols, which mean the same), and a changed group cannot pass as valid.
    if (s.group & (s.group - 1)) bad(path, "tensor '" + name + "': group size " + std::to_string(s.group) + " is not a power of two");
  } else if (q.contains("group")) {
    bad(path, "tensor '" + name + "': a group size with granularity '" + g + "'");
  }
  s.symmetric = q.at("symmetric").get<bool>();
  return s;
}

// Real checkpoints hold no NaN or infinity: one would silently poison every output.
void require_finite(const float* v, int64_t n, const std::string& path, const std::string& name) {
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(v[i])) bad(path, "tensor '" + name + "': value " + std::to_string(i) + " is " + std::to_string(v[i]));
  }
}

// Decodes one tensor into `t` (allocated, f32) and, when packed, its WeightCompression;
// with !effective_f32 a quantized tensor keeps only the packed form (`t` released).
void read_tensor(const Reader& rd, const json& tj, Tensor& t, std::map<std::string, WeightCompression>& packed, bool effective_f32) {
  const std::string name = tj.at("name").get<std::string>();
  const std::string& path = rd.path;
  const int64_t rows = t.ndim() == 2 ? t.dim(0) : 1, cols = t.ndim() == 2 ? t.dim(1) : t.dim(0), n = rows * cols;
  if (tj.at("shape").get<std::vector<int64_t>>() != t.shape()) {
    bad(path, "tensor '" + name + "' has shape " + tj.at("shape").dump() + " but the config implies " + shape_str(t.shape()));
  }
  const QuantScheme s = parse_scheme(tj, path, name);
  const bool sparse = tj.contains("sparsity");
  if (!s.quantized() && !sparse) {
    rd.section_into(tj.at("values"), name, uint64_t(n) * 4, reinterpret_cast<uint8_t*>(t.f32()));
    require_finite(t.f32(), n, path, name);
    return;
  }
  WeightCompression wc;
  wc.scheme = s;
  int64_t kept = n;
  if (sparse) {
    const json& sp = tj.at("sparsity");
    const std::vector<uint8_t> b = rd.section(sp.at("section"), name + " mask", Reader::kAnySize);
    if (b.size() > uint64_t(n) * 4 + uint64_t(rows + 1) * 4) bad(path, "tensor '" + name + "': mask section is larger than any mask of its shape");
    wc.mask.assign(size_t((n + 63) / 64), 0);
    const std::string enc = sp.at("encoding").get<std::string>();
    if (enc == "bitmap") {
      if (b.size() != size_t((n + 7) / 8)) bad(path, "tensor '" + name + "': bitmap has " + std::to_string(b.size()) + " bytes");
      for (int64_t i = 0; i < n; ++i) {
        if ((b[size_t(i >> 3)] >> (i & 7)) & 1) wc.mask[size_t(i >> 6)] |= uint64_t(1) << (i & 63);
      }
    } else if (enc == "csr") {
      const int ib = sp.at("index_bytes").get<int>();
      if (ib != 2 && ib != 4) bad(path, "tensor '" + name + "': CSR index width " + std::to_string(ib));
      if (b.size() < size_t(rows + 1) * 4) bad(path, "tensor '" + name + "': CSR row starts are truncated");
      std::vector<uint32_t> rp(size_t(rows + 1));
      std::memcpy(rp.data(), b.data(), rp.size() * 4);
      const uint64_t nnz = rp.back();
      if (rp[0] != 0 || b.size() != rp.size() * 4 + nnz * uint64_t(ib)) bad(path, "tensor '" + name + "': CSR sizes do not add up");
      const uint8_t* ci = b.data() + rp.size() * 4;
      for (int64_t r = 0; r < rows; ++r) {
        if (rp[size_t(r + 1)] < rp[size_t(r)] || rp[size_t(r + 1)] > nnz) bad(path, "tensor '" + name + "': CSR row starts decrease");
        for (uint32_t k = rp[size_t(r)]; k < rp[size_t(r + 1)]; ++k) {
          uint32_t c = 0;
          std::memcpy(&c, ci + size_t(k) * size_t(ib), size_t(ib));
          if (c >= cols) bad(path, "tensor '" + name + "': CSR column " + std::to_string(c) + " out of range");
          const int64_t i = r * cols + c;
          wc.mask[size_t(i >> 6)] |= uint64_t(1) << (i & 63);
        }
      }
    } else {
      fail(path, "tensor '" + name + "': unknown sparsity encoding '" + enc + "'", "Use a newer condense");
    }
    kept = wc.count_kept(n);
    if (sp.at("kept").get<int64_t>() != kept) bad(path, "tensor '" + name + "': mask keeps " + std::to_string(kept) + " elements, header says " + sp.at("kept").dump());
  }
  const std::vector<uint8_t> v = rd.section(tj.at("values"), name, !s.quantized() ? uint64_t(kept) * 4 : s.type == DType::I4 ? uint64_t(kept + 1) / 2 : uint64_t(kept));
  if (!s.quantized()) {
    require_finite(reinterpret_cast<const float*>(v.data()), kept, path, name);
    if (v.size() != size_t(kept) * 4) bad(path, "tensor '" + name + "': " + std::to_string(v.size()) + " value bytes for " + std::to_string(kept) + " kept elements");
    int64_t k = 0;
    for (int64_t i = 0; i < n; ++i) {
      float x = 0;
      if (wc.kept(i)) std::memcpy(&x, v.data() + 4 * k++, 4);
      t.f32()[i] = x;
    }
    packed[name] = std::move(wc);
    return;
  }
  const size_t want = s.type == DType::I4 ? size_t((kept + 1) / 2) : size_t(kept);
  if (v.size() != want) bad(path, "tensor '" + name + "': " + std::to_string(v.size()) + " code bytes, expected " + std::to_string(want));
  if (s.type == DType::F8E4M3) {
    for (size_t i = 0; i < v.size(); ++i) {
      if ((v[i] & 0x7f) == 0x7f) bad(path, "tensor '" + name + "': fp8-e4m3 code " + std::to_string(v[i]) + " is NaN (kept value " + std::to_string(i) + ")");
    }
  }
  wc.codes.assign(size_t(n), 0);
  int64_t k = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (!wc.kept(i)) continue;
    wc.codes[size_t(i)] = s.type == DType::I4 ? uint8_t((v[size_t(k >> 1)] >> ((k & 1) * 4)) & 0xf) : v[size_t(k)];
    ++k;
  }
  const json& q = tj.at("quant");
  const int64_t ns = s.num_scales(rows, cols);
  const std::string sd = q.at("scales").at("dtype").get<std::string>();
  const size_t es = sd == "f16" ? 2 : 4;
  if (sd != "f16" && sd != "f32") bad(path, "tensor '" + name + "': unknown scale dtype '" + sd + "'");
  const std::vector<uint8_t> sb = rd.section(q.at("scales").at("section"), name + " scales", uint64_t(ns) * es);
  if (sb.size() != size_t(ns) * es) bad(path, "tensor '" + name + "': " + std::to_string(sb.size()) + " scale bytes for " + std::to_string(ns) + " scales");
  wc.scales.resize(size_t(ns));
  for (int64_t i = 0; i < ns; ++i) {
    if (es == 2) {
      uint16_t h;
      std::memcpy(&h, sb.data() + 2 * i, 2);
      wc.scales[size_t(i)] = minifloat::f16_to_f32(h);
    } else {
      std::memcpy(&wc.scales[size_t(i)], sb.data() + 4 * i, 4);
    }
    if (!(wc.scales[size_t(i)] >= 0.f) || !std::isfinite(wc.scales[size_t(i)])) {
      bad(path, "tensor '" + name + "': scale " + std::to_string(i) + " is " + std::to_string(wc.scales[size_t(i)]) + " (scales are finite and not negative)");
    }
  }
  if (!s.symmetric) {
    const std::string packing = q.at("zeros").at("packing").get<std::string>();
    if (packing != "u4" && packing != "u8") bad(path, "tensor '" + name + "': unknown zero-point packing '" + packing + "'");
    const bool u4 = packing == "u4";
    const std::vector<uint8_t> zb = rd.section(q.at("zeros").at("section"), name + " zeros", u4 ? uint64_t(ns + 1) / 2 : uint64_t(ns));
    if (zb.size() != (u4 ? size_t((ns + 1) / 2) : size_t(ns))) bad(path, "tensor '" + name + "': zero-point bytes do not match its scales");
    wc.zeros.resize(size_t(ns));
    for (int64_t i = 0; i < ns; ++i) wc.zeros[size_t(i)] = u4 ? uint8_t((zb[size_t(i >> 1)] >> ((i & 1) * 4)) & 0xf) : zb[size_t(i)];
  }
  if (effective_f32) dequantize(wc, rows, cols, t.f32());
  else t = Tensor();  // never touched: its pages were never made resident
  packed[name] = std::move(wc);
}

uint64_t tensor_bytes(const json& tj, const json& secs) {
  uint64_t b = 0;
  auto add = [&](const json& ref) { if (ref.is_number_unsigned() && ref.get<size_t>() < secs.size()) b += secs[ref.get<size_t>()].at("bytes").get<uint64_t>(); };
  add(tj.at("values"));
  if (tj.contains("sparsity")) add(tj["sparsity"].at("section"));
  if (tj.contains("quant")) {
    add(tj["quant"].at("scales").at("section"));
    if (tj["quant"].contains("zeros")) add(tj["quant"]["zeros"].at("section"));
  }
  return b;
}

}  // namespace

namespace {

// Everything of a .cpk but the weights: config, KV and activation scales,
// history, tokenizer; the model's layers sized, no tensor allocated. Checks
// that every weight the config calls for is present once with its shape and
// that the model fits what the file can hold. `by_name` maps the tensor table.
void read_skeleton(const Reader& rd, LoadedModel& lm, std::map<std::string, const json*>& by_name) {
  const std::string& path = rd.path;
  Model& m = lm.model;
  try {
    m.config = parse_config(rd.header["model"], path);
    for (const json& t : rd.header["tensors"]) {
      if (!by_name.emplace(t.at("name").get<std::string>(), &t).second) bad(path, "tensor '" + t.at("name").get<std::string>() + "' appears twice");
    }
    // Before anything is allocated: every tensor the config calls for is
    // present with its shape, and the model's f32 size is within what the
    // file can plausibly hold (kMaxExpansion times its bytes: sparse masks and
    // codes expand, but not without limit).
    uint64_t elements = 0;
    size_t used = 0;
    m.layers.resize(size_t(m.config.n_layers));
    for_each_weight(m, [&](const WeightRef& r) {
      auto it = by_name.find(r.name);
      if (it == by_name.end()) bad(path, "tensor '" + r.name + "' (required by the config) is missing");
      if (it->second->at("shape") != json(r.shape)) {
        bad(path, "tensor '" + r.name + "' has shape " + it->second->at("shape").dump() + " but the config implies " + shape_str(r.shape));
      }
      elements += uint64_t(shape_numel(r.shape));
      ++used;
    });
    if (used != by_name.size()) bad(path, std::to_string(by_name.size() - used) + " tensors in the file belong to no weight of the config");
    if (elements * 4 > Reader::kMaxExpansion * rd.f.size() + Reader::kExpansionSlack) {
      bad(path, "the config (" + m.config.summary() + ") implies " + std::to_string(elements) + " weights, far more than a " + std::to_string(rd.f.size()) +
                    "-byte file holds");
    }
    if (rd.header.contains("history")) m.history = rd.header["history"].dump();
    if (rd.header.contains("provenance") && rd.header["provenance"].is_object()) m.provenance = rd.header["provenance"].dump();
    if (rd.header.contains("kv_cache")) {
      const json& k = rd.header["kv_cache"];
      const std::string dt = k.at("dtype").get<std::string>(), g = k.at("granularity").get<std::string>();
      if (dt != "fp8-e4m3" && dt != "int8") fail(path, "unknown KV cache dtype '" + dt + "'", "Use a newer condense");
      if (g != "tensor" && g != "head") fail(path, "unknown KV cache granularity '" + g + "'", "Use a newer condense");
      m.kv_cache.type = dt == "int8" ? DType::I8 : DType::F8E4M3;
      m.kv_cache.per_head = g == "head";
      m.kv_cache.k_scales = k.at("k_scales").get<std::vector<float>>();
      m.kv_cache.v_scales = k.at("v_scales").get<std::vector<float>>();
      const size_t per = size_t(m.config.n_layers) * size_t(m.kv_cache.per_head ? m.config.n_kv_heads : 1);
      if (m.kv_cache.k_scales.size() != per || m.kv_cache.v_scales.size() != per) bad(path, "KV cache scales do not match the config's layers/heads");
      for (float v : m.kv_cache.k_scales) if (!(v > 0) || !std::isfinite(v)) bad(path, "KV cache scale not positive and finite");
      for (float v : m.kv_cache.v_scales) if (!(v > 0) || !std::isfinite(v)) bad(path, "KV cache scale not positive and finite");
    }
    if (rd.header.contains("activations")) {
      const json& a = rd.header["activations"];
      const std::string dt = a.at("dtype").get<std::string>();
      if (dt != "fp8-e4m3" && dt != "int8") fail(path, "unknown activation dtype '" + dt + "'", "Use a newer condense");
      m.activations.type = dt == "int8" ? DType::I8 : DType::F8E4M3;
      if (a.contains("head")) {
        if (!a["head"].is_boolean()) bad(path, "activations.head is not a boolean");
        m.activations.head = a["head"].get<bool>();
        if (m.activations.head && m.activations.type != DType::I8) bad(path, "activations.head is set for fp8 activations (int8 only)");
      }
      if (m.activations.type == DType::F8E4M3) {
        m.activations.scales = a.at("input_scales").get<std::vector<float>>();
        if (m.activations.scales.size() != size_t(m.config.n_layers) * ActivationQuant::kSites) bad(path, "activation scales do not match the config's layers");
        for (float v : m.activations.scales) {
          if (!(v > 0) || !std::isfinite(v)) bad(path, "activation scale not positive and finite");
        }
      }
    }
    const json& tok = rd.header.contains("tokenizer") ? rd.header["tokenizer"] : json(nullptr);
    if (!tok.is_null()) {
      const std::vector<uint8_t> b = rd.section(tok.at("section"), "tokenizer", Reader::kAnySize);
      const std::string file = tok.at("file").get<std::string>();
      lm.tokenizer = load_tokenizer_bytes(std::string(b.begin(), b.end()), file, path + " (embedded " + file + ")");
      lm.tokenizer_path = path + " (embedded " + file + ")";
    } else {
      lm.tokenizer_note = "the .cpk carries no tokenizer";
    }
  } catch (const json::exception& e) {
    bad(path, std::string("malformed header: ") + e.what());
  }
  m.format = "cpk";
  m.path = path;
}

// The weights of an open .cpk read one at a time (io/weight_source.h).
class CpkStream : public WeightSource {
 public:
  CpkStream(std::unique_ptr<Reader> rd, std::map<std::string, const json*> by_name) : rd_(std::move(rd)), by_name_(std::move(by_name)) {}
  WeightView get(const WeightRef& w) override {
    if (w.name != name_) {
      // A weight may be asked for again (a plan, then the writing): its
      // sections are read again, so the used-once check starts over for it.
      name_.clear();
      values_ = Tensor();
      packed_.clear();
      const json& tj = *by_name_.at(w.name);
      auto forget = [&](const json* ref) {
        if (ref && ref->is_number_unsigned()) rd_->used_sections.erase(ref->get<size_t>());
      };
      auto at = [](const json& j, const char* k) { return j.is_object() && j.contains(k) ? &j[k] : nullptr; };
      if (!seen_.insert(w.name).second) {  // read before: its own sections may be read again
        forget(at(tj, "values"));
        if (const json* sp = at(tj, "sparsity")) forget(at(*sp, "section"));
        if (const json* q = at(tj, "quant")) {
          for (const char* k : {"scales", "zeros"}) {
            if (const json* e = at(*q, k)) forget(at(*e, "section"));
          }
        }
      }
      try {
        values_ = Tensor::empty(DType::F32, w.shape);
        read_tensor(*rd_, tj, values_, packed_, false);
      } catch (const json::exception& e) {
        bad(rd_->path, std::string("malformed header: ") + e.what());
      }
      name_ = w.name;
    }
    auto it = packed_.find(w.name);
    return {&values_, it == packed_.end() ? nullptr : &it->second};
  }

 private:
  std::unique_ptr<Reader> rd_;
  std::map<std::string, const json*> by_name_;
  std::string name_;
  std::set<std::string> seen_;
  Tensor values_;
  std::map<std::string, WeightCompression> packed_;
};

}  // namespace

LoadedModel load_cpk(const std::string& path, bool effective_f32) {
  Reader rd(path);
  LoadedModel lm;
  std::map<std::string, const json*> by_name;
  read_skeleton(rd, lm, by_name);
  Model& m = lm.model;
  try {
    allocate_weights(m);
    for_each_weight(m, [&](const WeightRef& r) { read_tensor(rd, *by_name.at(r.name), *r.tensor, m.compression, effective_f32); });
  } catch (const json::exception& e) {
    bad(path, std::string("malformed header: ") + e.what());
  }
  for_each_weight(m, [&](const WeightRef& r) {
    auto it = m.compression.find(r.name);
    m.source_dtypes[r.name] = it == m.compression.end() || !it->second.scheme.quantized() ? DType::F32 : it->second.scheme.type;
  });
  return lm;
}

std::unique_ptr<WeightSource> open_cpk_stream(const std::string& path, LoadedModel& skeleton) {
  auto rd = std::make_unique<Reader>(path);
  std::map<std::string, const json*> by_name;
  read_skeleton(*rd, skeleton, by_name);
  return std::make_unique<CpkStream>(std::move(rd), std::move(by_name));
}

ModelConfig read_cpk_config(const std::string& path) {
  Reader rd(path);
  return parse_config(rd.header["model"], path);
}

CpkInfo read_cpk_info(const std::string& path) {
  Reader rd(path);
  CpkInfo info;
  info.major = rd.major;
  info.minor = rd.minor;
  info.file_bytes = rd.f.size();
  info.header_bytes = rd.data_start;
  info.header_json = rd.header.dump();
  try {
    const json& secs = rd.header["sections"];
    for (const json& tj : rd.header["tensors"]) {
      CpkTensorInfo t;
      t.name = tj.at("name").get<std::string>();
      t.format = tj.at("format").get<std::string>();
      t.shape = tj.at("shape").get<std::vector<int64_t>>();
      t.elements = 1;
      for (int64_t d : t.shape) t.elements *= d;
      t.kept = t.elements;
      if (tj.contains("quant")) t.scheme = parse_scheme(tj, path, t.name).describe();
      if (tj.contains("sparsity")) {
        t.kept = tj["sparsity"].at("kept").get<int64_t>();
        t.sparsity = tj["sparsity"].at("encoding").get<std::string>();
      }
      t.bytes = tensor_bytes(tj, secs);
      t.linear = t.name.rfind("model.layers.", 0) == 0 && t.shape.size() == 2;
      info.tensors.push_back(std::move(t));
    }
  } catch (const json::exception& e) {
    bad(path, std::string("malformed header: ") + e.what());
  }
  return info;
}

}  // namespace condense
