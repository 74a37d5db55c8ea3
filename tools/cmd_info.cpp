// condense info MODEL: what a model file holds.
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>

#include "io/model_loader.h"
#ifdef CONDENSE_HAVE_CUDA
#include "kernels/gpu/device_query.h"
#endif
#include "tools/cli_common.h"

namespace condense::cli {

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
      const DType dt = m.source_dtypes.count(w.name) ? m.source_dtypes[w.name] : DType::F32;
      auto& e = by_dtype[name(dt)];
      e.first += w.tensor->numel();
      e.second += int64_t(storage_bytes(dt, w.tensor->numel()));
      params += w.tensor->numel();
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
    j["gpu_devices"] = nlohmann::json::array();
#ifdef CONDENSE_HAVE_CUDA
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
    for (const auto& d : j["gpu_devices"]) std::cout << "gpu:         " << d["name"].get<std::string>() << "\n";
    if (lm.tokenizer) {
      std::cout << "tokenizer:   " << lm.tokenizer->kind() << ", " << lm.tokenizer->vocab_size() << " tokens, " << lm.tokenizer_path << "\n";
    } else {
      std::cout << "tokenizer:   none (" << lm.tokenizer_note << ")\n";
    }
  });
}

}  // namespace condense::cli
