// Recipes: the JSON that names a teacher, the data, the student, the output and
// an ordered list of stages (schema in docs/RECIPES.md). parse_recipe()
// validates everything up front and fails with the JSON path of the first bad
// value and what is allowed there, before any work starts.
#pragma once
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "compress/kv_calibration.h"
#include "compress/prune_model.h"
#include "compress/quantize_model.h"
#include "train/objective.h"
#include "train/trainer.h"
#include "train/width_prune.h"

namespace condense::pipeline {

struct ModelSource {
  std::string model, tokenizer;  // tokenizer: optional override
};

struct GenerateSpec {            // sequence-level distillation: teacher samples become training text
  int samples = 0, max_tokens = 256;
  float temperature = 1.f, top_p = 1.f;
  uint64_t seed = 1;
};

struct DataSpec {
  std::vector<std::string> text;  // tokenized in memory ...
  std::string tokens;             // ... or a folder from `condense data prepare` (neither: no data, when no stage needs any)
  int64_t skip_bytes = 0;
  double val_fraction = 0.05;
  GenerateSpec generate;
};

// Random-init config fields overriding the shape's or the teacher's (0 / empty: keep).
struct ConfigOverrides {
  int dim = 0, n_layers = 0, n_heads = 0, n_kv_heads = 0, head_dim = 0, ffn_dim = 0, max_seq = 0;
  std::optional<bool> tied_embeddings;
};

struct StudentSpec {
  std::string init = "from_teacher";  // from_teacher | random | model
  std::vector<int> layers;            // from_teacher: teacher layers kept (empty: all)
  std::string shape;                  // random: a `condense init` shape name ...
  ConfigOverrides config;             // ... or the teacher's config, with these fields overridden
  ModelSource model;                  // model: start from this checkpoint; random: model.tokenizer, its tokenizer (no teacher)
  uint64_t seed = 1;
  bool shrink = false;                // from_teacher: width reduction by importance
  train::WidthTarget width;
  int calibration_windows = 32;
};

struct CalibrationSpec {
  int samples = 128, seq = 256, chunk = 8;
  uint64_t seed = 1;
};

// A draft stage: a small student of the model as the recipe leaves it,
// distilled on that model's own samples, for speculative decoding.
struct DraftSpec {
  std::vector<int> layers;            // the model's blocks the draft starts from
  int samples = 500, sample_tokens = 255;  // the model's own samples added to the data
  float temperature = 1.f;
};

struct StageSpec {
  std::string type;                   // train | distill | prune | quantize | qat | calibrate_kv | draft
  std::string name;
  train::TrainOptions train;          // train, distill, gradual prune, qat
  train::ObjectiveConfig objective;
  compress::PruneOptions prune;       // prune
  std::optional<compress::GradualSchedule> gradual;  // prune: magnitude on this schedule while training ...
  std::string gradual_with;           // ... as a "train" or "distill" run
  compress::QuantizeOptions quantize; // quantize
  CalibrationSpec calibration;        // prune (wanda, sparsegpt), quantize (gptq, awq), calibrate_kv
  compress::KvCalibrationOptions kv;  // calibrate_kv
  DraftSpec draft;                    // draft (training fields in train / objective)
  bool compresses() const { return type == "prune" || type == "quantize" || type == "calibrate_kv"; }
  bool trains() const { return type == "train" || type == "distill" || type == "qat" || gradual.has_value(); }
  bool uses_teacher() const { return type == "distill" || type == "qat" || gradual_with == "distill"; }
  // Trains on, or calibrates from, the recipe's data (RTN quantization, magnitude
  // pruning and unit KV scales read none).
  bool needs_data() const {
    if (trains() || type == "draft") return true;
    if (type == "prune") return prune.needs_calibration();
    if (type == "quantize") return quantize.needs_calibration();
    return type == "calibrate_kv" && !kv.unit_scales;
  }
};

struct Recipe {
  std::string name;
  std::optional<ModelSource> teacher;
  DataSpec data;
  StudentSpec student;
  std::vector<StageSpec> stages;
  std::string output_dir, output_format = "hf";  // hf | llama2c | cpk (the default when a stage compresses)
  std::string eval_text;
  int eval_ctx = 256, eval_windows = 16;
  nlohmann::json source;              // the recipe as given (after --set), stored with outputs
};

// Reads a recipe file (errors name the file and the JSON parse position).
nlohmann::json load_recipe_json(const std::string& path);
// Applies "a.b[2].c=value": value is parsed as JSON when it parses, else taken
// as a string. Missing objects along the path are created.
void apply_set(nlohmann::json& j, const std::string& assignment);
// Relative paths in the recipe are taken relative to `base_dir` (the recipe's folder).
Recipe parse_recipe(const nlohmann::json& j, const std::string& base_dir);

// A quantize stage's "weights" object (e.g. {"type": "int4", "group": 32}),
// validated as parse_recipe does; `where` names it in errors.
QuantScheme parse_weights(const nlohmann::json& w, const std::string& where);

}  // namespace condense::pipeline
