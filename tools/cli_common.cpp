#include "tools/cli_common.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "core/error.h"
#include "io/crc32c.h"
#include "kernels/cpu/cpu_features.h"
#include "runtime/gpu_forward.h"

namespace condense::cli {

namespace {

void bound_threads(int n, int avail) {
  if (n > avail) {
    std::fprintf(stderr, "condense: %d threads requested but this process may use %d CPU%s; using %d\n", n, avail,
                 avail == 1 ? "" : "s", avail);
    n = avail;
  }
  omp_set_num_threads(n);
}

}  // namespace

void add_device_option(CLI::App& app, std::string& device, bool training) {
  app.add_option("--device", device,
                 training ? "Where training stages (train, distill, gradual prune, QAT) run: cpu, or cuda / hip in a build "
                            "configured with -DCONDENSE_CUDA=ON / -DCONDENSE_HIP=ON and a visible GPU; calibration, pruning "
                            "and quantization stages run on the CPU"
                          : "Where the model runs: cpu, or cuda / hip in a build configured with -DCONDENSE_CUDA=ON / "
                            "-DCONDENSE_HIP=ON and a visible GPU (weights, KV cache and the forward pass on the device)")
      ->capture_default_str();
}

std::string recorded_draft(const std::string& model_path, const Model& m) {
  const nlohmann::json prov = nlohmann::json::parse(m.provenance, nullptr, false);
  if (!prov.is_object() || !prov.contains("draft")) return "";
  const nlohmann::json& d = prov["draft"];
  if (!d.is_object() || !d.contains("path") || !d["path"].is_string() || !d.contains("crc32c") || !d["crc32c"].is_string()) {
    fail(model_path, "its provenance names a draft model in an unknown form", "Use --no-draft, or --draft MODEL");
  }
  const std::filesystem::path p = std::filesystem::path(model_path).parent_path() / d["path"].get<std::string>();
  if (!std::filesystem::is_regular_file(p)) {
    fail(model_path, "was written with the draft model " + p.string() + " for speculative decoding, which is not there",
         "Put it back beside the model, or use --no-draft (or --draft MODEL)");
  }
  const std::string hex = file_crc32c_hex(p.string());
  if (d["crc32c"].get<std::string>() != hex) {
    fail(p.string(), std::string("is not the draft ") + model_path + " was written with (crc32c " + hex + ", recorded " +
                         d["crc32c"].get<std::string>() + ")",
         "Use --no-draft, or --draft MODEL to choose one");
  }
  return p.string();
}

Device parse_device(const std::string& device) {
  const Device d = device_from_name(device);
  std::string why;
  if (!device_usable(d, &why)) fail("--device", std::string("cannot run on ") + device + ": " + why, "Use --device cpu");
  return d;
}

void add_model_args(CLI::App& app, ModelArgs& a) {
  app.add_option("model", a.model,
                 "Model: a condense .cpk (packed checkpoint, run in its stored encodings), a llama2.c .bin, a Hugging Face "
                 "folder (config.json + *.safetensors) or a .gguf file")
      ->required();
  app.add_option("--tokenizer", a.tokenizer,
                 "Tokenizer file (llama2.c tokenizer.bin, SentencePiece tokenizer.model or HF tokenizer.json) for formats that carry none");
  add_threads_option(app, a.threads);
}

void add_threads_option(CLI::App& app, int& threads) {
  app.add_option("--threads", threads,
                 "Worker threads (default 0: OMP_NUM_THREADS if set, else every CPU this process may use - its affinity "
                 "mask and cgroup CPU limit; more than that is reduced to it)")
      ->check(CLI::NonNegativeNumber);
}

void apply_default_threads() {
  const int avail = kernels::available_cpus();
  bound_threads(std::getenv("OMP_NUM_THREADS") ? omp_get_max_threads() : avail, avail);
}

void apply_threads(int threads) {
  if (threads > 0) bound_threads(threads, kernels::available_cpus());
}

int active_threads() { return omp_get_max_threads(); }

size_t parse_bytes(const std::string& s, const std::string& option) {
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(s, &used);
  } catch (const std::exception&) {
    fail(option, "'" + s + "' is not a size (e.g. 512M, 2G, 1048576)");
  }
  std::string unit = s.substr(used);
  if (unit.size() > 1 && (unit.back() == 'B' || unit.back() == 'b')) unit.pop_back();
  if (unit.size() == 2 && (unit[1] == 'i' || unit[1] == 'I')) unit.pop_back();
  double mul = 1;
  if (unit == "K" || unit == "k") mul = 1024.0;
  else if (unit == "M" || unit == "m") mul = 1024.0 * 1024;
  else if (unit == "G" || unit == "g") mul = 1024.0 * 1024 * 1024;
  else if (unit == "T" || unit == "t") mul = 1024.0 * 1024 * 1024 * 1024;
  else if (!unit.empty() && unit != "B" && unit != "b") fail(option, "'" + s + "': unknown unit '" + unit + "' (K, M, G, T)");
  if (!(v > 0) || v * mul > 1e15) fail(option, "'" + s + "' must be a positive size below 1 PB");
  return size_t(v * mul);
}

void refuse_non_finite_numbers(CLI::App& app) {
  static const CLI::Validator finite(
      [](std::string& v) -> std::string {
        char* end = nullptr;
        const double x = std::strtod(v.c_str(), &end);
        if (end != v.c_str() && !std::isfinite(x)) return "must be a finite number, got " + v;
        return "";
      },
      "", "finite");
  for (CLI::Option* o : app.get_options()) {
    if (o->get_type_name().find("FLOAT") != std::string::npos) o->check(finite);
  }
  for (CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; })) refuse_non_finite_numbers(*sub);
}

}  // namespace condense::cli
