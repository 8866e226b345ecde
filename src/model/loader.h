// Loading a model folder as published on the Hugging Face hub: config.json (either dialect) and
// model.safetensors (or shards with model.safetensors.index.json).
#pragma once

#include <string>

#include "core/dtype.h"
#include "model/weights.h"

namespace mambacpp {

// Throws Error naming the folder and the missing or faulty file/tensor.
ModelWeights load_model(const std::string& dir, DType matrix_dtype);

}  // namespace mambacpp
