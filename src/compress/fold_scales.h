// Per-channel scales moved from a site's input into the weights reading it:
// W[:, j] *= s_j for every weight reading the site, and the op producing the
// input divides channel j by s_j (the RMSNorm weight for q/k/v and gate/up,
// v_proj's rows (and bias) for o_proj, up_proj's rows for down_proj). The
// float model computes the same function; AWQ and SmoothQuant both use it.
#pragma once
#include <vector>

#include "compress/calibration.h"

namespace condense::compress {

// Whether a site's input can take scales: o_proj's input channels are
// v_proj's outputs only when every query head has its own kv head.
bool site_foldable(const ModelConfig& c, Site site);

// Applies s (one per input channel of the site) to layer w. Returns the
// weight whose rows were divided (v_proj, up_proj), or null for a norm.
Tensor* fold_input_scales(const ModelConfig& c, LayerWeights& w, Site site, const std::vector<float>& s);

}  // namespace condense::compress
