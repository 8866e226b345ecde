// Named model shapes: the published Mamba-1 sizes (130m, 370m, 790m, 1.4b, 2.8b; GPT-NeoX vocabulary of
// 50,280 padded rows) and a tiny byte-level shape for quick CPU work.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "model/config.h"

namespace mambacpp {

// Throws Error listing the known names when `name` is not one of them.
MambaConfig preset_config(std::string_view name);
std::vector<std::string> preset_names();

}  // namespace mambacpp
