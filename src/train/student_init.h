// Student initialisation from a teacher: a subset of its blocks (depth
// reduction, as in layer-dropping distillation), sharing its embeddings, final
// norm and head. Width reduction by importance is not implemented yet.
#pragma once
#include <vector>

#include "model/model.h"

namespace condense::train {

// A deep copy of `teacher` keeping blocks `layers` (strictly increasing indices
// into the teacher's blocks) in that order.
Model student_from_teacher(const Model& teacher, const std::vector<int>& layers);

}  // namespace condense::train
