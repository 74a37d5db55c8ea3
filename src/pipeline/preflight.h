// Checks of a recipe that need its files but no work: the teacher's and
// student's configs read from their headers, the student's layers, every
// stage's sequence length against the student's context, pruning and
// quantization patterns against the student's weight names, the data files.
// `run --dry-run` runs them, and so does every real run before its first step,
// so a dry run that passes promises the run will not refuse the recipe.
#pragma once
#include "model/config.h"
#include "pipeline/recipe.h"

namespace condense::pipeline {

void preflight(const Recipe& r);

// A random student's config: the shape's, or the teacher's, with the recipe's
// overrides; `vocab`: the shared tokenizer's size.
ModelConfig random_student_config(const StudentSpec& s, const ModelConfig* teacher, int vocab);

}  // namespace condense::pipeline
