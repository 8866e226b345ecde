// Named model shapes (see presets.h). The published sizes follow the mamba_ssm release: d_state 16, conv 4,
// expand 2, dt_rank ceil(d/16), no projection biases, conv bias, tied embedding.
#include "model/presets.h"

#include "core/error.h"

namespace mambacpp {

namespace {

struct Preset {
  const char* name;
  int64_t d_model, n_layer, vocab;
};

constexpr Preset kPresets[] = {
    {"tiny", 256, 4, 256}, {"130m", 768, 24, 50280},  {"370m", 1024, 48, 50280},
    {"790m", 1536, 48, 50280}, {"1.4b", 2048, 48, 50280}, {"2.8b", 2560, 64, 50280},
};

}  // namespace

MambaConfig preset_config(std::string_view name) {
  for (const Preset& p : kPresets) {
    if (name != p.name) continue;
    MambaConfig c;
    c.d_model = p.d_model;
    c.n_layer = p.n_layer;
    c.vocab_size = p.vocab;
    c.d_state = 16;
    c.d_conv = 4;
    c.expand = 2;
    c.d_inner = 2 * p.d_model;
    c.dt_rank = (p.d_model + 15) / 16;
    c.use_bias = false;
    c.use_conv_bias = true;
    c.tie_embeddings = true;
    c.validate(std::string("preset ") + p.name);
    return c;
  }
  std::string known;
  for (const Preset& p : kPresets) {
    if (!known.empty()) known += ", ";
    known += p.name;
  }
  fail("unknown model shape '{}' (known: {})", name, known);
}

std::vector<std::string> preset_names() {
  std::vector<std::string> names;
  for (const Preset& p : kPresets) names.emplace_back(p.name);
  return names;
}

}  // namespace mambacpp
