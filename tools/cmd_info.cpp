// condense info MODEL: what a model file holds.
#include <cstdio>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>

#include "io/cpk.h"
#include "io/ggml_quants.h"
#include "io/model_loader.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/gpu/device_memory.h"
#ifdef CONDENSE_HAVE_GPU
#include "kernels/gpu/device_query.h"
#endif
#include "tools/cli_common.h"

namespace condense::cli {

namespace {

// Per tensor: stored format, sparsity and bits per weight; totals for the
// blocks' linear weights and for all weights (against their f32 bytes), and
// the whole file.
nlohmann::json cpk_storage(const std::string& path) {
  const CpkInfo info = read_cpk_info(path);
  nlohmann::json tensors = nlohmann::json::array();
  uint64_t lin_bytes = 0, lin_f32 = 0, all_bytes = 0;
  int64_t lin_elems = 0, lin_kept = 0, all_elems = 0;
  for (const CpkTensorInfo& t : info.tensors) {
    tensors.push_back({{"name", t.name}, {"format", t.format}, {"scheme", t.scheme}, {"shape", t.shape}, {"bytes", t.bytes},
                       {"sparsity", t.elements ? 1.0 - double(t.kept) / double(t.elements) : 0.0}, {"sparse_encoding", t.sparsity},
                       {"bits_per_weight", t.elements ? 8.0 * double(t.bytes) / double(t.elements) : 0.0}});
    all_bytes += t.bytes;
    all_elems += t.elements;
    if (t.linear) {
      lin_bytes += t.bytes;
      lin_f32 += uint64_t(t.elements) * 4;
      lin_elems += t.elements;
      lin_kept += t.kept;
    }
  }
  return {{"version", std::to_string(info.major) + "." + std::to_string(info.minor)},
          {"file_bytes", info.file_bytes},
          {"header_bytes", info.header_bytes},
          {"tensor_bytes", all_bytes},
          {"linear_weights", {{"bytes", lin_bytes}, {"f32_bytes", lin_f32}, {"fraction_of_f32", lin_f32 ? double(lin_bytes) / double(lin_f32) : 0.0},
                              {"bits_per_weight", lin_elems ? 8.0 * double(lin_bytes) / double(lin_elems) : 0.0},
                              {"sparsity", lin_elems ? 1.0 - double(lin_kept) / double(lin_elems) : 0.0}}},
          {"all_weights", {{"bytes", all_bytes}, {"f32_bytes", uint64_t(all_elems) * 4},
                           {"fraction_of_f32", all_elems ? double(all_bytes) / double(all_elems * 4) : 0.0},
                           {"bits_per_weight", all_elems ? 8.0 * double(all_bytes) / double(all_elems) : 0.0}}},
          {"tensors", tensors}};
}

void print_cpk_storage(const nlohmann::json& p) {
  std::printf("cpk:         version %s, %llu bytes (header %llu)\n", p["version"].get<std::string>().c_str(),
              (unsigned long long)p["file_bytes"].get<uint64_t>(), (unsigned long long)p["header_bytes"].get<uint64_t>());
  std::printf("  %-44s %-22s %8s %7s %10s\n", "tensor", "format", "sparsity", "bits/w", "bytes");
  for (const auto& t : p["tensors"]) {
    const std::string f = t["scheme"].get<std::string>().empty() ? t["format"].get<std::string>() : t["scheme"].get<std::string>();
    std::printf("  %-44s %-22s %7.1f%% %7.3f %10llu\n", t["name"].get<std::string>().c_str(), f.c_str(), 100 * t["sparsity"].get<double>(),
                t["bits_per_weight"].get<double>(), (unsigned long long)t["bytes"].get<uint64_t>());
  }
  const auto& l = p["linear_weights"];
  std::printf("linear weights: %llu bytes = %.2f%% of their f32 %llu bytes (%.3f bits/weight, %.1f%% sparse)\n",
              (unsigned long long)l["bytes"].get<uint64_t>(), 100 * l["fraction_of_f32"].get<double>(),
              (unsigned long long)l["f32_bytes"].get<uint64_t>(), l["bits_per_weight"].get<double>(), 100 * l["sparsity"].get<double>());
  const auto& w = p["all_weights"];
  std::printf("all weights:    %llu bytes = %.2f%% of their f32 %llu bytes (%.3f bits/weight; embedding, head and norms included)\n",
              (unsigned long long)w["bytes"].get<uint64_t>(), 100 * w["fraction_of_f32"].get<double>(),
              (unsigned long long)w["f32_bytes"].get<uint64_t>(), w["bits_per_weight"].get<double>());
  std::printf("whole file:     %llu bytes\n", (unsigned long long)p["file_bytes"].get<uint64_t>());
}

}  // namespace

void register_info(CLI::App& app) {
  auto* cmd = app.add_subcommand("info", "Show a model's format, config, parameter count, bytes by dtype and tokenizer");
  auto a = std::make_shared<ModelArgs>();
  auto as_json = std::make_shared<bool>(false);
  add_model_args(*cmd, *a);
  cmd->add_flag("--json", *as_json, "Print one JSON object");
  cmd->callback([a, as_json] {
    LoadedModel lm = load_model(a->model, a->tokenizer);
    Model& m = lm.model;
    std::map<std::string, std::pair<int64_t, int64_t>> by_dtype;  // name -> (params, bytes)
    int64_t params = 0;
    for_each_weight(m, [&](const WeightRef& w) {
      const int64_t n = shape_numel(w.shape);
      if (auto enc = m.source_encodings.find(w.name); enc != m.source_encodings.end() && m.format == "gguf") {
        // a ggml block type: bytes as the file stores them
        auto& e = by_dtype[enc->second];
        e.first += n;
        e.second += int64_t(ggml::row_bytes(uint32_t(ggml::type_from_name(enc->second)), w.shape.back()) * uint64_t(n / w.shape.back()));
      } else {
        const DType dt = m.source_dtypes.count(w.name) ? m.source_dtypes[w.name] : DType::F32;
        auto& e = by_dtype[name(dt)];
        e.first += n;
        e.second += int64_t(storage_bytes(dt, n));
      }
      params += n;
    });
    const ModelConfig& c = m.config;
    nlohmann::json j = {
        {"path", m.path},
        {"format", m.format},
        {"random_init", m.random_init},
        {"config",
         {{"arch", c.arch}, {"dim", c.dim}, {"n_layers", c.n_layers}, {"n_heads", c.n_heads}, {"n_kv_heads", c.n_kv_heads},
          {"head_dim", c.head_dim}, {"ffn_dim", c.ffn_dim}, {"vocab", c.vocab}, {"max_seq", c.max_seq},
          {"rope_theta", c.rope_theta}, {"norm_eps", c.norm_eps}, {"tied_embeddings", c.tied_embeddings},
          {"qkv_bias", c.qkv_bias}, {"bos_id", c.bos_id}, {"eos_id", c.eos_id}}},
        {"parameters", params},
        {"tokenizer", lm.tokenizer ? nlohmann::json{{"path", lm.tokenizer_path}, {"kind", lm.tokenizer->kind()},
                                                    {"vocab", lm.tokenizer->vocab_size()}}
                                   : nlohmann::json{{"missing", lm.tokenizer_note}}}};
    for (const auto& [dt, pb] : by_dtype) j["dtypes"][dt] = {{"parameters", pb.first}, {"bytes", pb.second}};
    // What runs besides the weights' formats: activation and KV-cache quantization.
    const std::string acts = m.activations.type == DType::I8 ? (m.activations.head ? "int8 dynamic per token (block linears and the LM head)"
                                                                                   : "int8 dynamic per token (block linears; head input f32)")
                             : m.activations.type == DType::F8E4M3 ? "fp8-e4m3 static per tensor (block linears; head input f32)"
                                                                   : "f32";
    const std::string kv = m.kv_cache.quantized() ? std::string(m.kv_cache.type == DType::F8E4M3 ? "fp8-e4m3" : "int8") +
                                                        (m.kv_cache.per_head ? " per kv head" : " per layer")
                                                  : "f32";
    j["activations"] = acts;
    j["kv_cache"] = kv;
    nlohmann::json packed;
    if (m.format == "cpk") packed = cpk_storage(m.path);
    if (!packed.is_null()) j["cpk"] = packed;
    nlohmann::json isas = nlohmann::json::array();
    for (kernels::Isa isa : kernels::kAllIsas) {
      if (kernels::isa_supported(isa)) isas.push_back(kernels::isa_name(isa));
    }
    apply_threads(a->threads);
    j["runtime"] = {{"isa", kernels::isa_name(kernels::active_isa())}, {"isas_supported", isas}, {"cpu", kernels::cpu_name()},
                    {"threads", active_threads()}, {"available_cpus", kernels::available_cpus()}};
    j["gpu_backend"] = kernels::gpu::backend_name();  // "none" in a build without CUDA / HIP
    j["gpu_devices"] = nlohmann::json::array();
#ifdef CONDENSE_HAVE_GPU
    for (const auto& d : kernels::gpu::list_devices()) {
      j["gpu_devices"].push_back({{"name", d.name}, {"memory_gib", d.memory_gib}, {"warp_size", d.warp_size},
                                  {"compute_capability", std::to_string(d.compute_major) + "." + std::to_string(d.compute_minor)}});
    }
#endif
    if (*as_json) {
      std::cout << j.dump(2) << "\n";
      return;
    }
    std::cout << "path:        " << m.path << "\n"
              << "format:      " << m.format << "\n";
    if (m.random_init) std::cout << "weights:     RANDOM (made by condense init; not a trained model)\n";
    std::cout << "config:      " << c.summary() << "\n"
              << "parameters:  " << params << " (" << params / 1e6 << " M)\n";
    for (const auto& [dt, pb] : by_dtype) {
      std::cout << "  " << dt << ": " << pb.first << " parameters, " << pb.second << " bytes (" << pb.second / 1048576.0 << " MiB)\n";
    }
    if (!packed.is_null()) print_cpk_storage(packed);
    std::cout << "activations: " << acts << "\n"
              << "kv cache:    " << kv << " (--kv-dtype overrides at run time)\n";
    std::cout << "kernels:     " << j["runtime"]["isa"].get<std::string>() << " (CPU " << kernels::cpu_name() << ", supports "
              << isas.dump() << "; CONDENSE_ISA chooses), " << active_threads() << " threads of " << kernels::available_cpus()
              << " CPUs available\n";
    for (const auto& d : j["gpu_devices"]) std::cout << "gpu:         " << d["name"].get<std::string>() << "\n";
    if (lm.tokenizer) {
      std::cout << "tokenizer:   " << lm.tokenizer->kind() << ", " << lm.tokenizer->vocab_size() << " tokens, " << lm.tokenizer_path << "\n";
    } else {
      std::cout << "tokenizer:   none (" << lm.tokenizer_note << ")\n";
    }
  });
}

}  // namespace condense::cli
