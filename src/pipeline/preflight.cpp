#include "pipeline/preflight.h"

#include <algorithm>
#include <filesystem>

#include "compress/quantize_model.h"
#include "core/error.h"
#include "io/file_view.h"
#include "io/model_loader.h"
#include "model/model.h"
#include "model/shapes.h"

namespace condense::pipeline {
namespace fs = std::filesystem;

ModelConfig random_student_config(const StudentSpec& s, const ModelConfig* teacher, int vocab) {
  ModelConfig c = s.shape.empty() ? *teacher : shape_config(s.shape);  // parse_recipe ensured one exists
  const ConfigOverrides& v = s.config;
  for (auto [field, value] : {std::pair{&c.dim, v.dim}, {&c.n_layers, v.n_layers}, {&c.n_heads, v.n_heads}, {&c.n_kv_heads, v.n_kv_heads},
                              {&c.head_dim, v.head_dim}, {&c.ffn_dim, v.ffn_dim}, {&c.max_seq, v.max_seq}}) {
    if (value > 0) *field = value;
  }
  if (v.tied_embeddings) c.tied_embeddings = *v.tied_embeddings;
  c.vocab = vocab;
  c.validate("$.student");
  return c;
}

namespace {

// A model's config, its errors under the recipe's JSON path.
ModelConfig config_of(const std::string& path, const std::string& json_path) {
  try {
    return read_model_config(path);
  } catch (const Error& e) {
    fail("recipe", json_path + ": " + e.what());
  }
}

void require_file(const std::string& path, const std::string& json_path) {
  try {
    require_regular_file(path);
  } catch (const Error& e) {
    fail("recipe", json_path + ": " + e.what());
  }
}

}  // namespace

void preflight(const Recipe& r) {
  std::optional<ModelConfig> teacher;
  if (r.teacher) {
    teacher = config_of(r.teacher->model, "$.teacher.model");
    if (!r.teacher->tokenizer.empty()) require_file(r.teacher->tokenizer, "$.teacher.tokenizer");
  }
  ModelConfig student;
  if (r.student.init == "from_teacher") {
    if (!teacher) fail("recipe", "$.student: init \"from_teacher\" needs a $.teacher");
    student = *teacher;
    const std::vector<int>& ls = r.student.layers;
    for (size_t i = 0; i < ls.size(); ++i) {
      if (ls[i] < 0 || ls[i] >= teacher->n_layers) {
        fail("recipe", "$.student.layers[" + std::to_string(i) + "]: layer " + std::to_string(ls[i]) + " is not one of the teacher's " +
                           std::to_string(teacher->n_layers) + " layers (0.." + std::to_string(teacher->n_layers - 1) + ")");
      }
      if (i > 0 && ls[i] <= ls[i - 1]) {
        fail("recipe", "$.student.layers[" + std::to_string(i) + "]: layer " + std::to_string(ls[i]) +
                           (ls[i] == ls[i - 1] ? " is repeated" : " comes after " + std::to_string(ls[i - 1])),
             "List the teacher layers to keep once each, in increasing order");
      }
    }
    if (!ls.empty()) student.n_layers = int(ls.size());
  } else if (r.student.init == "model") {
    student = config_of(r.student.model.model, "$.student.model");
    if (!r.student.model.tokenizer.empty()) require_file(r.student.model.tokenizer, "$.student.tokenizer");
  } else {
    if (!r.student.model.tokenizer.empty()) require_file(r.student.model.tokenizer, "$.student.tokenizer");
    // The vocabulary is the tokenizer's, not known here; it does not enter the checks below.
    student = random_student_config(r.student, teacher ? &*teacher : nullptr, teacher ? teacher->vocab : 1 << 15);
  }

  for (size_t i = 0; i < r.data.text.size(); ++i) require_file(r.data.text[i], "$.data.text[" + std::to_string(i) + "]");
  if (!r.data.tokens.empty()) require_file((fs::path(r.data.tokens) / "manifest.json").string(), "$.data.tokens");
  const bool has_data = !r.data.text.empty() || !r.data.tokens.empty();
  if (!r.eval_text.empty()) require_file(r.eval_text, "$.eval.text");

  Model names;  // the student's weight names and shapes (nothing allocated)
  names.config = student;
  for (size_t si = 0; si < r.stages.size(); ++si) {
    const StageSpec& st = r.stages[si];
    const std::string at = "$.stages[" + std::to_string(si) + "]";
    if (st.needs_data() && !has_data) fail("recipe", at + " (" + st.type + ") trains or calibrates on data, and $.data names none");
    if (st.uses_teacher() && !teacher) fail("recipe", at + " (" + st.type + ") needs a $.teacher");
    if (st.trains() && st.train.seq > student.max_seq) {
      fail("recipe", at + ".seq: " + std::to_string(st.train.seq) + " tokens is longer than the student's context of " + std::to_string(student.max_seq),
           "Lower seq (or raise the student's max_seq)");
    }
    if (st.type == "prune" || st.gradual) {
      const std::vector<std::string> sel = compress::select_weights(names, st.prune.targets, at + ".targets");
      if (st.prune.nm.active()) {
        for_each_weight(names, [&](const WeightRef& w) {
          if (std::find(sel.begin(), sel.end(), w.name) != sel.end() && w.shape[1] % st.prune.nm.m) {
            fail("recipe", at + ": '" + w.name + "' has rows of " + std::to_string(w.shape[1]) + " inputs, not a multiple of " +
                               std::to_string(st.prune.nm.m) + " for the N:M pattern");
          }
        });
      }
    }
    if (st.type == "quantize" || st.type == "qat") compress::select_weights(names, st.quantize.targets, at + ".targets");
  }
}

}  // namespace condense::pipeline
