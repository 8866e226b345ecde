// Model folder loading (see loader.h).
#include "model/loader.h"

#include <filesystem>

#include "core/error.h"
#include "io/safetensors.h"

namespace mambacpp {

ModelWeights load_model(const std::string& dir, DType matrix_dtype) {
  namespace fs = std::filesystem;
  MAMBA_CHECK(fs::is_directory(dir), "model folder '{}' does not exist (or is not a folder)", dir);
  const fs::path config = fs::path(dir) / "config.json";
  MAMBA_CHECK(fs::exists(config), "'{}' is not a model folder: it has no config.json", dir);
  const MambaConfig cfg = MambaConfig::from_json_file(config.string());
  const TensorStore store(dir);
  return ModelWeights::load(store, cfg, matrix_dtype);
}

}  // namespace mambacpp
