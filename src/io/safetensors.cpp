#include "io/safetensors.h"

#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "core/json_text.h"

#include "io/atomic_writer.h"

namespace condense {
namespace {

using json = nlohmann::json;

struct DTypeName { const char* st; DType dtype; };
constexpr DTypeName kNames[] = {{"F32", DType::F32},         {"BF16", DType::BF16},       {"F16", DType::F16},
                                {"F8_E4M3", DType::F8E4M3}, {"F8_E5M2", DType::F8E5M2}, {"I8", DType::I8}};
// Integer types quantized checkpoints use for packed codes and shapes: bytes only.
constexpr std::pair<const char*, int> kRawNames[] = {{"U8", 1}, {"I32", 4}, {"I64", 8}};

}  // namespace

SafetensorsFile::SafetensorsFile(const std::string& path) : file_(std::make_unique<FileView>(path)) {
  const FileView& f = *file_;
  const uint64_t n = f.read<uint64_t>(0, "safetensors header length");
  if (n > f.size() - 8 || n > (uint64_t(100) << 20)) {
    fail(path, "header length " + std::to_string(n) + " exceeds the file (" + std::to_string(f.size()) + " bytes)",
         "The file is truncated or not safetensors");
  }
  const json h = parse_json(std::string_view(reinterpret_cast<const char*>(f.data()) + 8, n), path + ": header",
                           "The file is corrupted or not safetensors");
  if (!h.is_object()) fail(path, "header is not a JSON object");
  const uint64_t base = 8 + n, data_len = f.size() - base;
  for (auto it = h.begin(); it != h.end(); ++it) {
    const std::string where = path + ": tensor '" + it.key() + "'";
    if (it.key() == "__metadata__") {
      if (!it->is_object()) fail(path, "__metadata__ is not an object of strings");
      for (auto m = it->begin(); m != it->end(); ++m) {
        if (!m->is_string()) fail(path, "__metadata__." + m.key() + " is not a string");
        metadata_[m.key()] = m->get<std::string>();
      }
      continue;
    }
    const json& e = *it;
    if (!e.is_object() || !e.contains("dtype") || !e.contains("shape") || !e.contains("data_offsets") ||
        !e["dtype"].is_string() || !e["shape"].is_array() || !e["data_offsets"].is_array() || e["data_offsets"].size() != 2) {
      fail(where, "entry needs string 'dtype', array 'shape' and two 'data_offsets'");
    }
    SafetensorsEntry s;
    s.dtype_name = e["dtype"].get<std::string>();
    bool known = false;
    for (const auto& k : kNames) {
      if (s.dtype_name == k.st) { s.dtype = k.dtype; known = true; }
    }
    int raw_size = 0;
    for (const auto& [n, size] : kRawNames) {
      if (s.dtype_name == n) raw_size = size;
    }
    if (!known && !raw_size) fail(where, "dtype '" + s.dtype_name + "' is not supported", "condense reads F32, BF16, F16, F8_E4M3, F8_E5M2, I8, U8, I32 and I64");
    s.raw_only = raw_size != 0;
    if (e["shape"].size() > 8) fail(where, "shape has " + std::to_string(e["shape"].size()) + " dimensions");
    for (const json& d : e["shape"]) s.shape.push_back(json_int(d, where, "shape", 0, INT64_MAX));
    const json& o = e["data_offsets"];
    if (!o[0].is_number_unsigned() || !o[1].is_number_unsigned()) fail(where, "data_offsets must be non-negative integers");
    const uint64_t b = o[0].get<uint64_t>(), en = o[1].get<uint64_t>();
    if (b > en || en > data_len) {
      fail(where, "data_offsets [" + std::to_string(b) + ", " + std::to_string(en) + "] fall outside the " +
                      std::to_string(data_len) + " data bytes",
           "The file is truncated or corrupted");
    }
    s.offset = base + b;
    s.nbytes = en - b;
    const uint64_t need = raw_size ? uint64_t(shape_numel(s.shape)) * uint64_t(raw_size) : storage_bytes(s.dtype, shape_numel(s.shape));
    if (s.nbytes != need) {
      fail(where, "holds " + std::to_string(s.nbytes) + " bytes but " + s.dtype_name + " " + shape_str(s.shape) + " needs " + std::to_string(need));
    }
    entries_.emplace(it.key(), std::move(s));
  }
  // As the reference (Rust) reader: the tensors tile the data exactly, each
  // starting where the previous one ended, the last ending at the file's end,
  // so no two overlap and no bytes are shifted or left over.
  std::vector<std::pair<uint64_t, const std::string*>> by_offset;
  for (const auto& [name, e] : entries_) by_offset.emplace_back(e.offset, &name);
  std::sort(by_offset.begin(), by_offset.end());
  uint64_t expect = base;
  for (const auto& [off, name] : by_offset) {
    const SafetensorsEntry& e = entries_.at(*name);
    if (off != expect) {
      fail(path, "tensor '" + *name + "' starts at data byte " + std::to_string(off - base) + ", expected " + std::to_string(expect - base) +
                     " (the previous tensor's end)",
           "The file is corrupted: its tensors overlap or leave gaps");
    }
    expect = off + e.nbytes;
  }
  if (expect != f.size()) {
    fail(path, "the tensors end at data byte " + std::to_string(expect - base) + " but the file has " + std::to_string(data_len) + " data bytes",
         "The file is corrupted or has trailing bytes");
  }
}

const SafetensorsEntry& SafetensorsFile::entry(const std::string& name) const {
  auto it = entries_.find(name);
  if (it == entries_.end()) fail(path(), "tensor '" + name + "' is missing", "The checkpoint does not match its config");
  return it->second;
}

const uint8_t* SafetensorsFile::bytes(const std::string& name) const { return file_->data() + entry(name).offset; }

Tensor SafetensorsFile::read_f32(const std::string& name) const {
  const SafetensorsEntry& e = entry(name);
  if (e.raw_only) fail(path(), "tensor '" + name + "' holds " + e.dtype_name + " codes, not values", "A quantized checkpoint's packed weight; read it with its quantization_config");
  Tensor t = Tensor::empty(DType::F32, e.shape);
  convert_to_f32(e.dtype, file_->data() + e.offset, t.f32(), t.numel());
  return t;
}

namespace {

// One safetensors file of `items`, in order: header (padded to 8 bytes), then
// each tensor's bytes made on demand.
void write_file(const std::string& path, const std::vector<const SafetensorsItem*>& items, const std::map<std::string, std::string>& metadata) {
  json h = json::object();
  if (!metadata.empty()) h["__metadata__"] = metadata;
  uint64_t off = 0;
  for (const SafetensorsItem* it : items) {
    h[it->name] = {{"dtype", it->dtype}, {"shape", it->shape}, {"data_offsets", {off, off + it->nbytes}}};
    off += it->nbytes;
  }
  std::string hs = h.dump();
  hs.append((8 - hs.size() % 8) % 8, ' ');
  AtomicWriter w(path);
  const uint64_t hn = hs.size();
  w.write(&hn, 8);
  w.write(hs.data(), hs.size());
  std::vector<uint8_t> buf;
  for (const SafetensorsItem* it : items) {
    buf.clear();
    it->bytes(buf);
    if (buf.size() != it->nbytes) fail(path, "internal error: tensor '" + it->name + "' made " + std::to_string(buf.size()) + " bytes, not " + std::to_string(it->nbytes));
    w.write(buf.data(), buf.size());
  }
  w.commit();
}

}  // namespace

void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  std::vector<SafetensorsItem> items;
  for (const auto& [name, t] : tensors) {
    const char* st = nullptr;
    for (const auto& k : kNames) {
      if (k.dtype == t.dtype()) st = k.st;
    }
    if (!st) fail(path, std::string("cannot store dtype ") + condense::name(t.dtype()) + " in safetensors (tensor '" + name + "')");
    const Tensor* tp = &t;
    items.push_back({name, st, t.shape(), t.nbytes(), [tp](std::vector<uint8_t>& out) {
                       const uint8_t* b = static_cast<const uint8_t*>(tp->data());
                       out.assign(b, b + tp->nbytes());
                     }});
  }
  std::vector<const SafetensorsItem*> ptrs;
  for (const auto& it : items) ptrs.push_back(&it);
  write_file(path, ptrs, metadata);
}

std::vector<std::string> write_safetensors_shards(const std::string& dir, const std::vector<SafetensorsItem>& items, uint64_t max_shard_bytes,
                                                  const std::map<std::string, std::string>& metadata) {
  // Greedy in order: a new shard when the next tensor would overflow this one.
  std::vector<std::vector<const SafetensorsItem*>> shards(1);
  uint64_t in_shard = 0, total = 0;
  for (const SafetensorsItem& it : items) {
    if (max_shard_bytes && in_shard > 0 && in_shard + it.nbytes > max_shard_bytes) {
      shards.emplace_back();
      in_shard = 0;
    }
    shards.back().push_back(&it);
    in_shard += it.nbytes;
    total += it.nbytes;
  }
  const size_t n = shards.size();
  std::vector<std::string> files;
  json weight_map = json::object();
  for (size_t k = 0; k < n; ++k) {
    char name[64];
    std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", k + 1, n);
    const std::string file = n == 1 ? "model.safetensors" : name;
    for (const SafetensorsItem* it : shards[k]) weight_map[it->name] = file;
    write_file(dir + "/" + file, shards[k], metadata);
    files.push_back(file);
  }
  if (n > 1) {
    const json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
    write_file_atomically(dir + "/model.safetensors.index.json", index.dump(2) + "\n");
    files.push_back("model.safetensors.index.json");
  }
  return files;
}

}  // namespace condense
