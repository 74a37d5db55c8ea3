// condense convert MODEL --to gguf|cpk|hf --out PATH: a model in the format
// another runtime loads (src/pipeline/convert.h says what each keeps).
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "pipeline/convert.h"
#include "tools/cli_common.h"

namespace condense::cli {

namespace {
struct ConvertArgs {
  ModelArgs model;
  pipeline::ConvertOptions opt;
  std::string shard;
  bool json = false;
};

void print_human(const nlohmann::json& r) {
  const bool gguf = r["to"] == "gguf";
  std::printf("%s %s -> %s%s\n", r["dry_run"].get<bool>() ? "would convert" : "converted", r["input"].get<std::string>().c_str(),
              r["to"].get<std::string>().c_str(), r["output"].get<std::string>().empty() ? "" : (" " + r["output"].get<std::string>()).c_str());
  int exact = 0, fallback = 0;
  for (const auto& t : r["tensors"]) {
    const std::string how = t["how"];
    exact += how == "exact";
    fallback += t.contains("note") && t["note"].get<std::string>().find("instead") != std::string::npos;
    if (gguf) {
      std::printf("  %-28s %-22s -> %-5s %-12s", t["gguf_name"].get<std::string>().c_str(), t["source"].get<std::string>().c_str(),
                  t["type"].get<std::string>().c_str(), how.c_str());
      if (t.contains("rel_rmse") && how != "exact") std::printf(" rel. RMS error %.3g", t["rel_rmse"].get<double>());
      if (t.contains("note")) std::printf("  (%s)", t["note"].get<std::string>().c_str());
      std::printf("\n");
    }
  }
  std::printf("%d tensors: %d exact, %d %s%s\n", int(r["tensors"].size()), exact, int(r["tensors"].size()) - exact, gguf ? "re-quantized" : "rounded",
              fallback ? (", " + std::to_string(fallback) + " in a fallback type (rows not whole blocks)").c_str() : "");
  if (r.contains("ranks")) {
    std::printf("tensor parallel: %d ranks (", r["tp"].get<int>());
    for (size_t i = 0; i < r["ranks"].size(); ++i) std::printf("%s%s", i ? ", " : "", r["ranks"][i].get<std::string>().c_str());
    std::printf(") and tp.json\n");
  }
  for (const auto& n : r["notes"]) std::printf("note: %s\n", n.get<std::string>().c_str());
  if (r.contains("output_bytes")) {
    std::printf("wrote %llu bytes in %.2f s (peak RSS %.1f MB)\n", (unsigned long long)r["output_bytes"].get<uint64_t>(), r["seconds"].get<double>(),
                r["peak_rss_bytes"].get<double>() / 1e6);
  }
  if (r.contains("quality")) {
    const auto& q = r["quality"];
    std::printf("quality on %s: perplexity %.6f -> %.6f (%+.4f%%), KL(input || output) mean %.3g p99 %.3g nats/token, top-1 agreement %.2f%%\n",
                q["text"].get<std::string>().c_str(), q["input_perplexity"].get<double>(), q["output_perplexity"].get<double>(),
                q["delta_ppl_pct"].get<double>(), q["kl_mean"].get<double>(), q["kl_p99"].get<double>(), 100 * q["top1_agreement"].get<double>());
  }
}
}  // namespace

void register_convert(CLI::App& app) {
  auto* cmd = app.add_subcommand("convert", "Write a model in another format: GGUF (llama.cpp), compressed-tensors (vLLM), a Hugging Face folder or a .cpk; shard it or split it for tensor parallelism (docs/CONVERT.md)");
  auto a = std::make_shared<ConvertArgs>();
  add_model_args(*cmd, a->model);
  cmd->add_option("--to", a->opt.to, "Output format: gguf (llama.cpp), cpk, hf (transformers, dequantized), compressed-tensors (vLLM)")
      ->required()->check(CLI::IsMember({"gguf", "cpk", "hf", "compressed-tensors"}));
  cmd->add_option("--out", a->opt.out, "Output file (gguf, cpk) or folder (hf, compressed-tensors, --tp)");
  cmd->add_option("--type", a->opt.gguf_type,
                  "GGUF type of the 2-D weights: auto (each packed weight in the ggml type its codes map onto exactly, else F32), "
                  "f32, f16, bf16, q8_0, q4_0, q4_1, q4_k, q6_k. Rows that are not whole blocks fall back (Q4_K->Q4_1, Q6_K->Q8_0, then F16), "
                  "named in the output")
      ->capture_default_str();
  auto* dtype = cmd->add_option("--dtype", a->opt.hf_dtype,
                                "Safetensors dtype of dense tensors for hf / compressed-tensors (and of pack-quantized scales): bf16, f16, f32 "
                                "(default: bf16 for hf; f16 for compressed-tensors, where a .cpk's scales are exact)");
  cmd->add_option("--max-shard-size", a->shard, "Split hf / compressed-tensors weights into files of at most this much tensor data "
                                                "(e.g. 2G; K/M/G are powers of 1024) plus model.safetensors.index.json");
  cmd->add_option("--zstd", a->opt.zstd_level, "zstd level for --to cpk sections (0 = stored raw)")->check(CLI::Range(0, 19))->capture_default_str();
  cmd->add_option("--text", a->opt.text, "Measure the conversion's cost: perplexity change and KL(input || output) on this text")
      ->check(CLI::ExistingFile);
  cmd->add_option("--ctx", a->opt.ctx, "Window length in tokens for --text")->check(CLI::Range(2, 1 << 20))->capture_default_str();
  cmd->add_option("--max-windows", a->opt.max_windows, "Score only the first K windows of --text (0 = all)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--tp", a->opt.tp, "Split for N-way tensor parallelism into a new folder of rank .cpk files + tp.json (--to cpk; 1 = no split)")
      ->check(CLI::Range(1, 4096))->capture_default_str();
  cmd->add_flag("--merge", a->opt.merge, "MODEL is a folder written by --tp: put its ranks back together, then convert");
  cmd->add_flag("--dry-run", a->opt.dry_run, "Print what would be written, per tensor, and write nothing");
  cmd->add_flag("--json", a->json, "Print the result as one JSON object");
  cmd->add_flag("--log-json", a->opt.log_json, "Progress as JSON lines on stderr");
  cmd->callback([a, dtype] {
    apply_threads(a->model.threads);
    if (dtype->count() == 0) a->opt.hf_dtype = a->opt.to == "compressed-tensors" ? "f16" : "bf16";
    if (!a->shard.empty()) a->opt.max_shard_bytes = parse_bytes(a->shard, "--max-shard-size");
    a->opt.tokenizer = a->model.tokenizer;
    const nlohmann::json r = pipeline::convert_model(a->model.model, a->opt);
    if (a->json) std::cout << r.dump() << "\n";
    else print_human(r);
  });
}

}  // namespace condense::cli
